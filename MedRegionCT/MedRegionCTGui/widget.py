"""The module panel: reads the .ui, forwards every event to the Qt-free ModuleController and applies what it
decides (button states, consent, which job runs), runs the jobs and shows the report panel."""

from __future__ import annotations

import logging

import slicer
import vtk
from slicer.i18n import tr as _

from .jobs import BackgroundJob

SOURCES = (("auto", "Best available (TotalSegmentator when installed, else built-in)"),
           ("builtin", "Built-in segmenter (no weights)"), ("totalsegmentator", "TotalSegmentator extension"),
           ("segmentation", "Existing segmentation"))
SCHEMAS = (("radgenome10", "RadGenome-ChestCT: 10 regions"), ("medregion6", "MedRegion-CT: 6 regions"))
ENGINES = (("measurement", "Measurement reporter (offline)"), ("server", "Report server"))


class ModuleWidget:
    """Everything the scripted module's widget does, given its layout, its logic and its resource path."""

    def __init__(self, moduleWidget, logic):
        from MedRegionCTLib.slicer_mrml.controller import ModuleController

        self.moduleWidget = moduleWidget
        self.logic = logic
        self.controller = ModuleController()
        self.panel = None
        self.background = None
        self._parameterNode = None
        self._parameterNodeGuiTag = None
        self._observations = []

    # --- set-up and life cycle --------------------------------------------------------------------------------
    def setup(self, layout, uiPath):
        uiWidget = slicer.util.loadUI(uiPath)
        layout.addWidget(uiWidget)
        self.ui = slicer.util.childWidgetVariables(uiWidget)
        uiWidget.setMRMLScene(slicer.mrmlScene)
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
        self.ui.serverUrlLineEdit.connect("textChanged(QString)", self.onServerUrlChanged)
        self.ui.serverUrlLineEdit.connect("editingFinished()", self._loadKey)
        self.ui.consentCheckBox.connect("toggled(bool)", self.onConsentToggled)
        self.ui.batchButton.connect("clicked(bool)", self.onBatch)
        for event, handler in ((slicer.mrmlScene.StartCloseEvent, self.onSceneStartClose),
                               (slicer.mrmlScene.EndCloseEvent, self.onSceneEndClose)):
            self._observations.append(slicer.mrmlScene.AddObserver(event, handler))
        self.initializeParameterNode()

    def cleanup(self):
        """The module is destroyed (application exit or reload): stop the job, drop observers and the dock."""
        self.controller.scene_closing()
        if self.background is not None:
            self.background.stop()
        self.setParameterNode(None)
        for tag in self._observations:
            slicer.mrmlScene.RemoveObserver(tag)
        self._observations = []
        if self.panel is not None:
            self.panel.cleanup()
            self.panel = None

    def enter(self):
        self.initializeParameterNode()

    def exit(self):
        # The GUI stops following the parameter node; a running job does not need it (its outputs were fixed
        # when it started) and goes on.
        self.setParameterNode(None)

    def onSceneStartClose(self, caller, event):
        self.controller.scene_closing()
        self.setParameterNode(None)
        self.updateGUI()

    def onSceneEndClose(self, caller, event):
        if self.moduleWidget.parent.isEntered:
            self.initializeParameterNode()

    # --- parameter node ---------------------------------------------------------------------------------------
    def initializeParameterNode(self):
        self.setParameterNode(self.logic.getParameterNode())
        if not self._parameterNode.inputVolume:
            first = slicer.mrmlScene.GetFirstNodeByClass("vtkMRMLScalarVolumeNode")
            if first:
                self._parameterNode.inputVolume = first

    def setParameterNode(self, parameterNode):
        if self._parameterNode:
            self._parameterNode.disconnectGui(self._parameterNodeGuiTag)
            self._parameterNode.RemoveObserver(self._parameterNodeObserver)
        self._parameterNode = parameterNode
        if self._parameterNode:
            self._parameterNodeGuiTag = self._parameterNode.connectGui(self.ui)
            self._parameterNodeObserver = self._parameterNode.AddObserver(vtk.vtkCommand.ModifiedEvent,
                                                                          self.updateGUI)
            self.controller.set_server_url(self._parameterNode.serverUrl)
        self.updateGUI()

    def _onChoice(self, combo, name):
        if self._parameterNode and combo.currentData:
            setattr(self._parameterNode, name, combo.currentData)

    def updateGUI(self, caller=None, event=None):
        p = self._parameterNode
        if p:
            for combo, name in ((self.ui.segmentationSourceComboBox, "segmentationSource"),
                                (self.ui.schemaComboBox, "schema"), (self.ui.engineComboBox, "engine")):
                index = combo.findData(getattr(p, name))
                if index >= 0 and index != combo.currentIndex:
                    wasBlocked = combo.blockSignals(True)
                    combo.setCurrentIndex(index)
                    combo.blockSignals(wasBlocked)
        state = self.controller.gui_state(
            has_volume=bool(p and p.inputVolume), source=p.segmentationSource if p else "auto",
            has_segmentation=bool(p and p.inputSegmentation), engine=p.engine if p else "measurement")
        self.ui.inputSegmentationSelector.setVisible(state.segmentation_selector_visible)
        self.ui.inputSegmentationLabel.setVisible(state.segmentation_selector_visible)
        self.ui.serverFrame.setVisible(state.server_frame_visible)
        self.ui.applyButton.enabled = state.apply_enabled
        self.ui.applyButton.toolTip = _(state.apply_tooltip)
        self.ui.batchButton.enabled = state.batch_enabled
        self.ui.testConnectionButton.enabled = state.test_connection_enabled
        self.ui.showReportButton.enabled = state.show_report_enabled
        self.ui.progressBar.setVisible(state.cancel_visible)
        self.ui.cancelButton.setVisible(state.cancel_visible)
        if self.ui.consentCheckBox.checked != state.consent_checked:
            wasBlocked = self.ui.consentCheckBox.blockSignals(True)
            self.ui.consentCheckBox.checked = state.consent_checked
            self.ui.consentCheckBox.blockSignals(wasBlocked)

    # --- server engine ----------------------------------------------------------------------------------------
    def onServerUrlChanged(self, text):
        if self.controller.set_server_url(text):
            self.updateGUI()  # consent given for another URL is withdrawn

    def onConsentToggled(self, checked):
        self.controller.set_consent(bool(checked))

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
        from MedRegionCTLib.slicer_mrml.requirements import CORE, SERVER_CLIENT

        from .install import ensureRequirements

        with slicer.util.tryWithErrorDisplay(_("Could not test the connection."), waitCursor=True):
            ensureRequirements({**CORE, **SERVER_CLIENT}, _("The report server client"))
            url, key = self.ui.serverUrlLineEdit.text.strip(), self._apiKey()
            job = self.controller.start("connection")

            def work(progress, cancel):
                from MedRegionCTLib.client import ReportClient

                with ReportClient(url, api_key=key, retries=0, timeout=15.0) as client:
                    return client.model_info(refresh=True)

            self.ui.connectionStatusLabel.text = _("Connecting...")
            self.background = BackgroundJob(work, lambda f, m: None,
                                            lambda info, error: self._onConnectionTested(job, info, error),
                                            cancel=job.cancel).start()
            self.updateGUI()

    def _onConnectionTested(self, job, info, error):
        if self.controller.finish(job):
            self.ui.connectionStatusLabel.text = _("Failed: {error}").format(error=error) if error else _(
                "Connected: model {version}, schema {schema}").format(
                    version=info.get("model", {}).get("version", "?"), schema=info.get("schema", {}).get("name", "?"))
        self.updateGUI()

    # --- runs -------------------------------------------------------------------------------------------------
    def onProgress(self, fraction, message):
        self.ui.progressBar.value = int(round(100 * fraction))
        self.ui.statusLabel.text = message

    def onCancel(self):
        if self.controller.cancel():
            self.ui.statusLabel.text = _("Cancelling...")

    def _finishRun(self, job, error, what):
        """Common end of a run; True when its result is to be used."""
        from MedRegionCTLib.errors import CancelledError

        use = self.controller.finish(job)
        self.updateGUI()
        if job.discarded:
            self.ui.statusLabel.text = _("The scene was closed; the run's result was dropped.")
            return False
        if isinstance(error, CancelledError) or (job.cancel.is_set() and error is None):
            self.ui.statusLabel.text = _("Cancelled; the scene was left as it was.")
            return False
        if error is not None:
            logging.error("MedRegionCT %s failed", what, exc_info=error)
            self.ui.statusLabel.text = _("Failed: {error}").format(error=error)
            slicer.util.errorDisplay(_("MedRegionCT failed: {error}").format(error=error))
            return False
        return use

    def onApply(self):
        from MedRegionCTLib.errors import CancelledError
        from MedRegionCTLib.slicer_mrml.controller import Outputs
        from MedRegionCTLib.slicer_mrml.requirements import CORE, SERVER_CLIENT

        from .install import ensureRequirements

        p = self._parameterNode
        job = None
        try:
            with slicer.util.tryWithErrorDisplay(_("MedRegionCT could not start."), waitCursor=False):
                ensureRequirements({**CORE, **(SERVER_CLIENT if p.engine == "server" else {})}, _("MedRegionCT"))
                reporter, reporterOptions = self.controller.reporter(
                    p.engine, self._apiKey() if p.engine == "server" else None)
                choice = self.logic.chooseSegmentation(p.segmentationSource)
                volumeNode, segmentationNode = p.inputVolume, p.inputSegmentation
                options = {"schema": p.schema, "lesions": p.lesions, "reporter": reporter,
                           "reporterOptions": reporterOptions, "segmentation": choice}
                outputs = Outputs(volumeNode.GetID(), *[n.GetID() if n else "" for n in (
                    p.outputSegmentation, p.outputTable, p.outputReport)])
                job = self.controller.start("analysis", outputs)
                self.updateGUI()
                self.ui.statusLabel.text = _("Starting...")
                try:
                    # TotalSegmentator runs in its own console process; the extension reads its output on this
                    # thread, so the GUI is pumped between its lines and Cancel stays clickable.
                    volume, labelmap = self.logic.prepareInputs(
                        volumeNode, choice, segmentationNode, progress=self.onProgress, cancel=job.cancel,
                        pump=slicer.app.processEvents, interactive=True)
                except CancelledError:
                    return  # the finally clause reports it
                self.background = BackgroundJob(
                    lambda progress, cancel: self.logic.analyze(volume, labelmap, progress=progress, cancel=cancel,
                                                                **options),
                    self.onProgress, lambda analysis, error, job=job: self.onAnalysisDone(job, analysis, error),
                    cancel=job.cancel).start()
                job = None  # the background job owns it now
        finally:
            if job is not None:  # failed or cancelled before the background work started
                self._finishRun(job, None, "start")

    def onAnalysisDone(self, job, analysis, error):
        if not self._finishRun(job, error, "analysis"):
            return
        with slicer.util.tryWithErrorDisplay(_("The results could not be added to the scene."), waitCursor=True):
            out = job.outputs
            node = slicer.mrmlScene.GetNodeByID
            result = self.logic.writeResults(analysis, node(out.volume_id), node(out.segmentation_id),
                                             node(out.table_id), node(out.report_id))
            last = self.controller.keep_result(analysis, result)
            p = self._parameterNode  # None when the user left the module: the nodes are written all the same
            if p:
                p.outputSegmentation = result.segmentationNode
                p.outputTable = result.tableNode
                p.outputReport = result.reportNode
            seconds = analysis.report.provenance.timings_s.get("total", 0.0)
            self.ui.statusLabel.text = _("Done in {s:.1f} s: {n} regions.").format(s=seconds, n=len(analysis.regions))
            self.showResult(last)
        self.updateGUI()

    def showResult(self, last):
        if self.panel is None:
            from .panel import ReportPanel

            self.panel = ReportPanel()
        self.panel.setResult(last)

    def onShowReport(self):
        if self.controller.last is not None:
            self.showResult(self.controller.last)

    def onBatch(self):
        from MedRegionCTLib.slicer_mrml.requirements import CORE

        from .install import ensureRequirements

        with slicer.util.tryWithErrorDisplay(_("The batch could not start."), waitCursor=True):
            ensureRequirements(CORE, _("MedRegionCT"))
            p = self._parameterNode
            inputDir = self.ui.batchInputPathLineEdit.currentPath
            outputDir = self.ui.batchOutputPathLineEdit.currentPath
            reporter, reporterOptions = self.controller.reporter(
                p.engine, self._apiKey() if p.engine == "server" else None)
            job = self.controller.start("batch")
            self.background = BackgroundJob(
                lambda progress, cancel: self.logic.processDirectory(
                    inputDir, outputDir, schema=p.schema, lesions=p.lesions, reporter=reporter,
                    reporterOptions=reporterOptions, progress=progress, cancel=cancel),
                self.onProgress, lambda result, error: self.onBatchDone(job, result, error),
                cancel=job.cancel).start()
            self.updateGUI()
            self.ui.statusLabel.text = _("Processing {folder}...").format(folder=inputDir)

    def onBatchDone(self, job, result, error):
        if self._finishRun(job, error, "batch"):
            self.ui.statusLabel.text = _("Batch: {done} done, {skipped} skipped, {failed} failed (listed in "
                                         "failures.json).").format(**result.counts())
