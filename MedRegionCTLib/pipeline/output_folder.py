"""One command's output folder, written whole or not at all.

:class:`OutputFolder` checks before any work that the folder can be written (and holds nothing MedRegionCT
must not replace), hands out a staging folder beside it, and on success renames the staging folder into place:
a run that fails or is interrupted (Ctrl-C included) leaves the previous complete results, or nothing. With
``overwrite`` the new folder replaces the old one as a whole, so files of an earlier run that this run does
not write (another schema's region masks, a format not asked for) are gone.

A folder counts as MedRegionCT's when it is empty or holds only what its manifest (``.medregionct.json``)
lists or what the commands write by name; a folder with other files (the user's CT, their notes) is never
replaced or mixed into.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from datetime import datetime, timezone
from pathlib import Path

from ..errors import OutputError
from ..threads import sigint_deferred

MANIFEST = ".medregionct.json"
# Everything `report`, `segment` and `measure` write (older versions wrote no manifest).
KNOWN_OUTPUTS = frozenset({"report.json", "report.md", "report.html", "report_sr.dcm", "regions_seg.dcm",
                           "measurements.json", "measurements.csv", "labels.nii.gz", "labels.json",
                           "regions.json", "regions"})
_STAGING = ".partial-"
_OLD = ".old-"


def _listing(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


def _manifest_files(folder: Path) -> set[str]:
    try:
        data = json.loads((folder / MANIFEST).read_text(encoding="utf-8"))
        return {str(name).split("/")[0] for name in data.get("files", [])}
    except (OSError, ValueError, AttributeError):
        return set()


def process_alive(pid: int) -> bool:
    """Whether process ``pid`` of this host still runs (True where that cannot be told: not POSIX)."""
    if os.name != "posix":  # os.kill(pid, 0) terminates the process on Windows
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class OutputFolder:
    """``with OutputFolder(out, overwrite=...) as staging:`` write into ``staging``; it becomes ``out`` when
    the block ends without an exception. ``check()`` (run by ``__enter__``) raises :class:`OutputError`
    before any work when ``out`` cannot be written, is a file, holds the inputs, holds files MedRegionCT did not
    write, or holds a previous result and ``overwrite`` is False.

    ``inputs``: paths the command reads (they must not lie inside ``out``); ``own_names``: further names this
    command writes (``demo``: the phantom files); ``command``: recorded in the manifest.
    """

    def __init__(self, out, overwrite: bool = False, inputs=(), own_names=(), command: str = ""):
        self.out = Path(os.path.abspath(Path(out).expanduser()))
        self.overwrite = bool(overwrite)
        self.inputs = [Path(os.path.abspath(Path(p).expanduser())) for p in inputs if p is not None]
        self.own_names = KNOWN_OUTPUTS | set(own_names)
        self.command = command
        self.staging: Path | None = None

    # --- checks -------------------------------------------------------------------------------------------
    def check(self) -> None:
        out = self.out
        if out.exists() and not out.is_dir():
            raise OutputError(f"--out {out} is a file; give a folder name.")
        cwd = Path.cwd().resolve()
        if out.resolve() == cwd or out.resolve() in cwd.parents:
            raise OutputError(f"--out {out} is the current folder (or holds it); MedRegionCT replaces its output "
                              "folder as a whole: give a new sub-folder, e.g. --out report.")
        for path in self.inputs:
            if path == out or out in path.parents:
                raise OutputError(f"the input {path} lies inside --out {out}, which MedRegionCT replaces as a "
                                  "whole; choose another --out folder.")
        if out.is_dir():
            entries = _listing(out)
            ours = self.own_names | _manifest_files(out) | {MANIFEST}
            foreign = [name for name in entries if name not in ours]
            if foreign:
                more = f" and {len(foreign) - 5} more" if len(foreign) > 5 else ""
                raise OutputError(f"--out {out} holds files MedRegionCT did not write ({', '.join(foreign[:5])}"
                                  f"{more}); give a new or empty folder (MedRegionCT replaces its output folder "
                                  "as a whole).")
            previous = [name for name in entries if name != MANIFEST]
            if previous and not self.overwrite:
                raise OutputError(f"{out} already holds {', '.join(previous[:6])}"
                                  f"{' ...' if len(previous) > 6 else ''}; pass --overwrite to replace it or "
                                  "choose another --out folder.")
        self._clean_stale()

    def _parent(self) -> Path:
        parent = self.out.parent
        for above in (parent, *parent.parents):
            if above.exists():
                if not above.is_dir():
                    raise OutputError(f"cannot create --out {self.out}: {above} is a file, not a folder; choose "
                                      "another --out folder.")
                break
        try:
            parent.mkdir(parents=True, exist_ok=True)
        except OSError as error:
            raise OutputError(f"cannot create the folder {parent} for --out {self.out} "
                              f"({error.strerror or error}); choose a folder you can write to.") from None
        return parent

    def _clean_stale(self) -> None:
        """Staging folders of runs that were killed (their process is gone)."""
        parent = self.out.parent
        if not parent.is_dir():
            return
        prefix = f".{self.out.name}{_STAGING}"
        for path in parent.glob(f"{prefix}*"):
            pid = path.name[len(prefix):].split("-")[0]
            if pid.isdigit() and not process_alive(int(pid)):
                shutil.rmtree(path, ignore_errors=True)

    # --- staging and commit --------------------------------------------------------------------------------
    def start(self) -> Path:
        """Check, then create the staging folder (proving the location writable); returns it."""
        self.check()
        parent = self._parent()
        try:
            staging = Path(tempfile.mkdtemp(prefix=f".{self.out.name}{_STAGING}{os.getpid()}-", dir=parent))
            probe = staging / ".write-test"
            probe.write_bytes(b"")
            probe.unlink()
        except OSError as error:
            raise OutputError(f"cannot write into {parent} ({error.strerror or error}); MedRegionCT writes "
                              f"--out {self.out.name} there: choose a folder you can write to.") from None
        # mkdtemp makes the folder private (0700); give it the permissions a plain mkdir would
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(staging, 0o777 & ~umask)
        self.staging = staging
        return staging

    def discard(self) -> None:
        if self.staging is not None:
            shutil.rmtree(self.staging, ignore_errors=True)
            self.staging = None

    def commit(self) -> Path:
        """Write the manifest and rename the staging folder into place (replacing the previous folder)."""
        if self.staging is None:
            raise OutputError("nothing to commit: start() was not called.")
        files = sorted(str(p.relative_to(self.staging)).replace(os.sep, "/")
                       for p in self.staging.rglob("*") if p.is_file())
        (self.staging / MANIFEST).write_text(json.dumps({
            "written_by": "MedRegionCT", "command": self.command, "files": files,
            "created": datetime.now(timezone.utc).isoformat(timespec="seconds")}, indent=1) + "\n",
            encoding="utf-8")
        swap_into_place(self.staging, self.out)
        self.staging = None
        return self.out

    def __enter__(self) -> Path:
        return self.start()

    def __exit__(self, kind, error, tb) -> bool:
        if kind is None:
            try:
                self.commit()
            except BaseException:
                self.discard()
                raise
        else:
            self.discard()
        return False


def swap_into_place(staging: Path, final: Path) -> None:
    """Rename the complete folder ``staging`` to ``final``; a previous ``final`` is moved aside first and
    deleted after, or put back if the rename fails."""
    staging, final = Path(staging), Path(final)
    with sigint_deferred():
        old = None
        if final.exists():
            old = final.with_name(f".{final.name}{_OLD}{os.getpid()}-{os.urandom(3).hex()}")
            os.rename(final, old)
        try:
            os.rename(staging, final)
        except BaseException:
            if old is not None:
                os.rename(old, final)
            raise
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def check_writable_folder(folder) -> Path:
    """Create ``folder`` if needed and prove it writable (batch output root); raises :class:`OutputError`."""
    folder = Path(folder).expanduser()
    if folder.exists() and not folder.is_dir():
        raise OutputError(f"--out {folder} is a file; give a folder.")
    try:
        folder.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(prefix=".write-test-", dir=folder)
        os.close(fd)
        os.unlink(probe)
    except OSError as error:
        raise OutputError(f"cannot write into {folder} ({error.strerror or error}); choose a folder you can "
                          "write to.") from None
    return folder
