"""The task graph that `tal-pipeline run TASK [luigi flags]` would build, built without running anything.

The same luigi command-line parser and the same tasks resolve the same configuration and artifact paths; then
each task's requires() is walked and complete() asked, as luigi's scheduler would. Nothing runs, nothing is
imported that only run() needs (no torch), and nothing is deleted: --force flags (which remove an artifact when
the task is built) are refused. Used by `tal-pipeline plan` and `tal-pipeline gc`.
"""
from __future__ import annotations

import os
from collections import Counter
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path

import luigi

LATEST_REPORT = "report"  # Report copies its folder to <workdir>/report


@dataclass(frozen=True)
class PlannedTask:
    stage: str  # the task's name (its luigi family): SampleFrames, TrainDetector, ...
    task_id: str
    done: bool  # complete(): the run would not run it
    paths: tuple[str, ...]  # its artifacts (none for a wrapper such as FullRun)
    bytes: int  # their size on disk now (0 when absent; a half-written store of an interrupted run counts)

    def to_dict(self) -> dict:
        return {**asdict(self), "paths": list(self.paths)}


def disk_size(path: Path) -> int:
    """Bytes of a file or of everything under a folder (links are not followed: their own size)."""
    try:
        st = path.lstat()
    except FileNotFoundError:
        return 0
    if not path.is_dir() or path.is_symlink():
        return st.st_size
    total = 0
    for root, dirs, files in os.walk(path):
        for name in dirs + files:
            try:
                total += os.lstat(os.path.join(root, name)).st_size
            except FileNotFoundError:  # removed meanwhile
                pass
    return total


def human(n: int) -> str:
    """1536 -> '1.5 KiB'."""
    size = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{size:.1f} TiB"


def refuse_force(luigi_args: list[str]) -> None:
    forced = [a for a in luigi_args if a == "--force" or a.split("=", 1)[0].endswith("-force")]
    if forced:
        raise ValueError(f"{' '.join(forced)}: building the task would delete its artifact; plan and gc run and "
                         f"delete nothing of the graph: leave --force out")


@contextmanager
def parsed(task: str, luigi_args: list[str]):
    """Within the block, luigi's configuration is that of `tal-pipeline run task *luigi_args`; yields the root
    task. Unknown tasks raise ValueError; unknown flags exit as luigi's own parser does (usage, code 2)."""
    from luigi.cmdline_parser import CmdlineParser
    from luigi.task_register import TaskClassException

    import pipeline  # noqa: F401 - registers the tasks, reads the shipped luigi.cfg first

    refuse_force(luigi_args)
    try:
        luigi.task_register.Register.get_task_cls(task)
    except TaskClassException as exc:
        raise ValueError(f"unknown task {task!r}: {' '.join(str(exc).split())}") from None  # one line
    with CmdlineParser.global_instance([task, *luigi_args]) as parser:
        yield parser.get_task_obj()


def workdir_of(task: str, luigi_args: list[str]) -> Path:
    """[paths] workdir as the command would resolve it (no artifact path computed, so no workdir held)."""
    from pipeline import config

    with parsed(task, luigi_args):
        return Path(config.PathsConfig().workdir)


def walk(root: luigi.Task) -> list[luigi.Task]:
    """Every task the root requires, directly or not, each once, dependencies before the tasks that need them."""
    order, seen = [], set()

    def visit(task: luigi.Task) -> None:
        if task.task_id in seen:
            return
        seen.add(task.task_id)
        for dep in luigi.task.flatten(task.requires()):
            visit(dep)
        order.append(task)

    visit(root)
    return order


def artifact_paths(task: luigi.Task, workdir: Path) -> tuple[str, ...]:
    paths = [t.path for t in luigi.task.flatten(task.output()) if hasattr(t, "path")]
    if task.get_task_family() == "Report":
        paths.append(str(workdir / LATEST_REPORT))
    return tuple(paths)


def build_plan(task: str, luigi_args: list[str]) -> tuple[Path, list[PlannedTask]]:
    """(workdir, every task of the graph with its state, artifacts and their size on disk)."""
    from pipeline import config
    from pipeline.base import resolving

    with parsed(task, luigi_args) as root, resolving():  # each spec and artifact hash resolved once for the graph
        workdir = Path(config.PathsConfig().workdir)
        planned = []
        for t in walk(root):
            paths = artifact_paths(t, workdir)
            planned.append(PlannedTask(t.get_task_family(), t.task_id, bool(t.complete()), paths,
                                       sum(disk_size(Path(p)) for p in paths)))
    return workdir, planned


def stage_counts(planned: list[PlannedTask]) -> dict[str, dict[str, int]]:
    """{stage: {"done": n, "to_run": m}} in the graph's order."""
    done = Counter(p.stage for p in planned if p.done)
    todo = Counter(p.stage for p in planned if not p.done)
    stages = dict.fromkeys(p.stage for p in planned)
    return {s: {"done": done[s], "to_run": todo[s]} for s in stages}
