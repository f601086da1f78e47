"""Each benchmark writes its own section of benchmarks/README.md, so the figures there are what a script printed.

A benchmark ends with

    if __name__ == "__main__":
        from _readme import run_recorded  # benchmarks/_readme.py: this script's section of benchmarks/README.md

        run_recorded("bench_tsc", main)

run_recorded runs main() while copying everything it prints to standard output; when main() returns normally it
replaces the text between the lines `<!-- bench_tsc:start -->` and `<!-- bench_tsc:end -->` of benchmarks/README.md
with that output, the date, the commit (`git rev-parse --short HEAD`, and whether the working tree had uncommitted
changes), the machine (cores, memory, load average, GPU when the script used torch) and the exact command. A
README without the section gets it appended; running twice leaves one section. Nothing is written when main()
raises or exits (a failed assertion, --help), with `--no-readme` on the command line (removed before main() parses
its arguments) or with the environment variable TAL_BENCH_NO_README=1. TAL_BENCH_README=PATH writes to another
file instead (a test, a scratch copy).
"""
from __future__ import annotations

import datetime as _dt
import io
import os
import platform
import re
import shlex
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent
REPO = BENCH_DIR.parent
README = BENCH_DIR / "README.md"
NO_README_FLAG = "--no-readme"


class _Tee(io.TextIOBase):
    """Writes to the real stdout and keeps a copy."""

    def __init__(self, out):
        self.out, self.copy = out, io.StringIO()

    def write(self, text: str) -> int:
        self.copy.write(text)
        return self.out.write(text)

    def flush(self) -> None:
        self.out.flush()


def _git(*args: str) -> str | None:
    try:
        run = subprocess.run(["git", "-C", str(REPO), *args], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    return run.stdout.strip() if run.returncode == 0 else None


def commit() -> str:
    """Short commit of HEAD, '+ uncommitted changes' when tracked files differ from it; 'unknown' without git."""
    head = _git("rev-parse", "--short", "HEAD")
    if head is None:
        return "unknown (no git)"
    dirty = _git("status", "--porcelain", "--untracked-files=no")
    return f"`{head}`" + (" + uncommitted changes" if dirty else "")


def machine() -> str:
    """Cores, memory, OS/architecture, load average, and the GPU when the benchmark imported torch and used one."""
    parts = [f"{os.cpu_count()} cores"]
    try:
        parts.append(f"{os.sysconf('SC_PAGE_SIZE') * os.sysconf('SC_PHYS_PAGES') / 2**30:.0f} GiB RAM")
    except (ValueError, OSError, AttributeError):
        pass
    parts.append(f"{platform.system()} {platform.machine()}")
    try:
        parts.append("load average " + " / ".join(f"{x:.1f}" for x in os.getloadavg()) + " (1/5/15 min, at the end)")
    except OSError:
        pass
    torch = sys.modules.get("torch")
    try:
        if torch is not None and torch.cuda.is_available() and torch.cuda.is_initialized():
            parts.append(f"GPU {torch.cuda.get_device_name()}")
    except Exception:  # the GPU line is a courtesy, never a failure
        pass
    return ", ".join(parts)


def command(argv: list[str]) -> str:
    """The command as run from the repository root (PYTHONPATH included when it was set)."""
    script = Path(argv[0]).resolve()
    try:
        script_text = str(script.relative_to(REPO))
    except ValueError:
        script_text = str(script)
    env = f"PYTHONPATH={shlex.quote(os.environ['PYTHONPATH'])} " if os.environ.get("PYTHONPATH") else ""
    return env + shlex.join(["python", script_text, *argv[1:]])


def render(output: str, cmd: str, wall_s: float, when: str | None = None) -> str:
    """The section's body: one provenance line, the command, and what the script printed."""
    when = when or _dt.datetime.now(_dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    lines = [line.rstrip() for line in output.strip("\n").splitlines()]
    fence = "~~~~" if any(line.startswith("```") for line in lines) else "```"
    return "\n".join([
        f"_Written by the script on {when}, commit {commit()}, on {machine()}; {wall_s:.0f} s wall._",
        "",
        "    " + cmd,
        "",
        fence + "text",
        *lines,
        fence,
    ])


def write_section(name: str, body: str, readme: Path | None = None) -> Path:
    """Replace the text between `<!-- name:start -->` and `<!-- name:end -->` (each on its own line) with body;
    append a section (heading and markers) when the file has none, creating the file when absent."""
    readme = Path(readme or os.environ.get("TAL_BENCH_README") or README)
    start, end = f"<!-- {name}:start -->", f"<!-- {name}:end -->"
    text = readme.read_text() if readme.is_file() else "# Benchmarks\n"
    starts = [m.start() for m in re.finditer(rf"^{re.escape(start)}[ \t]*$", text, re.M)]
    ends = [m.start() for m in re.finditer(rf"^{re.escape(end)}[ \t]*$", text, re.M)]
    if not starts and not ends:
        text = text.rstrip("\n") + f"\n\n### {name}\n\n{start}\n{body}\n{end}\n"
    elif len(starts) == 1 and len(ends) == 1 and starts[0] < ends[0]:
        text = text[: starts[0]] + f"{start}\n{body}\n" + text[ends[0]:]
    else:
        raise ValueError(f"{readme}: the markers of section {name!r} are not one start line before one end line")
    tmp = readme.with_name(f".{readme.name}.{os.getpid()}.tmp")
    tmp.write_text(text)
    os.replace(tmp, readme)  # readers never see half a file
    return readme


def run_recorded(name: str, main: Callable[[], object], record: bool = True) -> None:
    """Run main() and, unless told not to (record=False, --no-readme, TAL_BENCH_NO_README=1), write what it
    printed into section `name` of benchmarks/README.md."""
    if NO_README_FLAG in sys.argv[1:]:
        sys.argv = [a for a in sys.argv if a != NO_README_FLAG]
        record = False
    if os.environ.get("TAL_BENCH_NO_README", "") not in ("", "0"):
        record = False
    if not record:
        main()
        return
    cmd = command(sys.argv)
    tee, real = _Tee(sys.stdout), sys.stdout
    t0 = time.perf_counter()
    sys.stdout = tee
    try:
        main()
    finally:
        sys.stdout = real
    path = write_section(name, render(tee.copy.getvalue(), cmd, time.perf_counter() - t0))
    print(f"(figures written to {path}, section {name}; {NO_README_FLAG} skips this)")
