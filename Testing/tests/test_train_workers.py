"""DataLoader workers of the trainer never outlive it: a trainer process killed with SIGKILL while its workers
are busy preparing cases takes them down with it (the kernel's parent-death signal, set in each worker)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest

pytest.importorskip("torch")

SCRIPT = textwrap.dedent("""
    import sys, time
    import torch
    from MedRegionCTLib.train.config import TrainConfig
    from MedRegionCTLib.train.trainer import Trainer

    class Slow(torch.utils.data.Dataset):   # a case that takes long to prepare: the worker is busy, not idle
        def __len__(self):
            return 64
        def __getitem__(self, i):
            time.sleep(60)
            return i

    config = TrainConfig.from_dict({"output_dir": sys.argv[1], "train": {"steps": 1},
                                    "data": {"num_workers": 2, "batch_size": 1}})
    loader = Trainer(config)._loader(Slow(), batch_size=1)
    it = iter(loader)
    print(" ".join(str(w.pid) for w in it._workers), flush=True)
    next(it)
""")


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().split()[2] != "Z"  # a zombie is dead, only not yet reaped
    except FileNotFoundError:
        return False


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the parent-death signal is Linux only")
def test_workers_die_with_a_killed_trainer(tmp_path):
    proc = subprocess.Popen([sys.executable, "-c", SCRIPT, str(tmp_path)], stdout=subprocess.PIPE, text=True,
                            env={**os.environ, "HF_HUB_OFFLINE": "1"})
    try:
        pids = [int(p) for p in proc.stdout.readline().split()]
        assert len(pids) == 2 and all(_alive(p) for p in pids)
        time.sleep(1.0)  # the workers are inside __getitem__ now
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
        end = time.monotonic() + 5
        while any(_alive(p) for p in pids) and time.monotonic() < end:
            time.sleep(0.05)
        assert not any(_alive(p) for p in pids), "DataLoader workers outlived the killed trainer"
    finally:
        if proc.poll() is None:
            proc.kill()
