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
from ..volume import LabelMap, Volume, read_volume


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


def analyze(volume, segmenter="builtin", schema="radgenome10", reporter="measurement", labelmap=None,
            lesions: bool = True, progress=None, cancel=None, segmenter_options: dict | None = None,
            reporter_options: dict | None = None, grounding: str = "flag") -> Analysis:
    """Segment ``volume`` (a :class:`Volume` or a path), measure every region of ``schema`` and report on it.

    ``segmenter``: a name for :func:`segment.get_segmenter` ("builtin", "totalsegmentator", "labels:FILE") or a
    segmenter object; ignored when ``labelmap`` (a LabelMap on the CT grid) is given. ``reporter``: see
    :func:`get_reporter`. ``progress(fraction, message)`` and ``cancel`` as everywhere in the library.
    ``grounding``: what happens to a statement the measurements contradict ("flag": kept and recorded in
    ``report.contradictions``; "replace": the measured statement instead; see :mod:`report.grounding`).
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
    schema = load_schema(schema)
    engine = get_reporter(reporter, **(reporter_options or {}))
    timings["read"] = time.perf_counter() - t0

    t = time.perf_counter()
    if labelmap is not None:
        if not volume.same_grid(labelmap):
            raise InputError("the label map is not on the CT's grid; resample it onto the CT (or segment this CT).")
        segmenter_name = "given label map"
        steps.advance("label map given")
    else:
        from ..segment import get_segmenter

        seg = get_segmenter(segmenter, **(segmenter_options or {})) if isinstance(segmenter, str) else segmenter
        segmenter_name = segmenter if isinstance(segmenter, str) else type(segmenter).__name__
        labelmap = seg.segment(volume, progress=lambda f, m: steps.report(f, f"segmenting: {m}"), cancel=cancel)
        steps.advance("segmented")
    timings["segment"] = time.perf_counter() - t

    t = time.perf_counter()
    regions = build_regions(labelmap, schema, volume)
    measurements = measure(volume, labelmap, schema, progress=lambda f, m: steps.report(f, f"measuring: {m}"),
                           cancel=cancel, lesions=lesions, built_regions=regions)
    steps.advance("measured")
    timings["measure"] = time.perf_counter() - t

    t = time.perf_counter()
    case = ReportCase(volume=volume, labelmap=labelmap, schema=schema, regions=regions, measurements=measurements)
    region_reports = engine.write(case, progress=lambda f, m: steps.report(f, f"reporting: {m}"), cancel=cancel)
    check_cancel(cancel, "the analysis")
    from ..report.grounding import ground  # one checker for every engine's text

    region_reports, contradictions = ground(case, region_reports, policy=grounding, reporter=engine.name,
                                            reference=region_reports if engine.name == "measurement" else None)
    timings["report"] = time.perf_counter() - t
    timings["total"] = time.perf_counter() - t0

    provenance = Provenance(
        segmenter=segmenter_name, reporter=engine.name, schema=schema.name, versions=_versions(),
        settings={"lesions": lesions, "segmenter_options": dict(segmenter_options or {}),
                  "reporter": engine.settings(), "grounding": grounding},
        timings_s={k: round(v, 3) for k, v in timings.items()},
        input={"source": source, "shape": list(volume.shape), "spacing_mm": [float(s) for s in volume.spacing],
               "orientation": volume.orientation},
        created=datetime.now(timezone.utc).isoformat(timespec="seconds"))
    report = Report(regions=region_reports, provenance=provenance,
                    impression=[s.text for r in region_reports for s in r.sentences if s.findings],
                    contradictions=contradictions)
    steps.advance("report written")
    return Analysis(volume=volume, labelmap=labelmap, regions=regions, measurements=measurements, report=report,
                    schema=schema)
