"""Who holds a workdir: every process that resolves an artifact path in it (a run, a plan) holds a shared lock on
`<workdir>/.tal-pipeline.lock` until it exits; `tal-pipeline gc` deletes only under the exclusive lock.

luigi's own lock (a pid file per command line, in [core] lock_pid_dir) refuses a second identical command, but it
is keyed on the command line, not the workdir: `gc` cannot tell from it whether a run uses this workdir. An flock
can: the kernel drops it when the process (and the task processes luigi forked from it) exit, crash included.
A run that starts while gc holds the workdir waits for gc to finish.
"""
from __future__ import annotations

import fcntl
import os
from pathlib import Path

LOCK_FILE = ".tal-pipeline.lock"
_held: dict[str, tuple[int, str]] = {}  # resolved workdir -> (open file descriptor, "shared" | "exclusive")
_named: set[str] = set()  # workdirs as given that hold_shared has seen (artifact_path calls it very often)


class WorkdirBusy(RuntimeError):
    """Another process holds the workdir (a pipeline run, or a plan)."""


def _open(workdir: Path) -> int:
    workdir.mkdir(parents=True, exist_ok=True)
    return os.open(workdir / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o666)


def hold_shared(workdir: str | Path) -> None:
    """Hold `workdir` for the rest of this process (once; a no-op afterwards, or under this process's own gc)."""
    if str(workdir) in _named:
        return
    key = str(Path(workdir).resolve())
    if key in _held:
        _named.add(str(workdir))
        return
    fd = _open(Path(key))
    fcntl.flock(fd, fcntl.LOCK_SH)  # blocks only while a gc is deleting
    _held[key] = (fd, "shared")
    _named.add(str(workdir))


def hold_exclusive(workdir: str | Path) -> None:
    """Hold `workdir` alone until release(); WorkdirBusy when any other process holds it."""
    key = str(Path(workdir).resolve())
    if key in _held:
        raise WorkdirBusy(f"{workdir}: this process already uses it")
    fd = _open(Path(key))
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise WorkdirBusy(f"{workdir} is in use by a pipeline run (or plan) in another process: gc deletes nothing "
                          f"while a run holds the workdir; try again when it has finished") from None
    _held[key] = (fd, "exclusive")


def release(workdir: str | Path) -> None:
    """Give up this process's lock on `workdir` (if any)."""
    _named.clear()
    held = _held.pop(str(Path(workdir).resolve()), None)
    if held is not None:
        os.close(held[0])  # closing the only descriptor drops the flock
