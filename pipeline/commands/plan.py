"""`tal-pipeline plan TASK [luigi options] [--json]`: the tasks `tal-pipeline run TASK [luigi options]` would
build, which are done and which would run, their artifacts and sizes on disk, counts per stage; runs nothing."""
from __future__ import annotations

import json

HELP = "list the tasks a run would build (done / to run, artifact, size) without running anything"


def handle(args) -> int:
    from pipeline.graph import build_plan, human, stage_counts

    luigi_args = [a for a in args.luigi_args if a != "--json"]
    as_json = args.json or len(luigi_args) < len(args.luigi_args)
    workdir, planned = build_plan(args.task, luigi_args)
    counts = stage_counts(planned)
    done = sum(p.done for p in planned)
    if as_json:
        print(json.dumps({"task": args.task, "workdir": str(workdir), "done": done, "to_run": len(planned) - done,
                          "bytes": sum(p.bytes for p in planned), "stages": counts,
                          "tasks": [p.to_dict() for p in planned]}, indent=1))
        return 0
    print(f"{args.task}: {len(planned)} tasks in {workdir}: {done} done, {len(planned) - done} to run "
          f"({human(sum(p.bytes for p in planned))} on disk)")
    width = max(len(p.stage) for p in planned)
    for p in planned:
        state = "done" if p.done else "to run"
        size = human(p.bytes) if p.bytes else "-"
        print(f"  {state:<6}  {p.stage:<{width}}  {size:>10}  {', '.join(p.paths) or '(wraps the tasks above)'}")
    print(f"\n  {'stage':<{width}}  done  to run")
    for stage, c in counts.items():
        print(f"  {stage:<{width}}  {c['done']:>4}  {c['to_run']:>6}")
    return 0


def add_arguments(p) -> None:
    p.add_argument("--json", action="store_true", help='print {"task", "workdir", "done", "to_run", "bytes", '
                                                       '"stages": {stage: {done, to_run}}, "tasks": [...]}')
    p.add_argument("task", help="task name, as for `tal-pipeline run`: FullRun, TrainDetector, ...")
    p.add_argument("luigi_args", nargs="...", help="luigi options, as for `tal-pipeline run` (--json may follow)")
