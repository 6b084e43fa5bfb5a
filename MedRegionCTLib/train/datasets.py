"""Datasets of cases for training and evaluation, and the on-disk cache of preprocessed cases.

A *case source* (:class:`CaseSource`) yields raw cases: the mappings the model takes (``volume``, ``regions``,
``names``, ``paragraphs``, optional ``attributes``; see :func:`MedRegionCTLib.model.preprocess.prepare_case`).
:class:`PreparedDataset` wraps a source and returns :class:`~MedRegionCTLib.model.preprocess.PreparedCase`
objects on the model's grids, reading them from a cache folder when they were prepared before (``.npz`` files
written atomically with ``np.savez``; read with ``allow_pickle=False``). It is a plain map-style dataset
(``len`` and ``[]``), so a ``torch.utils.data.DataLoader`` with workers prepares cases in parallel.

Sources: :class:`RadGenomeDataset` (the RadGenome-ChestCT / CT-RATE folder layout) here, and
:class:`~.synthetic.SyntheticPhantomDataset` (phantoms with ground-truth region paragraphs).
"""

from __future__ import annotations

import csv
import hashlib
import json
import os
import sys
from pathlib import Path

import numpy as np

from ..atomic import atomic_write
from ..errors import InputError

CACHE_VERSION = 1


class CaseSource:
    """A sequence of raw cases. Subclasses implement ``__len__``, ``case_id``, ``load_case``, ``fingerprint``
    (what, besides the id, decides a case's content: part of the cache key) and ``texts`` (report texts, cheap:
    for tokenizers and corpora)."""

    def __len__(self) -> int:
        raise NotImplementedError

    def case_id(self, index: int) -> str:
        raise NotImplementedError

    def load_case(self, index: int) -> dict:
        raise NotImplementedError

    def fingerprint(self) -> dict:
        raise NotImplementedError

    def texts(self) -> list[str]:
        raise NotImplementedError


def _payload_to_npz(payload: dict) -> dict[str, np.ndarray]:
    meta = {k: v for k, v in payload.items() if k != "arrays"}
    out = {f"array_{k}": np.ascontiguousarray(v, dtype=np.float32) for k, v in payload["arrays"].items()}
    out["meta"] = np.array(json.dumps(meta))
    return out


def _npz_to_payload(data) -> dict:
    meta = json.loads(str(data["meta"]))
    meta["arrays"] = {k[len("array_"):]: data[k] for k in data.files if k.startswith("array_")}
    return meta


class PreparedDataset:
    """Cases of ``source`` prepared for a model (``preprocess``: its PreprocessConfig, ``needed``: the arrays it
    consumes), cached under ``cache_dir`` (None: no cache). Item ``i`` is a PreparedCase with ``case_id`` set as
    an attribute."""

    def __init__(self, source: CaseSource, preprocess, needed, cache_dir=None):
        from dataclasses import asdict

        self.source = source
        self.preprocess = preprocess
        self.needed = sorted(needed)
        self.cache_dir = Path(cache_dir) if cache_dir else None
        key = {"version": CACHE_VERSION, "source": source.fingerprint(), "preprocess": asdict(preprocess),
               "needed": self.needed}
        self._key = json.dumps(key, sort_keys=True, default=str)

    def __len__(self) -> int:
        return len(self.source)

    def cache_path(self, index: int) -> Path | None:
        if self.cache_dir is None:
            return None
        case_id = self.source.case_id(index)
        digest = hashlib.sha1(f"{self._key}|{case_id}".encode()).hexdigest()[:16]
        safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in case_id)[:80]
        return self.cache_dir / f"{safe}-{digest}.npz"

    def __getitem__(self, index: int):
        from ..model.preprocess import PreparedCase, prepare_case

        if not 0 <= index < len(self):
            raise IndexError(index)
        path = self.cache_path(index)
        if path is not None and path.is_file():
            try:
                with np.load(path, allow_pickle=False) as data:
                    case = PreparedCase.from_payload(_npz_to_payload(data))
                case.case_id = self.source.case_id(index)
                return case
            except (OSError, ValueError, KeyError):
                pass  # a damaged cache file is prepared again and overwritten
        raw = self.source.load_case(index)
        case = prepare_case(raw, self.preprocess, self.needed)
        if path is not None:
            arrays = _payload_to_npz(case.to_payload())
            atomic_write(path, lambda tmp: np.savez(tmp, **arrays))
        case.case_id = self.source.case_id(index)
        return case


def die_with_parent(worker_id: int = 0) -> None:
    """DataLoader ``worker_init_fn``: ask the kernel to kill this worker when the process that started it dies.

    PyTorch's own watchdog only notices a dead parent between batches; a worker busy preparing a large case (or
    blocked on I/O) would live on as an orphan after ``kill -9`` of the trainer. Linux only (prctl); elsewhere
    the watchdog is all there is.
    """
    import ctypes
    import signal

    if not sys.platform.startswith("linux"):
        return
    libc = ctypes.CDLL(None, use_errno=True)
    pr_set_pdeathsig = 1
    libc.prctl(pr_set_pdeathsig, int(signal.SIGKILL), 0, 0, 0)
    if os.getppid() == 1:  # the parent died before the call: do not outlive it
        os._exit(1)


def collate_cases(batch: list) -> list:
    """DataLoader collate: a batch is the list of PreparedCase objects (the model pads and encodes them)."""
    return list(batch)


# --- RadGenome-ChestCT / CT-RATE ------------------------------------------------------------------------------
REPORT_COLUMNS = ("Volumename", "Anatomy", "Sentence")


def _stem(name: str) -> str:
    for suffix in (".nii.gz", ".nii", ".mha", ".nrrd"):
        if name.endswith(suffix):
            return name[: -len(suffix)]
    return name


def read_region_reports(path) -> dict[str, dict[str, str]]:
    """``{volume stem: {anatomy: paragraph}}`` from a RadGenome region report CSV (``Volumename, Anatomy,
    Sentence``; several rows of one volume and anatomy are joined in order; an empty Anatomy is kept under "")."""
    path = Path(path)
    csv.field_size_limit(min(sys.maxsize, 2**31 - 1))
    out: dict[str, dict[str, list[str]]] = {}
    with path.open(newline="", encoding="utf-8-sig") as handle:
        reader = csv.DictReader(handle)
        missing = [c for c in REPORT_COLUMNS if c not in (reader.fieldnames or [])]
        if missing:
            raise InputError(f"{path.name} lacks column(s) {', '.join(missing)} (has "
                             f"{', '.join(reader.fieldnames or [])});"
                             " give RadGenome-ChestCT's region report CSV (Volumename, Anatomy, Sentence).")
        for row in reader:
            sentence = (row["Sentence"] or "").strip()
            if not sentence:
                continue
            anatomy = (row["Anatomy"] or "").strip()
            if anatomy.lower() in ("nan", "none"):
                anatomy = ""
            out.setdefault(_stem(row["Volumename"].strip()), {}).setdefault(anatomy, []).append(sentence)
    return {v: {a: " ".join(s) for a, s in regions.items()} for v, regions in out.items()}


class RadGenomeDataset(CaseSource):
    """RadGenome-ChestCT on disk (CT-RATE layout)::

        ROOT/{split}_preprocessed/<patient>/<accession>/<name>.nii.gz      the CT volumes
        ROOT/{split}_region_mask/seg_<name>/<region>.nii.gz                one binary mask per region
        ROOT/{split}_region_report.csv (or ``reports``)                    Volumename, Anatomy, Sentence

    ``regions``: the region keys to use (default: RadGenome-10); a case gets a slot for each of them whose mask
    is not empty and a paragraph where the CSV has one. ``masks="dataset"`` reads the region masks from the
    layout; any other value is a segmenter method (``"builtin"``, ``"totalsegmentator"``) whose label map goes
    through the ``schema`` region definitions instead. Volumes without any region report are skipped;
    ``limit`` keeps the first ``limit`` volumes (sorted by name).
    """

    def __init__(self, root, split: str = "train", reports=None, regions=None, masks: str = "dataset",
                 schema: str = "radgenome10", limit: int | None = None, check_ct: bool = False,
                 segmenter_options: dict | None = None):
        from ..anatomy import load_schema

        self.root = Path(root)
        self.split = split
        volumes_dir = self.root / f"{split}_preprocessed"
        if not volumes_dir.is_dir():
            raise InputError(f"{volumes_dir} not found; give the RadGenome-ChestCT root that holds "
                             f"{split}_preprocessed/ (or choose the split that exists).")
        self.schema = schema
        schema_obj = load_schema(schema)
        self.regions = list(regions) if regions else [r.key for r in schema_obj.regions]
        self.names = {r.key: r.key for r in schema_obj.regions}
        if reports is None:
            candidates = [self.root / f"{split}_region_report.csv", self.root / f"{split}_reports_region.csv"]
            reports = next((c for c in candidates if c.is_file()), None)
            if reports is None:
                raise InputError(f"no region report CSV found ({', '.join(str(c) for c in candidates)}); give its "
                                 "path (data.reports in the training config).")
        self.reports_path = Path(reports)
        if not self.reports_path.is_file():
            raise InputError(f"region report CSV {self.reports_path} not found; give the RadGenome-ChestCT region "
                             "report file.")
        reports_by_volume = read_region_reports(self.reports_path)
        files = sorted(volumes_dir.glob("*/*/*.nii.gz"), key=lambda p: p.name)
        self.items = [(f, reports_by_volume[_stem(f.name)]) for f in files if _stem(f.name) in reports_by_volume]
        if limit is not None:
            self.items = self.items[: int(limit)]
        if not self.items:
            raise InputError(f"no volume under {volumes_dir} has a region report in {self.reports_path.name}; check "
                             "that the CSV's Volumename values match the file names.")
        self.masks = masks
        self.mask_dir = self.root / f"{split}_region_mask"
        if masks == "dataset" and not self.mask_dir.is_dir():
            raise InputError(f"{self.mask_dir} not found; give the region masks, or take them from a segmenter "
                             "(data.masks = 'builtin' or 'totalsegmentator').")
        self.check_ct = check_ct
        self.segmenter_options = dict(segmenter_options or {})

    def __len__(self) -> int:
        return len(self.items)

    def case_id(self, index: int) -> str:
        return _stem(self.items[index][0].name)

    def fingerprint(self) -> dict:
        return {"kind": "radgenome", "root": str(self.root.resolve()), "split": self.split,
                "reports": str(self.reports_path.resolve()), "regions": self.regions, "masks": self.masks,
                "schema": self.schema, "segmenter_options": self.segmenter_options}

    def texts(self) -> list[str]:
        return [text for _, reports in self.items for key, text in reports.items() if key in self.regions]

    def _paragraph(self, reports: dict[str, str], key: str) -> str | None:
        if key in reports:
            return reports[key]
        lower = {k.lower(): v for k, v in reports.items()}
        return lower.get(key.lower())

    def load_case(self, index: int) -> dict:
        import nibabel as nib

        from ..volume import read_volume

        path, reports = self.items[index]
        volume = read_volume(path, check_ct=self.check_ct)
        regions: dict[str, np.ndarray] = {}
        if self.masks == "dataset":
            folder = self.mask_dir / f"seg_{_stem(path.name)}"
            for key in self.regions:
                mask_path = folder / f"{key}.nii.gz"
                if not mask_path.is_file():
                    continue  # a region the dataset has no mask for gets no slot
                mask = np.asanyarray(nib.load(str(mask_path)).dataobj) > 0
                if mask.shape != tuple(volume.shape):
                    raise InputError(f"{mask_path} has shape {mask.shape} but its CT {path.name} is "
                                     f"{tuple(volume.shape)}; the masks must be on the CT grid.")
                regions[key] = mask
            if not regions:
                raise InputError(f"no region mask of {path.name} found in {folder}; check the mask folder.")
        else:
            from ..anatomy import build_regions
            from ..segment import get_segmenter

            labelmap = get_segmenter(self.masks, **self.segmenter_options).segment(volume)
            regions = {r.key: r.mask for r in build_regions(labelmap, self.schema, volume=volume)
                       if r.key in self.regions}
        paragraphs = {k: p for k in regions if (p := self._paragraph(reports, k))}
        return {"volume": volume, "regions": regions, "names": {k: self.names.get(k, k) for k in regions},
                "paragraphs": paragraphs, "id": self.case_id(index)}


def make_source(spec: dict) -> CaseSource:
    """A case source from a config mapping: ``{"kind": "synthetic", ...}`` or ``{"kind": "radgenome", ...}``
    (the other keys are the class's arguments)."""
    if not isinstance(spec, dict) or "kind" not in spec:
        raise InputError("a dataset entry must be a mapping with 'kind' ('synthetic' or 'radgenome') and the "
                         "dataset's options.")
    options = {k: v for k, v in spec.items() if k != "kind"}
    kind = spec["kind"]
    if kind == "synthetic":
        from .synthetic import SyntheticPhantomDataset

        cls = SyntheticPhantomDataset
    elif kind == "radgenome":
        cls = RadGenomeDataset
    else:
        raise InputError(f"unknown dataset kind {kind!r}; use 'synthetic' or 'radgenome'.")
    import inspect

    try:
        inspect.signature(cls).bind(**options)
    except TypeError as error:
        raise InputError(f"dataset of kind {kind!r} does not take these options ({error}); valid: "
                         f"{', '.join(p for p in inspect.signature(cls).parameters)}.") from None
    return cls(**options)
