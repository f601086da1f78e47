"""benchmarks/bench_bapg_probe.py end to end on tiny imported features (the oracle source: no encoder to train):
the paired held-out table it prints and writes, on training videos only."""
from __future__ import annotations

import json
import subprocess
import sys

from tests.conftest import REPO, luigi_env


def test_probe_prints_and_writes_paired_differences(tmp_path):
    from pipeline.cli import main

    data = tmp_path / "bench"
    assert main(["synth", "--features", str(data), "--videos-train", "4", "--videos-test", "2", "--width", "64",
                 "--max-duration", "20", "--seed", "1"]) == 0
    luigi_args = (f"--dataset-features {data / 'features'} --dataset-annotations {data / 'annotations.json'} "
                  "--dataset-train-subset validation --dataset-test-subset test --detectors-recipe small "
                  f"--ProposalFeatures-projection-dim 16 --paths-workdir {tmp_path / 'runs'}")
    out = tmp_path / "probe.json"
    fusions = [{}, {"gate": True, "gate_penalty": 0.005}]
    result = subprocess.run(
        [sys.executable, "benchmarks/bench_bapg_probe.py", "--no-readme", "--sources", "oracle", "--seeds", "1",
         "--folds", "2", "--train", '{"epochs": 1, "model": {"width": 16, "levels": 3}}', "--fusions",
         json.dumps(fusions), "--threads", "1", "--luigi-args", luigi_args, "--out", str(out)],
        cwd=REPO, env={**luigi_env(), "PYTHONPATH": str(REPO)}, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "4 training videos in 2 folds [2, 2], 1 seeds" in result.stdout
    table = json.loads(out.read_text())
    assert [(r["source"], r["fusion"]) for r in table["table"]] == [("oracle", f) for f in fusions]
    assert len(table["baseline"]) == 2  # 1 seed x 2 folds, paired with every row
    for row in table["table"]:
        assert len(row["avg"]["per_pair"]) == 2 and row["avg"]["std"] >= 0
        assert f'oracle  {json.dumps(row["fusion"])}' in result.stdout
