"""The GPU smoke script's CPU dry run (issue 28 item 8): every part runs and prints its row of the one table."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
SCRIPT = REPO / "benchmarks" / "gpu_smoke.py"


def test_cpu_quick_dry_run_prints_one_table(tmp_path):
    env = {**os.environ, "TAL_BENCH_NO_README": "1", "OMP_NUM_THREADS": "1"}
    run = subprocess.run([sys.executable, str(SCRIPT), "--device", "cpu", "--quick"], cwd=tmp_path, env=env,
                         capture_output=True, text=True, timeout=240)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    lines = run.stdout.splitlines()
    rows = [line.split(" | ") for line in lines if line.startswith("| ") and not line.startswith("| part")]
    parts = [r[0].strip("| ") for r in rows]
    assert parts.count("check") == 5 and all(r[2] == "ok" for r in rows if r[0] == "| check"), run.stdout
    assert parts.count("i3d") == 2 and any("frames/s" in r[2] for r in rows)
    epochs = [r for r in rows if r[0] == "| epoch"]
    assert len(epochs) == 8 and not any(r[2] == "FAIL" for r in epochs), run.stdout  # 4 detectors x 2 recipes
    assert sum(line.startswith("| part |") for line in lines) == 1  # one table
    assert not (tmp_path / "README.md").exists()


def test_runs_without_the_project_installed():
    """On a bare GPU machine the repository's folders are imported as tal_pipeline (no pip install)."""
    code = ("import sys; sys.meta_path[:] = [f for f in sys.meta_path if 'Editable' not in repr(f)]; "
            "sys.path_hooks[:] = [h for h in sys.path_hooks if 'Editable' not in repr(h)]; "
            "sys.path[:] = [p for p in sys.path if '__editable__' not in p]; "
            f"sys.path.insert(0, {str(REPO / 'benchmarks')!r}); import gpu_smoke; gpu_smoke._importable(); "
            "import tal_pipeline.stages.precision as p; print(p.__file__)")
    run = subprocess.run([sys.executable, "-c", code], cwd="/", capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, run.stderr[-2000:]
    assert Path(run.stdout.strip()).resolve() == REPO / "stages" / "precision.py"
