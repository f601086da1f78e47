"""benchmarks/bench_published_recipes.py end to end (issue 26 item 7), in its recording mode: each detector's child
process prints one JSON line that the parent reads, and the parent alone writes the README section."""
from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
SCRIPT = REPO / "benchmarks" / "bench_published_recipes.py"


def test_records_one_row_per_detector_in_the_readme(tmp_path):
    readme = tmp_path / "README.md"
    readme.write_text((REPO / "benchmarks" / "README.md").read_text())
    env = {**os.environ, "TAL_BENCH_README": str(readme), "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    env.pop("TAL_BENCH_NO_README", None)
    run = subprocess.run([sys.executable, str(SCRIPT), "--detectors", "actionformer", "--length", "64", "--videos",
                          "2", "--threads", "1"], cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    row = re.search(r"^actionformer\s+(\d+)\s+(\d+)\s+([\d.]+)s\s+(\d+)\s+([\d.]+) min\s+([\d.]+) GiB$", run.stdout,
                    re.M)
    assert row, run.stdout  # a measured row, not "failed"
    assert int(row.group(1)) == 2304 and int(row.group(2)) == 2  # the published THUMOS14 recipe's steps and batch
    section = readme.read_text().split("bench_published_recipes", 1)[1]
    assert row.group(0) in section  # the parent wrote its own output, once
    assert readme.read_text().count("figures written to") == 0
    assert (REPO / "benchmarks" / "README.md").read_text() != readme.read_text()
