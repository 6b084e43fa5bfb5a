"""Claim files: one process at a time works on a case, whichever machine it runs on.

A process that starts a case creates ``<claims>/<case>.claim`` with a hard link from a complete temporary file
(``link`` is atomic and fails when the name exists, also on NFS, where ``O_EXCL`` was unreliable for a long time;
``O_EXCL`` is the fallback on file systems without hard links). The claim names its owner (host, pid, a random
token) and a thread touches it every ``heartbeat_s`` while the case runs.

A claim is abandoned when its owner ran on this host and its process is gone (a killed worker: taken over at once),
when it belongs to the same run (the engine gave the case to another worker because the first one died, on any
host), or when it has not been touched for ``stale_after_s`` (another host that died or lost the file system). Ages are
measured against the file system's own clock (the time stamp of a file touched just now), so clocks that differ
between machines do not matter. Taking over an abandoned claim renames it aside first: of two processes that find
it abandoned at the same time, one rename succeeds and the other finds nothing to rename.

Claims save double work; they are not what keeps results single: a case folder is renamed into place whole, so a
case has one complete folder however many processes ever worked on it.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import socket
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

from .output_folder import process_alive

HEARTBEAT_S = 30.0
STALE_AFTER_S = 600.0


def host_name() -> str:
    return socket.gethostname()


@dataclass
class Claim:
    path: Path
    token: str
    stop: threading.Event
    thread: threading.Thread | None = None

    def release(self) -> None:
        """Stop the heartbeat and remove the claim if it is still this one."""
        self.stop.set()
        if self.thread is not None:
            self.thread.join(timeout=5)
        owner = read_claim(self.path)
        if owner is not None and owner.get("token") == self.token:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.path)


def read_claim(path) -> dict | None:
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, ValueError):
        return {}  # unreadable: judged by its age alone


def file_system_now(folder: Path) -> float:
    """The current time as the file system that holds ``folder`` stamps it."""
    probe = folder / f".clock-{host_name()}-{os.getpid()}"
    probe.touch()
    try:
        return probe.stat().st_mtime
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(probe)


def abandoned(path: Path, owner: dict | None, stale_after_s: float, run_id: str = "") -> bool:
    """True when the claim at ``path`` (read as ``owner``) may be taken over."""
    if owner is None:
        return False  # gone meanwhile: the caller tries to create it again
    if owner.get("host") == host_name() and isinstance(owner.get("pid"), int) and not process_alive(owner["pid"]):
        return True
    if run_id and owner.get("run") == run_id:
        return True  # a run hands a case out again only when the worker that had it was lost
    try:
        age = file_system_now(path.parent) - path.stat().st_mtime
    except FileNotFoundError:
        return False
    return age > stale_after_s


def _create(path: Path, payload: dict) -> bool:
    """Create ``path`` holding ``payload`` if it does not exist; False when it does."""
    tmp = path.with_name(f".{path.name}.{payload['token']}.tmp")
    tmp.write_text(json.dumps(payload), encoding="utf-8")
    try:
        os.link(tmp, path)
        return True
    except FileExistsError:
        return False
    except OSError as error:  # no hard links here (some FUSE/SMB mounts): exclusive create instead
        if error.errno not in (errno.EPERM, errno.EOPNOTSUPP, errno.ENOTSUP, errno.EXDEV, errno.EMLINK):
            raise
        try:
            fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            return False
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(json.dumps(payload))
        return True
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)


def _take_over(path: Path, owner: dict) -> None:
    """Move the abandoned claim ``owner`` out of the way (no-op when another process already did)."""
    aside = path.with_name(f".{path.name}.abandoned-{uuid.uuid4().hex[:12]}")
    try:
        os.rename(path, aside)
    except FileNotFoundError:
        return
    moved = read_claim(aside)
    if moved is not None and owner and moved.get("token") != owner.get("token"):
        # a live claim made between our read and our rename: give it back (link fails if a third one exists)
        with contextlib.suppress(FileExistsError):
            os.link(aside, path)
    with contextlib.suppress(FileNotFoundError):
        os.unlink(aside)


def try_claim(claims_dir, case_name: str, run_id: str = "", heartbeat_s: float = HEARTBEAT_S,
              stale_after_s: float = STALE_AFTER_S) -> tuple[Claim | None, dict | None]:
    """Claim ``case_name``; returns ``(claim, None)`` or ``(None, owner)`` when a live process holds it."""
    claims_dir = Path(claims_dir)
    claims_dir.mkdir(parents=True, exist_ok=True)
    path = claims_dir / f"{case_name}.claim"
    token = uuid.uuid4().hex
    payload = {"case": case_name, "host": host_name(), "pid": os.getpid(), "token": token, "run": run_id,
               "since": time.time()}
    owner = None
    for _ in range(3):
        if _create(path, payload):
            stop = threading.Event()
            claim = Claim(path, token, stop)
            claim.thread = threading.Thread(target=_heartbeat, args=(path, token, stop, heartbeat_s), daemon=True,
                                            name=f"claim-heartbeat-{case_name}")
            claim.thread.start()
            return claim, None
        owner = read_claim(path)
        if not abandoned(path, owner, stale_after_s, run_id):
            if owner is None:
                continue  # released meanwhile: try again
            return None, owner
        _take_over(path, owner)
    return None, owner or {}


def _heartbeat(path: Path, token: str, stop: threading.Event, every_s: float) -> None:
    while not stop.wait(every_s):
        owner = read_claim(path)
        if owner is None or owner.get("token") != token:
            return  # taken over (this process looked dead): the other one goes on, this one's result still counts
        with contextlib.suppress(OSError):
            os.utime(path)
