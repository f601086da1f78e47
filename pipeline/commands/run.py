"""`tal-pipeline run TASK [luigi options]`: luigi with this project's luigi.cfg, from any directory."""
from __future__ import annotations

import os
from pathlib import Path

REPO_CONFIG = Path(__file__).resolve().parents[2] / "luigi.cfg"
# What must hold even without a luigi.cfg: no central scheduler, and failures give exit codes.
DEFAULTS = {
    "core": {"local_scheduler": "true"},
    "retcode": {"already_running": "10", "missing_data": "20", "not_run": "25", "task_failed": "30",
                "scheduling_error": "35", "unhandled_exception": "40"},
}


def config_path() -> Path | None:
    """./luigi.cfg, else $LUIGI_CONFIG_PATH, else the project's own luigi.cfg (a clone or editable install)."""
    if Path("luigi.cfg").is_file():
        return Path("luigi.cfg").resolve()
    if os.environ.get("LUIGI_CONFIG_PATH"):
        return Path(os.environ["LUIGI_CONFIG_PATH"])
    return REPO_CONFIG if REPO_CONFIG.is_file() else None


def prepare_config() -> Path | None:
    import luigi.configuration

    path = config_path()
    parser = luigi.configuration.get_config()
    if path is not None:
        parser.add_config_path(str(path))
    for section, values in DEFAULTS.items():
        for key, value in values.items():
            if not parser.has_option(section, key):
                if not parser.has_section(section):
                    parser.add_section(section)
                parser.set(section, key, value)
    return path


def handle(args) -> int:
    import luigi.cmdline

    prepare_config()
    argv = ["--module", "pipeline", args.task, *args.luigi_args]
    try:
        luigi.cmdline.luigi_run(argv)
    except SystemExit as exc:  # luigi exits with the [retcode] code
        return int(exc.code or 0)
    return 0


def register(sub) -> None:
    p = sub.add_parser("run", help="run a pipeline task with luigi (e.g. FullRun, SampleFrames --force)")
    p.add_argument("task", help="task name: FullRun, SampleFrames, ExtractFeatures, ...")
    p.add_argument("luigi_args", nargs="...", help="further luigi options, e.g. --dataset-videos DIR --workers 1")
    p.set_defaults(func=handle)
