"""MedRegionCT: region-by-region chest CT reports in 3D Slicer (thin glue over MedRegionCTLib).

Everything clinical or numerical, and the MRML conversion (MedRegionCTLib.slicer_mrml), lives in the library,
which is imported on first use (never at module import) so missing dependencies can be offered for installation.
"""

import importlib.util
import logging
import os
from dataclasses import dataclass

import qt
import slicer
import vtk
from slicer import vtkMRMLScalarVolumeNode, vtkMRMLSegmentationNode, vtkMRMLTableNode, vtkMRMLTextNode
from slicer.i18n import tr as _
from slicer.parameterNodeWrapper import parameterNodeWrapper
from slicer.ScriptedLoadableModule import (
    ScriptedLoadableModule,
    ScriptedLoadableModuleLogic,
    ScriptedLoadableModuleTest,
    ScriptedLoadableModuleWidget,
)
from slicer.util import VTKObservationMixin

# MedRegionCTLib's core dependencies (pyproject.toml [project] dependencies): import name -> pip requirement.
# Installed on first use after a confirmation. Never torch: the report model runs on a server.
CORE_REQUIREMENTS = {
    "numpy": "numpy>=1.24", "scipy": "scipy>=1.10", "skimage": "scikit-image>=0.21", "nibabel": "nibabel>=5.0",
    "SimpleITK": "SimpleITK>=2.3", "pydicom": "pydicom>=2.4", "PIL": "pillow>=9", "tqdm": "tqdm>=4.60",
    "slicerio": "slicerio>=1.0",
}
# The library itself ships with the extension; from pip (core only, no extras) when it is missing.
LIBRARY_REQUIREMENT = {"MedRegionCTLib": "MedRegionCTLib"}
SERVER_REQUIREMENTS = {"httpx": "httpx>=0.27"}  # the report-server client
DICOM_REQUIREMENTS = {"highdicom": "highdicom>=0.22"}  # DICOM SR export
SOURCES = (("builtin", "Built-in segmenter (no weights)"), ("totalsegmentator", "TotalSegmentator extension"),
           ("segmentation", "Existing segmentation"))
SCHEMAS = (("radgenome10", "RadGenome-ChestCT: 10 regions"), ("medregion6", "MedRegion-CT: 6 regions"))
ENGINES = (("measurement", "Measurement reporter (offline)"), ("server", "Report server"))
EXPORT_FORMATS = (("json", "Report JSON (*.json)"), ("md", "Markdown (*.md)"), ("html", "HTML page (*.html)"),
                  ("dcm", "DICOM SR (*.dcm)"))


class MedRegionCT(ScriptedLoadableModule):
    def __init__(self, parent):
        ScriptedLoadableModule.__init__(self, parent)
        self.parent.title = _("MedRegionCT")
        self.parent.categories = [_("Radiology")]
        self.parent.dependencies = []
        self.parent.contributors = ["MedRegionCT developers"]
        self.parent.helpText = _(
            "Region-by-region chest CT reports: segment a chest CT into anatomical regions, measure each region "
            "and write one paragraph per region, offline or with a region-focused model on a report server. "
            "Click a paragraph in the report panel to see its region.")
        self.parent.acknowledgementText = _("Built on MedRegionCTLib (Apache-2.0); methods after Reg2RG "
                                            "(Chen et al., IEEE TMI 2025) and MedRegion-CT (Kyung et al., 2025).")


def installRequirements(requirements, what, confirm=True):
    """pip-install the missing ``requirements`` into Slicer's Python after the user agrees (never torch)."""
    requirements = {**LIBRARY_REQUIREMENT, **requirements}
    missing = [spec for module, spec in requirements.items() if importlib.util.find_spec(module) is None]
    if not missing:
        return
    if any(spec.lower().startswith("torch") for spec in missing):
        raise RuntimeError("MedRegionCT never installs torch; the report model runs on a report server.")
    if confirm and not slicer.app.testingEnabled() and not slicer.util.confirmOkCancelDisplay(
            _("{what} needs these Python packages, which are not installed yet:\n\n{packages}\n\n"
              "Install them now (a few seconds to a minute)?").format(what=what, packages="\n".join(missing)),
            windowTitle=_("MedRegionCT: install dependencies")):
        raise RuntimeError(f"{what} needs {', '.join(missing)}; the installation was declined.")
    slicer.util.pip_install(missing)


@parameterNodeWrapper
class MedRegionCTParameterNode:
    """GUI state saved with the scene. The API key and the consent are deliberately not in it."""

    inputVolume: vtkMRMLScalarVolumeNode
    segmentationSource: str = "builtin"
    inputSegmentation: vtkMRMLSegmentationNode
    schema: str = "radgenome10"
    lesions: bool = True
    engine: str = "measurement"
    serverUrl: str = ""
    outputSegmentation: vtkMRMLSegmentationNode
    outputTable: vtkMRMLTableNode
    outputReport: vtkMRMLTextNode


@dataclass
class MedRegionCTResult:
    """What :meth:`MedRegionCTLogic.process` returns: the scene nodes, the Report and the full Analysis."""

    segmentationNode: object
    tableNode: object
    reportNode: object
    reportJsonNode: object
    report: object
    analysis: object = None
    volumeNode: object = None


class BackgroundJob:
    """MedRegionCTLib's ThreadJob (work in a worker thread) polled by a QTimer on the main thread, so that
    progress, results and every MRML change happen on the main thread."""

    def __init__(self, work, onProgress, onDone, interval_ms=100):
        from MedRegionCTLib.slicer_mrml import ThreadJob

        self.job = ThreadJob(work)
        self.cancel = self.job.cancel
        self._onProgress, self._onDone = onProgress, onDone
        self._timer = qt.QTimer()
        self._timer.setInterval(interval_ms)
        self._timer.connect("timeout()", self._poll)

    def start(self):
        self.job.start()
        self._timer.start()
        return self

    def running(self):
        return self._timer.isActive()

    def _poll(self):
        fraction, message, done = self.job.poll()
        self._onProgress(fraction, message)
        if done:
            self._timer.stop()
            self._onDone(self.job.result, self.job.error)


class MedRegionCTLogic(ScriptedLoadableModuleLogic):
    """Scriptable without the widget. ``process`` runs the whole job; the widget runs the same three steps with
    ``analyze`` in a worker thread: prepareInputs (main thread) -> analyze (any thread, no MRML) -> writeResults
    (main thread)."""

    def getParameterNode(self):
        return MedRegionCTParameterNode(super().getParameterNode())

    def prepareInputs(self, volumeNode, segmentationSource="builtin", segmentationNode=None, fast=True):
        """The CT as a Volume and, unless the built-in segmenter is used, a LabelMap on its grid."""
        from MedRegionCTLib import slicer_mrml
        from MedRegionCTLib.errors import InputError

        volume = slicer_mrml.node_to_volume(volumeNode, check_ct=True)
        if segmentationSource == "builtin":
            return volume, None
        if segmentationSource == "totalsegmentator":
            segmentationNode = self.runTotalSegmentator(volumeNode, fast=fast)
        elif segmentationSource != "segmentation":
            raise InputError(f"unknown segmentation source {segmentationSource!r}; use "
                             f"{', '.join(s for s, _t in SOURCES)}.")
        if segmentationNode is None:
            raise InputError("no segmentation selected; pick a segmentation node or use the built-in segmenter.")
        return volume, slicer_mrml.segmentation_to_labelmap(segmentationNode, volume)

    def runTotalSegmentator(self, volumeNode, fast=True, task="total"):
        """Segment with the TotalSegmentator extension's own logic (it installs and runs TotalSegmentator)."""
        from MedRegionCTLib.errors import InputError

        try:
            import TotalSegmentator
        except ImportError:
            raise InputError("the TotalSegmentator extension is not installed; install it from the Extensions "
                             "Manager, or choose the built-in segmenter.") from None
        tsLogic = TotalSegmentator.TotalSegmentatorLogic()
        if hasattr(tsLogic, "useStandardSegmentNames"):
            tsLogic.useStandardSegmentNames = False  # segment names = TotalSegmentator class names
        node = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLSegmentationNode", f"{volumeNode.GetName()} TotalSegmentator")
        tsLogic.process(volumeNode, node, fast=fast, task=task)
        return node

    @staticmethod
    def reporterOptions(engine, serverUrl="", apiKey=None, consent=False):
        """The library's reporter name and options; a server needs an explicit consent."""
        from MedRegionCTLib.slicer_mrml import reporter_for_engine

        return reporter_for_engine(engine, serverUrl, apiKey, consent)

    def analyze(self, volume, labelmap=None, schema="radgenome10", engine="measurement", serverUrl="",
                apiKey=None, consent=False, lesions=True, progress=None, cancel=None):
        """segment -> measure -> report (MedRegionCTLib.pipeline.analyze); touches no MRML (thread-safe)."""
        from MedRegionCTLib.pipeline import analyze

        reporter, options = self.reporterOptions(engine, serverUrl, apiKey, consent)
        return analyze(volume, segmenter="builtin", schema=schema, reporter=reporter, labelmap=labelmap,
                       lesions=lesions, progress=progress, cancel=cancel, reporter_options=options)

    def writeResults(self, analysis, volumeNode, segmentationNode=None, tableNode=None, reportNode=None):
        """Segmentation (one segment per region), measurement table and report text nodes in the scene."""
        from MedRegionCTLib import slicer_mrml

        base = volumeNode.GetName() if volumeNode else "CT"
        seg = slicer_mrml.regions_to_segmentation(analysis.regions, analysis.volume, node=segmentationNode,
                                                  scene=slicer.mrmlScene, name=f"{base} regions",
                                                  reference_node=volumeNode)
        table = slicer_mrml.measurements_to_table(analysis.measurements, node=tableNode, scene=slicer.mrmlScene,
                                                  name=f"{base} measurements")
        text, textJson = slicer_mrml.report_to_text_node(analysis.report, node=reportNode, scene=slicer.mrmlScene,
                                                         name=f"{base} report")
        return MedRegionCTResult(seg, table, text, textJson, analysis.report, analysis, volumeNode)

    def process(self, volumeNode, segmentationSource="builtin", schema="radgenome10", engine="measurement",
                progress=None, cancel=None, segmentationNode=None, serverUrl="", apiKey=None, consent=False,
                lesions=True, outputSegmentation=None, outputTable=None, outputReport=None):
        """Run MedRegionCT on ``volumeNode`` (blocking; for scripts). Returns a :class:`MedRegionCTResult`.

        ``segmentationSource``: "builtin", "totalsegmentator" or "segmentation" (with ``segmentationNode``).
        ``engine``: "measurement" or "server" (with ``serverUrl``, ``apiKey`` and ``consent=True``).
        ``progress(fraction, message)`` and ``cancel`` (a threading.Event / CancelToken) as in MedRegionCTLib.
        """
        self.reporterOptions(engine, serverUrl, apiKey, consent)  # URL and consent checked before any work
        volume, labelmap = self.prepareInputs(volumeNode, segmentationSource, segmentationNode)
        analysis = self.analyze(volume, labelmap, schema, engine, serverUrl, apiKey, consent, lesions, progress,
                                cancel)
        return self.writeResults(analysis, volumeNode, outputSegmentation, outputTable, outputReport)

    def processDirectory(self, inputDir, outputDir, workers=1, schema="radgenome10", engine="measurement",
                         serverUrl="", apiKey=None, consent=False, formats=("json", "md", "html"), lesions=True,
                         progress=None, cancel=None, onCase=None):
        """Every CT in ``inputDir`` into ``outputDir/<case>/`` (MedRegionCTLib.pipeline.batch.run_batch):
        resumable, failures recorded in ``outputDir/batch.json``. No scene nodes are created."""
        from MedRegionCTLib.pipeline.batch import run_batch

        reporter, options = self.reporterOptions(engine, serverUrl, apiKey, consent)
        return run_batch(inputDir, outputDir, workers=workers, schema=schema, reporter=reporter, formats=formats,
                         lesions=lesions, reporter_options=options, progress=progress, cancel=cancel,
                         on_case=onCase)


class ReportPanel:
    """Dockable panel with one clickable paragraph per region; Copy and Export (JSON, Markdown, HTML, DICOM SR)."""

    def __init__(self):
        self.result = None
        self.dock = qt.QDockWidget(_("MedRegionCT report"))
        self.dock.objectName = "MedRegionCTReportPanel"
        content = qt.QWidget()
        layout = qt.QVBoxLayout(content)
        self.browser = qt.QTextBrowser()
        self.browser.setOpenLinks(False)
        self.browser.connect("anchorClicked(QUrl)", self.onAnchorClicked)
        layout.addWidget(self.browser)
        row = qt.QHBoxLayout()
        for text, slot in ((_("Copy"), self.copy), (_("Export..."), self.onExport)):
            button = qt.QPushButton(text)
            button.connect("clicked()", slot)
            row.addWidget(button)
        layout.addLayout(row)
        self.dock.setWidget(content)
        mainWindow = slicer.util.mainWindow()
        if mainWindow:
            mainWindow.addDockWidget(qt.Qt.RightDockWidgetArea, self.dock)

    def setResult(self, result):
        self.result = result
        self.browser.setHtml(self.html())
        self.dock.show()

    def html(self):
        from MedRegionCTLib.slicer_mrml import report_panel_html

        analysis = self.result.analysis
        colors = {r.key: r.region.color for r in analysis.regions} if analysis else {}
        return report_panel_html(self.result.report, colors, impression_title=_("Impression"))

    def onAnchorClicked(self, url):
        from MedRegionCTLib.slicer_mrml import region_key_from_link

        key = region_key_from_link(self.result.report, url.toString())
        if key is not None:
            self.centerOnRegion(key)

    def centerOnRegion(self, key):
        """Show region ``key``'s segment and centre the slice views on it; returns the RAS point (or None)."""
        from MedRegionCTLib import slicer_mrml

        node = self.result.segmentationNode
        segmentId = slicer_mrml.segment_id_of_region(node, key)
        point = slicer_mrml.segment_target_ras(node, segmentId) if segmentId else None
        if point is None:
            slicer.util.showStatusMessage(_("This region is empty (not in the scanned range)."), 3000)
            return None
        display = node.GetDisplayNode()
        if display:
            display.SetVisibility(True)
            display.SetSegmentVisibility(segmentId, True)
        slicer.modules.markups.logic().JumpSlicesToLocation(*[float(v) for v in point], True)
        return point

    def copy(self):
        qt.QApplication.clipboard().setText(self.result.report.text())

    def onExport(self):
        filters = ";;".join(f for _k, f in EXPORT_FORMATS)
        path = qt.QFileDialog.getSaveFileName(self.dock, _("Export the report"), "report.json", filters)
        if path:
            with slicer.util.tryWithErrorDisplay(_("The report could not be exported."), waitCursor=True):
                self.exportTo(path)

    def exportTo(self, path, fmt=None):
        """Write the report as "json", "md", "html" or "dcm" (DICOM SR); from the file suffix by default."""
        from MedRegionCTLib.slicer_mrml import export_report

        fmt = fmt or os.path.splitext(path)[1].lower().lstrip(".")
        datasets = None
        if fmt == "dcm":
            installRequirements(DICOM_REQUIREMENTS, _("DICOM SR export"))
            datasets = self.sourceFiles()
        return export_report(self.result.report, path, fmt, analysis=self.result.analysis, dicom_datasets=datasets)

    def sourceFiles(self):
        """Files of the DICOM series the CT was loaded from (DICOM SR references it)."""
        node = self.result.volumeNode
        uids = (node.GetAttribute("DICOM.instanceUIDs") or "").split() if node else []
        return [slicer.dicomDatabase.fileForInstance(uid) for uid in uids] if slicer.dicomDatabase else []


class MedRegionCTWidget(ScriptedLoadableModuleWidget, VTKObservationMixin):
    def __init__(self, parent=None):
        ScriptedLoadableModuleWidget.__init__(self, parent)
        VTKObservationMixin.__init__(self)
        self.logic = None
        self._parameterNode = None
        self._parameterNodeGuiTag = None
        self.job = self.panel = self.lastResult = self._pending = None

    def setup(self):
        ScriptedLoadableModuleWidget.setup(self)
        uiWidget = slicer.util.loadUI(self.resourcePath("UI/MedRegionCT.ui"))
        self.layout.addWidget(uiWidget)
        self.ui = slicer.util.childWidgetVariables(uiWidget)
        uiWidget.setMRMLScene(slicer.mrmlScene)
        self.logic = MedRegionCTLogic()
        for combo, items, name in ((self.ui.segmentationSourceComboBox, SOURCES, "segmentationSource"),
                                   (self.ui.schemaComboBox, SCHEMAS, "schema"),
                                   (self.ui.engineComboBox, ENGINES, "engine")):
            for value, text in items:
                combo.addItem(_(text), value)
            combo.connect("currentIndexChanged(int)", lambda _i, c=combo, n=name: self._onChoice(c, n))
        self.ui.progressBar.hide()
        self.ui.cancelButton.hide()
        self.ui.applyButton.connect("clicked(bool)", self.onApply)
        self.ui.cancelButton.connect("clicked(bool)", self.onCancel)
        self.ui.showReportButton.connect("clicked(bool)", self.onShowReport)
        self.ui.testConnectionButton.connect("clicked(bool)", self.onTestConnection)
        self.ui.serverUrlLineEdit.connect("editingFinished()", self._loadKey)
        self.ui.batchButton.connect("clicked(bool)", self.onBatch)
        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.StartCloseEvent, self.onSceneStartClose)
        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.EndCloseEvent, self.onSceneEndClose)
        self.initializeParameterNode()

    def cleanup(self):
        self.onCancel()
        self.removeObservers()

    def enter(self):
        self.initializeParameterNode()

    def exit(self):
        self.setParameterNode(None)

    def onSceneStartClose(self, caller, event):
        self.onCancel()
        self.setParameterNode(None)

    def onSceneEndClose(self, caller, event):
        if self.parent.isEntered:
            self.initializeParameterNode()

    def initializeParameterNode(self):
        self.setParameterNode(self.logic.getParameterNode())
        if not self._parameterNode.inputVolume:
            first = slicer.mrmlScene.GetFirstNodeByClass("vtkMRMLScalarVolumeNode")
            if first:
                self._parameterNode.inputVolume = first

    def setParameterNode(self, parameterNode):
        if self._parameterNode:
            self._parameterNode.disconnectGui(self._parameterNodeGuiTag)
            self.removeObserver(self._parameterNode, vtk.vtkCommand.ModifiedEvent, self._updateGUI)
        self._parameterNode = parameterNode
        if self._parameterNode:
            self._parameterNodeGuiTag = self._parameterNode.connectGui(self.ui)
            self.addObserver(self._parameterNode, vtk.vtkCommand.ModifiedEvent, self._updateGUI)
            self._updateGUI()

    def _onChoice(self, combo, name):
        if self._parameterNode and combo.currentData:
            setattr(self._parameterNode, name, combo.currentData)

    def _updateGUI(self, caller=None, event=None):
        p = self._parameterNode
        if not p:
            return
        for combo, name in ((self.ui.segmentationSourceComboBox, "segmentationSource"),
                            (self.ui.schemaComboBox, "schema"), (self.ui.engineComboBox, "engine")):
            index = combo.findData(getattr(p, name))
            if index >= 0 and index != combo.currentIndex:
                wasBlocked = combo.blockSignals(True)
                combo.setCurrentIndex(index)
                combo.blockSignals(wasBlocked)
        needsSegmentation = p.segmentationSource == "segmentation"
        self.ui.inputSegmentationSelector.setVisible(needsSegmentation)
        self.ui.inputSegmentationLabel.setVisible(needsSegmentation)
        self.ui.serverFrame.setVisible(p.engine == "server")
        busy = self.job is not None and self.job.running()
        ready = bool(p.inputVolume) and (not needsSegmentation or bool(p.inputSegmentation))
        self.ui.applyButton.enabled = ready and not busy
        self.ui.applyButton.toolTip = _("Write the region report") if ready else _("Select a CT volume first.")
        self.ui.batchButton.enabled = not busy
        self.ui.showReportButton.enabled = self.lastResult is not None

    def _loadKey(self):
        if not self.ui.apiKeyLineEdit.text:
            from MedRegionCTLib.slicer_mrml import load_api_key

            self.ui.apiKeyLineEdit.text = load_api_key(self.ui.serverUrlLineEdit.text)

    def _apiKey(self):
        from MedRegionCTLib.slicer_mrml import store_api_key

        key = self.ui.apiKeyLineEdit.text.strip()
        url = self.ui.serverUrlLineEdit.text.strip()
        if key and self.ui.rememberKeyCheckBox.checked and not store_api_key(url, key):
            slicer.util.warningDisplay(_("No system keyring is available ('pip_install(\"keyring\")' adds one); the "
                                         "key is kept for this session only."))
            self.ui.rememberKeyCheckBox.checked = False
        return key or None

    def onTestConnection(self):
        with slicer.util.tryWithErrorDisplay(_("Could not test the connection."), waitCursor=True):
            installRequirements({**CORE_REQUIREMENTS, **SERVER_REQUIREMENTS}, _("The report server client"))
            url, key = self.ui.serverUrlLineEdit.text.strip(), self._apiKey()

            def work(progress, cancel):
                from MedRegionCTLib.client import ReportClient

                with ReportClient(url, api_key=key, retries=0, timeout=15.0) as client:
                    return client.model_info(refresh=True)

            self.ui.connectionStatusLabel.text = _("Connecting...")
            self.job = BackgroundJob(work, lambda f, m: None, self._onConnectionTested).start()

    def _onConnectionTested(self, info, error):
        self.ui.connectionStatusLabel.text = _("Failed: {error}").format(error=error) if error else _(
            "Connected: model {version}, schema {schema}").format(version=info.get("model", {}).get("version", "?"),
                                                                  schema=info.get("schema", {}).get("name", "?"))
        self._updateGUI()

    def _setRunning(self, running, message=""):
        self.ui.progressBar.setVisible(running)
        self.ui.cancelButton.setVisible(running)
        self.ui.progressBar.value = 0
        self.ui.statusLabel.text = message
        self._updateGUI()

    def onProgress(self, fraction, message):
        self.ui.progressBar.value = int(round(100 * fraction))
        self.ui.statusLabel.text = message

    def onCancel(self):
        if self.job is not None and self.job.running():
            self.job.cancel.set()
            self.ui.statusLabel.text = _("Cancelling...")

    def _runOptions(self):
        """Engine settings for a run, checked (URL, consent) before anything starts."""
        p = self._parameterNode
        options = {"schema": p.schema, "engine": p.engine, "serverUrl": p.serverUrl, "lesions": p.lesions,
                   "apiKey": self._apiKey() if p.engine == "server" else None,
                   "consent": bool(self.ui.consentCheckBox.checked)}
        self.logic.reporterOptions(p.engine, options["serverUrl"], options["apiKey"], options["consent"])
        return options

    def onApply(self):
        p = self._parameterNode
        with slicer.util.tryWithErrorDisplay(_("MedRegionCT could not start."), waitCursor=True):
            engine = p.engine
            installRequirements({**CORE_REQUIREMENTS, **(SERVER_REQUIREMENTS if engine == "server" else {})},
                                _("MedRegionCT"))
            options = self._runOptions()
            volume, labelmap = self.logic.prepareInputs(p.inputVolume, p.segmentationSource, p.inputSegmentation)
            self._pending = (p.inputVolume, p.outputSegmentation, p.outputTable, p.outputReport)
            self.job = BackgroundJob(
                lambda progress, cancel: self.logic.analyze(volume, labelmap, progress=progress, cancel=cancel,
                                                            **options),
                self.onProgress, self.onAnalysisDone).start()
            self._setRunning(True, _("Starting..."))

    def onAnalysisDone(self, analysis, error):
        from MedRegionCTLib.errors import CancelledError

        self._setRunning(False)
        if isinstance(error, CancelledError):
            self.ui.statusLabel.text = _("Cancelled; the scene was left as it was.")
            return
        if error is not None:
            logging.error("MedRegionCT failed", exc_info=error)
            slicer.util.errorDisplay(_("MedRegionCT failed: {error}").format(error=error))
            return
        volumeNode, seg, table, text = self._pending
        with slicer.util.tryWithErrorDisplay(_("The results could not be added to the scene."), waitCursor=True):
            self.lastResult = self.logic.writeResults(analysis, volumeNode, seg, table, text)
            p = self._parameterNode
            p.outputSegmentation = self.lastResult.segmentationNode
            p.outputTable = self.lastResult.tableNode
            p.outputReport = self.lastResult.reportNode
            seconds = analysis.report.provenance.timings_s.get("total", 0.0)
            self.ui.statusLabel.text = _("Done in {s:.1f} s: {n} regions.").format(s=seconds, n=len(analysis.regions))
            self.onShowReport()
        self._updateGUI()

    def onShowReport(self):
        if self.lastResult is None:
            return
        if self.panel is None:
            self.panel = ReportPanel()
        self.panel.setResult(self.lastResult)

    def onBatch(self):
        with slicer.util.tryWithErrorDisplay(_("The batch could not start."), waitCursor=True):
            installRequirements(CORE_REQUIREMENTS, _("MedRegionCT"))
            inputDir = self.ui.batchInputPathLineEdit.currentPath
            outputDir = self.ui.batchOutputPathLineEdit.currentPath
            options = self._runOptions()
            self.job = BackgroundJob(
                lambda progress, cancel: self.logic.processDirectory(inputDir, outputDir, progress=progress,
                                                                     cancel=cancel, **options),
                self.onProgress, self.onBatchDone).start()
            self._setRunning(True, _("Processing {folder}...").format(folder=inputDir))

    def onBatchDone(self, result, error):
        self._setRunning(False)
        if error is not None:
            slicer.util.errorDisplay(_("The batch stopped: {error}").format(error=error))
            return
        counts = result.counts()
        self.ui.statusLabel.text = _("Batch: {done} done, {skipped} skipped, {failed} failed (see batch.json).").format(
            **counts)


class MedRegionCTTest(ScriptedLoadableModuleTest):
    """Runs the whole module on the synthetic phantom inside Slicer (no weights, no network)."""

    def setUp(self):
        slicer.mrmlScene.Clear()

    def runTest(self):
        self.setUp()
        self.test_ProcessPhantom()

    def test_ProcessPhantom(self):
        import tempfile

        installRequirements(CORE_REQUIREMENTS, "the MedRegionCT self-test", confirm=False)
        from MedRegionCTLib import slicer_mrml
        from MedRegionCTLib.anatomy import load_schema
        from MedRegionCTLib.phantom import make_phantom
        from MedRegionCTLib.report import Report

        self.delayDisplay("Building the tiny phantom")
        phantom = make_phantom("tiny", seed=1)
        volumeNode = slicer_mrml.volume_to_node(phantom.volume, scene=slicer.mrmlScene, name="Phantom CT")
        steps = []
        result = slicer.util.getModuleLogic("MedRegionCT").process(volumeNode, progress=lambda f, m: steps.append(f))
        schema = load_schema("radgenome10")
        segmentation = result.segmentationNode.GetSegmentation()
        self.assertEqual(segmentation.GetNumberOfSegments(), len(schema.regions))
        self.assertEqual(result.tableNode.GetNumberOfRows(), len(result.analysis.measurements.to_rows()))
        for region in schema.regions:
            self.assertIn(f"{region.name}:", result.reportNode.GetText())
        self.assertEqual(slicer_mrml.report_from_text_node(result.reportNode).to_json(), result.report.to_json())
        self.assertAlmostEqual(steps[-1], 1.0)
        self.delayDisplay("Report panel: click a region")
        panel = ReportPanel()
        panel.setResult(result)
        self.assertIn("Lung", panel.browser.toPlainText())
        point = panel.centerOnRegion("lung")
        lung = [r for r in result.analysis.regions if r.key == "lung"][0]
        ijk = tuple(int(round(v)) for v in phantom.volume.world_to_index(point))
        self.assertTrue(lung.mask[ijk])
        layoutManager = slicer.app.layoutManager()
        if layoutManager:
            red = layoutManager.sliceWidget("Red").sliceLogic().GetSliceNode()
            self.assertAlmostEqual(red.GetSliceToRAS().GetElement(2, 3), point[2], places=2)
        with tempfile.TemporaryDirectory() as folder:
            panel.exportTo(os.path.join(folder, "report.json"))
            self.assertEqual(Report.load(os.path.join(folder, "report.json")).to_json(), result.report.to_json())
            for suffix in ("md", "html"):
                panel.exportTo(os.path.join(folder, f"report.{suffix}"))
                self.assertGreater(os.path.getsize(os.path.join(folder, f"report.{suffix}")), 200)
        panel.dock.close()
        self.delayDisplay("Test passed")
