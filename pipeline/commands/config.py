"""`tal-pipeline config`: the resolved configuration, each value with the file it came from (or "default")."""
from __future__ import annotations

import json

HELP = "print the resolved configuration and where each value came from"


def handle(args) -> int:
    import pipeline  # noqa: F401 - registers the tasks whose parameters are listed
    from pipeline.config import config_files, resolved_config

    rows = [r for r in resolved_config() if not args.section or r["section"].lower() == args.section.lower()]
    if args.section and not rows:
        raise ValueError(f"no section {args.section!r} (tal-pipeline config lists them all)")
    if args.json:
        print(json.dumps({"files": [str(f) for f in config_files()], "values": rows}, indent=1))
        return 0
    print("# files read, lowest priority first (the command line overrides them all):")
    for file in config_files():
        print(f"#   {file}")
    section = None
    width = max(len(f"{r['key']} = {r['value']}") for r in rows)
    for r in rows:
        if r["section"] != section:
            section = r["section"]
            print(f"\n[{section}]")
        print(f"{r['key']} = {r['value']}".ljust(width) + f"   ; {r['source']}")
    return 0


def add_arguments(p) -> None:
    p.add_argument("--section", default=None, help="only this section (e.g. TSCProposals, dataset)")
    p.add_argument("--json", action="store_true", help='print {"files": [...], "values": [{section, key, value, '
                                                       'source}]}')
