"""Where a batch's cases run: ``local`` (this machine: in-process or worker processes) or ``dask`` (an existing
dask.distributed cluster, reached by its scheduler's address: `dask scheduler` + `dask worker`, dask-jobqueue's
SLURM/PBS clusters, dask-kubernetes or the Dask Helm chart all give one).

An engine runs ``fn(*job)`` for every job and calls ``on_done(job, result, error)`` as each ends (``error``: an
exception the job raised, or the engine's reason why it could not finish: a worker process that died); it
checks ``cancel`` between jobs. Engines know nothing about CTs: the batch decides what a job and a failure are.
"""

from __future__ import annotations

import os
import time
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from multiprocessing import get_context
from pathlib import Path

from ..errors import CancelledError, ClusterError, InputError, MissingDependencyError
from ..progress import check_cancel, is_cancelled

ENGINES = ("local", "dask")
_CANCELLED = "the batch was cancelled; finished cases are kept, run it again to do the rest."


class WorkerLost(RuntimeError):
    """The process running a job died (killed, out of memory) before it returned."""


def _limit_threads(n: int) -> None:
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "ITK_GLOBAL_DEFAULT_NUMBER_OF_THREADS"):
        os.environ.setdefault(var, str(n))


class LocalEngine:
    """Jobs in this process (``workers=1``) or in ``workers`` spawned processes of this machine."""

    name = "local"

    def __init__(self, workers: int = 1):
        if int(workers) < 1:
            raise InputError(f"--workers {workers}: give 1 or more worker processes.")
        self.workers = int(workers)

    def describe(self) -> dict:
        return {"engine": self.name, "workers": self.workers}

    def start(self) -> None:
        """Nothing to start: worker processes are spawned per run."""

    def check(self, paths=()) -> None:
        """Nothing to check: this machine reads and writes the folders itself."""

    def run(self, fn, jobs, on_done, cancel=None, key_prefix: str = "") -> None:
        jobs = list(jobs)
        if self.workers == 1 or len(jobs) <= 1:
            for job in jobs:
                if is_cancelled(cancel):
                    raise CancelledError(_CANCELLED)
                try:
                    result = fn(*job)
                except Exception as error:
                    on_done(job, None, error)
                    continue
                on_done(job, result, None)
            return
        threads = max(1, (os.cpu_count() or 1) // self.workers)
        pool = ProcessPoolExecutor(max_workers=min(self.workers, len(jobs)), mp_context=get_context("spawn"),
                                   initializer=_limit_threads, initargs=(threads,))
        try:
            pending = {pool.submit(fn, *job): job for job in jobs}
            while pending:
                done, _ = wait(set(pending), timeout=0.5, return_when=FIRST_COMPLETED)
                for future in done:  # BrokenProcessPool: a process died, and every job not finished with it
                    _deliver(pending.pop(future), future, on_done, BrokenProcessPool, lambda error: (
                        "a worker process died (killed, or out of memory) before this case finished"))
                if pending and is_cancelled(cancel):
                    for future in pending:
                        future.cancel()
                    raise CancelledError(_CANCELLED)
        finally:
            pool.shutdown(wait=True, cancel_futures=True)


class DaskEngine:
    """Jobs on an existing dask.distributed cluster.

    ``scheduler``: the scheduler's address (``tcp://host:8786``), a scheduler file (``dask scheduler
    --scheduler-file``), a ``distributed.Client`` or a cluster object (``SLURMCluster``, ``KubeCluster``...).
    The workers need MedRegionCTLib installed and must see the input and output folders at the same paths (a
    shared file system).
    """

    name = "dask"

    def __init__(self, scheduler, connect_timeout_s: float | None = None):
        if scheduler is None or (isinstance(scheduler, str) and not scheduler.strip()):
            scheduler = _configured_address()
        if scheduler is None:
            raise InputError("--engine dask needs --scheduler ADDRESS (e.g. tcp://scheduler-host:8786, or a "
                             "scheduler file), the address of a running Dask scheduler.")
        self.scheduler = scheduler
        self.connect_timeout_s = connect_timeout_s
        self._client = None
        self._owned = False

    @property
    def address(self) -> str:
        if isinstance(self.scheduler, str | os.PathLike):
            return str(self.scheduler)
        if hasattr(self.scheduler, "scheduler_address"):
            return str(self.scheduler.scheduler_address)
        return str(getattr(self.scheduler, "scheduler", None) and self.scheduler.scheduler.address)

    def describe(self) -> dict:
        return {"engine": self.name, "scheduler": self.address}

    def start(self) -> None:
        """Connect now, so an unreachable scheduler is reported before anything is written."""
        self.client()

    def client(self):
        if self._client is not None:
            return self._client
        distributed = _import_distributed()
        if isinstance(self.scheduler, distributed.Client):
            self._client = self.scheduler
            return self._client
        # a cluster object (LocalCluster, dask-jobqueue's SLURMCluster, KubeCluster): its scheduler's address
        address = str(getattr(self.scheduler, "scheduler_address", self.scheduler))
        timeout = self.connect_timeout_s
        if timeout is None:  # Dask's own setting (DASK_DISTRIBUTED__COMM__TIMEOUTS__CONNECT), 30 s by default
            import dask
            from dask.utils import parse_timedelta

            timeout = parse_timedelta(dask.config.get("distributed.comm.timeouts.connect", "30s"), default="s")
        kwargs = {"scheduler_file": address} if Path(address).is_file() else {"address": address}
        try:
            self._client = distributed.Client(timeout=timeout, set_as_default=False, **kwargs)
        except (OSError, TimeoutError, ValueError) as error:
            raise ClusterError(f"cannot reach the Dask scheduler at {address} ({_one_line(error)}); start one "
                               "(`dask scheduler`, or a dask-jobqueue/Kubernetes cluster) and pass its address, "
                               "e.g. --scheduler tcp://scheduler-host:8786.") from None
        self._owned = True
        return self._client

    def close(self) -> None:
        if self._client is not None and self._owned:
            self._client.close()
        self._client = None

    def check(self, paths=()) -> None:
        """Every worker connected now imports MedRegionCTLib and sees ``paths`` (the folders it reads and writes)."""
        client = self.client()
        paths = [str(p) for p in paths]
        try:
            answers = client.run(_worker_probe, paths)
        except ImportError as error:
            raise ClusterError(f"the Dask workers at {self.address} cannot import MedRegionCTLib ({error}); install "
                               "it (the same version) in the workers' environment.") from None
        except Exception as error:
            raise ClusterError(f"could not ask the Dask workers at {self.address} ({_one_line(error)}).") from None
        from .. import __version__

        for worker, answer in sorted(answers.items()):
            if answer["missing"]:
                raise ClusterError(f"the Dask worker {worker} (host {answer['host']}) does not see "
                                   f"{', '.join(answer['missing'])}; the input and output folders must be on a file "
                                   "system every worker mounts at the same path.")
            if answer["version"] != __version__:
                raise ClusterError(f"the Dask worker {worker} runs MedRegionCTLib {answer['version']}, this machine "
                                   f"{__version__}; install the same version on both so every case is analysed "
                                   "alike.")

    def run(self, fn, jobs, on_done, cancel=None, key_prefix: str = "medregionct") -> None:
        distributed = _import_distributed()
        client = self.client()
        futures = {}
        for job in jobs:
            key = f"{key_prefix}-{'-'.join(str(part) for part in _key_parts(job))}"
            futures[client.submit(fn, *job, key=key, pure=False, retries=0)] = job
        pending = distributed.as_completed(list(futures), loop=client.loop)
        remaining = set(futures)
        try:
            while remaining:
                batch = pending.next_batch(block=False)
                if not batch:
                    check_cancel(cancel, "the batch")
                    time.sleep(0.1)
                    continue
                for future in batch:
                    remaining.discard(future)
                    _deliver(futures[future], future, on_done, distributed.scheduler.KilledWorker, lambda error: (
                        f"the Dask worker running it died ({_one_line(error)}: killed, or out of memory)"))
        except CancelledError:
            client.cancel(list(remaining))
            raise CancelledError(_CANCELLED) from None
        finally:
            for future in futures:
                future.release()


def _deliver(job, future, on_done, lost, why) -> None:
    """``on_done`` with a finished future's result or exception; ``lost`` (the engine's exception for a worker
    that died) becomes :class:`WorkerLost` with the message ``why(error)``."""
    try:
        result = future.result()
    except lost as error:
        on_done(job, None, WorkerLost(why(error)))
        return
    except Exception as error:
        on_done(job, None, error)
        return
    on_done(job, result, None)


def _key_parts(job) -> list:
    """The parts of a job that make a readable, unique task key (strings and numbers, no paths)."""
    return [p for p in job if isinstance(p, str | int) and "/" not in str(p) and os.sep not in str(p)]


def _worker_probe(paths):
    import socket

    from .. import __version__

    return {"version": __version__, "host": socket.gethostname(),
            "missing": [p for p in paths if not os.path.exists(p)]}


def _configured_address():
    """The scheduler address from Dask's configuration (DASK_SCHEDULER_ADDRESS), if any."""
    try:
        import dask
    except ImportError:
        return None
    return dask.config.get("scheduler-address", None) or None


def _import_distributed():
    try:
        import distributed
        import distributed.scheduler
    except ImportError:
        raise MissingDependencyError("--engine dask needs dask.distributed: pip install 'MedRegionCTLib[dask]' (the "
                                     "same on the workers).") from None
    return distributed


def _one_line(error) -> str:
    text = str(error).strip().splitlines()
    return f"{type(error).__name__}: {text[0]}" if text else type(error).__name__


def make_engine(engine="local", workers: int = 1, scheduler=None):
    """An engine from the command line's choices; raises :class:`InputError` for a bad combination."""
    if not isinstance(engine, str):
        return engine  # already an engine
    engine = engine.strip().lower()
    if engine == "local":
        if scheduler:
            raise InputError("--scheduler is for --engine dask; drop it, or add --engine dask.")
        return LocalEngine(workers)
    if engine == "dask":
        if int(workers) != 1:
            raise InputError("--workers is for --engine local; a Dask cluster's size is set where its workers are "
                             "started (dask worker --nworkers, SLURMCluster.scale).")
        return DaskEngine(scheduler)
    raise InputError(f"--engine {engine!r}: choose one of {', '.join(ENGINES)}.")
