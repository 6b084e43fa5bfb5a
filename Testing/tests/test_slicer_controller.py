"""The Slicer module's Qt-free controller (job ownership, buttons, consent, segmentation choice, last result) and
its dependency check. Each test names the defect it guards against."""

import subprocess
import sys
from types import SimpleNamespace

import numpy as np
import pytest

from MedRegionCTLib.errors import InputError, MissingDependencyError
from MedRegionCTLib.slicer_mrml.controller import ModuleController, Outputs
from MedRegionCTLib.slicer_mrml.requirements import CORE, install_plan, unmet

URL = "https://gpu.example.org:8750"


def test_one_job_at_a_time_and_cancel_reaches_the_running_job():
    """Defect: 'Test connection' could start during a run and replace the job that Cancel controls; a second
    Apply overwrote the pending run's nodes."""
    c = ModuleController()
    c.set_server_url(URL)
    run = c.start("analysis", Outputs("vtkMRMLScalarVolumeNode1", "seg1", "table1", "text1"))
    for kind in ("connection", "analysis", "batch"):
        with pytest.raises(InputError, match="the region report is still running"):
            c.start(kind)
    assert c.job is run and run.outputs.segmentation_id == "seg1"
    state = c.gui_state(has_volume=True, source="builtin", has_segmentation=False, engine="server")
    assert not state.apply_enabled and not state.test_connection_enabled and not state.batch_enabled
    assert state.cancel_visible and "running" in state.apply_tooltip
    assert c.cancel() and run.cancel.is_set()
    assert c.finish(run) is False  # cancelled: its result is not used
    assert c.job is None and c.cancel() is False
    test = c.start("connection")
    assert c.finish(test) is True and not c.busy


def test_a_stale_job_cannot_finish_the_current_one():
    c = ModuleController()
    first = c.start("analysis", Outputs("v1"))
    c.cancel()
    assert c.finish(first) is False
    second = c.start("analysis", Outputs("v1"))
    assert c.finish(first) is False and c.job is second  # the old job's late end changes nothing
    assert c.finish(second) is True


def test_leaving_the_module_keeps_the_run_and_its_outputs():
    """Defect: leaving the module set the parameter node to None and the result handler then failed after
    creating the nodes. The run's outputs are fixed at start, independent of any parameter node."""
    c = ModuleController()
    run = c.start("analysis", Outputs("v1", "", "", ""))
    # nothing about leaving the module touches the controller: the run and its outputs stay
    assert c.job is run and c.finish(run) is True and run.outputs.volume_id == "v1"


def test_scene_close_discards_the_running_job_and_the_last_result():
    c = ModuleController()
    c.last = object()
    run = c.start("analysis", Outputs("v1"))
    c.scene_closing()
    assert run.cancel.is_set() and run.discarded and c.last is None
    assert c.finish(run) is False  # its nodes went with the scene: the result goes nowhere


def test_consent_is_reset_after_each_run_and_when_the_url_changes():
    """Defect: the consent box stayed ticked across runs and server URLs."""
    c = ModuleController()
    c.set_server_url(URL)
    c.set_consent(True)
    assert c.reporter("server", "key") == (f"server:{URL}", {"api_key": "key"})
    run = c.start("analysis", Outputs("v1"))
    c.finish(run)
    assert not c.consent
    with pytest.raises(InputError, match="consent"):
        c.reporter("server", "key")
    c.set_consent(True)
    assert c.set_server_url(URL + " ") is False and c.consent  # same URL: consent stays
    assert c.set_server_url("https://other.example.org") is True and not c.consent
    c.set_consent("yes")  # only True counts
    assert not c.consent
    c.set_consent(True)
    failed = c.start("analysis", Outputs("v1"))
    failed.cancel.set()
    c.finish(failed)
    assert not c.consent  # a failed or cancelled run uses it up too
    assert c.gui_state(True, "builtin", False, "server").consent_checked is False


def test_button_states():
    c = ModuleController()
    s = c.gui_state(has_volume=False, source="auto", has_segmentation=False, engine="measurement")
    assert not s.apply_enabled and s.apply_tooltip == "Select a CT volume first."
    assert not s.server_frame_visible and not s.segmentation_selector_visible and not s.show_report_enabled
    s = c.gui_state(has_volume=True, source="segmentation", has_segmentation=False, engine="server")
    assert not s.apply_enabled and s.segmentation_selector_visible and s.server_frame_visible
    assert not s.test_connection_enabled  # no URL yet
    s = c.gui_state(has_volume=True, source="segmentation", has_segmentation=True, engine="measurement")
    assert s.apply_enabled and s.batch_enabled and not s.cancel_visible


def test_auto_segmentation_picks_the_best_engine_and_says_why():
    c = ModuleController()
    choice = c.choose_segmentation("auto", (True, "the TotalSegmentator extension ... are installed"))
    assert choice.source == "totalsegmentator" and choice.reason.startswith("best engine available")
    choice = c.choose_segmentation("auto", (False, "the TotalSegmentator extension is not installed"))
    assert choice.source == "builtin" and "not installed" in choice.reason
    assert choice.scope() == {"engine": "built-in segmenter", "requested": "auto", "reason": choice.reason}
    assert c.choose_segmentation("totalsegmentator", (False, "x")).reason == "chosen by the user"
    with pytest.raises(InputError, match="unknown segmentation source"):
        c.choose_segmentation("magic", (True, ""))


def test_last_result_holds_no_full_grid_arrays():
    """Defect: the last result kept every full-grid array for the whole session."""
    from MedRegionCTLib.anatomy import load_schema
    from MedRegionCTLib.anatomy.regions import RegionMask

    schema = load_schema("radgenome10")
    big = np.ones((64, 64, 64), bool)
    analysis = SimpleNamespace(volume=SimpleNamespace(array=np.zeros((64, 64, 64), np.int16)),
                               labelmap=SimpleNamespace(array=np.zeros((64, 64, 64), np.uint16)),
                               regions=[RegionMask(r, big) for r in schema.regions[:2]],
                               report="report", measurements="measurements")

    class Node:
        def __init__(self, node_id):
            self.node_id = node_id

        def GetID(self):
            return self.node_id

    nodes = SimpleNamespace(volumeNode=Node("v"), segmentationNode=Node("s"), tableNode=Node("t"),
                            reportNode=Node("r"))
    c = ModuleController()
    last = c.keep_result(analysis, nodes)
    assert (last.volume_id, last.segmentation_id, last.table_id, last.report_id) == ("v", "s", "t", "r")
    assert set(last.colors) == {r.key for r in schema.regions[:2]}
    assert not [k for k, v in vars(last).items() if isinstance(v, np.ndarray) or hasattr(v, "array")]
    assert c.gui_state(True, "auto", False, "measurement").show_report_enabled


# --- dependencies ------------------------------------------------------------------------------------------------
def test_only_missing_or_too_old_packages_are_installed():
    """Defect: the module ran `pip install MedRegionCTLib` (a name not on any index) and never checked versions."""
    assert unmet(CORE) == []  # the test environment has the core
    needed = unmet({"numpy": "numpy>=999", "tqdm": "tqdm>=4.60", "no_such_module_xyz": "no-such-dist-xyz>=1"})
    assert [n.requirement for n in needed] == ["numpy>=999", "no-such-dist-xyz>=1"]
    assert needed[0].installed == np.__version__ and needed[1].installed is None
    assert str(needed[0]).startswith("numpy>=999 (installed: ")
    assert install_plan({"tqdm": "tqdm>=4.60", "no_such_module_xyz": "no-such-dist-xyz>=1"}) == [
        "no-such-dist-xyz>=1"]
    for name, spec in (("MedRegionCTLib", "MedRegionCTLib>=999"), ("torch", "torch>=999"),
                       ("SimpleITK", "SimpleITK>=999")):
        with pytest.raises(MissingDependencyError, match="does not install"):
            install_plan({name: spec})


def test_core_requirements_match_pyproject():
    import re
    from pathlib import Path

    try:
        import tomllib
    except ModuleNotFoundError:  # Python 3.10
        tomllib = pytest.importorskip("tomli")
    root = Path(__file__).resolve().parents[2]
    core = tomllib.loads((root / "pyproject.toml").read_text(encoding="utf-8"))["project"]["dependencies"]
    assert sorted(re.sub(r"\s+", "", s).lower() for s in CORE.values()) == sorted(
        re.sub(r"\s+", "", s).lower() for s in core)


def test_requirements_and_controller_import_without_numpy():
    """The module checks dependencies before numpy is installed into Slicer's Python."""
    code = ("import sys; sys.modules['numpy'] = None\n"
            "from MedRegionCTLib.slicer_mrml import requirements, controller\n"
            "print(requirements.unmet({'numpy': 'numpy>=1.24'}) is not None)")
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert run.returncode == 0 and run.stdout.strip() == "True", run.stderr
