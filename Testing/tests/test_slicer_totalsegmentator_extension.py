"""Driving the TotalSegmentator Slicer extension: keyword arguments from its real process() signatures, lesion
tasks where offered, progress from its log lines, cancel that kills its console process, and no node left behind
when it fails or is cancelled.

The extension itself needs the Slicer application, so its logic is played by stand-ins with the real
signatures of the releases before and after February 2026, which do what the real one does: write the CT,
launch TotalSegmentator as a console process through ``launchConsoleProcess``, hand each output line to
``logCallback``, raise CalledProcessError on a non-zero exit, then fill the output segmentation. The scene,
nodes and conversions are the real MRML classes (slicer-core); the console process is a real process.
"""

import subprocess
import sys
import threading
import time
from types import SimpleNamespace

import numpy as np
import pytest

slicer = pytest.importorskip("slicer", reason="needs the MRML classes: pip install -e '.[test]' (slicer-core)")

from MedRegionCTLib import slicer_mrml as sm  # noqa: E402
from MedRegionCTLib.anatomy import LabelTable  # noqa: E402
from MedRegionCTLib.errors import CancelledError, InputError  # noqa: E402
from MedRegionCTLib.progress import CancelToken  # noqa: E402
from MedRegionCTLib.slicer_mrml import totalsegmentator_extension as tse  # noqa: E402
from MedRegionCTLib.volume import LabelMap, Volume  # noqa: E402

IDX = LabelTable.default().index
AFFINE = np.array([[-2.0, 0, 0, 40.0], [0, -2.0, 0, 30.0], [0, 0, 2.5, -20.0], [0, 0, 0, 1]])
# a console program that prints tqdm-like lines, as TotalSegmentator does, then exits with the given code
CONSOLE = "import sys, time\nfor i in range(1, 6):\n    print(f' {i * 20}%|##| {i}/5', flush=True)\n" \
          "    time.sleep(float(sys.argv[1]))\nsys.exit(int(sys.argv[2]))\n"


class _Extension:
    """What every TotalSegmentatorLogic does around process(); subclasses carry the real signatures."""

    tasks = {"total": {}, "lung_nodules": {}, "pleural_pericard_effusion": {}, "lung_vessels": {}}

    def __init__(self, launcher, scene, labels_per_task, delay=0.0, exit_code=0):
        self.launcher, self.scene, self.labels_per_task = launcher, scene, labels_per_task
        self.delay, self.exit_code = delay, exit_code
        self.logCallback = None
        self.useStandardSegmentNames = True
        self.calls = []

    def log(self, text):
        if self.logCallback:
            self.logCallback(text)

    def _run(self, volume, segmentation, task, **options):
        self.calls.append({"task": task, **options, "standard_names": self.useStandardSegmentNames})
        proc = self.launcher.launchConsoleProcess([sys.executable, "-c", CONSOLE, str(self.delay),
                                                   str(self.exit_code)])
        while True:  # the extension's logProcessOutput
            line = proc.stdout.readline()
            if not line:
                break
            self.log(line.rstrip())
        proc.wait()
        if proc.returncode != 0:
            raise subprocess.CalledProcessError(proc.returncode, proc.args)
        seg = segmentation.GetSegmentation()
        for name, mask in self.labels_per_task[task].items():
            node = sm.volume_to_node(LabelMap(mask.astype(np.uint8), AFFINE, {1: name}), scene=self.scene,
                                     name=name)
            before = seg.GetNumberOfSegments()
            slicer.vtkSlicerSegmentationsModuleLogic.ImportLabelmapToSegmentationNode(node, segmentation)
            seg.GetSegment(seg.GetNthSegmentID(before)).SetName(name)
            self.scene.RemoveNode(node)


class ExtensionSince2026(_Extension):
    def process(self, inputVolume, outputSegmentation, quality=None, cpu=False, task=None, subset=None,
                interactive=False, sequenceBrowserNode=None):
        self._run(inputVolume, outputSegmentation, task, quality=quality, cpu=cpu, interactive=interactive)


class ExtensionFebruary2026(_Extension):  # PR #81: fastest= beside fast=
    def process(self, inputVolume, outputSegmentation, fast=True, cpu=False, task=None, subset=None,
                interactive=False, sequenceBrowserNode=None, fastest=False, robustCrop=False,
                removeSmallBlobs=False, higherOrderResampling=False, statistics=False):
        self._run(inputVolume, outputSegmentation, task, fast=fast, fastest=fastest, cpu=cpu)


class ExtensionBefore2026(_Extension):
    def process(self, inputVolume, outputSegmentation, fast=True, cpu=False, task=None, subset=None,
                interactive=False, sequenceBrowserNode=None):
        self._run(inputVolume, outputSegmentation, task, fast=fast, cpu=cpu)


def _launcher():
    def launch(args, **_):
        return subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)

    return SimpleNamespace(launchConsoleProcess=launch)


def test_options_follow_the_installed_signature():
    """Defect: the module called process(..., fast=...), which raises TypeError since February 2026."""
    new = ExtensionSince2026.process
    assert tse.process_options(new, "fast", cpu=True, task="total") == {
        "task": "total", "interactive": False, "cpu": True, "quality": "fast"}
    assert tse.process_options(new, "full")["quality"] is None
    assert tse.process_options(new, "fastest", fastest_supported=True)["quality"] == "fastest"
    assert tse.process_options(new, "fastest", fastest_supported=False)["quality"] == "fast"
    assert tse.process_options(new, "fast", task="lung_nodules", fast_supported=False)["quality"] is None
    old = ExtensionBefore2026.process
    assert tse.process_options(old, "fast") == {"task": "total", "interactive": False, "cpu": False, "fast": True}
    assert "quality" not in tse.process_options(old, "full") and tse.process_options(old, "full")["fast"] is False
    feb = ExtensionFebruary2026.process
    assert tse.process_options(feb, "fastest", fastest_supported=True) | {} == {
        "task": "total", "interactive": False, "cpu": False, "fast": False, "fastest": True}
    for process in (new, old, feb):  # every set of options binds to its signature
        import inspect

        inspect.signature(process).bind(None, None, None, **tse.process_options(process, "fast"))

    def unknown(self, inputVolume, outputSegmentation, speed=1):
        pass

    with pytest.raises(InputError, match="update the TotalSegmentator extension"):
        tse.process_options(unknown, "fast")
    with pytest.raises(InputError, match="unknown TotalSegmentator quality"):
        tse.process_options(new, "best")


def test_lesion_tasks_where_offered():
    assert tse.lesion_tasks(SimpleNamespace(tasks={"total": {}, "lung_nodules": {}})) == ["lung_nodules"]
    assert tse.lesion_tasks(ExtensionSince2026) == ["lung_nodules", "pleural_pericard_effusion"]
    assert tse.lesion_tasks(SimpleNamespace()) == []


def test_progress_of_tqdm_lines():
    assert tse.progress_of_line(" 45%|####      | 9/20 [00:03<00:04]") == pytest.approx(0.45)
    assert tse.progress_of_line("Predicting 100%|##########| 20/20") == 1.0
    assert tse.progress_of_line("Resampling...") is None and tse.progress_of_line("") is None


def _case(scene):
    shape = (24, 20, 16)
    hu = np.full(shape, -800, np.int16)
    volume = Volume(hu, AFFINE)
    node = sm.volume_to_node(volume, scene=scene, name="CT")
    heart = np.zeros(shape, bool)
    heart[8:16, 6:14, 4:12] = True
    lung = np.zeros(shape, bool)
    lung[1:7, 2:18, 2:14] = True
    nodule = np.zeros(shape, bool)
    nodule[2:4, 5:7, 5:7] = True
    labels = {"total": {"heart": heart, "lung_upper_lobe_left": lung}, "lung_nodules": {"lung_nodules": nodule}}
    return volume, node, labels


@pytest.mark.parametrize("cls", [ExtensionSince2026, ExtensionBefore2026])
def test_run_merges_tasks_reports_progress_and_leaves_no_scratch_node(cls):
    scene = slicer.vtkMRMLScene()
    volume, node, labels = _case(scene)
    logic = cls(_launcher(), scene, labels)
    seen, pumped = [], []
    before = scene.GetNumberOfNodesByClass("vtkMRMLSegmentationNode")
    result = tse.run_extension(
        logic, node, volume, ["total", "lung_nodules"],
        lambda task: tse.process_options(logic.process, "fast", task=task, fast_supported=task == "total"),
        scene, logic.launcher, progress=lambda f, m: seen.append((f, m)), pump=lambda: pumped.append(1))
    assert scene.GetNumberOfNodesByClass("vtkMRMLSegmentationNode") == before
    assert [c["task"] for c in logic.calls] == ["total", "lung_nodules"]
    assert all(c["standard_names"] is False for c in logic.calls) and logic.useStandardSegmentNames is True
    assert logic.logCallback is None  # restored
    np.testing.assert_array_equal(result.mask("heart"), labels["total"]["heart"])
    np.testing.assert_array_equal(result.mask("lung_nodules"), labels["lung_nodules"]["lung_nodules"])
    lung = labels["total"]["lung_upper_lobe_left"] & ~labels["lung_nodules"]["lung_nodules"]
    np.testing.assert_array_equal(result.mask("lung_upper_lobe_left"), lung)  # the nodule overwrote the lobe
    assert result.meta["tasks"] == ["total", "lung_nodules"] and result.same_grid(volume)
    fractions = [f for f, _ in seen]
    assert fractions == sorted(fractions) and fractions[-1] == pytest.approx(1.0)
    assert 0.45 < fractions[len(fractions) // 2] < 0.75 and len(pumped) == len(seen) >= 10


def test_failure_removes_partial_nodes():
    """Defect: a failed TotalSegmentator run left an orphan segmentation node in the scene."""
    scene = slicer.vtkMRMLScene()
    volume, node, labels = _case(scene)
    logic = ExtensionSince2026(_launcher(), scene, labels, exit_code=3)
    n = scene.GetNumberOfNodes()
    with pytest.raises(InputError, match="TotalSegmentator task total failed"):
        tse.run_extension(logic, node, volume, ["total"], lambda t: tse.process_options(logic.process, "fast"),
                          scene, logic.launcher)
    assert scene.GetNumberOfNodes() == n and logic.logCallback is None


def test_cancel_kills_the_console_process_and_removes_partial_nodes():
    scene = slicer.vtkMRMLScene()
    volume, node, labels = _case(scene)
    logic = ExtensionSince2026(_launcher(), scene, labels, delay=2.0)
    cancel = CancelToken()
    n = scene.GetNumberOfNodes()
    started = []
    launcher = logic.launcher
    original = launcher.launchConsoleProcess

    def launch(args, **kw):
        proc = original(args, **kw)
        started.append(proc)
        return proc

    launcher.launchConsoleProcess = launch
    threading.Timer(0.5, cancel.set).start()
    t0 = time.perf_counter()
    with pytest.raises(CancelledError):
        # the cancel is seen at the next line the extension hands over (the console prints one every 2 s)
        tse.run_extension(logic, node, volume, ["total", "lung_nodules"],
                          lambda t: tse.process_options(logic.process, "fast"), scene, launcher, cancel=cancel)
    elapsed = time.perf_counter() - t0
    assert elapsed < 6.0  # the console process would have run 10 s
    assert len(started) == 1 and started[0].poll() is not None and started[0].returncode != 0
    assert scene.GetNumberOfNodes() == n and launcher.launchConsoleProcess is launch  # launcher restored


def test_readiness_says_why(tmp_path, monkeypatch):
    def missing():
        raise ImportError("No module named 'TotalSegmentator'")

    assert tse.readiness(missing) == (False, "the TotalSegmentator extension is not installed")
    import importlib.util

    if importlib.util.find_spec("totalsegmentator") is None:
        ready, why = tse.readiness(lambda: object(), weights_dir=tmp_path)
        assert not ready and "Python packages are not installed yet" in why
