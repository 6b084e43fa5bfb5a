"""Report -> text nodes: the readable report (one 'Region: paragraph' line per region, then the impression)
and its lossless JSON form in a second text node, referenced from the first (role :data:`REPORT_JSON_ROLE`),
so a saved scene restores the full Report (sentences, findings, evidence, provenance)."""

from __future__ import annotations

import json

from ..errors import InputError
from ..report import Report
from ._mrml import new_node, require_mrml

REPORT_JSON_ROLE = "MedRegionCT.reportJSON"
ROLE_ATTRIBUTE = "MedRegionCT.Role"


def contradiction_lines(report: Report) -> list[str]:
    """One line per statement the measurements contradict (for the report panel and the text node):
    ``"Pleura: 'No pleural effusion is seen.' -- claim: pleural_effusion absent; measured: ...; flagged"``."""
    names = {r.key: r.name for r in report.regions}
    return [f"{names.get(c.region, c.region)}: {c.text!r} -- claim: {c.claim}; measured: {c.measured}; {c.action}"
            for c in report.contradictions]


def report_text(report: Report) -> str:
    text = report.text()
    if report.impression:
        text += "\n\nImpression:\n" + "\n".join(f"- {line}" for line in report.impression)
    lines = contradiction_lines(report)
    if lines:
        text += "\n\nContradicted by the measurements:\n" + "\n".join(f"- {line}" for line in lines)
    return text


def report_to_text_node(report: Report, node=None, scene=None, name: str = "Report", json_node=None):
    """Write ``report`` into a text node (plain text) and a JSON text node; returns ``(text_node, json_node)``.

    Existing nodes passed as ``node`` / ``json_node`` are refilled."""
    slicer = require_mrml()
    node = new_node(slicer, "vtkMRMLTextNode", name, node, scene)
    node.SetText(report_text(report))
    node.SetAttribute(ROLE_ATTRIBUTE, "report")
    if json_node is None and node.GetScene() is not None:
        json_node = node.GetNodeReference(REPORT_JSON_ROLE)
    json_node = new_node(slicer, "vtkMRMLTextNode", f"{node.GetName()} JSON", json_node, node.GetScene())
    json_node.SetText(json.dumps(report.to_json(), indent=1, ensure_ascii=False))
    json_node.SetAttribute(ROLE_ATTRIBUTE, "report_json")
    if hasattr(json_node, "SetForceCreateStorageNode"):
        json_node.SetForceCreateStorageNode(True)  # saved with the scene as a file, not an XML attribute
    if node.GetScene() is not None and json_node.GetScene() is not None:
        node.SetNodeReferenceID(REPORT_JSON_ROLE, json_node.GetID())
    return node, json_node


def report_from_text_node(node) -> Report:
    """The Report stored by :func:`report_to_text_node`; ``node`` is the text node or its JSON node."""
    if node is None:
        raise InputError("no report node given; run MedRegionCT first.")
    source = node if node.GetAttribute(ROLE_ATTRIBUTE) == "report_json" else node.GetNodeReference(REPORT_JSON_ROLE)
    if source is None:
        raise InputError(f"text node '{node.GetName()}' has no MedRegionCT report JSON; run MedRegionCT again.")
    try:
        data = json.loads(source.GetText())
    except json.JSONDecodeError as error:
        raise InputError(f"text node '{source.GetName()}' does not hold valid report JSON ({error}); "
                         "run MedRegionCT again.") from None
    return Report.from_json(data)
