"""Report -> Markdown: title, provenance, impression, one section per region, a findings table."""

from __future__ import annotations

from ..document import Report
from .units import format_number, measurement_rows, region_headline, size_text

STATUS_TEXT = {"assessed": "assessed", "outside_field_of_view": "outside the field of view",
               "not_assessed": "not assessed"}


def provenance_line(report: Report) -> str:
    p = report.provenance
    parts = []
    if p.segmenter:
        parts.append(f"segmenter: {p.segmenter}")
    if p.reporter:
        parts.append(f"reporter: {p.reporter}")
    if p.schema:
        parts.append(f"regions: {p.schema}")
    version = (p.versions or {}).get("MedRegionCTLib")
    if version:
        parts.append(f"MedRegionCTLib {version}")
    if p.created:
        parts.append(f"created {p.created}")
    total = (p.timings_s or {}).get("total")
    if total is not None:
        parts.append(f"{format_number(total)} s")
    return " · ".join(parts) or "provenance not recorded"


def scope_lines(report: Report) -> list[str]:
    """What the scan and the chain allow the report to say (``provenance.scope``), one line each: the scan's own
    limitations (not a chest CT, a thin slab, a resampled grid), how the segmenter was chosen, what each lung's
    coverage allows, the quality checks that failed, lobes by zones, the segmenter's known limits."""
    scope = report.provenance.scope or {}
    lines = [str(text) for text in scope.get("limitations") or []]
    seg = scope.get("segmentation") or {}
    if seg.get("reason"):
        lines.append(f"Segmentation: {seg.get('engine', report.provenance.segmenter)} ({seg['reason']}).")
    for side, cover in (scope.get("lung_coverage") or {}).items():
        if cover.get("in_view") and not cover.get("complete", True):
            lines.append(f"The {side} lung is not wholly in the field of view: {cover.get('reason', '')}.")
    for name, check in (scope.get("quality_checks") or {}).items():
        if not check.get("passed", True):
            lines.append(f"Quality check '{name.replace('_', ' ')}' failed: {check.get('reason', '')}.")
    if scope.get("lobes") in ("zones", "fissures+zones"):
        lines.append("Lobes: " + ("geometric zones (no fissure found)" if scope["lobes"] == "zones" else
                                  "fissures where found, geometric zones elsewhere") + ".")
    lines += [f"Known limit of the segmenter: {item}." for item in scope.get("segmenter_limits") or []]
    return lines


def _cell(text) -> str:
    return str(text).replace("\\", "\\\\").replace("|", "\\|").replace("\n", " ")


def _table(header: list[str], rows: list[list]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(_cell(c) for c in row) + " |" for row in rows]
    return lines


def findings_rows(report: Report) -> list[list[str]]:
    rows = []
    for region in report.regions:
        for f in region.findings:
            rows.append([str(f.id), region.name, f.kind.replace("_", " "), f.label or "—", f.location or "—",
                         f.side or "—", size_text(f.size) or "—", f"{float(f.confidence):.2f}",
                         "; ".join(f.provenance) or "—"])
    return rows


FINDINGS_HEADER = ["#", "Region", "Kind", "CT-RATE label", "Location", "Side", "Size", "Confidence", "How derived"]
CONTRADICTIONS_HEADER = ["Region", "Statement", "Claim", "Measured", "Action"]
ACTION_TEXT = {"flagged": "flagged (kept)", "replaced": "replaced by the measured statement"}


def contradiction_rows(report: Report) -> list[list[str]]:
    """One row per contradiction: region name, the statement as written, the claim, what was measured, action."""
    names = {r.key: r.name for r in report.regions}
    return [[names.get(c.region, c.region), c.text, c.claim, c.measured, ACTION_TEXT.get(c.action, c.action)]
            for c in report.contradictions]


def flagged_sentences(report: Report) -> dict[str, set[int]]:
    """Region key -> indices of the sentences kept although the measurements contradict them."""
    out: dict[str, set[int]] = {}
    for c in report.contradictions:
        if c.action == "flagged" and c.sentence is not None:
            out.setdefault(c.region, set()).add(int(c.sentence))
    return out


def to_markdown(report: Report, measurements=None, title: str = "Chest CT report, region by region") -> str:
    """The report as Markdown. ``measurements`` (``measure.Measurements`` or its JSON) supplies each region's
    volume and attenuation where the report carries no headline numbers of its own."""
    lines = [f"# {title}", "", f"_{provenance_line(report)}_", ""]
    lines += [line for text in scope_lines(report) for line in (f"> **Scope:** {text}", "")]
    lines += ["## Impression", ""]
    lines += [f"- {item}" for item in report.impression] or ["No abnormal finding was identified."]
    if report.contradictions:
        lines += ["", "## Contradicted by the measurements", "",
                  f"{len(report.contradictions)} statement(s) of the {report.provenance.reporter or 'generated'} "
                  "text disagree with the measurements; sentences kept are marked ⚠.", ""]
        lines += _table(CONTRADICTIONS_HEADER, contradiction_rows(report))
    flagged = flagged_sentences(report)
    for region in report.regions:
        lines += ["", f"## {region.name}", "", f"**Status:** {STATUS_TEXT.get(region.status, region.status)}", ""]
        marked = flagged.get(region.key, set())
        text = " ".join((f"⚠ {s.text.strip()} ⚠" if i in marked else s.text.strip())
                        for i, s in enumerate(region.sentences) if s.text.strip())
        lines.append(text or "_No description._")
        rows = measurement_rows(region_headline(region, measurements))
        if rows:
            lines += [""] + _table(["Measurement", "Value", "Unit"], [list(r) for r in rows])
    lines += ["", "## Findings", ""]
    rows = findings_rows(report)
    lines += _table(FINDINGS_HEADER, rows) if rows else ["No findings."]
    return "\n".join(lines) + "\n"
