"""A Report built by hand from real phantom masks and measurements (until the measurement reporter lands):
one RegionReport per schema region, findings from the measured lesion candidates with lesion evidence."""

from __future__ import annotations

from MedRegionCTLib.report.document import Evidence, Finding, Provenance, RegionReport, Report, Sentence


def hand_made_report(regions, measurements, schema: str = "radgenome10") -> Report:
    out = []
    for r in regions:
        status = "assessed" if r.mask.any() else "outside_field_of_view"
        sentences = [Sentence(s, Evidence(masks=[f"region:{r.key}"])) for s in measurements.sentences.get(r.key, [])
                     if not any(s == les["sentence"] for les in measurements.lesions)]
        findings = []
        for index, les in enumerate(measurements.lesions):
            key = "lung" if les["kind"] in ("nodule", "mass") else "pleura"
            if key != r.key:
                continue
            evidence = Evidence(masks=[f"lesion:{les['id']}"], measurements=[f"lesions/{index}"])
            findings.append(Finding(
                id=les["id"], kind=les["kind"], label="Lung nodule" if key == "lung" else "Pleural effusion",
                location=les.get("lobe", "").replace("lung_", "").replace("_", " ") or les.get("zone", ""),
                side=les.get("side"), size={"max_diameter_mm": round(float(les["max_diameter_mm"]), 1),
                                            "volume_ml": round(float(les["volume_ml"]), 2)},
                confidence=float(les["confidence"]), evidence=evidence))
            sentences.append(Sentence(les["sentence"], evidence, findings=[les["id"]]))
        if not sentences:
            name = r.region.name.lower()
            sentences = [Sentence(f"The {name} shows no abnormality." if status == "assessed"
                                  else f"The {name} is outside the field of view.")]
        headline = {}
        if r.key in measurements.regions:
            a = measurements.regions[r.key]
            headline = {"volume_ml": round(float(a["volume_ml"]), 1), "hu_mean": round(float(a["hu_mean"]), 1)}
        evidence = Evidence(masks=[f"region:{r.key}"])
        ctr = measurements.clinical["cardiothoracic_ratio"]["value"]
        if r.key == "heart" and ctr is not None:  # not assessed on a slab that cuts the heart
            headline["cardiothoracic_ratio"] = round(ctr, 2)
            evidence.measurements.append("clinical/cardiothoracic_ratio")
        out.append(RegionReport(key=r.key, name=r.region.name, status=status, sentences=sentences,
                                findings=findings, measurements=headline, evidence=evidence))
    provenance = Provenance(segmenter="phantom truth", reporter="hand-made", schema=schema,
                            versions={"MedRegionCTLib": "test"}, created="2026-11-23T12:00:00+00:00")
    return Report(regions=out, provenance=provenance,
                  impression=[s.text for r in out for s in r.sentences if s.findings])
