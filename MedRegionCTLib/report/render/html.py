"""Report -> one self-contained HTML file: paragraphs, measurements, findings and key images (inline PNG).

Nothing is fetched when the file is opened: the CSS is inline, images are base64 data URIs, there is no
script. Each region's paragraph links to its key images and each image links back to the paragraph.
"""

from __future__ import annotations

import re
from html import escape

import numpy as np

from ..document import Finding, RegionReport, Report
from .key_images import KeyImage, KeyImageMaker, Overlay, window_for
from .markdown import (
    CONTRADICTIONS_HEADER,
    FINDINGS_HEADER,
    STATUS_TEXT,
    contradiction_rows,
    findings_rows,
    flagged_sentences,
    provenance_line,
    scope_lines,
)
from .units import measurement_part, measurement_rows, region_headline

DEFAULT_COLOR = (255, 128, 0)

_CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,Helvetica,Arial,sans-serif;margin:0;color:#1d2328;
background:#f4f6f8;line-height:1.45}
header{background:#1f3a4d;color:#fff;padding:14px 24px}header h1{margin:0;font-size:22px}
header p{margin:4px 0 0;font-size:13px;color:#c9d6df}
main{max-width:1240px;margin:0 auto;padding:12px 20px 40px}
nav{display:flex;flex-wrap:wrap;gap:6px;margin:10px 0}
nav a{font-size:13px;padding:3px 9px;border-radius:12px;background:#fff;border:1px solid #cfd8dc;color:#1f3a4d;
text-decoration:none}
nav a .dot,.swatch{display:inline-block;width:10px;height:10px;border-radius:2px;margin-right:5px;
vertical-align:middle;border:1px solid rgba(0,0,0,.3)}
section{background:#fff;border:1px solid #dde3e7;border-radius:6px;padding:12px 16px;margin:12px 0}
section h2{margin:0 0 6px;font-size:18px}
.status{font-size:12px;font-weight:normal;padding:1px 8px;border-radius:10px;margin-left:8px;background:#e3efe5;
color:#2f6b3a}
.status.outside_field_of_view,.status.not_assessed{background:#f1e6d6;color:#7a5312}
.status.abnormal{background:#f8dcdc;color:#8b1d1d}
.cols{display:grid;grid-template-columns:minmax(300px,1fr) auto;gap:16px;align-items:start}
.paragraph{margin:4px 0 10px}.paragraph:target,figure:target{outline:3px solid #f2b705;outline-offset:3px}
.finding-sentence{background:#fff4c2}
a.figlink{font-size:12px;margin-left:3px;text-decoration:none}
table{border-collapse:collapse;font-size:13px;margin:6px 0}th,td{border:1px solid #dde3e7;padding:3px 8px;
text-align:left}th{background:#eef2f5}td.num{text-align:right;font-variant-numeric:tabular-nums}
.images{display:flex;flex-wrap:wrap;gap:10px;max-width:680px}
figure{margin:0;width:320px}figure img{width:320px;height:auto;display:block;background:#000}
.imgwrap{position:relative}
.mark{position:absolute;color:#fff;font:bold 13px/1 monospace;text-shadow:0 0 3px #000,0 0 2px #000}
.mark.top{top:3px;left:50%}.mark.bottom{bottom:3px;left:50%}.mark.left{left:4px;top:50%}
.mark.right{right:4px;top:50%}
figcaption{font-size:12px;color:#4a5660;margin-top:3px}
.noimg{font-size:13px;color:#6b7780;font-style:italic}
.pair-title{font-size:13px;font-weight:600;margin:2px 0;width:100%}
.contradicted{background:#f8dcdc;text-decoration:underline wavy #b3261e}
#contradictions{border-color:#e0a0a0}#contradictions h2{color:#8b1d1d}
"""


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", str(text).lower()).strip("-") or "region"


def _region_masks(regions) -> dict:
    if regions is None:
        return {}
    if isinstance(regions, dict):
        return dict(regions)
    return {r.key: r.mask for r in regions}


def _region_colors(report: Report, regions) -> dict:
    colors = {}
    if regions is not None and not isinstance(regions, dict):
        colors = {r.key: tuple(r.region.color) for r in regions if hasattr(r, "region")}
    if len(colors) < len(report.regions):
        from ...anatomy import load_schema
        from ...errors import InputError

        try:
            schema = load_schema(report.provenance.schema or "radgenome10")
            for region in schema.regions:
                colors.setdefault(region.key, tuple(region.color))
        except InputError:
            pass
    return colors


def _lesion_index(measurements) -> dict[int, int]:
    lesions = measurement_part(measurements, "lesions") or []
    return {int(les["id"]): i for i, les in enumerate(lesions) if isinstance(les, dict) and "id" in les}


def _finding_lesions(finding: Finding, measurements) -> tuple[list[int], list[str]]:
    """Indices into ``measurements.lesions`` and structure class names a finding's evidence cites.

    Masks cite lesions by id (``lesion:<id>``); measurement paths by list index (``lesions/<index>``)."""
    by_id = _lesion_index(measurements)
    indices, structures = [], []
    for ref in finding.evidence.masks:
        kind, _, name = ref.partition(":")
        if kind == "lesion" and name.isdigit() and int(name) in by_id:
            indices.append(by_id[int(name)])
        elif kind == "structure" and name:
            structures.append(name)
    for ref in finding.evidence.measurements:
        parts = ref.split("/")
        if len(parts) >= 2 and parts[0] == "lesions" and parts[1].isdigit():
            indices.append(int(parts[1]))
    return list(dict.fromkeys(indices)), structures


def locate_finding(finding: Finding, volume, measurements=None, labelmap=None):
    """(boolean mask on the CT grid or None, RAS point or None) for a finding, from its evidence."""
    indices, structures = _finding_lesions(finding, measurements)
    masks = measurement_part(measurements, "lesion_masks") or []
    lesions = measurement_part(measurements, "lesions") or []
    point = finding.values.get("centroid_ras") if isinstance(finding.values, dict) else None
    for i in indices:
        if i < len(masks):
            crop, sub = masks[i]
            full = np.zeros(volume.shape, dtype=bool)
            full[tuple(crop)] = sub
            if full.any():
                return full, None
        if i < len(lesions):
            point = point or lesions[i].get("centroid_ras")
    if labelmap is not None:
        for name in structures:
            mask = labelmap.mask(name)
            if mask.shape == tuple(volume.shape) and mask.any():
                return mask, None
    return None, point


def _figure(image: KeyImage, fig_id: str, para_id: str, region: RegionReport, color, note: str) -> str:
    marks = "".join(f'<span class="mark {side}">{letter}</span>' for side, letter in image.marks.items())
    alt = f"{region.name}: {image.caption()}"
    return (f'<figure id="{fig_id}"><div class="imgwrap"><img src="{image.data_uri()}" width="{image.width}" '
            f'height="{image.height}" alt="{escape(alt)}">{marks}</div><figcaption>'
            f'<span class="swatch" style="background:rgb{tuple(color)}"></span>{escape(image.caption())}. '
            f'{escape(note)} <a href="#{para_id}">&#8617; paragraph</a></figcaption></figure>')


def _measure_table(region: RegionReport, measurements) -> str:
    rows = measurement_rows(region_headline(region, measurements))
    if not rows:
        return ""
    body = "".join(f"<tr><td>{escape(label)}</td><td class=\"num\">{escape(value)}</td><td>{escape(unit)}</td></tr>"
                   for label, value, unit in rows)
    return f'<table class="measurements"><tr><th>Measurement</th><th>Value</th><th>Unit</th></tr>{body}</table>'


def _findings_table(region: RegionReport) -> str:
    if not region.findings:
        return ""
    sub = Report(regions=[region])
    head = "".join(f"<th>{escape(h)}</th>" for h in FINDINGS_HEADER if h != "Region")
    body = "".join("<tr>" + "".join(f"<td>{escape(c)}</td>" for j, c in enumerate(row) if j != 1) + "</tr>"
                   for row in findings_rows(sub))
    return f'<table class="findings"><tr>{head}</tr>{body}</table>'


def _region_images(region: RegionReport, maker: KeyImageMaker | None, mask, color, measurements, labelmap,
                   max_findings: int) -> list[tuple[str, str, list[KeyImage]]]:
    """[(anchor suffix, title, [axial, coronal])] for a region."""
    if maker is None:
        return []
    window = window_for(region.key)
    mask_d = maker.orient(mask) if mask is not None and np.any(mask) else None
    overlays = [Overlay(mask_d, color)] if mask_d is not None else []
    located = []
    for finding in region.findings:
        les, point = locate_finding(finding, maker.volume, measurements, labelmap)
        if les is not None:
            located.append((finding, maker.orient(les), None))
        elif point is not None:
            located.append((finding, None, maker.point_index(point)))
    lesion_masks = [m for _, m, _ in located if m is not None]
    points = [p for _, _, p in located if p is not None]
    pairs = []
    for finding, les_d, point in located[:max_findings]:
        if les_d is not None:
            k, j = maker.largest_sections(les_d)
        else:
            k, j = int(point[2]), int(point[1])
        images = [maker.render("axial", k, window, overlays, lesion_masks, points),
                  maker.render("coronal", j, window, overlays, lesion_masks, points)]
        title = f"Finding {finding.id}: {finding.kind.replace('_', ' ')}" + (
            f", {finding.location}" if finding.location else "")
        pairs.append((f"f{finding.id}", title, images))
    if not pairs and mask_d is not None:
        k, j = maker.largest_sections(mask_d)
        pairs.append(("0", "Largest cross-section",
                      [maker.render("axial", k, window, overlays), maker.render("coronal", j, window, overlays)]))
    return pairs


def _paragraph(region: RegionReport, slug: str, figure_of: dict[int, str], first_fig: str | None,
               flagged: set[int] = frozenset()) -> str:
    parts = []
    for index, sentence in enumerate(region.sentences):
        text = sentence.text.strip()
        if not text:
            continue
        if index in flagged:
            parts.append(f'<span class="contradicted" title="contradicted by the measurements (see the '
                         f'contradictions list)">&#9888; {escape(text)}</span>')
        elif sentence.findings:
            links = "".join(f' <a class="figlink" href="#{figure_of[f]}" title="key images of finding {f}">'
                            f"[images {f}]</a>" for f in sentence.findings if f in figure_of)
            parts.append(f'<span class="finding-sentence">{escape(text)}</span>{links}')
        else:
            parts.append(escape(text))
    body = " ".join(parts) or "<em>No description.</em>"
    link = f' <a class="figlink" href="#{first_fig}">[key images]</a>' if first_fig else ""
    return f'<p class="paragraph" id="para-{slug}">{body}{link}</p>'


def to_html(report: Report, volume=None, regions=None, measurements=None, *, labelmap=None,
            title: str = "Chest CT report, region by region", target_px: int = 448, image_format: str = "png",
            max_finding_images: int = 3) -> str:
    """The report as one self-contained HTML page.

    ``volume`` (the CT) and ``regions`` (``anatomy.RegionMask`` list or ``{key: mask}`` on the CT grid) give the
    key images; ``measurements`` (``measure.Measurements``) gives lesion masks for findings and region numbers
    where the report has none; ``labelmap`` lets findings that cite ``structure:<class>`` be outlined.
    Without ``volume`` the page has text and tables only.
    """
    maker = KeyImageMaker(volume, target_px=target_px, image_format=image_format) if volume is not None else None
    masks = _region_masks(regions)
    colors = _region_colors(report, regions)
    out = ["<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
           '<meta name="viewport" content="width=device-width, initial-scale=1">',
           f"<title>{escape(title)}</title><style>{_CSS}</style></head><body>",
           f"<header><h1>{escape(title)}</h1><p>{escape(provenance_line(report))}</p>"
           + "".join(f'<p class="scope"><strong>Scope:</strong> {escape(text)}</p>' for text in scope_lines(report))
           + "</header><main>"]
    nav = []
    for region in report.regions:
        color = colors.get(region.key, DEFAULT_COLOR)
        nav.append(f'<a href="#region-{_slug(region.key)}"><span class="dot" style="background:rgb{tuple(color)}">'
                   f"</span>{escape(region.name)}{' &#9888;' if region.findings else ''}</a>")
    out.append(f"<nav>{''.join(nav)}</nav>")
    items = ("".join(f"<li>{escape(i)}</li>" for i in report.impression)
             or "<li>No abnormal finding was identified.</li>")
    out.append(f'<section id="impression"><h2>Impression</h2><ul>{items}</ul></section>')
    if report.contradictions:
        head = "".join(f"<th>{escape(h)}</th>" for h in CONTRADICTIONS_HEADER)
        body = "".join("<tr>" + "".join(f"<td>{escape(c)}</td>" for c in row) + "</tr>"
                       for row in contradiction_rows(report))
        who = escape(report.provenance.reporter or "generated")
        out.append(f'<section id="contradictions"><h2>Contradicted by the measurements</h2><p>'
                   f"{len(report.contradictions)} statement(s) of the {who}"
                   f" text disagree with the measurements; sentences kept are marked &#9888;.</p>"
                   f"<table><tr>{head}</tr>{body}</table></section>")
    flagged = flagged_sentences(report)
    for region in report.regions:
        slug = _slug(region.key)
        color = colors.get(region.key, DEFAULT_COLOR)
        pairs = _region_images(region, maker, masks.get(region.key), color, measurements, labelmap,
                               max_finding_images)
        figure_of = {int(s[1:]): f"img-{slug}-{s}-axial" for s, _, _ in pairs if s.startswith("f")}
        first_fig = f"img-{slug}-{pairs[0][0]}-axial" if pairs else None
        status_class = "abnormal" if region.findings else region.status
        status_text = STATUS_TEXT.get(region.status, region.status) + (
            f", {len(region.findings)} finding{'s' if len(region.findings) != 1 else ''}" if region.findings else "")
        out.append(f'<section class="region" id="region-{slug}"><h2><span class="swatch" style="background:'
                   f'rgb{tuple(color)}"></span>{escape(region.name)}<span class="status {status_class}">'
                   f"{escape(status_text)}</span></h2><div class=\"cols\"><div class=\"text\">")
        out.append(_paragraph(region, slug, figure_of, first_fig, flagged.get(region.key, set())))
        out.append(_measure_table(region, measurements))
        out.append(_findings_table(region))
        out.append('</div><div class="images">')
        if not pairs:
            reason = ("the region is outside the scanned range" if region.status == "outside_field_of_view"
                      else "no CT given" if maker is None else "no mask for this region")
            out.append(f'<p class="noimg">No key image: {escape(reason)}.</p>')
        para_id = f"para-{slug}"
        for suffix, pair_title, images in pairs:
            out.append(f'<div class="pair-title">{escape(pair_title)}</div>')
            lesion_note = ("Region overlay in its colour; lesions outlined (small ones ringed) in yellow."
                           if suffix.startswith("f") else "Region overlay in its colour.")
            for image in images:
                out.append(_figure(image, f"img-{slug}-{suffix}-{image.view}", para_id, region, color, lesion_note))
        out.append("</div></div></section>")
    rows = findings_rows(report)
    if rows:
        head = "".join(f"<th>{escape(h)}</th>" for h in FINDINGS_HEADER)
        body = "".join("<tr>" + "".join(f"<td>{escape(c)}</td>" for c in row) + "</tr>" for row in rows)
        out.append(f'<section id="findings"><h2>Findings</h2><table><tr>{head}</tr>{body}</table></section>')
    out.append("</main></body></html>")
    return "\n".join(out) + "\n"
