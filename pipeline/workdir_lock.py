"""Who holds a workdir: every process that resolves an artifact path in it (a run, a plan) holds a shared lock on
it until it exits; `tal-pipeline gc` deletes only under the exclusive lock.

luigi's own lock (a pid file per command line, in [core] lock_pid_dir) refuses a second identical command, but it
is keyed on the command line, not the workdir: `gc` cannot tell from it whether a run uses this workdir. An flock
on a file named after the workdir can: the kernel drops it when the process (and the task processes luigi forked
from it) exit, crash included. The file lies next to luigi's, in the temporary folder (LOCK_DIR), not in the
workdir, so building a graph writes nothing there (a workdir may not exist before the run). A run started while
gc holds the workdir waits for gc to finish.
"""
from __future__ import annotations

import fcntl
import hashlib
import os
import tempfile
from pathlib import Path

LOCK_DIR = Path(tempfile.gettempdir()) / "tal-pipeline-workdirs"
_held: dict[str, tuple[int, str]] = {}  # resolved workdir -> (open file descriptor, "shared" | "exclusive")
_named: set[tuple[str, str]] = set()  # (cwd, workdir as given) seen by hold_shared (artifact_path calls it often)


def lock_path(workdir: str | Path) -> Path:
    """The lock file of `workdir` (its resolved path's hash; the file holds the path, for a reader)."""
    key = str(Path(workdir).resolve())
    return LOCK_DIR / f"{hashlib.sha1(key.encode()).hexdigest()[:20]}.lock"


class WorkdirBusy(RuntimeError):
    """Another process holds the workdir (a pipeline run, or a plan)."""


def _open(workdir: Path) -> int:
    try:
        LOCK_DIR.mkdir(parents=True)
        os.chmod(LOCK_DIR, 0o1777)  # shared by every user, like /tmp: each may lock the workdirs it uses
    except FileExistsError:
        pass
    path = lock_path(workdir)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
    if os.fstat(fd).st_size == 0:
        os.write(fd, f"{workdir}\n".encode())
    return fd


def hold_shared(workdir: str | Path) -> None:
    """Hold `workdir` for the rest of this process (once; a no-op afterwards, or under this process's own gc).
    Where no lock file can be made (LOCK_DIR not writable) the workdir is not held."""
    named = (os.getcwd(), str(workdir))
    if named in _named:
        return
    key = str(Path(workdir).resolve())
    if key not in _held:
        try:
            fd = _open(Path(key))
        except OSError:
            _named.add(named)
            return
        fcntl.flock(fd, fcntl.LOCK_SH)  # blocks only while a gc is deleting
        _held[key] = (fd, "shared")
    _named.add(named)


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
