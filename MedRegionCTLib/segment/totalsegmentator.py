"""TotalSegmentator: run it through its Python API, or read outputs it already wrote.

Running needs the ``TotalSegmentator`` package (with PyTorch) and its weights in TotalSegmentator's own
weights folder (``TOTALSEG_WEIGHTS_PATH``, else ``TOTALSEG_HOME_DIR/nnunet/results``, else
``~/.totalsegmentator/nnunet/results``). The adapter checks both before it starts and never lets
TotalSegmentator download anything: missing pieces are one error that says what to install or fetch.

Reading handles the three shapes TotalSegmentator leaves on disk:

- a multi-label NIfTI whose header extension carries the label names (TotalSegmentator's ``--ml``;
  ``nifti_ext_header.add_label_map_to_nifti`` writes a CaretExtension XML ``LabelTable``);
- a multi-label NIfTI without names (indices of the task given, ``total`` by default);
- a folder of per-class ``<class name>.nii.gz`` binary masks (TotalSegmentator's default output).

Every result is a :class:`LabelMap` in this project's indices (``data/totalsegmentator_classes.json``); names
outside that table are kept at indices from 1000 and listed in ``meta["unknown_names"]``.
"""

from __future__ import annotations

import importlib.util
import json
import os
import tempfile
import xml.etree.ElementTree as ET
from collections.abc import Iterable, Mapping
from functools import lru_cache
from pathlib import Path

import numpy as np

from ..anatomy import LabelTable, normalize_name, paint_label, present_labels
from ..data import load_json
from ..errors import InputError, MissingDependencyError
from ..progress import ProgressCallback, Steps
from ..volume import LabelMap, Volume
from ..volume.nifti import is_nifti_path, nifti_stem

DEFAULT_TASKS = ("total",)
EXTRA_CHEST_TASKS = ("lung_vessels", "trunk_cavities", "pleural_pericard_effusion", "lung_nodules", "breasts")
LESION_TASKS = ("lung_nodules", "pleural_pericard_effusion")  # run by default when installed with weights


# --- the task table ------------------------------------------------------------------------------------
@lru_cache(maxsize=1)
def _task_data() -> dict:
    return load_json("totalsegmentator_tasks.json")


def known_tasks() -> list[str]:
    return list(_task_data()["tasks"])


def _task(task: str) -> dict:
    tasks = _task_data()["tasks"]
    if task not in tasks:
        raise InputError(f"unknown TotalSegmentator task {task!r}; known tasks: {', '.join(tasks)}.")
    return tasks[task]


def native_classes(task: str = "total") -> dict[int, str]:
    """The task's own output indices: ``{index in that task's multi-label file: class name}``."""
    spec = _task(task)
    if "classes_from_project_table" in spec:
        block = load_json("totalsegmentator_classes.json")["tasks"][spec["classes_from_project_table"]]
        return {i + 1: name for i, name in enumerate(block["classes"])}
    return {int(k): v for k, v in spec["classes"].items()}


# --- reading outputs -----------------------------------------------------------------------------------

def parse_label_table_xml(content: bytes | str) -> dict[int, str] | None:
    """``{key: name}`` from a CaretExtension ``LabelTable`` XML (TotalSegmentator's label-name header)."""
    text = content.decode("utf-8", errors="replace") if isinstance(content, bytes) else content
    text = text.strip().strip("\x00").strip()
    if "<LabelTable" not in text:
        return None
    try:
        root = ET.fromstring(text.encode("utf-8"))
    except ET.ParseError:
        return None
    names = {}
    for label in root.iter("Label"):
        key = label.get("Key")
        if key is not None and key.strip().lstrip("-").isdigit() and label.text is not None:
            names[int(key)] = label.text.strip()
    return names or None


def embedded_label_names(path) -> dict[int, str] | None:
    """Label names TotalSegmentator embedded in a NIfTI header extension, or None when there are none."""
    import nibabel as nib

    try:
        header = nib.load(str(path)).header  # lazy: reads the header and extensions, not the voxels
    except Exception:  # not a NIfTI file: the label reader reports that with its own message
        return None
    for extension in getattr(header, "extensions", ()):
        try:
            content = extension.get_content()
        except Exception:  # an extension nibabel cannot decode is not ours
            continue
        if isinstance(content, bytes | str):
            names = parse_label_table_xml(content)
            if names:
                return names
    return None


def _read_label_array(path: Path) -> LabelMap:
    from ..volume import read_labelmap

    # names={} stops the reader from interpreting sidecar files: names are decided here.
    return read_labelmap(path, names={})


def _apply_mapping(name: str, mapping: Mapping[str, str] | None, table: LabelTable) -> str:
    if mapping:
        if name in mapping:
            return mapping[name]
        norm = normalize_name(name)
        for key, value in mapping.items():
            if normalize_name(key) == norm:
                return value
    if name in table:
        return name
    norm = normalize_name(name)
    return norm if norm in table else name


def _finish(array: np.ndarray, affine, table: LabelTable, meta: dict) -> LabelMap:
    names = table.subset(present_labels(array))
    return LabelMap(array, affine, names, meta)


def name_labels(raw: LabelMap, value_names: dict[int, str], mapping, table: LabelTable, **meta) -> LabelMap:
    """Re-index a label image whose values mean ``value_names`` into the project's table.

    Names go through ``mapping`` first; values the names do not cover are kept as ``label_<value>``
    instead of dropping their voxels. ``meta`` tells where the names came from.
    """
    present_values = present_labels(raw.array)
    unnamed = [v for v in present_values if v not in value_names]
    renamed = {v: _apply_mapping(n, mapping, table) for v, n in value_names.items() if v > 0}
    for v in unnamed:
        renamed[v] = f"label_{v}"
    table, added = table.with_names(renamed.values())
    array = table.relabel(raw.array, renamed)
    present_names = {renamed[v] for v in present_values}
    meta.update(
        not_found=sorted({n for n in renamed.values() if n not in present_names}),
        unknown_names=[n for n in added if n in present_names],
        unnamed_values=unnamed,
        renamed={value_names[v]: n for v, n in renamed.items() if v in value_names and value_names[v] != n},
    )
    return _finish(array, raw.affine, table, meta)


def _read_multilabel(path: Path, task: str, mapping, table: LabelTable) -> LabelMap:
    embedded = embedded_label_names(path)
    value_names = embedded if embedded is not None else native_classes(task)
    source = "nifti header extension" if embedded is not None else f"TotalSegmentator task {task!r} indices"
    return name_labels(_read_label_array(path), value_names, mapping, table, source=str(path),
                       reader="totalsegmentator multi-label", names_from=source,
                       task=task if embedded is None else None)


def _folder_files(folder: Path) -> list[Path]:
    files = sorted(p for p in folder.iterdir() if p.is_file() and is_nifti_path(p) and not p.name.startswith("."))
    if not files:
        raise InputError(f"{folder} holds no NIfTI files; give TotalSegmentator's output folder (one "
                         "<class>.nii.gz per class) or its multi-label .nii.gz file.")
    return files


def _read_folder(folder: Path, mapping, table: LabelTable, overwrite: Iterable[str] = ()) -> LabelMap:
    overwrite = set(overwrite)
    entries = []  # (name, path, value or None for binary)
    skipped = {}
    for path in _folder_files(folder):
        if path.name.lower() in ("ct.nii.gz", "ct.nii"):
            skipped[path.name] = "the CT itself"
            continue
        embedded = embedded_label_names(path)
        if embedded:
            for value, name in embedded.items():
                entries.append((_apply_mapping(name, mapping, table), path, value))
        else:
            entries.append((_apply_mapping(nifti_stem(path), mapping, table), path, None))
    # Known TotalSegmentator classes first, in table order, so a voxel claimed by two files keeps the class
    # regions understand (e.g. 'aorta' before 'aorta_true_lumen').
    def order(entry):
        index = table.get_index(entry[0])
        return (0, index, entry[0]) if index is not None else (1, 0, entry[0])

    entries.sort(key=order)
    table, added = table.with_names(e[0] for e in entries)
    reference: LabelMap | None = None
    array = None
    multi: dict[Path, LabelMap] = {}  # multi-label files serve several entries: read them once
    lost: dict[str, int] = {}
    found: set[str] = set()
    for name, path, value in entries:
        if path.name in skipped:
            continue
        try:
            image = multi.get(path) or _read_label_array(path)
        except InputError as error:  # e.g. an image that is not a label map: note it, read the rest
            skipped[path.name] = str(error)
            continue
        if value is not None:
            multi[path] = image
        if reference is None:
            reference = image
            array = np.zeros(image.shape, dtype=np.uint16 if max(table.names) < 65536 else np.uint32)
        elif image.shape != reference.shape or not np.allclose(image.affine, reference.affine, atol=1e-3):
            raise InputError(f"{path.name} is on a different grid ({image.shape}) than {entries[0][1].name} "
                             f"({reference.shape}); a TotalSegmentator output folder holds masks of one CT "
                             "only.")
        if value is None:
            if image.array.size and int(image.array.max()) > 1:
                skipped[path.name] = "several labels and no label names in its header"
                continue
            mask = image.array > 0
        else:
            mask = image.array == value
        if not mask.any():
            continue
        found.add(name)
        n_lost = paint_label(array, mask, table.index(name), overwrite=name in overwrite)
        if n_lost:
            lost[name] = lost.get(name, 0) + n_lost
    listed = {e[0] for e in entries if e[1].name not in skipped}
    meta = {
        "source": str(folder), "reader": "totalsegmentator folder", "names_from": "file names",
        "not_found": sorted(listed - found),
        "unknown_names": [n for n in added if n in found],
        "overlap_voxels_kept_by_earlier_class": lost,
        "skipped_files": skipped,
    }
    return _finish(array, reference.affine, table, meta)


def read_totalsegmentator_output(path, task: str = "total", mapping: Mapping[str, str] | None = None,
                                 table: LabelTable | None = None) -> LabelMap:
    """Read a TotalSegmentator output (multi-label NIfTI or per-class folder) as a project :class:`LabelMap`.

    ``task`` gives the index meaning of a multi-label file without embedded names. ``mapping`` renames
    foreign names (file stems, embedded names) to TotalSegmentator names, e.g. ``{"heart_DERIVED": "heart"}``.
    ``meta["not_found"]`` lists the classes the output names but holds no voxel of.
    """
    path = Path(path).expanduser()
    table = table or LabelTable.default()
    if not path.exists():
        raise InputError(f"{path} does not exist; give TotalSegmentator's output folder or multi-label "
                         ".nii.gz file.")
    if path.is_dir():
        return _read_folder(path, mapping, table)
    if not is_nifti_path(path):
        raise InputError(f"{path.name} is not a NIfTI file; TotalSegmentator writes .nii.gz (a multi-label "
                         "file or a folder of them).")
    return _read_multilabel(path, task, mapping, table)


def merge_task_outputs(base: LabelMap, extra: LabelMap, overwrite: Iterable[str] = ()) -> LabelMap:
    """``extra``'s classes painted into ``base`` (same grid): they fill unlabelled voxels only, except the
    classes in ``overwrite`` (findings such as nodules and effusions), which replace what ``base`` had there.
    """
    if base.shape != extra.shape:
        raise InputError("TotalSegmentator outputs of one CT have different shapes; re-run them on the same "
                         "CT.")
    overwrite = set(overwrite)
    table, _ = LabelTable.default().with_names(list(base.names.values()) + list(extra.names.values()))
    array = table.relabel(base.array, base.names)
    lost: dict[str, int] = {}
    for value, name in sorted(extra.names.items()):
        mask = extra.array == value
        n = paint_label(array, mask, table.index(name), overwrite=name in overwrite)
        if n:
            lost[name] = n

    def both(key):
        return set(base.meta.get(key, [])) | set(extra.meta.get(key, []))

    merged = [*base.meta.get("merged", [base.meta.get("source")]), extra.meta.get("source")]
    meta = {**base.meta, "merged": merged, "unknown_names": sorted(both("unknown_names"))}
    if lost:
        meta["voxels_kept_by_earlier_task"] = lost
    result = _finish(array, base.affine, table, meta)
    # a class one task missed but another found (e.g. 'aorta' in heartchambers_highres) was found
    result.meta["not_found"] = sorted(both("not_found") - set(result.names.values()))
    return result


# --- running TotalSegmentator --------------------------------------------------------------------------
def totalsegmentator_installed() -> bool:
    return importlib.util.find_spec("totalsegmentator") is not None


def totalsegmentator_home() -> Path:
    """TotalSegmentator's settings folder (its own rule: ``TOTALSEG_HOME_DIR`` or ``~/.totalsegmentator``)."""
    if os.environ.get("TOTALSEG_HOME_DIR"):
        return Path(os.environ["TOTALSEG_HOME_DIR"])
    home = Path.home()
    return (Path("/tmp") if str(home) == "/" else home) / ".totalsegmentator"


def totalsegmentator_weights_dir() -> Path:
    """Where TotalSegmentator looks for weights (``TOTALSEG_WEIGHTS_PATH`` or ``<home>/nnunet/results``)."""
    if totalsegmentator_installed():
        try:
            from totalsegmentator.config import get_weights_dir  # the package's own answer when it has one

            return Path(get_weights_dir())
        except Exception:  # older versions without get_weights_dir: same rule as below
            pass
    if os.environ.get("TOTALSEG_WEIGHTS_PATH"):
        return Path(os.environ["TOTALSEG_WEIGHTS_PATH"])
    return totalsegmentator_home() / "nnunet" / "results"


def _has_dataset(weights_dir: Path, dataset_id: int) -> bool:
    if not weights_dir.is_dir():
        return False
    return any(any(weights_dir.glob(f"{prefix}{dataset_id:03d}_*")) for prefix in ("Dataset", "Task"))


def required_weights(task: str, fast: bool = False) -> list[list[int]]:
    """Alternative sets of weight dataset ids the task needs (any one complete set will do)."""
    spec = _task(task)
    main = spec["weights_fast"] if fast and spec.get("weights_fast") else spec["weights"]
    crop = spec.get("crop_weights", [])
    alternatives = [list(main), *(list(alt) for alt in spec.get("weights_alternatives", []))]
    return [ids + list(crop) for ids in alternatives]


def missing_weights(tasks: Iterable[str], fast: bool = False,
                    weights_dir: Path | None = None) -> dict[str, list[int]]:
    """``{task: missing dataset ids}`` for the tasks whose weights are not in ``weights_dir``."""
    weights_dir = Path(weights_dir) if weights_dir else totalsegmentator_weights_dir()
    out = {}
    for task in tasks:
        best = None
        for ids in required_weights(task, fast and task_supports_fast(task)):
            missing = [i for i in ids if not _has_dataset(weights_dir, i)]
            if best is None or len(missing) < len(best):
                best = missing
        if best:
            out[task] = best
    return out


def task_supports_fast(task: str) -> bool:
    return bool(_task(task).get("fast"))


def _download_hint(tasks: dict[str, list[int]], fast: bool) -> str:
    command = _task_data()["download_command"]
    names = [f"{t}_fast" if fast and task_supports_fast(t) else t for t in tasks]
    return " and ".join(f"`{command.format(task=n)}`" for n in names)


def installed_tasks() -> list[str] | None:
    """The tasks the installed TotalSegmentator package knows (its ``class_map``), None when it is absent."""
    if not totalsegmentator_installed():
        return None
    try:
        from totalsegmentator.map_to_binary import class_map
    except Exception:  # a broken installation: treated as absent by the callers
        return None
    return list(class_map)


def availability(fast: bool = False, weights_dir=None) -> tuple[bool, str]:
    """``(usable, why)``: can TotalSegmentator's task 'total' run here without installing or downloading?"""
    if not totalsegmentator_installed():
        return False, "the TotalSegmentator package is not installed (`pip install TotalSegmentator`)"
    folder = Path(weights_dir).expanduser() if weights_dir else totalsegmentator_weights_dir()
    missing = missing_weights(["total"], fast=fast, weights_dir=folder)
    if missing:
        ids = ", ".join(f"Dataset{i:03d}" for i in missing["total"])
        return False, f"TotalSegmentator's weights for task 'total' ({ids}) are not in {folder}"
    return True, f"TotalSegmentator and its weights for task 'total' are installed (in {folder})"


def best_method(fast: bool = False, weights_dir=None, tasks: Iterable[str] | None = None) -> tuple[str, dict, str]:
    """The best segmentation engine available: ``(method, options, reason)``.

    TotalSegmentator when it and its weights are installed, with the lesion tasks (``lung_nodules``,
    ``pleural_pericard_effusion``) the installed version knows and whose weights are there, unless ``tasks``
    names the extra tasks; the built-in segmenter otherwise. ``reason`` says why, for the report header.
    """
    usable, why = availability(fast, weights_dir)
    if not usable:
        return "builtin", {}, f"TotalSegmentator cannot run here ({why}); the built-in segmenter needs no weights"
    folder = Path(weights_dir).expanduser() if weights_dir else totalsegmentator_weights_dir()
    if tasks is None:
        known = installed_tasks() or []
        tasks = [t for t in LESION_TASKS if t in known and not missing_weights([t], weights_dir=folder)]
    options = {"fast": fast, "tasks": list(tasks)}
    if weights_dir:
        options["weights_dir"] = weights_dir
    extra = f" with {', '.join(tasks)}" if tasks else ""
    return "totalsegmentator", options, f"best engine available: {why}{extra}"


class TotalSegmentatorSegmenter:
    """Runs TotalSegmentator (task ``total`` plus optional extra tasks) and returns one project label map.

    ``fast``: the 3 mm ``total`` model instead of the 1.5 mm one. ``device``: ``"cpu"`` or ``"cuda"``.
    ``tasks``: extra tasks, e.g. ``("lung_vessels", "trunk_cavities")``. ``weights_dir``: a weights folder
    to use instead of TotalSegmentator's default (sets ``TOTALSEG_WEIGHTS_PATH`` for the run).
    ``allow_usage_stats``: TotalSegmentator reports anonymous run counts to its authors unless its config says
    otherwise; by default the adapter switches that off in TotalSegmentator's config so nothing leaves the
    machine.
    """

    name = "totalsegmentator"

    def __init__(self, fast: bool = False, device: str = "cpu", tasks: Iterable[str] = (),
                 weights_dir=None, allow_usage_stats: bool = False):
        if device not in ("cpu", "cuda", "gpu", "mps"):
            raise InputError(f"device {device!r} is not supported; use cpu or cuda.")
        extra = [t for t in tasks if t != "total"]
        for t in extra:
            _task(t)
        self.fast = bool(fast)
        self.device = "gpu" if device == "cuda" else device
        self.tasks = ["total", *dict.fromkeys(extra)]
        self.weights_dir = Path(weights_dir).expanduser() if weights_dir else None
        self.allow_usage_stats = allow_usage_stats

    def check(self) -> None:
        """Raise :class:`MissingDependencyError` when the package, weights or a needed licence is missing."""
        self.check_package()
        self.check_weights()

    @staticmethod
    def check_package() -> None:
        if not totalsegmentator_installed():
            raise MissingDependencyError(
                "TotalSegmentator is not installed: install it with `pip install TotalSegmentator` (it "
                "brings PyTorch), put its weights in place (`totalseg_download_weights -t total`), or use "
                "--method builtin or --method labels:FILE instead.")

    def check_weights(self) -> None:
        """Weights of every task in TotalSegmentator's weights folder, and its licence for licensed tasks."""
        weights_dir = self.weights_dir or totalsegmentator_weights_dir()
        missing = missing_weights(self.tasks, self.fast, weights_dir)
        if missing:
            what = "; ".join(f"{t}: " + ", ".join(f"Dataset{i:03d}" for i in ids)
                             for t, ids in missing.items())
            raise MissingDependencyError(
                f"TotalSegmentator weights are missing in {weights_dir} ({what}); download them with "
                f"{_download_hint(missing, self.fast)}, copy those Dataset folders there, or point "
                "TOTALSEG_WEIGHTS_PATH at the folder that holds them.")
        licensed = [t for t in self.tasks if _task(t).get("licence")]
        if licensed and not self._has_licence():
            raise MissingDependencyError(
                f"TotalSegmentator task(s) {', '.join(licensed)} need a licence; set it with "
                "`totalseg_set_license -l YOUR_KEY` or drop those tasks.")

    @staticmethod
    def _has_licence() -> bool:
        config = totalsegmentator_home() / "config.json"
        try:
            return bool(json.loads(config.read_text(encoding="utf-8")).get("license_number"))
        except (OSError, ValueError):
            return False

    def segment(self, volume: Volume, progress: ProgressCallback | None = None, cancel=None) -> LabelMap:
        self.check()
        from ..volume import write_nifti

        steps = Steps(progress, total=len(self.tasks) + 1, cancel=cancel, what="TotalSegmentator")
        old_env = os.environ.get("TOTALSEG_WEIGHTS_PATH")
        if self.weights_dir:
            os.environ["TOTALSEG_WEIGHTS_PATH"] = str(self.weights_dir)
        try:
            from totalsegmentator.python_api import totalsegmentator

            self._usage_stats_setting()
            result: LabelMap | None = None
            with tempfile.TemporaryDirectory(prefix="medregionct_ts_") as tmp:
                ct_path = write_nifti(volume, Path(tmp) / "ct.nii.gz")
                for task in self.tasks:
                    steps.report(0.0, f"TotalSegmentator {task}")
                    out = Path(tmp) / f"{task}.nii.gz"
                    totalsegmentator(str(ct_path), str(out), ml=True, task=task, device=self.device,
                                     fast=self.fast and task_supports_fast(task), quiet=True)
                    output = read_totalsegmentator_output(out, task=task)
                    output.meta["source"] = f"TotalSegmentator {task}"
                    result = output if result is None else merge_task_outputs(
                        result, output, overwrite=_task(task).get("overwrite", ()))
                    steps.advance(f"TotalSegmentator {task} done")
        finally:
            if self.weights_dir:
                if old_env is None:
                    os.environ.pop("TOTALSEG_WEIGHTS_PATH", None)
                else:
                    os.environ["TOTALSEG_WEIGHTS_PATH"] = old_env
        if result.shape != volume.shape:
            raise InputError("TotalSegmentator returned a label map of another shape than the CT; re-run it.")
        # The NIfTI round trip stores the affine in float32; the label map belongs on the CT's exact grid.
        labelmap = LabelMap(result.array, volume.affine.copy(), result.names,
                            {**result.meta, "segmenter": self.name, "tasks": self.tasks, "fast": self.fast})
        steps.advance("done")
        return labelmap

    def _usage_stats_setting(self) -> None:
        if self.allow_usage_stats:
            return
        try:
            from totalsegmentator.config import set_config_key, setup_totalseg

            setup_totalseg()
            set_config_key("send_usage_stats", False)
        except Exception:  # older versions without these helpers: nothing to switch off here
            pass
