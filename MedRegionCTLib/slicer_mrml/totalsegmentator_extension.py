"""Driving the TotalSegmentator Slicer extension (``TotalSegmentatorLogic``) through its real API.

- :func:`process_options`: the keyword arguments for the installed extension's ``process``, chosen from its
  signature: ``quality=`` (since February 2026: ``process(inputVolume, outputSegmentation, quality=None,
  cpu=False, task=None, subset=None, interactive=False, sequenceBrowserNode=None)``), or ``fast=`` (and
  ``fastest=`` where present) in older releases.
- :func:`lesion_tasks`: the lesion tasks (``lung_nodules``, ``pleural_pericard_effusion``) the installed
  extension offers.
- :func:`readiness`: whether the extension, its Python package and its weights are installed (and why not).
- :func:`run_extension`: runs ``process`` once per task into scratch segmentation nodes, turns them into one
  label map on the CT grid, and removes every node it created, whether the run succeeds, fails or is
  cancelled. The extension runs TotalSegmentator as a console process and reads its output line by line,
  handing each line to ``logic.logCallback``: that is where progress is read (tqdm percentages), where the GUI
  is kept responsive (``pump``, e.g. ``slicer.app.processEvents``) and where a cancel kills the process (found
  through ``launcher``, the object whose ``launchConsoleProcess`` the extension calls, ``slicer.util``).
"""

from __future__ import annotations

import inspect
import re
from contextlib import contextmanager

from ..errors import CancelledError, InputError
from ..progress import is_cancelled

LESION_TASKS = ("lung_nodules", "pleural_pericard_effusion")
QUALITIES = ("full", "fast", "fastest")
_PERCENT = re.compile(r"(\d{1,3})%\|")


def process_options(process, quality: str = "fast", cpu: bool = False, task: str = "total",
                    fast_supported: bool = True, fastest_supported: bool = False) -> dict:
    """Keyword arguments for ``logic.process`` that its signature accepts.

    ``quality``: "full" (1.5 mm), "fast" (3 mm) or "fastest" (6 mm); tasks without the reduced models run at
    full quality. Raises InputError when the signature takes neither ``quality`` nor ``fast``.
    """
    if quality not in QUALITIES:
        raise InputError(f"unknown TotalSegmentator quality {quality!r}; use {', '.join(QUALITIES)}.")
    if quality == "fastest" and not fastest_supported:
        quality = "fast"
    if quality == "fast" and not fast_supported:
        quality = "full"
    params = inspect.signature(process).parameters
    options = {"task": task, "interactive": False}
    if "cpu" in params:
        options["cpu"] = bool(cpu)
    if "quality" in params:
        options["quality"] = None if quality == "full" else quality
    elif "fast" in params:
        options["fast"] = quality != "full"
        if "fastest" in params:
            options["fastest"] = quality == "fastest"
            options["fast"] = quality == "fast"
    else:
        raise InputError("the installed TotalSegmentator extension's process() takes neither quality= nor fast=; "
                         "update the TotalSegmentator extension in the Extensions Manager.")
    options = {k: v for k, v in options.items() if k in params}
    required = [p for p in params.values() if p.default is p.empty and p.kind in (p.POSITIONAL_ONLY,
                                                                                    p.POSITIONAL_OR_KEYWORD)]
    inspect.signature(process).bind(*[None] * len(required), **options)  # fails here, not inside the extension
    return options


def lesion_tasks(logic) -> list[str]:
    """The lesion tasks the installed extension lists in its ``tasks`` table."""
    tasks = getattr(logic, "tasks", {}) or {}
    return [t for t in LESION_TASKS if t in tasks]


def task_flag(logic, method: str, task: str, default: bool = False) -> bool:
    check = getattr(logic, method, None)
    if check is None:
        return default
    try:
        return bool(check(task))
    except Exception:  # an older extension whose table lacks the key
        return default


def readiness(import_extension, weights_dir=None, fast: bool = True) -> tuple[bool, str]:
    """``(ready, why)``: can TotalSegmentator run through the extension without installing or downloading
    anything? ``import_extension()`` returns the extension's module (raises ImportError when absent)."""
    from ..segment.totalsegmentator import missing_weights, totalsegmentator_installed, totalsegmentator_weights_dir

    try:
        import_extension()
    except ImportError:
        return False, "the TotalSegmentator extension is not installed"
    if not totalsegmentator_installed():
        return False, ("the TotalSegmentator extension's Python packages are not installed yet (choose "
                       "TotalSegmentator as the source once to install them)")
    folder = weights_dir or totalsegmentator_weights_dir()
    missing = missing_weights(["total"], fast=fast, weights_dir=folder)
    if missing:
        ids = ", ".join(f"Dataset{i:03d}" for i in missing["total"])
        return False, f"TotalSegmentator's weights for task 'total' ({ids}) are not in {folder}"
    return True, f"the TotalSegmentator extension, its Python package and its weights (in {folder}) are installed"


def progress_of_line(line: str) -> float | None:
    """The fraction a tqdm line shows ("  45%|####  | 9/20 ...") or None."""
    hits = _PERCENT.findall(line or "")
    return min(int(hits[-1]), 100) / 100.0 if hits else None


@contextmanager
def watched_processes(launcher):
    """Record every process ``launcher.launchConsoleProcess`` starts while inside, so that a cancel can stop it;
    the launcher is restored on exit."""
    started = []
    original = launcher.launchConsoleProcess

    def launch(*args, **kwargs):
        proc = original(*args, **kwargs)
        started.append(proc)
        return proc

    launcher.launchConsoleProcess = launch
    try:
        yield started
    finally:
        launcher.launchConsoleProcess = original


def _kill(processes) -> None:
    for proc in processes:
        if proc.poll() is None:
            proc.kill()


def run_extension(logic, volume_node, grid, tasks, options_for_task, scene, launcher, progress=None, cancel=None,
                  pump=None):
    """Run the extension's ``process`` for each of ``tasks`` and return one LabelMap on ``grid`` (the CT
    Volume of ``volume_node``), the later tasks' lesion classes painted over the first task's.

    ``options_for_task(task)`` gives ``process``'s keyword arguments (see :func:`process_options`).
    Every segmentation node created here is removed before returning or raising; a cancel raises
    :class:`CancelledError` after killing TotalSegmentator's process.
    """
    from ..segment.totalsegmentator import _task, merge_task_outputs
    from .segmentations import segmentation_to_labelmap

    if not tasks:
        raise InputError("no TotalSegmentator task given; pass at least 'total'.")
    created = []
    previous_callback = getattr(logic, "logCallback", None)
    previous_names = getattr(logic, "useStandardSegmentNames", None)
    state = {"task": 0, "processes": []}

    def on_line(text):
        if previous_callback is not None:
            previous_callback(text)
        if is_cancelled(cancel):
            _kill(state["processes"])
        fraction = progress_of_line(text)
        if progress is not None:
            within = fraction if fraction is not None else 0.0
            message = f"TotalSegmentator {tasks[state['task']]}" + (f": {text.strip()[:60]}" if text else "")
            progress((state["task"] + within) / len(tasks), message)
        if pump is not None:
            pump()

    result = None
    try:
        if hasattr(logic, "useStandardSegmentNames"):
            logic.useStandardSegmentNames = False  # segment names = TotalSegmentator class names
        logic.logCallback = on_line
        with watched_processes(launcher) as processes:
            state["processes"] = processes
            for index, task in enumerate(tasks):
                state["task"] = index
                if is_cancelled(cancel):
                    raise CancelledError("TotalSegmentator was cancelled; the scene was left as it was.")
                node = scene.AddNewNodeByClass("vtkMRMLSegmentationNode",
                                               scene.GenerateUniqueName(f"TotalSegmentator {task}"))
                created.append(node)
                try:
                    logic.process(volume_node, node, **options_for_task(task))
                except Exception as error:
                    if is_cancelled(cancel):
                        raise CancelledError("TotalSegmentator was cancelled; the scene was left as it "
                                             "was.") from None
                    raise InputError(f"TotalSegmentator task {task} failed ({error}); see the Python console "
                                     "log, or choose the built-in segmenter.") from error
                labels = segmentation_to_labelmap(node, grid)
                labels.meta["source"] = f"TotalSegmentator extension, task {task}"
                result = labels if result is None else merge_task_outputs(
                    result, labels, overwrite=_task(task).get("overwrite", ()))
        if is_cancelled(cancel):
            raise CancelledError("TotalSegmentator was cancelled; the scene was left as it was.")
    finally:
        logic.logCallback = previous_callback
        if previous_names is not None:
            logic.useStandardSegmentNames = previous_names
        for node in created:
            if node.GetScene() is not None:
                scene.RemoveNode(node)
    result.meta["tasks"] = list(tasks)
    return result
