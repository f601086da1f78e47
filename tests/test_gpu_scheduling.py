"""Safe GPU scheduling (issue 28 item 1): every stage that may use CUDA holds the luigi `gpu` resource, GPUs are
counted the way torch counts them, and `[resources] gpu = N` lets N runs share one card; with faked device counts."""
from __future__ import annotations

import json
import time

import luigi
import pytest
import torch

from pipeline.base import gpu_resources
from tal_pipeline.stages import runtime


@pytest.fixture
def gpus(monkeypatch):
    """fake(n): torch sees n CUDA devices (NVML's count, as on a CUDA build), whatever this machine has."""
    monkeypatch.delenv(runtime.GPUS_ENV, raising=False)
    monkeypatch.delenv("TAL_PIPELINE_GPU_RESOURCE", raising=False)

    def fake(n: int) -> None:
        monkeypatch.setattr(torch.backends.cuda, "is_built", lambda: True)
        monkeypatch.setattr(torch.cuda, "_device_count_nvml", lambda: n)

    return fake


def test_gpus_are_counted_as_torch_counts_them(gpus, monkeypatch):
    gpus(0)  # e.g. CUDA_VISIBLE_DEVICES="" on a GPU machine: torch sees none
    assert runtime.visible_gpu_count() == 0 and gpu_resources() == {}
    gpus(2)  # a container given its GPUs as devices other than /dev/nvidia0 still counts them
    assert runtime.visible_gpu_count() == 2 and gpu_resources() == {"gpu": 1}
    assert gpu_resources("cpu") == {}  # a stage told to stay on the CPU holds nothing
    monkeypatch.setenv(runtime.GPUS_ENV, "0")  # the override wins over NVML
    assert gpu_resources("auto") == {}
    monkeypatch.setenv(runtime.GPUS_ENV, "two")
    with pytest.raises(ValueError, match="TAL_PIPELINE_GPUS"):
        runtime.visible_gpu_count()


def test_nvml_count_applies_cuda_visible_devices(monkeypatch):
    if not torch.backends.cuda.is_built():  # the CPU build of torch: no CUDA, whatever the environment says
        monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0,1")
        monkeypatch.delenv(runtime.GPUS_ENV, raising=False)
        assert runtime.visible_gpu_count() == 0
    else:
        monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
        assert torch.cuda._device_count_nvml() in (0, -1)


def test_every_cuda_stage_holds_the_gpu(gpus):
    from luigi.cmdline_parser import CmdlineParser

    from pipeline.bapg_tasks import SimilarityMatrices, TrainEncoder
    from pipeline.data_tasks import ExtractFeatures
    from pipeline.detector_tasks import Detect, TrainDetector

    gpus(1)
    with CmdlineParser.global_instance(["FullRun"]):
        for task in (ExtractFeatures(), TrainEncoder(), TrainDetector(), Detect(), SimilarityMatrices(device="cuda"),
                     SimilarityMatrices(device="auto")):
            assert task.resources == {"gpu": 1}, type(task).__name__
        for task in (SimilarityMatrices(), TrainDetector(device="cpu"), Detect(device="cpu"),
                     TrainEncoder(device="cpu")):
            assert task.resources == {}, type(task).__name__
    gpus(0)
    with CmdlineParser.global_instance(["FullRun"]):
        assert Detect().resources == {} and TrainDetector().resources == {}


class _GpuStage(luigi.Task):
    """Records when it ran; holds the GPU resource as the pipeline's CUDA stages do."""

    name = luigi.Parameter()
    folder = luigi.Parameter()

    @property
    def resources(self):
        return gpu_resources()

    def output(self):
        return luigi.LocalTarget(f"{self.folder}/{self.name}.json")

    def run(self):
        start = time.time()
        time.sleep(0.6)
        with self.output().open("w") as f:
            json.dump([start, time.time()], f)


def _overlap(tmp_path, gpu_units: int) -> bool:
    """Two GPU stages under luigi with 2 workers and [resources] gpu = gpu_units: did they run at the same time?"""
    config = luigi.configuration.get_config()
    config.set("resources", "gpu", str(gpu_units))
    try:
        assert luigi.build([_GpuStage(name=n, folder=str(tmp_path / str(gpu_units))) for n in "ab"], workers=2,
                           local_scheduler=True, log_level="WARNING")
    finally:
        config.set("resources", "gpu", "1")
    (a0, a1), (b0, b1) = (json.loads((tmp_path / str(gpu_units) / f"{n}.json").read_text()) for n in "ab")
    return a0 < b1 and b0 < a1


def test_resource_units_decide_how_many_runs_share_a_card(gpus, tmp_path, monkeypatch):
    monkeypatch.setenv(runtime.GPUS_ENV, "1")  # the faked count reaches luigi's forked workers too
    assert not _overlap(tmp_path, 1)
    assert _overlap(tmp_path, 2)
