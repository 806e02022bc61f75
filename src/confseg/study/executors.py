"""Where a study's cells run: a local pool of worker processes, or Ray tasks.

Both executors run :func:`confseg.study.cell.run_cell` once per cell and report each cell's
final status through ``on_done(cell, status)``; a failing cell never stops the others.

Threads: a CPU worker gets ``threads`` OpenMP threads (default 1) and ``jobs`` workers run at
once (default: cores // threads), with ``OMP_WAIT_POLICY=PASSIVE`` so idle OpenMP threads
sleep instead of spin-waiting on a machine the other workers keep busy (docs/results.md,
"CPU settings", measured 1.6x slower with spinning threads on a loaded 2-core machine).
"""

from __future__ import annotations

import os
import queue
import signal
import subprocess
import sys
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass

from confseg.errors import Interrupted, StudyError
from confseg.io.optional import require
from confseg.runs import FAILED, FINISHED, INTERRUPTED, StudyFolder
from confseg.study.cell import mark_failed
from confseg.study.spec import Cell

OnDone = Callable[[Cell, str], None]
EXECUTORS = ("local", "ray")


def cpu_cores() -> int:
    """CPU cores this process may use."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (
        os.cpu_count() or 1)


def cuda_devices() -> int:
    """Number of CUDA devices torch sees (0 without CUDA)."""
    import torch

    return torch.cuda.device_count() if torch.cuda.is_available() else 0


@dataclass(frozen=True, kw_only=True)
class Plan:
    """How many workers run at once and what each gets."""

    jobs: int
    threads: int
    gpus: int

    @classmethod
    def make(cls, *, jobs: int | None, threads: int | None) -> Plan:
        """Defaults: one worker per GPU, else ``cores // threads`` workers of 1 thread each."""
        for name, v in (("--jobs", jobs), ("--threads", threads)):
            if v is not None and v < 1:
                raise StudyError(f"{name} {v}: give a number >= 1")
        cores, gpus = cpu_cores(), cuda_devices()
        if jobs is None:
            jobs = gpus or max(1, cores // (threads or 1))
        if threads is None:
            threads = max(1, cores // jobs)
        return cls(jobs=jobs, threads=threads, gpus=gpus)

    def env(self, slot: int) -> dict[str, str]:
        """Environment of the worker in ``slot``."""
        env = {"OMP_NUM_THREADS": str(self.threads), "MKL_NUM_THREADS": str(self.threads),
               "OMP_WAIT_POLICY": "PASSIVE"}
        if self.gpus:
            env["CUDA_VISIBLE_DEVICES"] = str(slot % self.gpus)
        return env


class LocalExecutor:
    """``jobs`` worker processes (``python -m confseg.study.worker``), one cell each."""

    def __init__(self, plan: Plan) -> None:
        self.plan = plan

    def run(self, folder: StudyFolder, cells: Sequence[Cell], on_done: OnDone) -> None:
        """Run every cell; Ctrl-C stops the workers (their runs say interrupted)."""
        slots: queue.Queue[int] = queue.Queue()
        for i in range(self.plan.jobs):
            slots.put(i)
        procs: dict[int, subprocess.Popen] = {}

        def one(cell: Cell) -> tuple[Cell, str]:
            slot = slots.get()
            try:
                return cell, self._worker(folder, cell, slot, procs)
            finally:
                slots.put(slot)

        pool = ThreadPoolExecutor(max_workers=self.plan.jobs, thread_name_prefix="cell")
        futures = [pool.submit(one, c) for c in cells]
        try:
            for fut in as_completed(futures):
                cell, status = fut.result()
                on_done(cell, status)
        except KeyboardInterrupt:
            for f in futures:
                f.cancel()
            for p in list(procs.values()):
                if p.poll() is None:
                    p.send_signal(signal.SIGINT)
            pool.shutdown(wait=True, cancel_futures=True)
            raise Interrupted(f"study interrupted; {folder.root} is kept: run the same "
                              "command again to continue") from None
        pool.shutdown(wait=True)

    def _worker(self, folder: StudyFolder, cell: Cell, slot: int,
                procs: dict[int, subprocess.Popen]) -> str:
        log = folder.log_path(cell.slug, cell.fold, cell.seed)
        log.parent.mkdir(parents=True, exist_ok=True)
        cmd = [sys.executable, "-m", "confseg.study.worker", str(folder.root), cell.key,
               str(os.getpid())]
        with log.open("w", encoding="utf-8") as out:
            proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT,
                                    env={**os.environ, **self.plan.env(slot)})
            procs[slot] = proc
            code = proc.wait()
        if code == 0:
            return FINISHED
        if code == 130:
            return INTERRUPTED
        run = folder.cell(cell.slug, cell.fold, cell.seed)
        if run.status != FAILED:  # the worker died without saying why (SIGKILL, OOM)
            why = (f"worker killed by signal {-code}" if code < 0 else
                   f"worker exited with status {code}")
            mark_failed(folder, cell, f"{why}; see {log}")
        return FAILED


def _ray_cell(root: str, key: str, threads: int) -> str:
    """A Ray task: run one cell in this Ray worker."""
    import torch

    from confseg.study.cell import find_cell, run_cell
    from confseg.study.spec import StudySpec

    torch.set_num_threads(threads)
    folder = StudyFolder(root)
    spec = StudySpec.load(folder)
    return run_cell(folder, spec, find_cell(spec, key))


class RayExecutor:
    """The cells as Ray tasks, on a running cluster (``address``) or a local ``ray.init()``.

    Every node must see the study folder and the dataset at the same paths (a shared
    filesystem). A task asks for ``threads`` CPUs, and one GPU when the cluster has GPUs.
    """

    def __init__(self, plan: Plan, *, address: str | None = None) -> None:
        self.plan = plan
        self.address = address

    def run(self, folder: StudyFolder, cells: Sequence[Cell], on_done: OnDone) -> None:
        """Submit every cell, report each as it ends."""
        ray = require("ray", "ray", purpose="--executor ray")
        started = False
        handlers = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
        if not ray.is_initialized():
            kw = ({"address": self.address} if self.address else
                  {"num_cpus": self.plan.jobs * self.plan.threads,
                   "num_gpus": self.plan.gpus, "include_dashboard": False})
            try:
                ray.init(log_to_driver=False, **kw)
            except ConnectionError as exc:
                raise StudyError(f"--ray-address {self.address}: cannot connect ({exc}); start "
                                 "the cluster with `ray start --head` or drop --ray-address"
                                 ) from None
            started = True
        try:
            gpus = 1 if ray.cluster_resources().get("GPU", 0) >= 1 else 0
            env = {k: v for k, v in self.plan.env(0).items() if k != "CUDA_VISIBLE_DEVICES"}
            task = ray.remote(_ray_cell).options(num_cpus=self.plan.threads, num_gpus=gpus,
                                                 max_retries=0,
                                                 runtime_env={"env_vars": env})
            refs = {task.remote(str(folder.root.resolve()), c.key, self.plan.threads): c
                    for c in cells}
            pending = list(refs)
            try:
                while pending:
                    done, pending = ray.wait(pending, num_returns=1)
                    for ref in done:
                        cell = refs[ref]
                        try:
                            status = ray.get(ref)
                        except Exception as exc:  # the task itself died (worker crash)
                            mark_failed(folder, cell, f"Ray task failed: {exc}")
                            status = FAILED
                        on_done(cell, status)
            except KeyboardInterrupt:
                for ref in pending:
                    ray.cancel(ref)
                raise Interrupted(f"study interrupted; {folder.root} is kept: run the same "
                                  "command again to continue") from None
        finally:
            if started:
                ray.shutdown()
                for sig, handler in handlers.items():  # ray.init installs its own
                    signal.signal(sig, handler)


def make_executor(name: str, plan: Plan, *, address: str | None = None
                  ) -> LocalExecutor | RayExecutor:
    """The executor called ``name`` (``local`` or ``ray``)."""
    if name == "local":
        if address:
            raise StudyError("--ray-address needs --executor ray")
        return LocalExecutor(plan)
    if name == "ray":
        return RayExecutor(plan, address=address)
    raise StudyError(f"--executor {name!r}; choose local or ray")
