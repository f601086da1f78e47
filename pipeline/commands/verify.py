"""`tal-pipeline verify [WORKDIR | ARTIFACT] [--repair] [--json]`: read every chunk and file, list what is damaged.

Exit status 0 when nothing is damaged (after --repair: when everything damaged was removed), 1 otherwise.
"""
from __future__ import annotations

import json

HELP = "check every stored chunk and file against its checksum; --repair removes the damaged parts"


def handle(args) -> int:
    from tal_pipeline.storage.verify import format_item, repair, verify

    target = args.target
    if target is None:
        import pipeline  # noqa: F401 - the shipped defaults, as `run` reads them
        from pipeline import config

        target = config.PathsConfig().workdir
    report = verify(target)
    report["repaired"] = repair(report["damaged"]) if args.repair else []
    if args.json:
        print(json.dumps(report, indent=1))
    else:
        for item in report["damaged"]:
            print(f"DAMAGED  {format_item(item)}")
        for item in report["unverified"]:
            print(f"unverified  {format_item(item)}")
        for line in report["repaired"]:
            print(f"repaired  {line}")
        print(f"{len(report['checked'])} artifact(s) checked in {target}: {len(report['damaged'])} damaged, "
              f"{len(report['unverified'])} without checksums"
              + (". Rerun the same command to recompute what was removed." if report["repaired"] else ""))
    return 1 if report["damaged"] and not args.repair else 0


def add_arguments(p) -> None:
    p.add_argument("target", nargs="?", default=None,
                   help="a workdir, or one artifact (a .zarr store or an artifact folder); default: [paths] workdir")
    p.add_argument("--repair", action="store_true",
                   help="remove the damaged videos of a store (and its completeness flag) or the damaged artifact "
                        "folder, so the next run recomputes just those")
    p.add_argument("--json", action="store_true", help="machine-readable report")
