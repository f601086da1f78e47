"""Per-video parallelism with Dask: one luigi task per stage, Dask inside it.

`scheduler` is "threads" (default), "processes", "synchronous", or a distributed scheduler address
("tcp://host:port"), so the same stage runs on a laptop or a cluster. One video's failure is caught
and reported; the other videos' work goes on and is kept.
"""
from __future__ import annotations

import logging
import os
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field

log = logging.getLogger(__name__)

LOCAL_SCHEDULERS = ("threads", "processes", "synchronous")


@dataclass
class PerVideoResult:
    done: list[str] = field(default_factory=list)
    failures: dict[str, str] = field(default_factory=dict)  # video -> reason


def _guarded(fn: Callable, video: str, kwargs: dict):
    """Run fn for one video; return (video, None) or (video, reason) instead of raising."""
    try:
        fn(video, **kwargs)
        return video, None
    except Exception as exc:  # noqa: BLE001 - one bad video must not cancel the others
        reason = f"{type(exc).__name__}: {exc}"
        log.error("video %s failed: %s\n%s", video, reason, traceback.format_exc())
        return video, reason


def usable_cores() -> int:
    """Cores this process may run on: its CPU affinity where the OS reports one (a container's or a cluster job's
    cpuset, taskset), else os.cpu_count(); at least 1. os.cpu_count() counts the whole machine's."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):  # not on Linux
        return max(1, os.cpu_count() or 1)


def worker_count(scheduler: str, num_workers: int | None = None) -> int:
    """How many videos run at once on this machine (1 for synchronous)."""
    if scheduler == "synchronous":
        return 1
    return max(1, num_workers or usable_cores())


def threads_per_worker(scheduler: str, num_workers: int | None = None) -> int:
    """Intra-op threads (torch, Numba) each concurrent video may use without oversubscribing."""
    if scheduler not in LOCAL_SCHEDULERS:
        return 1  # distributed workers: the nanny sets OMP threads to 1; keep torch/Numba the same
    return max(1, usable_cores() // worker_count(scheduler, num_workers))


def run_per_video(
    fn: Callable,
    videos: list[str],
    scheduler: str = "threads",
    num_workers: int | None = None,
    on_progress: Callable[[int, int, int], None] | None = None,
    **kwargs,
) -> PerVideoResult:
    """Call ``fn(video, **kwargs)`` for every video on the chosen Dask scheduler.

    fn must be a module-level function (the processes scheduler and remote workers pickle it).
    on_progress(finished, failed, total): called in this process as each video finishes (progress reporting).
    """
    import dask

    result = PerVideoResult()
    if not videos:
        return result
    tasks = [dask.delayed(_guarded, pure=False)(fn, video, kwargs) for video in videos]
    outcomes: list[tuple[str, str | None]] = []

    def finished(outcome) -> None:
        outcomes.append(outcome)
        if on_progress is not None:
            on_progress(len(outcomes), sum(reason is not None for _, reason in outcomes), len(videos))

    if scheduler in LOCAL_SCHEDULERS:
        from dask.callbacks import Callback

        options = {"scheduler": scheduler}
        if scheduler != "synchronous":
            options["num_workers"] = worker_count(scheduler, num_workers)
        keys = {t.key for t in tasks}
        # posttask runs in the scheduling loop of this process, once per finished task.
        with Callback(posttask=lambda key, value, *_: finished(value) if key in keys else None):
            dask.compute(*tasks, **options)
    elif scheduler.startswith(("tcp://", "tls://", "inproc://", "ucx://")):
        from distributed import Client, as_completed

        with Client(scheduler, set_as_default=False) as client:
            for future in as_completed(client.compute(tasks), loop=client.loop):  # not a default client
                finished(future.result())
    else:
        raise ValueError(
            f"unknown Dask scheduler {scheduler!r}: use threads, processes, synchronous or an address like tcp://host:8786"
        )
    order = {video: i for i, video in enumerate(videos)}
    for video, reason in sorted(outcomes, key=lambda o: order[o[0]]):
        if reason is None:
            result.done.append(video)
        else:
            result.failures[video] = reason
    return result
