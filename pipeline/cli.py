"""The `tal-pipeline` console script: subcommands discovered in pipeline/commands/."""
from __future__ import annotations

import argparse
import importlib
import pkgutil
import sys

from pipeline import commands


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="tal-pipeline",
                                     description="Temporal action localization pipeline with BAPG.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for info in sorted(pkgutil.iter_modules(commands.__path__), key=lambda m: m.name):
        module = importlib.import_module(f"pipeline.commands.{info.name}")
        # PARSER: add_parser options of a command that passes luigi's options through (gc: prefix_chars)
        command = sub.add_parser(info.name, help=module.HELP, **getattr(module, "PARSER", {}))
        module.add_arguments(command)
        command.set_defaults(func=module.handle)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        result = args.func(args)
    except BrokenPipeError:  # output piped into `head` and the like
        return 0
    except (ValueError, FileNotFoundError, KeyError) as exc:
        # Bad input: one clear line naming the file and the problem, no traceback.
        print(f"tal-pipeline {args.command}: error: {exc}", file=sys.stderr)
        return 2
    return int(result or 0)


if __name__ == "__main__":
    sys.exit(main())
