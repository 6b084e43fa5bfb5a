"""The main job on one CT: segment it, build the schema's regions, measure them, write the report."""

from __future__ import annotations

import platform
import time
from dataclasses import dataclass
from datetime import datetime, timezone

import numpy as np

from .. import __version__
from ..anatomy import build_regions, load_schema
from ..errors import InputError
from ..measure import measure
from ..progress import Steps, check_cancel
from ..report import Report, ReportCase, Reporter
from ..report.document import Provenance
from ..volume import LabelMap, Volume, check_spacing, orthogonalize, read_volume, resample_like
from .scope import limit_reports, require_chest, scan_scope


@dataclass
class Analysis:
    """The results of :func:`analyze` on one CT, all on the CT's grid."""

    volume: Volume
    labelmap: LabelMap
    regions: list  # anatomy.RegionMask per schema region
    measurements: object  # measure.Measurements
    report: Report
    schema: object = None  # anatomy.RegionSchema

    def region_masks(self) -> dict[str, np.ndarray]:
        return {r.key: r.mask for r in self.regions}


def get_reporter(reporter: str | Reporter = "measurement", **options) -> Reporter:
    """A report engine from its name: ``"measurement"`` (offline, default), ``"model:DIR"`` (a local model
    checkpoint; needs torch), ``"llm:DIR"`` (a local instruction-tuned LLM writing from the measurements; needs
    torch) or ``"llm:http(s)://HOST/v1"`` (the same prompts sent to an OpenAI-compatible chat-completions
    endpoint), or ``"server:URL"`` / ``"http(s)://..."`` (a MedRegionCT report server)."""
    if not isinstance(reporter, str):
        if not isinstance(reporter, Reporter):
            raise InputError(f"{type(reporter).__name__} is not a reporter (it needs .name, .settings() and "
                             ".write(case, progress, cancel)); pass 'measurement' or a Reporter instance.")
        return reporter
    name = reporter.strip()
    if name == "measurement":
        from ..report.measurement_reporter import MeasurementReporter

        return MeasurementReporter(**options)
    if name.startswith("model:"):
        from ..model.reporter import ModelReporter

        return ModelReporter(name.split(":", 1)[1], **options)
    if name.startswith("llm:"):
        from ..client.llm import llm_reporter

        return llm_reporter(name.split(":", 1)[1], **options)
    if name.startswith(("server:", "http://", "https://")):
        from ..client import RemoteReporter

        return RemoteReporter(name.split(":", 1)[1] if name.startswith("server:") else name, **options)
    raise InputError(f"unknown reporter {reporter!r}; use 'measurement', 'model:CHECKPOINT_DIR', 'llm:LLM_DIR', "
                     "'llm:http://HOST:PORT/v1' or 'server:URL'.")


def _versions() -> dict:
    import scipy
    import skimage

    return {"MedRegionCTLib": __version__, "python": platform.python_version(), "numpy": np.__version__,
            "scipy": scipy.__version__, "scikit-image": skimage.__version__}


def prepare_volume(volume: Volume, what: str = "the CT") -> Volume:
    """``volume`` ready for analysis: a plausible voxel spacing (else :class:`GeometryError`), and on an
    orthogonal grid (a sheared grid, e.g. gantry tilt, is resampled; ``meta["orthogonalized"]`` says so)."""
    if not isinstance(volume, Volume):
        raise InputError(f"expected a Volume, got {type(volume).__name__}; read the CT with read_volume first.")
    check_spacing(volume.spacing, what)
    return orthogonalize(volume)


def analyze(volume, segmenter="auto", schema="radgenome10", reporter="measurement", labelmap=None,
            lesions: bool = True, progress=None, cancel=None, segmenter_options: dict | None = None,
            reporter_options: dict | None = None, grounding: str = "flag", allow_non_chest: bool = False) -> Analysis:
    """Segment ``volume`` (a :class:`Volume` or a path), measure every region of ``schema`` and report on it.

    ``segmenter``: a name for :func:`segment.get_segmenter` ("auto": the best engine installed, "builtin",
    "totalsegmentator", "labels:FILE") or a segmenter object; ignored when ``labelmap`` (a LabelMap on the CT
    grid) is given. Which engine ran and why goes into the report header (``provenance.scope["segmentation"]``;
    a given label map may carry its own in ``labelmap.meta["segmentation"]``). ``reporter``: see
    :func:`get_reporter`. ``progress(fraction, message)`` and ``cancel`` as everywhere in the library.
    ``grounding``: what happens to a statement the measurements contradict ("flag": kept and recorded in
    ``report.contradictions``; "replace": the measured statement instead; see :mod:`report.grounding`).

    A scan that is not a chest CT raises :class:`NotChestCTError` after segmentation unless
    ``allow_non_chest``; then its report holds no lung or pleura statements and says why in
    ``provenance.scope``. A thin slab's report keeps only what the slab shows (:mod:`.scope`).
    """
    from ..report.grounding import POLICIES

    if grounding not in POLICIES:
        raise InputError(f"grounding {grounding!r} is unknown; use 'flag' or 'replace'.")
    timings: dict[str, float] = {}
    steps = Steps(progress, total=3, cancel=cancel, what="the analysis")
    t0 = time.perf_counter()
    source = "volume"
    if not isinstance(volume, Volume):
        source = "file"
        volume = read_volume(volume, progress=None, cancel=cancel)
    original_grid = volume
    volume = prepare_volume(volume)
    schema = load_schema(schema)
    engine = get_reporter(reporter, **(reporter_options or {}))
    timings["read"] = time.perf_counter() - t0

    t = time.perf_counter()
    if labelmap is not None:
        if not original_grid.same_grid(labelmap):
            raise InputError("the label map is not on the CT's grid; resample it onto the CT (or segment this CT).")
        if volume is not original_grid:  # the CT was put on an orthogonal grid: its labels go with it
            labelmap = resample_like(labelmap, volume)
        selection = labelmap.meta.get("segmentation") or {"engine": "given label map",
                                                          "requested": "given label map",
                                                          "reason": "a label map was given"}
        segmenter_name = selection["engine"]
        steps.advance("label map given")
    else:
        from ..segment import get_segmenter

        seg = get_segmenter(segmenter, **(segmenter_options or {})) if isinstance(segmenter, str) else segmenter
        segmenter_name = segmenter if isinstance(segmenter, str) else getattr(seg, "name", type(seg).__name__)
        if segmenter_name == "auto":
            segmenter_name = seg.name
        selection = getattr(seg, "selection", None) or {"engine": segmenter_name, "requested": segmenter_name,
                                                        "reason": "chosen by the caller"}
        labelmap = seg.segment(volume, progress=lambda f, m: steps.report(f, f"segmenting: {m}"), cancel=cancel)
        steps.advance("segmented")
    timings["segment"] = time.perf_counter() - t
    scope = scan_scope(labelmap, volume)
    if not allow_non_chest:
        require_chest(scope, str(volume.meta.get("source") or "the CT"))

    t = time.perf_counter()
    regions = build_regions(labelmap, schema, volume)
    measurements = measure(volume, labelmap, schema, progress=lambda f, m: steps.report(f, f"measuring: {m}"),
                           cancel=cancel, lesions=lesions, built_regions=regions)
    steps.advance("measured")
    timings["measure"] = time.perf_counter() - t

    t = time.perf_counter()
    case = ReportCase(volume=volume, labelmap=labelmap, schema=schema, regions=regions, measurements=measurements)
    region_reports = engine.write(case, progress=lambda f, m: steps.report(f, f"reporting: {m}"), cancel=cancel)
    region_reports = limit_reports(region_reports, scope, schema, regions, labelmap)
    check_cancel(cancel, "the analysis")
    from ..report.grounding import ground  # one checker for every engine's text

    region_reports, contradictions = ground(case, region_reports, policy=grounding, reporter=engine.name,
                                            reference=region_reports if engine.name == "measurement" else None)
    timings["report"] = time.perf_counter() - t
    timings["total"] = time.perf_counter() - t0

    from ..segment import known_limits

    meta = measurements.meta or {}
    scope.update(lung_coverage=meta.get("coverage", {}), quality_checks=meta.get("quality_checks", {}),
                 segmenter_limits=known_limits(segmenter_name))
    if (labelmap.meta or {}).get("lobes"):
        scope["lobes"] = labelmap.meta["lobes"]
    provenance = Provenance(
        segmenter=segmenter_name, reporter=engine.name, schema=schema.name, versions=_versions(),
        settings={"lesions": lesions, "segmenter_options": dict(segmenter_options or {}),
                  "reporter": engine.settings(), "grounding": grounding,
                  "allow_non_chest": bool(allow_non_chest)},
        timings_s={k: round(v, 3) for k, v in timings.items()},
        input={"source": source, "shape": list(volume.shape), "spacing_mm": [float(s) for s in volume.spacing],
               "orientation": volume.orientation},
        created=datetime.now(timezone.utc).isoformat(timespec="seconds"), scope=scope)
    provenance.scope["segmentation"] = dict(selection)
    report = Report(regions=region_reports, provenance=provenance,
                    impression=[s.text for r in region_reports for s in r.sentences if s.findings],
                    contradictions=contradictions)
    steps.advance("report written")
    return Analysis(volume=volume, labelmap=labelmap, regions=regions, measurements=measurements, report=report,
                    schema=schema)
