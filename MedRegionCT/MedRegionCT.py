"""MedRegionCT: region-by-region chest CT reports in 3D Slicer (thin glue over MedRegionCTLib).

Entry points only: the Module (refuses a Slicer older than 5.10 with a clear message), the Widget (its work is in
MedRegionCTGui.widget), the Logic (scriptable, no GUI) and the self-test. Everything clinical or numerical, the
MRML conversion and the module's decisions live in the library (MedRegionCTLib.slicer_mrml), which is imported on
first use so missing dependencies can be offered for installation. Python 3.9 syntax on purpose: an old Slicer
must reach the version check.
"""

import contextlib
import logging
import os

import slicer
from MedRegionCTGui import bootstrap
from slicer.ScriptedLoadableModule import (
    ScriptedLoadableModule,
    ScriptedLoadableModuleLogic,
    ScriptedLoadableModuleTest,
    ScriptedLoadableModuleWidget,
)

try:
    from slicer.i18n import tr as _
except ImportError:  # Slicer before 5.4 has no translation helper; the version check below says what to do
    def _(text):
        return text

UNSUPPORTED = bootstrap.unsupported_reason(
    (getattr(slicer.app, "majorVersion", 0), getattr(slicer.app, "minorVersion", 0)) if hasattr(slicer, "app")
    else (0, 0))

if not UNSUPPORTED:
    from slicer import vtkMRMLScalarVolumeNode, vtkMRMLSegmentationNode, vtkMRMLTableNode, vtkMRMLTextNode
    from slicer.parameterNodeWrapper import parameterNodeWrapper

    @parameterNodeWrapper
    class MedRegionCTParameterNode:
        """GUI state saved with the scene. The API key and the consent are deliberately not in it."""

        inputVolume: vtkMRMLScalarVolumeNode
        segmentationSource: str = "auto"
        inputSegmentation: vtkMRMLSegmentationNode
        schema: str = "radgenome10"
        lesions: bool = True
        engine: str = "measurement"
        serverUrl: str = ""
        outputSegmentation: vtkMRMLSegmentationNode
        outputTable: vtkMRMLTableNode
        outputReport: vtkMRMLTextNode


class MedRegionCT(ScriptedLoadableModule):
    def __init__(self, parent):
        ScriptedLoadableModule.__init__(self, parent)
        self.parent.title = _("MedRegionCT")
        self.parent.categories = [_("Quantification")]
        self.parent.dependencies = []
        self.parent.contributors = ["MedRegionCT maintainers (MedRegionCT project)"]
        self.parent.helpText = _(
            "Region-by-region chest CT reports: segment a chest CT into anatomical regions, measure each region "
            "and write one paragraph per region, offline or with a region-focused model on a report server. "
            "Click a paragraph in the report panel to see its region.")
        self.parent.acknowledgementText = _("Built on MedRegionCTLib (Apache-2.0); methods after Reg2RG "
                                            "(Chen et al., IEEE TMI 2025) and MedRegion-CT (Kyung et al., 2025).")
        if UNSUPPORTED:
            logging.error(UNSUPPORTED)
            self.parent.helpText = UNSUPPORTED
            self.parent.hidden = True
            slicer.app.connect("startupCompleted()", lambda: slicer.util.errorDisplay(UNSUPPORTED))


class MedRegionCTWidget(ScriptedLoadableModuleWidget):
    def __init__(self, parent=None):
        ScriptedLoadableModuleWidget.__init__(self, parent)
        self.gui = None

    def setup(self):
        ScriptedLoadableModuleWidget.setup(self)
        if UNSUPPORTED:
            import qt

            label = qt.QLabel(UNSUPPORTED)
            label.wordWrap = True
            self.layout.addWidget(label)
            return
        bootstrap.find_library(os.path.dirname(__file__))
        from MedRegionCTGui.widget import ModuleWidget

        self.logic = MedRegionCTLogic()
        self.gui = ModuleWidget(self, self.logic)
        self.gui.setup(self.layout, self.resourcePath("UI/MedRegionCT.ui"))

    def cleanup(self):
        if self.gui is not None:
            self.gui.cleanup()

    def enter(self):
        if self.gui is not None:
            self.gui.enter()

    def exit(self):
        if self.gui is not None:
            self.gui.exit()


class MedRegionCTResult:
    """What :meth:`MedRegionCTLogic.process` returns: the scene nodes, the Report and the full Analysis (a
    script's to keep or drop; the module keeps only the report and node IDs)."""

    def __init__(self, segmentationNode, tableNode, reportNode, reportJsonNode, report, analysis=None,
                 volumeNode=None):
        self.segmentationNode, self.tableNode, self.reportNode = segmentationNode, tableNode, reportNode
        self.reportJsonNode, self.report, self.analysis, self.volumeNode = reportJsonNode, report, analysis, volumeNode


class MedRegionCTLogic(ScriptedLoadableModuleLogic):
    """Scriptable without the widget. ``process`` runs the whole job; the widget runs the same steps with
    ``analyze`` in a worker thread: prepareInputs (main thread) -> analyze (any thread, no MRML) -> writeResults
    (main thread)."""

    def __init__(self):
        ScriptedLoadableModuleLogic.__init__(self)
        if UNSUPPORTED:
            raise RuntimeError(UNSUPPORTED)
        bootstrap.find_library(os.path.dirname(__file__))
        self.totalSegmentatorQuality = "fast"  # "full" (1.5 mm, GPU advised), "fast" (3 mm) or "fastest" (6 mm)
        self.totalSegmentatorCpu = False

    def getParameterNode(self):
        return MedRegionCTParameterNode(super().getParameterNode())

    # --- segmentation -----------------------------------------------------------------------------------------
    @staticmethod
    def importTotalSegmentator():
        import TotalSegmentator

        return TotalSegmentator

    def totalSegmentatorLogic(self):
        return self.importTotalSegmentator().TotalSegmentatorLogic()

    def totalSegmentatorReadiness(self):
        """``(ready, why)``: the extension, its Python package and its weights are all installed."""
        from MedRegionCTLib.slicer_mrml import totalsegmentator_extension as tse

        weights = None
        with contextlib.suppress(Exception):  # the extension is absent or cannot start: readiness says which
            weights = getattr(self.totalSegmentatorLogic(), "totalSegmentatorWeightsPath", None)
        return tse.readiness(self.importTotalSegmentator, weights, fast=self.totalSegmentatorQuality != "full")

    def chooseSegmentation(self, requested="auto"):
        """The segmentation that will run for ``requested`` (auto, builtin, totalsegmentator, segmentation)."""
        from MedRegionCTLib.slicer_mrml.controller import ModuleController

        ready = self.totalSegmentatorReadiness() if requested == "auto" else (False, "")
        return ModuleController.choose_segmentation(requested, ready)

    def prepareInputs(self, volumeNode, choice, segmentationNode=None, progress=None, cancel=None, pump=None,
                      interactive=False):
        """The CT as a Volume and, unless the built-in segmenter runs, a LabelMap on its grid that carries the
        choice (``labelmap.meta["segmentation"]``, shown in the report header). ``choice``: a
        SegmentationChoice or a source name."""
        from MedRegionCTLib import slicer_mrml
        from MedRegionCTLib.errors import InputError

        if isinstance(choice, str):
            choice = self.chooseSegmentation(choice)
        volume = slicer_mrml.node_to_volume(volumeNode, check_ct=True)
        if choice.source == "builtin":
            return volume, None
        if choice.source == "totalsegmentator":
            labelmap = self.runTotalSegmentator(volumeNode, volume, progress, cancel, pump, interactive)
        else:
            if segmentationNode is None:
                raise InputError("no segmentation selected; pick a segmentation node or use the built-in segmenter.")
            labelmap = slicer_mrml.segmentation_to_labelmap(segmentationNode, volume)
        labelmap.meta["segmentation"] = choice.scope()
        return volume, labelmap

    def runTotalSegmentator(self, volumeNode, volume, progress=None, cancel=None, pump=None, interactive=False):
        """TotalSegmentator through the extension's own logic: its Python packages set up by the extension (after
        a confirmation when ``interactive``), task 'total' plus the lesion tasks it offers, options matched to its
        process() signature; scratch nodes are removed whatever happens."""
        from MedRegionCTGui.install import ensureTotalSegmentator

        from MedRegionCTLib.errors import InputError
        from MedRegionCTLib.slicer_mrml import totalsegmentator_extension as tse

        try:
            tsLogic = self.totalSegmentatorLogic()
        except ImportError:
            raise InputError("the TotalSegmentator extension is not installed; install it from the Extensions "
                             "Manager, or choose the built-in segmenter.") from None
        ensureTotalSegmentator(tsLogic, confirm=interactive)
        tasks = ["total", *tse.lesion_tasks(tsLogic)]

        def options(task):
            return tse.process_options(tsLogic.process, self.totalSegmentatorQuality, self.totalSegmentatorCpu, task,
                                       fast_supported=tse.task_flag(tsLogic, "isFastModeSupportedForTask", task,
                                                                    task == "total"),
                                       fastest_supported=tse.task_flag(tsLogic, "isFastestModeSupportedForTask",
                                                                       task, False))

        return tse.run_extension(tsLogic, volumeNode, volume, tasks, options, slicer.mrmlScene, slicer.util,
                                 progress=progress, cancel=cancel, pump=pump)

    # --- analysis and results ---------------------------------------------------------------------------------
    @staticmethod
    def reporterOptions(engine, serverUrl="", apiKey=None, consent=False):
        """The library's reporter name and options; a server needs an explicit consent."""
        from MedRegionCTLib.slicer_mrml import reporter_for_engine

        return reporter_for_engine(engine, serverUrl, apiKey, consent)

    def analyze(self, volume, labelmap=None, schema="radgenome10", reporter="measurement", reporterOptions=None,
                lesions=True, progress=None, cancel=None, segmentation=None):
        """segment -> measure -> report (MedRegionCTLib.pipeline.analyze); touches no MRML (thread-safe).
        ``segmentation``: the SegmentationChoice when the built-in segmenter runs here (its reason is kept)."""
        from MedRegionCTLib.pipeline import analyze
        from MedRegionCTLib.segment import get_segmenter

        segmenter = get_segmenter("builtin")
        if segmentation is not None and labelmap is None:
            segmenter.selection = segmentation.scope()
        return analyze(volume, segmenter=segmenter, schema=schema, reporter=reporter, labelmap=labelmap,
                       lesions=lesions, progress=progress, cancel=cancel, reporter_options=reporterOptions or {})

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

    def process(self, volumeNode, segmentationSource="auto", schema="radgenome10", engine="measurement",
                progress=None, cancel=None, segmentationNode=None, serverUrl="", apiKey=None, consent=False,
                lesions=True, outputSegmentation=None, outputTable=None, outputReport=None):
        """Run MedRegionCT on ``volumeNode`` (blocking; for scripts). Returns a :class:`MedRegionCTResult`.

        ``segmentationSource``: "auto" (TotalSegmentator when the extension and its weights are installed, else
        the built-in segmenter), "builtin", "totalsegmentator" or "segmentation" (with ``segmentationNode``).
        ``engine``: "measurement" or "server" (with ``serverUrl``, ``apiKey`` and ``consent=True``).
        ``progress(fraction, message)`` and ``cancel`` (a threading.Event / CancelToken) as in MedRegionCTLib.
        """
        reporter, options = self.reporterOptions(engine, serverUrl, apiKey, consent)  # checked before any work
        choice = self.chooseSegmentation(segmentationSource)
        volume, labelmap = self.prepareInputs(volumeNode, choice, segmentationNode, progress=progress, cancel=cancel)
        analysis = self.analyze(volume, labelmap, schema, reporter, options, lesions, progress, cancel, choice)
        return self.writeResults(analysis, volumeNode, outputSegmentation, outputTable, outputReport)

    def processDirectory(self, inputDir, outputDir, workers=1, schema="radgenome10", reporter="measurement",
                         reporterOptions=None, formats=("json", "md", "html"), lesions=True, progress=None,
                         cancel=None, onCase=None, engine="local", scheduler=None, shard=None, retries=1):
        """Every CT in ``inputDir`` into ``outputDir/<case>/`` (MedRegionCTLib.pipeline.batch.run_batch):
        resumable from any machine sharing ``outputDir``, a failed case retried ``retries`` times, failures listed
        in ``outputDir/failures.json``. ``engine``: "local" (``workers`` processes) or "dask" with ``scheduler``
        (a Dask scheduler's address); ``shard``: "i/N" for one part of the folder. No scene nodes are created."""
        from MedRegionCTLib.pipeline.batch import run_batch

        return run_batch(inputDir, outputDir, workers=workers, schema=schema, reporter=reporter, formats=formats,
                         lesions=lesions, reporter_options=reporterOptions or {}, progress=progress, cancel=cancel,
                         on_case=onCase, engine=engine, scheduler=scheduler, shard=shard, retries=retries)


class MedRegionCTTest(ScriptedLoadableModuleTest):
    """The whole module inside Slicer on the tiny synthetic phantom (no weights, no network): the widget's Apply
    with the built-in segmenter, the scene's nodes, the report panel's paragraphs, one job at a time, consent,
    leaving the module during a run, a scene close during a run, cancel, and the dock removed on cleanup."""

    def setUp(self):
        slicer.mrmlScene.Clear()

    def runTest(self):
        if UNSUPPORTED:
            self.skipTest(UNSUPPORTED)
        self.setUp()
        self.test_WholeModuleOnPhantom()
        self.setUp()
        self.test_CancelAndSceneClose()

    def _widget(self):
        slicer.util.selectModule("MedRegionCT")
        return slicer.modules.medregionct.widgetRepresentation().self().gui

    def _phantom(self):
        from MedRegionCTLib import slicer_mrml
        from MedRegionCTLib.phantom import make_phantom

        phantom = make_phantom("tiny", seed=1)
        return phantom, slicer_mrml.volume_to_node(phantom.volume, scene=slicer.mrmlScene, name="Phantom CT")

    def _waitUntilIdle(self, gui, seconds=600):
        import time

        end = time.time() + seconds
        while gui.controller.busy and time.time() < end:
            slicer.app.processEvents()
            time.sleep(0.05)
        self.assertFalse(gui.controller.busy, "the run did not finish in time")

    def test_WholeModuleOnPhantom(self):
        import tempfile

        from MedRegionCTGui.install import ensureRequirements

        from MedRegionCTLib import slicer_mrml
        from MedRegionCTLib.anatomy import load_schema
        from MedRegionCTLib.errors import InputError
        from MedRegionCTLib.report import Report
        from MedRegionCTLib.slicer_mrml.requirements import CORE

        ensureRequirements(CORE, "the MedRegionCT self-test", confirm=False)
        self.delayDisplay("Building the tiny phantom")
        phantom, volumeNode = self._phantom()
        gui = self._widget()
        p = gui._parameterNode
        p.inputVolume, p.segmentationSource, p.engine = volumeNode, "builtin", "measurement"
        self.assertTrue(gui.ui.applyButton.enabled)
        gui.ui.applyButton.click()
        self.assertTrue(gui.controller.busy and not gui.ui.applyButton.enabled and gui.ui.cancelButton.visible)
        with self.assertRaises(InputError):  # one job at a time
            gui.controller.start("connection")
        self.assertFalse(gui.ui.testConnectionButton.enabled)
        slicer.util.selectModule("Data")  # leaving the module during the run must not lose the result
        self._waitUntilIdle(gui)
        slicer.util.selectModule("MedRegionCT")
        last = gui.controller.last
        self.assertIsNotNone(last, gui.ui.statusLabel.text)
        schema = load_schema("radgenome10")
        segmentationNode = slicer.mrmlScene.GetNodeByID(last.segmentation_id)
        self.assertEqual(segmentationNode.GetSegmentation().GetNumberOfSegments(), len(schema.regions))
        tableNode = slicer.mrmlScene.GetNodeByID(last.table_id)
        self.assertEqual(tableNode.GetNumberOfRows(), len(last.measurements.to_rows()))
        reportNode = slicer.mrmlScene.GetNodeByID(last.report_id)
        self.assertEqual(slicer_mrml.report_from_text_node(reportNode).to_json(), last.report.to_json())
        self.assertEqual(p.outputSegmentation, segmentationNode)
        self.delayDisplay("Report panel")
        paragraphs = gui.panel.paragraphs()
        self.assertIn("Segmentation: built-in segmenter: chosen by the user", paragraphs[0])
        for region in last.report.regions:  # one paragraph per region, as written in the report
            self.assertTrue([line for line in paragraphs if f"{region.name}: {region.paragraph}".strip() in line],
                            region.name)
        point = gui.panel.centerOnRegion("lung")
        lung = slicer_mrml.region_masks_from_segmentation(segmentationNode, phantom.volume)["lung"]
        ijk = tuple(int(round(v)) for v in phantom.volume.world_to_index(point))
        self.assertTrue(lung[ijk])
        with tempfile.TemporaryDirectory() as folder:
            gui.panel.exportTo(os.path.join(folder, "report.json"))
            self.assertEqual(Report.load(os.path.join(folder, "report.json")).to_json(), last.report.to_json())
            gui.panel.exportTo(os.path.join(folder, "report.html"))
            with open(os.path.join(folder, "report.html"), encoding="utf-8") as page:
                self.assertIn("data:image/png;base64", page.read())
        self.delayDisplay("Consent is reset after a run and when the URL changes")
        gui.ui.serverUrlLineEdit.text = "https://gpu.example.org:8750"
        gui.ui.consentCheckBox.checked = True
        self.assertTrue(gui.controller.consent)
        gui.ui.serverUrlLineEdit.text = "https://other.example.org:8750"
        self.assertFalse(gui.controller.consent or gui.ui.consentCheckBox.checked)
        self.delayDisplay("Cleanup removes the dock")
        dock = gui.panel.dock
        gui.cleanup()
        mainWindow = slicer.util.mainWindow()
        if mainWindow:
            self.assertNotIn(dock, mainWindow.findChildren("QDockWidget"))
        slicer.util.reloadScriptedModule("MedRegionCT")

    def test_CancelAndSceneClose(self):
        _phantom, volumeNode = self._phantom()
        gui = self._widget()
        p = gui._parameterNode
        p.inputVolume, p.segmentationSource = volumeNode, "builtin"
        n = slicer.mrmlScene.GetNumberOfNodes()
        gui.ui.applyButton.click()
        gui.ui.cancelButton.click()
        self._waitUntilIdle(gui)
        self.assertIn("Cancelled", gui.ui.statusLabel.text)
        self.assertEqual(slicer.mrmlScene.GetNumberOfNodes(), n)  # nothing half-written
        gui.ui.applyButton.click()
        slicer.mrmlScene.Clear()  # the scene closes during the run: its result must go nowhere
        self._waitUntilIdle(gui)
        self.assertIsNone(gui.controller.last)
        self.assertEqual(slicer.mrmlScene.GetNumberOfNodesByClass("vtkMRMLSegmentationNode"), 0)
        self.delayDisplay("Test passed")
