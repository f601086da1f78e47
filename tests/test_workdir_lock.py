"""pipeline.workdir_lock: a process that has resolved an artifact path holds its workdir until it exits; gc's
exclusive hold is refused meanwhile and granted after; holding writes nothing into the workdir."""
from __future__ import annotations

import subprocess

import pytest

from pipeline import workdir_lock
from tests.conftest import BIN

HOLD = ("import sys; from pipeline.workdir_lock import hold_shared; hold_shared(sys.argv[1]); print('held', "
        "flush=True); sys.stdin.read()")


def test_exclusive_is_refused_while_another_process_holds_and_granted_after(tmp_path):
    workdir = tmp_path / "runs"
    other = subprocess.Popen([str(BIN / "python"), "-c", HOLD, str(workdir)], stdin=subprocess.PIPE,
                             stdout=subprocess.PIPE, text=True)
    try:
        assert other.stdout.readline().strip() == "held"
        with pytest.raises(workdir_lock.WorkdirBusy, match="in use by a pipeline run"):
            workdir_lock.hold_exclusive(workdir)
    finally:
        other.communicate("", timeout=30)  # its stdin closes: it exits, and the kernel drops its lock
    workdir_lock.hold_exclusive(workdir)
    try:
        workdir_lock.hold_shared(workdir)  # under this process's own gc: a no-op, not a deadlock
        assert not workdir.exists()  # the lock file is not in the workdir
        assert workdir_lock.lock_path(workdir).read_text().strip() == str(workdir.resolve())
    finally:
        workdir_lock.release(workdir)
    workdir_lock.hold_shared(workdir)
    try:
        # this process holds it now: another process's gc is refused
        proc = subprocess.run([str(BIN / "python"), "-c", "import sys; from pipeline.workdir_lock import "
                               "hold_exclusive; hold_exclusive(sys.argv[1])", str(workdir)], capture_output=True,
                              text=True, timeout=60)
        assert proc.returncode != 0 and "WorkdirBusy" in proc.stderr
    finally:
        workdir_lock.release(workdir)
