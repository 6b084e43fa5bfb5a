"""The Slicer module's state and decisions, without Qt: which job runs, what the buttons allow, consent,
the engine and segmentation choices, and what is kept of the last result.

The Qt widget (``MedRegionCT/MedRegionCTGui/widget.py``) only forwards events here and applies what comes
back, so every rule below is tested with plain pytest:

- one job at a time (an analysis, a batch or a connection test): a second one is refused with a message, and
  Cancel always reaches the job that runs;
- a run owns its output nodes from the start (by node ID, never through the parameter node, which goes away
  when the user leaves the module or closes the scene); a scene close discards the run's result;
- consent to send the CT to a report server holds for one run: it is reset after every run and whenever the
  server URL changes;
- the segmentation source "auto" means the best engine available (TotalSegmentator when the extension and its
  weights are installed, the built-in segmenter otherwise), with the reason kept for the report header;
- the last result keeps the report, the measurements and the node IDs, never full-grid arrays the scene holds.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field

from ..errors import InputError
from ..progress import CancelToken

JOB_NAMES = {"analysis": "the region report", "batch": "the batch", "connection": "the connection test"}
SOURCES = ("auto", "builtin", "totalsegmentator", "segmentation")


@dataclass
class Outputs:
    """The nodes a run writes into, fixed when it starts (IDs; "" = create a new node)."""

    volume_id: str
    segmentation_id: str = ""
    table_id: str = ""
    report_id: str = ""


@dataclass
class Job:
    kind: str
    number: int
    cancel: CancelToken = field(default_factory=CancelToken)
    outputs: Outputs | None = None
    discarded: bool = False  # the scene was closed: the result has nowhere to go

    @property
    def name(self) -> str:
        return JOB_NAMES.get(self.kind, self.kind)


@dataclass
class SegmentationChoice:
    """What segments the CT and why (shown in the report header and the panel)."""

    source: str  # builtin | totalsegmentator | segmentation
    reason: str
    requested: str = "auto"

    def scope(self) -> dict:
        engine = {"builtin": "built-in segmenter", "totalsegmentator": "TotalSegmentator (Slicer extension)",
                  "segmentation": "existing segmentation"}[self.source]
        return {"engine": engine, "requested": self.requested, "reason": self.reason}


@dataclass
class LastResult:
    """The last run, without arrays: the scene holds the CT, the regions, the table and the report."""

    report: object  # report.Report
    measurements: object  # measure.Measurements (per-region numbers; lesion masks are small crops)
    colors: dict  # region key -> (r, g, b)
    volume_id: str
    segmentation_id: str
    table_id: str
    report_id: str


@dataclass
class GuiState:
    apply_enabled: bool
    apply_tooltip: str
    batch_enabled: bool
    test_connection_enabled: bool
    cancel_visible: bool
    show_report_enabled: bool
    segmentation_selector_visible: bool
    server_frame_visible: bool
    consent_checked: bool


class ModuleController:
    def __init__(self):
        self.job: Job | None = None
        self.last: LastResult | None = None
        self._numbers = itertools.count(1)
        self._consent = False
        self._server_url = ""

    # --- jobs -------------------------------------------------------------------------------------------------
    @property
    def busy(self) -> bool:
        return self.job is not None

    def start(self, kind: str, outputs: Outputs | None = None) -> Job:
        """Register a new job; refused while another one runs (Cancel must keep reaching that one)."""
        if kind not in JOB_NAMES:
            raise InputError(f"unknown job {kind!r}; use {', '.join(JOB_NAMES)}.")
        if self.job is not None:
            raise InputError(f"{self.job.name} is still running; wait for it to finish or press Cancel first.")
        self.job = Job(kind, next(self._numbers), outputs=outputs)
        return self.job

    def finish(self, job: Job) -> bool:
        """The job ended; True when its result should be used (it is the current job and its scene is still
        there). Consent is used up by every run that ends, however it ends."""
        if job is not self.job:
            return False
        self.job = None
        if job.kind in ("analysis", "batch"):
            self._consent = False
        return not job.discarded and not job.cancel.is_set()

    def cancel(self) -> bool:
        """Ask the running job to stop; False when nothing runs."""
        if self.job is None:
            return False
        self.job.cancel.set()
        return True

    def scene_closing(self) -> None:
        """The scene is about to close: the running job's output nodes go with it, so its result is dropped,
        and the last result's nodes are gone too."""
        if self.job is not None:
            self.job.discarded = True
            self.job.cancel.set()
        self.last = None

    # --- consent ----------------------------------------------------------------------------------------------
    @property
    def consent(self) -> bool:
        return self._consent

    def set_consent(self, checked: bool) -> None:
        self._consent = checked is True

    def set_server_url(self, url: str) -> bool:
        """A new server URL withdraws the consent given for the old one; True when the URL changed."""
        url = (url or "").strip()
        if url == self._server_url:
            return False
        self._server_url = url
        self._consent = False
        return True

    def reporter(self, engine: str, api_key: str | None = None) -> tuple[str, dict]:
        """The reporter for a run with the current URL and consent (checked before anything starts)."""
        from .support import reporter_for_engine

        return reporter_for_engine(engine, self._server_url, api_key, self._consent)

    # --- segmentation source ----------------------------------------------------------------------------------
    @staticmethod
    def choose_segmentation(requested: str, totalsegmentator_ready: tuple[bool, str]) -> SegmentationChoice:
        """The segmentation that will run for ``requested`` (one of :data:`SOURCES`), given whether the
        TotalSegmentator extension can run (``(ready, why)``)."""
        if requested not in SOURCES:
            raise InputError(f"unknown segmentation source {requested!r}; use {', '.join(SOURCES)}.")
        ready, why = totalsegmentator_ready
        if requested == "auto":
            if ready:
                return SegmentationChoice("totalsegmentator", f"best engine available: {why}", "auto")
            return SegmentationChoice("builtin", f"TotalSegmentator cannot run here ({why}); the built-in "
                                      "segmenter needs no weights", "auto")
        if requested == "totalsegmentator":
            return SegmentationChoice("totalsegmentator", "chosen by the user", requested)
        if requested == "builtin":
            return SegmentationChoice("builtin", "chosen by the user", requested)
        return SegmentationChoice("segmentation", "a segmentation from the scene, chosen by the user", requested)

    # --- GUI state --------------------------------------------------------------------------------------------
    def gui_state(self, has_volume: bool, source: str, has_segmentation: bool, engine: str) -> GuiState:
        needs_segmentation = source == "segmentation"
        ready = has_volume and (not needs_segmentation or has_segmentation)
        if self.busy:
            tooltip = f"{self.job.name} is running; wait for it or press Cancel."
        elif not has_volume:
            tooltip = "Select a CT volume first."
        elif not ready:
            tooltip = "Select the segmentation to report on."
        else:
            tooltip = "Write the region report."
        return GuiState(
            apply_enabled=ready and not self.busy, apply_tooltip=tooltip, batch_enabled=not self.busy,
            test_connection_enabled=not self.busy and bool(self._server_url), cancel_visible=self.busy,
            show_report_enabled=self.last is not None, segmentation_selector_visible=needs_segmentation,
            server_frame_visible=engine == "server", consent_checked=self._consent)

    # --- results ----------------------------------------------------------------------------------------------
    def keep_result(self, analysis, nodes) -> LastResult:
        """Keep what the panel needs from ``analysis`` (pipeline.Analysis) and the written ``nodes`` (an object
        with segmentationNode, tableNode, reportNode, volumeNode); the arrays stay with the scene."""
        colors = {r.key: tuple(r.region.color) for r in analysis.regions}
        self.last = LastResult(
            report=analysis.report, measurements=analysis.measurements, colors=colors,
            volume_id=nodes.volumeNode.GetID() if nodes.volumeNode is not None else "",
            segmentation_id=nodes.segmentationNode.GetID() or "", table_id=nodes.tableNode.GetID() or "",
            report_id=nodes.reportNode.GetID() or "")
        return self.last
