"""Synthetic training data: phantom CTs with planted findings and the region paragraphs their truth implies.

The paragraph writer turns a phantom's truth record into one RadGenome-style paragraph per region (phrases in
``data/synthetic_reports.json``): a region with no planted finding gets its normal statement, a region with
findings one sentence per finding, plus the negated statements that still hold. :class:`FindingSampler` draws
a findings spec per case; :class:`SyntheticPhantomDataset` builds the cases (CT, region masks from the phantom
truth or from one of our segmenters, paragraphs, optional attribute sentences).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field

import numpy as np

from ..data import load_json
from ..errors import InputError
from .datasets import CaseSource

PHRASES = "synthetic_reports.json"
PHRASINGS = ("fixed", "varied")
ATTRIBUTE_SOURCES = ("none", "truth", "measured")


def _phrases() -> dict:
    return load_json(PHRASES)


def region_keys() -> list[str]:
    return list(_phrases()["regions"])


def _fields(record: dict, words: dict) -> dict:
    f = dict(record)
    if "subtype" in record:
        f["subtype_words"] = words["subtype"].get(record["subtype"], record["subtype"])
    if "lobe" in record and isinstance(record["lobe"], str):
        f["lobe_words"] = words["lobe"].get(record["lobe"], record["lobe"].replace("_", " "))
    if "distribution" in record:
        f["distribution_words"] = words["distribution"][record["distribution"]]
    ml = record.get("requested_volume_ml", record.get("volume_ml"))
    if ml is not None:
        f["size_words"] = next(word for limit, word in words["effusion_size_ml"] if ml < limit)
    return f


def finding_sentence(record: dict, variant: int = 0) -> tuple[str, str]:
    """(region key, sentence) for one phantom truth finding record."""
    table = _phrases()
    spec = table["findings"].get(record["kind"])
    if spec is None:
        raise InputError(f"no phrase for finding kind {record['kind']!r}; add it to data/{PHRASES}.")
    variants = spec["variants"]
    try:
        text = variants[variant % len(variants)].format(**_fields(record, table["words"]))
    except KeyError as error:
        raise InputError(f"finding record of kind {record['kind']!r} lacks {error}; give a phantom truth record.") \
            from None
    return spec["region"], text


def paragraphs_from_truth(truth: dict, regions=None, phrasing: str = "fixed", seed: int = 0) -> dict[str, str]:
    """One paragraph per region key (``regions``: all RadGenome-10 keys by default) from ``truth["findings"]``.

    ``phrasing="fixed"`` always uses the first variant (a tiny model can learn it exactly); ``"varied"`` picks
    one variant per sentence from ``seed``.
    """
    if phrasing not in PHRASINGS:
        raise InputError(f"phrasing {phrasing!r} is unknown; use one of {PHRASINGS}.")
    table = _phrases()
    keys = list(regions) if regions is not None else list(table["regions"])
    rng = np.random.default_rng(seed)

    def pick(n: int) -> int:
        return int(rng.integers(0, n)) if phrasing == "varied" else 0

    found: dict[str, list[tuple[str, str]]] = {}
    for rec in sorted(truth.get("findings", []), key=lambda r: r.get("id", 0)):
        n = len(table["findings"].get(rec["kind"], {}).get("variants", [""]))
        region, text = finding_sentence(rec, pick(n))
        found.setdefault(region, []).append((rec["kind"], text))
    out = {}
    for key in keys:
        if key not in table["normal"]:
            raise InputError(f"region {key!r} has no phrases; use region keys from data/{PHRASES}: "
                             f"{', '.join(table['regions'])}.")
        normal = table["normal"][key]
        if key not in found:
            out[key] = normal[pick(len(normal))]
            continue
        sentences = [text for _, text in found[key]]
        kinds = {kind for kind, _ in found[key]}
        rest = table.get("region_rest", {}).get(key, {})
        # the normal statements that still hold next to the finding ("heart enlarged" -> "no pericardial fluid")
        for kind, sentence in rest.items():
            if kind in kinds and not any(other in kinds for other in rest if other != kind):
                sentences.append(sentence)
        out[key] = " ".join(sentences)
    return out


def expected_labels(truth: dict) -> set[str]:
    """CT-RATE labels the truth's findings stand for (from the phrase table)."""
    table = _phrases()["findings"]
    out = set()
    for rec in truth.get("findings", []):
        spec = table.get(rec["kind"], {})
        out.update(spec.get("labels", []))
        out.update(spec.get("subtype_labels", {}).get(rec.get("subtype"), []))  # ground glass: also an opacity
    return out


def records_from_spec(spec) -> list[dict]:
    """Truth-like records from a findings spec (no phantom built): enough for paragraphs and the corpus."""
    from ..phantom import parse_findings

    out = []
    for fid, s in enumerate(parse_findings(spec), start=1):
        rec: dict = {"id": fid, "kind": s.kind}
        if s.kind in ("nodule", "mass"):
            rec.update(lobe=s.lobe, side=s.side, subtype=s.subtype, diameter_mm=s.size)
        elif s.kind == "consolidation":
            rec.update(lobe=s.lobe, side=s.side)
        elif s.kind == "pleural_effusion":
            rec.update(side=s.side, requested_volume_ml=s.size)
        elif s.kind == "pericardial_effusion":
            rec.update(thickness_mm=s.size)
        elif s.kind == "cardiomegaly":
            rec.update(heart_scale=s.size)
        elif s.kind == "dilated_aorta":
            rec.update(ascending_aorta_diameter_mm=s.size)
        elif s.kind == "emphysema":
            rec.update(distribution=s.subtype)
        out.append(rec)
    return out


LOBE_CODES = ("RUL", "RML", "RLL", "LUL", "LLL")


@dataclass
class FindingSampler:
    """Draws a findings spec per case: each kind independently with its probability, sizes uniform in ranges
    (defaults in ``data/synthetic_reports.json`` under ``sampling``; any key may be overridden)."""

    overrides: dict = field(default_factory=dict)

    def __post_init__(self):
        table = _phrases()["sampling"]
        unknown = sorted(set(self.overrides) - set(table) - {"about"})
        if unknown:
            valid = sorted(k for k in table if k != "about")
            raise InputError(f"unknown finding sampling key(s) {unknown}; valid: {valid}.")
        self.table = {**table, **self.overrides}
        probs = {**table["probability"], **self.overrides.get("probability", {})}
        bad = sorted(set(probs) - set(table["probability"]))
        if bad:
            raise InputError(f"unknown finding kind(s) {bad} in sampling.probability; valid: "
                             f"{sorted(table['probability'])}.")
        self.table["probability"] = probs

    def spec(self, rng: np.random.Generator) -> str:
        t = self.table
        p = t["probability"]
        items = []

        def uniform(key):
            lo, hi = t[key]
            return float(rng.uniform(lo, hi))

        lobes = list(LOBE_CODES)
        rng.shuffle(lobes)
        if rng.random() < p["mass"]:
            items.append(f"mass:{lobes.pop()}:{uniform('mass_diameter_mm'):.0f}")
        if rng.random() < p["nodule"]:
            subtype = t["nodule_subtypes"][int(rng.integers(0, len(t["nodule_subtypes"])))]
            items.append(f"nodule:{lobes.pop()}:{uniform('nodule_diameter_mm'):.0f}:{subtype}")
        if rng.random() < p["consolidation"]:
            items.append(f"consolidation:{lobes.pop()}")
        if rng.random() < p["emphysema"]:
            items.append(f"emphysema:{t['emphysema_distributions'][int(rng.integers(0, 3))]}")
        if rng.random() < p["pleural_effusion"]:
            side = "right" if rng.random() < 0.5 else "left"
            items.append(f"pleural_effusion:{side}:{uniform('pleural_effusion_ml'):.0f}")
        if rng.random() < p["pericardial_effusion"]:
            items.append(f"pericardial_effusion:{uniform('pericardial_effusion_mm'):.0f}")
        if rng.random() < p["cardiomegaly"]:
            items.append(f"cardiomegaly:{uniform('cardiomegaly_scale'):.2f}")
        if rng.random() < p["dilated_aorta"]:
            items.append(f"dilated_aorta:{uniform('dilated_aorta_mm'):.0f}")
        return ",".join(items) or "none"


def truth_attributes(truth: dict, regions) -> dict[str, str]:
    """MedRegion-CT attribute sentences per region from the phantom truth (what a perfect measurer would say)."""
    from ..measure.sentences import lesion_sentence

    lobe_words = {"lung_upper_lobe_right": "right upper lobe", "lung_middle_lobe_right": "right middle lobe",
                  "lung_lower_lobe_right": "right lower lobe", "lung_upper_lobe_left": "left upper lobe",
                  "lung_lower_lobe_left": "left lower lobe"}
    out: dict[str, list[str]] = {}
    for rec in truth.get("findings", []):
        if rec["kind"] in ("nodule", "mass"):
            text = lesion_sentence({"kind": rec["kind"], "subtype": rec.get("subtype"),
                                    "max_diameter_mm": rec["diameter_mm"], "volume_ml": rec.get("volume_ml", 0.0),
                                    "lobe": None, "side": rec.get("side")})
            text = text.replace(f"the {rec.get('side')} lung", f"the {lobe_words.get(rec.get('lobe'), 'lung')}")
            out.setdefault("lung", []).append(text)
        elif rec["kind"] == "pleural_effusion":
            out.setdefault("pleura", []).append(lesion_sentence({"kind": "pleural_effusion", "side": rec["side"],
                                                                 "volume_ml": rec.get("volume_ml", 0.0)}))
    ctr = truth.get("measures", {}).get("cardiothoracic_ratio")
    if ctr is not None:
        out.setdefault("heart", []).append(f"The cardiothoracic ratio on axial images is {ctr:.2f}.")
    aorta = truth.get("measures", {}).get("ascending_aorta_diameter_mm")
    if aorta is not None:
        out.setdefault("mediastinum", []).append(f"The ascending aorta measures {aorta:.1f} mm in diameter.")
    return {k: " ".join(v) for k, v in out.items() if k in regions}


class SyntheticPhantomDataset(CaseSource):
    """``n`` phantom CTs (case i uses phantom seed ``seed + i``) with ground-truth region paragraphs.

    - ``findings``: None to draw them with :class:`FindingSampler` (``sampling`` overrides its table), or a
      list of findings specs used in turn (``"nodule:RUL:9:solid"``, ``"none"``, ...).
    - ``regions``: the region keys that get a slot and a paragraph (RadGenome-10 keys).
    - ``masks``: ``"truth"`` (the phantom's exact labels) or a segmenter method (``"builtin"``, ...), whose label
      map goes through the same region schema.
    - ``attributes``: ``"none"``, ``"truth"`` (sentences from the truth record) or ``"measured"`` (the measure
      layer on the CT and label map, as at inference).
    """

    def __init__(self, n: int, seed: int = 0, preset: str = "tiny", regions=None, findings=None,
                 sampling: dict | None = None, phrasing: str = "fixed", masks: str = "truth",
                 attributes: str = "none", schema: str = "radgenome10", truth_points: int = 4096):
        if n < 1:
            raise InputError(f"a synthetic dataset needs at least one case (n={n}); set n >= 1.")
        if phrasing not in PHRASINGS:
            raise InputError(f"phrasing {phrasing!r} is unknown; use one of {PHRASINGS}.")
        if attributes not in ATTRIBUTE_SOURCES:
            raise InputError(f"attributes {attributes!r} is unknown; use one of {ATTRIBUTE_SOURCES}.")
        self.n, self.seed, self.preset = int(n), int(seed), preset
        self.regions = list(regions) if regions else ["lung", "pleura", "heart", "mediastinum",
                                                      "trachea and bronchie"]
        unknown = [r for r in self.regions if r not in region_keys()]
        if unknown:
            raise InputError(f"unknown region key(s) {unknown}; use keys of {', '.join(region_keys())}.")
        self.findings = list(findings) if findings else None
        self.sampler = FindingSampler(dict(sampling or {}))
        self.phrasing, self.masks, self.attributes = phrasing, masks, attributes
        self.schema, self.truth_points = schema, int(truth_points)

    def __len__(self) -> int:
        return self.n

    def case_seed(self, index: int) -> int:
        return self.seed + int(index)

    def case_id(self, index: int) -> str:
        return f"phantom-{self.preset}-{self.case_seed(index)}"

    def spec(self, index: int, attempt: int = 0) -> str:
        if self.findings is not None:
            return self.findings[index % len(self.findings)]
        return self.sampler.spec(np.random.default_rng([self.case_seed(index), attempt]))

    def fingerprint(self) -> dict:
        return {"kind": "synthetic-phantom", "preset": self.preset, "regions": self.regions,
                "findings": self.findings, "sampling": self.sampler.table, "phrasing": self.phrasing,
                "masks": self.masks, "attributes": self.attributes, "schema": self.schema,
                "truth_points": self.truth_points, "phrases": hashlib.sha1(
                    json.dumps(_phrases(), sort_keys=True).encode()).hexdigest()[:12]}

    def texts(self) -> list[str]:
        """The paragraphs every case will have (from the specs; no phantom is built)."""
        out = []
        for i in range(self.n):
            truth = {"findings": records_from_spec(self.spec(i))}
            out += list(paragraphs_from_truth(truth, self.regions, self.phrasing, self.case_seed(i)).values())
        return out

    def build_phantom(self, index: int):
        from ..phantom import make_phantom

        last = None
        for attempt in range(8):  # a drawn finding may not fit (e.g. no room left in a lobe): draw again
            spec = self.spec(index, attempt)
            try:
                return make_phantom(self.preset, seed=self.case_seed(index), findings=spec,
                                    truth_points=self.truth_points), spec
            except InputError as error:
                if self.findings is not None:
                    raise
                last = error
        raise InputError(f"could not place the findings of synthetic case {index}: {last}")

    def load_case(self, index: int) -> dict:
        from ..anatomy import build_regions

        ph, spec = self.build_phantom(index)
        labelmap = ph.labels
        if self.masks != "truth":
            from ..segment import get_segmenter

            labelmap = get_segmenter(self.masks).segment(ph.volume)
        built = {r.key: r for r in build_regions(labelmap, self.schema, volume=ph.volume)}
        missing = [k for k in self.regions if k not in built]
        if missing:
            raise InputError(f"region schema {self.schema!r} has no region(s) {missing}; use its region keys.")
        regions = {k: built[k].mask for k in self.regions}
        paragraphs = paragraphs_from_truth(ph.truth, self.regions, self.phrasing, self.case_seed(index))
        case = {"volume": ph.volume, "regions": regions, "names": {k: k for k in self.regions},
                "paragraphs": paragraphs, "id": self.case_id(index), "findings_spec": spec,
                "labels": sorted(expected_labels(ph.truth))}
        if self.attributes == "truth":
            case["attributes"] = truth_attributes(ph.truth, self.regions)
        elif self.attributes == "measured":
            from ..measure import measure

            sentences = measure(ph.volume, labelmap, self.schema).sentences
            case["attributes"] = {k: " ".join(sentences[k]) for k in self.regions if sentences.get(k)}
        return case
