"""`tal-pipeline run TASK [luigi options]`: `luigi --module pipeline TASK` from any directory.

The configuration is the package's own luigi.cfg, overridden by ./luigi.cfg, $LUIGI_CONFIG_PATH and the
options given here (pipeline.config); `tal-pipeline config` shows the result.
"""
from __future__ import annotations

HELP = "run a pipeline task with luigi (e.g. FullRun, SampleFrames --force)"


def handle(args) -> int:
    import luigi.cmdline

    import pipeline  # noqa: F401 - reads the shipped defaults before luigi reads [core] and [retcode]

    try:
        luigi.cmdline.luigi_run(["--module", "pipeline", args.task, *args.luigi_args])
    except SystemExit as exc:  # luigi exits with the [retcode] code
        return int(exc.code or 0)
    return 0


def add_arguments(p) -> None:
    p.add_argument("task", help="task name: FullRun, SampleFrames, ExtractFeatures, ...")
    p.add_argument("luigi_args", nargs="...", help="further luigi options, e.g. --dataset-videos DIR --workers 1")
