"""`tal-pipeline gc [luigi options] [--keep TASK [luigi options] ...] [--dry-run]`: delete the artifacts of the
workdir that no kept task graph reaches (default: FullRun's with the options given), printing each with its size.

Options before the first --keep apply to every kept task; those after a --keep TASK to that task only. The
graphs are built as `tal-pipeline plan` builds them (pipeline.graph). Refused while another process holds the
workdir (pipeline.workdir_lock); a run started meanwhile waits for gc to finish.
"""
from __future__ import annotations

import sys

HELP = "delete the workdir's artifacts that no kept task graph reaches (--dry-run: only list them)"
# Every argument, luigi's options, --keep and --dry-run alike, is this command's own: none is argparse's option.
PARSER = {"prefix_chars": "+", "add_help": False}


def split_keeps(argv: list[str]) -> tuple[list[list[str]], bool]:
    """["--x", "1", "--keep", "A", "--y", "--keep", "B", "--dry-run"] -> ([["A", "--x", "1", "--y"],
    ["B", "--x", "1"]], True); no --keep: [["FullRun", *common]]."""
    dry_run = "--dry-run" in argv
    argv = [a for a in argv if a != "--dry-run"]
    groups: list[list[str]] = [[]]
    for arg in argv:
        if arg == "--keep":
            groups.append([])
        else:
            groups[-1].append(arg)
    common, keeps = groups[0], groups[1:]
    if any(not k or k[0].startswith("-") for k in keeps):
        raise ValueError("--keep needs a task name first: --keep TASK [luigi options]")
    return ([[k[0], *common, *k[1:]] for k in keeps] or [["FullRun", *common]]), dry_run


def handle(args) -> int:
    from pipeline import cleanup, workdir_lock
    from pipeline.graph import build_plan, human, workdir_of

    if {"-h", "--help"} & set(args.argv):
        print(f"usage: tal-pipeline gc {USAGE}\n\n{__doc__.split(':', 1)[1].strip()}")  # the text after the usage
        return 0
    keeps, dry_run = split_keeps(args.argv)
    workdirs = {str(workdir_of(k[0], k[1:]).resolve()) for k in keeps}
    if len(workdirs) != 1:
        raise ValueError(f"the kept tasks resolve to different workdirs {sorted(workdirs)}: gc cleans one")
    workdir = workdir_of(keeps[0][0], keeps[0][1:])
    if not workdir.is_dir():
        raise FileNotFoundError(f"workdir {workdir} does not exist")
    try:
        workdir_lock.hold_exclusive(workdir)  # before any artifact path is resolved
    except workdir_lock.WorkdirBusy as exc:
        print(f"tal-pipeline gc: refused: {exc}", file=sys.stderr)
        return 3
    try:
        reachable, protected = set(), []
        for task, *flags in keeps:
            _, planned = build_plan(task, flags)
            reachable |= {p.split("/")[-1] for t in planned for p in t.paths}
            protected += configured_dataset(task, flags)
        found = cleanup.unreachable(workdir, reachable, protected)
        verb = "would remove" if dry_run else "removed"
        for item in found:
            if not dry_run:
                cleanup.remove(item.path)
            print(f"{verb} {item.path}  {human(item.bytes)}  ({item.why})")
        print(f"gc: {verb} {len(found)} entries, {human(sum(i.bytes for i in found))}, from {workdir} (kept "
              f"{len(reachable)} artifacts of {', '.join(k[0] for k in keeps)})")
    finally:
        workdir_lock.release(workdir)
    return 0


def configured_dataset(task: str, flags: list[str]) -> list:
    """The user's dataset paths ([dataset] videos, annotations, features) as that command configures them."""
    from pathlib import Path

    from pipeline import config
    from pipeline.graph import parsed

    with parsed(task, flags):
        cfg = config.DatasetConfig()
        return [Path(p) for p in (cfg.videos, cfg.annotations, cfg.features) if p]


USAGE = "[luigi options] [--keep TASK [luigi options] ...] [--dry-run]"


def add_arguments(p) -> None:
    p.add_argument("argv", nargs="*", metavar=USAGE,
                   help="what to keep (default FullRun with the options given) and --dry-run to only list")
