"""The server process killed mid-job (SIGKILL): the client says clearly that the server stopped answering, and
the same request succeeds once the server is back (`medregionct serve` in a child process, tiny CPU model)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time

import pytest

pytest.importorskip("torch")
pytest.importorskip("fastapi")
pytest.importorskip("uvicorn")
httpx = pytest.importorskip("httpx")

from MedRegionCTLib.client import ReportClient  # noqa: E402
from MedRegionCTLib.errors import ServerError  # noqa: E402
from MedRegionCTLib.model.tiny import synthetic_case  # noqa: E402
from MedRegionCTLib.server.engine import write_tiny_checkpoint  # noqa: E402


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


CHILD = """
import sys
import MedRegionCTLib.model.modeling, MedRegionCTLib.server.app  # the slow imports happen while waiting
sys.stdin.readline()  # go
from MedRegionCTLib.cli.main import main
sys.exit(main(["serve", "--model", sys.argv[1], "--device", "cpu", "--port", sys.argv[2], "--log-level", "warning"]))
"""


def _spawn(folder, port) -> subprocess.Popen:
    """A `medregionct serve` process that imports its stack at once but binds the port only when told to (the
    replacement server is spawned together with the first, so the test pays the torch import time once)."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    proc = subprocess.Popen([sys.executable, "-c", CHILD, str(folder), str(port)], env=env, stdin=subprocess.PIPE,
                            stdout=subprocess.DEVNULL, stderr=tempfile.TemporaryFile())  # noqa: SIM115
    return proc


def _start(proc: subprocess.Popen, port: int) -> subprocess.Popen:
    proc.stdin.write(b"go\n")
    proc.stdin.flush()
    end = time.monotonic() + 90
    while time.monotonic() < end:
        if proc.poll() is not None:
            raise AssertionError(f"server exited with status {proc.returncode}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/v1/health", timeout=1).status_code == 200:
                return proc
        except httpx.TransportError:
            time.sleep(0.05)
    raise AssertionError("server did not start within 90 s")


def _kill(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGKILL)
    proc.wait(10)


def _case():
    case = synthetic_case(21)
    case["regions"] = {"lung": case["regions"]["lung"]}
    return case


@pytest.fixture(scope="module")
def slow_checkpoint(tmp_path_factory):
    # every paragraph is forced to 600 tokens (near the tiny model's context), half a second on an idle machine: time to
    # kill the server mid-job (150 tokens took 0.2 s, and a loaded test worker saw that job done before the kill)
    return write_tiny_checkpoint(tmp_path_factory.mktemp("slow") / "tiny",
                                 generation={"max_new_tokens": 600, "min_new_tokens": 600})


def test_server_killed_mid_job_then_retry_after_restart(slow_checkpoint):
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    first, second = _spawn(slow_checkpoint, port), _spawn(slow_checkpoint, port)
    try:
        _start(first, port)
        client = ReportClient(url, timeout=10, retries=2, backoff=0.1)
        outcome = {}
        running = threading.Event()

        def follow():
            try:
                outcome["result"] = client.report(_case(), progress=lambda f, m: running.set() if m == "running"
                                                  else None)
            except ServerError as exc:
                outcome["error"] = exc

        thread = threading.Thread(target=follow)
        thread.start()
        assert running.wait(30), "the job never started"
        _kill(first)  # SIGKILL: no drain, no goodbye
        thread.join(30)
        assert "result" not in outcome
        error = outcome["error"]
        assert f"the report server at {url} stopped answering" in str(error)
        assert "check it is running, then retry" in str(error)
        assert error.status is None

        _start(second, port)  # the server is back on the same address
        result = client.report(_case())
        assert result["state"] == "done"
        assert sorted(result["regions"]) == ["lung"]
        assert all(r["paragraph"] for r in result["regions"].values())
    finally:
        _kill(first)
        _kill(second)
