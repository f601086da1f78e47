"""I3D feature extraction's precision setting and GPU helpers (stages/data/gpu_feed.py), tested on the CPU: bf16
autocast features near the fp32 ones and recorded as such, the precision shaping the features' artifact path (the
fp32 path unchanged), cuDNN settings set and restored, the batch size from free memory, tail-batch padding that
leaves every real window's features as they were."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from tal_pipeline.models.i3d import I3D
from tal_pipeline.stages.data import gpu_feed
from tal_pipeline.stages.data.features import extract_features, extract_video_features
from tal_pipeline.storage.zarr_store import ArtifactStore


@pytest.fixture(scope="module")
def model() -> I3D:
    torch.manual_seed(0)
    return I3D().eval()


@pytest.fixture(scope="module")
def frames() -> np.ndarray:
    return np.random.default_rng(1).integers(0, 256, (28, 40, 40, 3), dtype=np.uint8)


def test_bf16_features_are_near_fp32_and_not_equal(model, frames):
    fp32 = extract_features(frames, model, batch_size=2, num_threads=1)
    bf16 = extract_features(iter([frames[:9], frames[9:]]), model, batch_size=2, num_threads=1, precision="bf16")
    assert bf16.dtype == np.float32 and bf16.shape == fp32.shape == (4, 1024)
    rel = np.linalg.norm(bf16 - fp32, axis=1) / np.linalg.norm(fp32, axis=1)
    assert 0 < rel.max() < 0.05, rel  # bf16's 8-bit mantissa: ~1 % here; 0 would mean no autocast
    with pytest.raises(ValueError, match=r"I3D precision 'fp64': expected one of fp32, bf16, fp16"):
        extract_features(frames, model, precision="fp64")


def test_precision_is_recorded_per_video(tmp_path, model, frames):
    weights = tmp_path / "random_i3d.pt"
    torch.save(model.state_dict(), weights)
    store = ArtifactStore(tmp_path / "frames.zarr")
    store.begin({"params": {"test": 1}})
    store.write_video("v", frames, 8, ["time", "y", "x", "rgb"], {"fps": 8.0, "duration": 3.5})
    out = {}
    for precision in ("fp32", "bf16"):
        feats = ArtifactStore(tmp_path / f"features_{precision}.zarr")
        feats.begin({"params": {"test": 1}})
        extract_video_features("v", frames_store=str(store.path), store_path=str(feats.path), window=16, stride=4,
                               weights=str(weights), weights_sha256="test", device="cpu", num_threads=1,
                               precision=precision)
        array = feats.read("v")
        assert array.attrs["precision"] == precision
        out[precision] = np.asarray(array[...])
    np.testing.assert_array_equal(out["fp32"], extract_features(frames, model))  # fp32: as extracted directly
    assert not np.array_equal(out["fp32"], out["bf16"])


def test_precision_shapes_the_features_path():
    import pipeline  # noqa: F401  (reads luigi's files, registers the tasks)
    from pipeline.data_tasks import ExtractFeatures

    default, fp32 = ExtractFeatures(), ExtractFeatures(precision="fp32")
    assert default.spec().precision == "fp32" and default.artifact_path() == fp32.artifact_path()
    paths = {p: ExtractFeatures(precision=p).artifact_path() for p in ("fp32", "bf16", "fp16")}
    assert len(set(paths.values())) == 3
    assert ExtractFeatures(precision="fp16").spec().precision == "fp16"


def test_cuda_settings_autotune_drop_tf32_and_restore():
    cudnn, matmul = torch.backends.cudnn, torch.backends.cuda.matmul
    before = (cudnn.benchmark, cudnn.allow_tf32, matmul.allow_tf32)
    with gpu_feed.cuda_settings(torch.device("cpu"), "fp32"):
        assert (cudnn.benchmark, cudnn.allow_tf32, matmul.allow_tf32) == before  # CPU: nothing changes
    with gpu_feed.cuda_settings(torch.device("cuda"), "fp32"):  # flags only: no GPU needed
        assert cudnn.benchmark and not cudnn.allow_tf32 and not matmul.allow_tf32
    with gpu_feed.cuda_settings(torch.device("cuda"), "fp16"):
        assert cudnn.benchmark and cudnn.allow_tf32 == before[1]
    assert (cudnn.benchmark, cudnn.allow_tf32, matmul.allow_tf32) == before
    torch.use_deterministic_algorithms(True)
    try:
        with gpu_feed.cuda_settings(torch.device("cuda"), "fp16"):
            assert not cudnn.benchmark  # autotuning picks algorithms by timing: not in a deterministic run
    finally:
        torch.use_deterministic_algorithms(False)


def test_gpu_batch_size_from_free_memory():
    dev = torch.device("cuda")
    per_window_fp16 = gpu_feed.ACTIVATION_FACTOR * 3 * 16 * 224 * 224 * 2  # bytes
    assert gpu_feed.gpu_batch_size(dev, (224, 224, 3), 16, "fp16", free_bytes=80 * 2**30) == gpu_feed.MAX_GPU_BATCH
    # 20 windows' worth in half the free memory -> 16 (a multiple of 8); fp32 needs twice the memory -> 8 + 2 -> 8
    assert gpu_feed.gpu_batch_size(dev, (224, 224, 3), 16, "fp16", free_bytes=40 * per_window_fp16) == 16
    assert gpu_feed.gpu_batch_size(dev, (224, 224, 3), 16, "fp32", free_bytes=40 * per_window_fp16) == 8
    assert gpu_feed.gpu_batch_size(dev, (224, 224, 3), 16, "fp16", free_bytes=6 * per_window_fp16) == 3
    assert gpu_feed.gpu_batch_size(dev, (224, 224, 3), 16, "fp16", free_bytes=1000) == 1


def test_pad_batch_leaves_real_windows_unchanged(model):
    x = torch.randn(3, 3, 8, 32, 32).contiguous(memory_format=torch.channels_last_3d)
    padded = gpu_feed.pad_batch(x, batch_size=32)
    assert padded.shape[0] == 8 and torch.equal(padded[:3], x) and not padded[3:].any()
    assert gpu_feed.pad_batch(x, batch_size=3) is x  # never beyond the batch size
    with torch.inference_mode():
        torch.testing.assert_close(model(padded)[:3], model(x), rtol=1e-5, atol=1e-6)
