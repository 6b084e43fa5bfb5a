"""Markdown and HTML renderers on the tiny phantom: text, numbers, self-containment, links, key images."""

from __future__ import annotations

import base64
import html
import io
import re
from html.parser import HTMLParser

import numpy as np
import pytest
from PIL import Image
from report_fixture import hand_made_report

from MedRegionCTLib.anatomy import build_regions
from MedRegionCTLib.measure import measure
from MedRegionCTLib.phantom import make_phantom
from MedRegionCTLib.report.render import KeyImageMaker, to_html, to_markdown, window_for
from MedRegionCTLib.report.render.html import _slug
from MedRegionCTLib.report.render.key_images import LESION_COLOR, Overlay
from MedRegionCTLib.report.render.units import format_number, measurement_rows, split_unit
from MedRegionCTLib.volume import LabelMap, reorient


@pytest.fixture(scope="module")
def case():
    ph = make_phantom("tiny")
    regions = build_regions(ph.labels, "radgenome10", ph.volume)
    m = measure(ph.volume, ph.labels)
    return ph, regions, m, hand_made_report(regions, m)


@pytest.fixture(scope="module")
def page(case):
    ph, regions, m, report = case
    return to_html(report, ph.volume, regions, m)


class _Collector(HTMLParser):
    def __init__(self):
        super().__init__()
        self.tags = []  # (tag, attrs dict)

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))


def _parse(text):
    p = _Collector()
    p.feed(text)
    p.close()
    return p.tags


def test_units_and_numbers():
    assert split_unit("volume_ml") == ("Volume", "mL")
    assert split_unit("max_diameter_mm") == ("Maximum diameter", "mm")
    assert split_unit("cardiothoracic_ratio") == ("Cardiothoracic ratio", "")
    assert format_number(2668.736) == "2668.7" and format_number(0.3783) == "0.38" and format_number(12) == "12"
    rows = measurement_rows({"lung_volume_ml": {"right": 2668.7, "left": 2623.3, "unit": "mL"},
                             "cardiothoracic_ratio": {"value": 0.62, "unit": "ratio", "abnormal": True}})
    assert ("Lung volume (right)", "2668.7", "mL") in rows and ("Cardiothoracic ratio", "0.62", "") in rows
    assert window_for("lung") == "lung" and window_for("bone") == "bone" and window_for("heart") == "soft_tissue"
    assert window_for("large_airways") == "lung"


def test_markdown_has_every_paragraph_number_and_finding(case):
    _, _, m, report = case
    md = to_markdown(report, m)
    assert md.startswith("# ")
    for region in report.regions:
        assert f"## {region.name}" in md
        assert region.paragraph in md
        for value in region.measurements.values():
            assert f"| {format_number(value)} |" in md
    assert "| Cardiothoracic ratio | 0.38 |  |" in md
    assert "## Findings" in md and report.findings
    for f in report.findings:
        assert re.search(rf"^\| {f.id} \| [^|]+ \| {f.kind.replace('_', ' ')} \|", md, re.M)
    assert "outside the field of view" in md  # breast/thyroid are not in the tiny phantom's range


def test_markdown_falls_back_on_measurements(case):
    _, _, m, report = case
    region = report.region("heart")
    region.measurements, saved = {}, region.measurements
    try:
        md = to_markdown(report, m)
        assert f"| Volume | {format_number(m.regions['heart']['volume_ml'])} | mL |" in md
    finally:
        region.measurements = saved


def test_html_is_self_contained_with_one_data_uri_per_key_image(case, page):
    _, regions, _, report = case
    tags = _parse(page)
    for tag, attrs in tags:
        for name in ("src", "href"):
            value = (attrs.get(name) or "").strip().lower()
            assert not value.startswith(("http:", "https:", "//", "ftp:")), (tag, value[:60])
        assert tag not in ("script", "link", "iframe", "object", "embed")
    assert "url(" not in page  # no CSS-fetched assets either
    imgs = [a for t, a in tags if t == "img"]
    with_mask = {r.key for r in regions if r.mask.any()}
    located = sum(1 for r in report.regions for f in r.findings)
    # one axial + one coronal per region; regions with findings show them per finding instead
    expected = 2 * (len(with_mask) - len({r.key for r in report.regions if r.findings}) + located)
    assert len(imgs) == expected
    for a in imgs:
        assert a["src"].startswith("data:image/png;base64,")
        image = Image.open(io.BytesIO(base64.b64decode(a["src"].split(",", 1)[1])))
        image.load()
        assert image.size == (int(a["width"]), int(a["height"]))
        assert 300 <= max(image.size) <= 512
    assert len(page) < 2_500_000


def test_html_paragraphs_link_to_images_and_back(case, page):
    _, regions, _, report = case
    tags = _parse(page)
    ids = {a["id"] for _, a in tags if "id" in a}
    hrefs = [a["href"] for t, a in tags if t == "a" and a.get("href", "").startswith("#")]
    assert all(h[1:] in ids for h in hrefs), [h for h in hrefs if h[1:] not in ids]
    for region in report.regions:
        slug = _slug(region.key)
        assert f"para-{slug}" in ids and f"region-{slug}" in ids
        figures = [a["id"] for t, a in tags if t == "figure" and a["id"].startswith(f"img-{slug}-")]
        if region.status == "assessed":
            assert {f.split("-")[-1] for f in figures} == {"axial", "coronal"}
            assert f"#{figures[0]}" in hrefs  # paragraph -> images
        for fig in figures:  # image -> paragraph
            block = page[page.index(f'id="{fig}"'):]
            block = block[:block.index("</figure>")]
            assert f'href="#para-{slug}"' in block
        for f in region.findings:
            assert f"#img-{slug}-f{f.id}-axial" in hrefs  # finding sentence -> its images
    text = html.unescape(re.sub(r"<[^>]+>", "", page))
    assert all(s.text in text for r in report.regions for s in r.sentences)


def _overlay_pixels(maker, view, index, window, mask_d):
    """Pixels a region overlay changes: the image with overlay against the image without."""
    with_ov = maker.render(view, index, window, [Overlay(mask_d, (255, 0, 0))])
    without = maker.render(view, index, window, [])
    a = np.asarray(Image.open(io.BytesIO(with_ov.data)).convert("RGB")).astype(int)
    b = np.asarray(Image.open(io.BytesIO(without.data)).convert("RGB")).astype(int)
    return np.any(a != b, axis=2), with_ov


@pytest.mark.parametrize("orientation", ["LPS", "RAS", "AIL"])
def test_key_images_are_radiological_whatever_the_voxel_order(case, orientation):
    ph, _, _, _ = case
    volume = reorient(ph.volume, orientation)
    ijk = np.indices(volume.shape).reshape(3, -1).T
    ras = volume.index_to_world(ijk).reshape(volume.shape + (3,))
    # a block in the patient's right, anterior, superior part of the chest
    mask = (ras[..., 0] > 30) & (ras[..., 0] < 90) & (ras[..., 1] > 0) & (ras[..., 1] < 60) & \
        (ras[..., 2] > 20) & (ras[..., 2] < 80)
    maker = KeyImageMaker(volume)
    mask_d = maker.orient(mask)
    k, j = maker.largest_sections(mask_d)
    for view, index in (("axial", k), ("coronal", j)):
        changed, image = _overlay_pixels(maker, view, index, "soft_tissue", mask_d)
        rows, cols = np.nonzero(changed)
        assert rows.size > 100
        h, w = changed.shape
        assert cols.max() < w / 2, "the patient's right must be on the image's left"
        assert rows.max() < h / 2, "anterior (axial) / superior (coronal) must be at the top"
        # true aspect: the block is 60 x 60 mm in both views (within one 4 mm voxel, ~5 px)
        assert abs(np.ptp(rows) - np.ptp(cols)) <= 6
        assert image.marks["left"] == "R" and image.marks["top"] == ("A" if view == "axial" else "S")


def test_lps_and_ras_volumes_give_identical_key_images(case):
    ph, regions, _, report = case
    ras_volume = reorient(ph.volume, "RAS")
    ras_masks = {r.key: reorient(LabelMap(r.mask.view(np.uint8), ph.volume.affine), "RAS").array.view(bool)
                 for r in regions}
    assert ras_volume.orientation == "RAS" and not np.array_equal(ras_volume.array, ph.volume.array)
    lps_page = to_html(report, ph.volume, regions)
    ras_page = to_html(report, ras_volume, ras_masks)
    lps_imgs = [a["src"] for t, a in _parse(lps_page) if t == "img"]
    ras_imgs = [a["src"] for t, a in _parse(ras_page) if t == "img"]
    assert lps_imgs and lps_imgs == ras_imgs


def test_key_image_overlay_lies_on_the_mask(case):
    ph, regions, _, _ = case
    heart = next(r for r in regions if r.key == "heart").mask
    maker = KeyImageMaker(ph.volume)
    mask_d = maker.orient(heart)
    k, j = maker.largest_sections(mask_d)
    assert k == int(np.argmax(heart.sum(axis=(0, 1))))  # the phantom is LPS: display order = voxel order
    changed, image = _overlay_pixels(maker, "axial", k, "soft_tissue", mask_d)
    # expected: the heart's voxels on that slice, rows = j (anterior first), columns = i (patient right first)
    expected = Image.fromarray(heart[:, :, k].T.astype(np.uint8) * 255).resize((image.width, image.height),
                                                                              Image.Resampling.NEAREST)
    expected = np.asarray(expected) > 0
    iou = np.count_nonzero(changed & expected) / np.count_nonzero(changed | expected)
    assert iou > 0.85
    assert image.overlay_pixels == pytest.approx(np.count_nonzero(changed), rel=0.1)


def test_findings_are_outlined_in_their_key_images(case):
    ph, regions, m, report = case
    lung = report.region("lung")
    assert lung.findings
    page = to_html(Report_with([lung], report), ph.volume, regions, m)
    imgs = [a for t, a in _parse(page) if t == "img"]
    assert len(imgs) == 2 * len(lung.findings)
    for a in imgs:
        pixels = np.asarray(Image.open(io.BytesIO(base64.b64decode(a["src"].split(",", 1)[1]))).convert("RGB"))
        assert np.all(pixels == LESION_COLOR, axis=2).sum() > 20  # outline and ring drawn
    # without lesion masks the images go through the region's largest cross-section, no lesion marks
    plain = to_html(Report_with([lung], report), ph.volume, regions, None)
    for a in (a for t, a in _parse(plain) if t == "img"):
        pixels = np.asarray(Image.open(io.BytesIO(base64.b64decode(a["src"].split(",", 1)[1]))).convert("RGB"))
        assert np.all(pixels == LESION_COLOR, axis=2).sum() == 0


def Report_with(regions, report):  # noqa: N802
    from MedRegionCTLib.report import Report

    return Report(regions=regions, provenance=report.provenance, impression=report.impression)


def test_html_without_a_ct_has_text_only(case):
    _, _, m, report = case
    page = to_html(report, measurements=m)
    tags = _parse(page)
    assert not [t for t, _ in tags if t == "img"]
    text = html.unescape(re.sub(r"<[^>]+>", "", page))
    for sentence in report.region("lung").sentences:
        assert sentence.text in text
    assert "no CT given" in page


def test_mask_off_the_grid_is_an_input_error(case):
    from MedRegionCTLib.errors import InputError

    ph, _, _, report = case
    with pytest.raises(InputError, match="not on the CT grid"):
        to_html(report, ph.volume, {"heart": np.ones((4, 4, 4), bool)})


def test_findings_are_located_from_any_evidence(case):
    from MedRegionCTLib.report import Evidence, Finding
    from MedRegionCTLib.report.render.html import locate_finding

    ph, _, m, _ = case
    index = next(i for i, les in enumerate(m.lesions) if les["kind"] == "pleural_effusion")
    lesion = m.lesions[index]
    crop, sub = m.lesion_masks[index]
    by_id = locate_finding(Finding(1, "pleural_effusion", evidence=Evidence(masks=[f"lesion:{lesion['id']}"])),
                           ph.volume, m)[0]
    by_path = locate_finding(Finding(1, "pleural_effusion", evidence=Evidence(measurements=[f"lesions/{index}"])),
                             ph.volume, m)[0]
    assert by_id is not None and np.array_equal(by_id, by_path) and by_id.sum() == sub.sum()
    aorta = Finding(2, "dilated_ascending_aorta", evidence=Evidence(masks=["structure:aorta"]))
    assert np.array_equal(locate_finding(aorta, ph.volume, m, ph.labels)[0], ph.labels.mask("aorta"))
    mask, point = locate_finding(Finding(3, "nodule", values={"centroid_ras": [10.0, 0.0, 0.0]}), ph.volume)
    assert mask is None and point == [10.0, 0.0, 0.0]
