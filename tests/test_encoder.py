"""BAPG II-B: sample pools step by step, the losses (eq. 3 as printed vs the default), the encoder, and learning."""
import io
import json

import numpy as np
import pandas as pd
import pytest
import torch

from tal_pipeline.models.encoder import bapg_loss, build_encoder, triplet_margin_loss
from tal_pipeline.stages.bapg.encoder import embed, load_encoder, make_embedder, train_encoder
from tal_pipeline.stages.bapg.sample_pools import build_sample_pools, pool_similarity, video_pools
from tal_pipeline.stages.data.timegrid import TimeGrid
from tests.reference_similarity import cosine_similarity_rows

UNIT = TimeGrid(fps=1.0, window=1, stride=1)  # step i is centred at i + 0.5 s
GRID = TimeGrid(fps=10.0, window=4, stride=2)  # step i is centred at 0.2 i + 0.2 s


pytestmark = pytest.mark.usefixtures("torch_one_thread")  # deterministic, and fair to other tests


def ann(*spans, video="v"):
    """[(start, end[, label[, ambiguous]]) ...] -> annotation table of one video."""
    rows = [{"video": video, "label": s[2] if len(s) > 2 else "a", "start": float(s[0]), "end": float(s[1]),
             "ambiguous": bool(s[3]) if len(s) > 3 else False} for s in spans]
    return pd.DataFrame(rows, columns=["video", "label", "start", "end", "ambiguous"])


def pools_of(spans, t=20, cap=2.0, grid=UNIT):
    p = build_sample_pools(ann(*spans), grid, {"v": t}, cap)
    return [(x.positive.tolist(), x.hard_negative.tolist()) for x in p.instances], p.easy_negative["v"].tolist(), p


# ----------------------------------------------------------------------------------------------- pools

def test_pools_two_isolated_instances():
    inst, easy, p = pools_of([(4, 7), (12, 14, "b")])
    # [4, 7) holds centres 4.5, 5.5, 6.5; 2 s either side: centres 2.5, 3.5 before and 7.5, 8.5 after.
    assert inst == [([4, 5, 6], [2, 3, 7, 8]), ([12, 13], [10, 11, 14, 15])]
    assert easy == [0, 1, 9, 16, 17, 18, 19]
    assert [x.label for x in p.instances] == ["a", "b"] and p.n_skipped == 0
    assert all(x.positive.dtype == np.int64 and x.hard_negative.dtype == np.int64 for x in p.instances)


def test_pools_neighbouring_action_truncates_hard_negatives():
    inst, easy, _ = pools_of([(4, 7), (8, 10)])
    # only step 7 lies between the two: it is a hard negative of both, and the clips stop at the other action.
    assert inst == [([4, 5, 6], [2, 3, 7]), ([8, 9], [7, 10, 11])]
    assert easy == [0, 1] + list(range(12, 20))


def test_pools_overlapping_instances():
    inst, easy, _ = pools_of([(4, 8), (6, 10, "b")])
    # the overlap (steps 6, 7) is positive for both; neither has a hard negative on the side of the other.
    assert inst == [([4, 5, 6, 7], [2, 3]), ([6, 7, 8, 9], [10, 11])]
    assert easy == [0, 1] + list(range(12, 20))


def test_pools_instance_at_video_start_and_end():
    inst, easy, _ = pools_of([(0, 3), (17, 20)])
    assert inst == [([0, 1, 2], [3, 4]), ([17, 18, 19], [15, 16])]  # hard negatives only inside the video
    assert easy == list(range(5, 15))


def test_pools_too_short_instance_is_skipped_and_counted():
    inst, easy, p = pools_of([(4, 7), (10.6, 10.9, "b")])  # no centre (10.5, 11.5) inside [10.6, 10.9)
    assert inst == [([4, 5, 6], [2, 3, 7, 8])]
    assert p.n_skipped == 1 and p.skipped[0]["label"] == "b" and p.summary()["skipped_too_short"] == 1
    assert 10 in easy and 11 in easy  # a skipped instance occupies no step


def test_pools_cap_options():
    spans = [(4, 7), (15, 16)]
    assert pools_of(spans, cap=None)[0] == [([4, 5, 6], [0, 1, 2, 3, 7, 8, 9, 10, 11, 12, 13, 14]),
                                            ([15], [7, 8, 9, 10, 11, 12, 13, 14, 16, 17, 18, 19])]
    assert pools_of(spans, cap=0.0)[0] == [([4, 5, 6], []), ([15], [])]
    assert pools_of(spans, cap=1.0)[0] == [([4, 5, 6], [3, 7]), ([15], [14, 16])]
    # "instance": as long as the instance itself (3 s and 1 s here)
    assert pools_of(spans, cap="instance")[0] == [([4, 5, 6], [1, 2, 3, 7, 8, 9]), ([15], [14, 16])]
    with pytest.raises(ValueError, match="hard_negative_seconds"):
        pools_of(spans, cap=-1.0)


def test_pools_ambiguous_span_blocks_and_is_no_negative():
    inst, easy, p = pools_of([(4, 7), (8, 10, "Ambiguous", True)])
    assert inst == [([4, 5, 6], [2, 3, 7])] and len(p.instances) == 1
    assert 8 not in easy and 9 not in easy and easy == [0, 1] + list(range(10, 20))


def test_pools_use_the_feature_time_grid():
    # GRID: centres 0.2, 0.4, ...; [1.0, 1.6) holds steps 4, 5, 6 (1.0, 1.2, 1.4); 0.5 s before: centres in
    # [0.5, 1.0) = 0.6, 0.8 (steps 2, 3); 0.5 s after: centres in [1.6, 2.1) = 1.6, 1.8, 2.0 (steps 7, 8, 9).
    inst, _, _ = pools_of([(1.0, 1.6)], t=12, cap=0.5, grid=GRID)
    assert inst == [([4, 5, 6], [2, 3, 7, 8, 9])]
    c = GRID.to_seconds(np.arange(12))
    assert np.all((c[[4, 5, 6]] >= 1.0) & (c[[4, 5, 6]] < 1.6)) and c[3] < 1.0 and c[7] >= 1.6


def test_pools_other_videos_and_unannotated_videos():
    table = pd.concat([ann((4, 7)), ann((1, 2), video="other_split")])
    p = build_sample_pools(table, {"v": UNIT, "w": UNIT}, {"v": 10, "w": 5})
    assert [x.video for x in p.instances] == ["v"]
    assert p.easy_negative["w"].tolist() == [0, 1, 2, 3, 4]  # no annotation: all background
    with pytest.raises(ValueError, match="'v'.*end <= start"):
        video_pools("v", ann((3, 3)), 10, UNIT)
    with pytest.raises(ValueError, match="'w'.*time grid"):
        build_sample_pools(table, {"v": UNIT}, {"v": 10, "w": 5})
    with pytest.raises(TypeError, match="'v'.*TimeGrid.from_attrs"):  # a stored dict is read at the boundary
        build_sample_pools(table, {"v": UNIT.to_attrs()}, {"v": 10})


# ----------------------------------------------------------------------------------------------- losses

def test_embedding_dot_products_are_the_cosine_similarity_eq2():
    a, b = torch.tensor([[3.0, 4.0], [1.0, 0.0]]), torch.tensor([[4.0, 3.0], [-2.0, 0.0]])
    assert torch.allclose(cosine_similarity_rows(a, b), torch.tensor([24 / 25, -1.0]))  # the reference, by hand
    torch.manual_seed(0)
    encoder = build_encoder("mlp", 6)
    x, y = torch.randn(5, 6), torch.randn(5, 6)
    # training's s(a, b) is the dot product of unit embeddings: eq. 2 on the network's outputs before the norm
    dot = (encoder(x) * encoder(y)).sum(-1)
    torch.testing.assert_close(dot, cosine_similarity_rows(encoder.net(x), encoder.net(y)), rtol=1e-5, atol=1e-6)


def test_loss_values_by_hand():
    s_ap, s_an = torch.tensor([0.9, 0.2]), torch.tensor([0.5, 0.4])
    # triplet: [0.5 - 0.9 + 0.2]_+ = 0, [0.4 - 0.2 + 0.2]_+ = 0.4 -> mean 0.2
    assert triplet_margin_loss(s_ap, s_an, 0.2).item() == pytest.approx(0.2)
    assert triplet_margin_loss(s_ap, s_an, 0.2, "none").tolist() == pytest.approx([0.0, 0.4])
    # eq. 3, gamma 1: [s_an - 1]_+ = 0 for both -> -(0.9 + 0.2) / 2
    assert bapg_loss(s_ap, s_an, 1.0).item() == pytest.approx(-0.55)
    # eq. 3, gamma 0.3: [0.2]_+ - 0.9 = -0.7, [0.1]_+ - 0.2 = -0.1 -> mean -0.4
    assert bapg_loss(s_ap, s_an, 0.3).item() == pytest.approx(-0.4)


def test_eq3_with_gamma_1_gives_no_gradient_to_the_negative():
    torch.manual_seed(0)
    enc = build_encoder("mlp", 8, 16, 4)
    xa, xp = torch.randn(5, 8), torch.randn(5, 8)
    xn = (xa + 0.05 * torch.randn(5, 8)).requires_grad_(True)  # even a negative next to the anchor gets nothing
    xn2 = torch.randn(5, 8, requires_grad=True)
    za, zp = enc(xa), enc(xp)
    for neg in (xn, xn2):
        s_ap, s_an = (za * zp).sum(-1), (za * enc(neg)).sum(-1)
        g = torch.autograd.grad(bapg_loss(s_ap, s_an, 1.0), neg, retain_graph=True)[0]
        assert torch.count_nonzero(g) == 0
        g = torch.autograd.grad(triplet_margin_loss(s_ap, s_an, 0.2), neg, retain_graph=True)[0]
        assert g.abs().sum() > 1e-4  # the default does push the negative away
    s_ap, s_an = (za * zp).sum(-1), (za * enc(xn2)).sum(-1)
    g = torch.autograd.grad(bapg_loss(s_ap, s_an, -1.0), xn2)[0]  # any gamma < max s reactivates it
    assert g.abs().sum() > 1e-4


# ----------------------------------------------------------------------------------------------- encoder

def synthetic(n_videos, seed, channels=32, classes=3, hard=8, scale=3.0, delta=1.0, noise=0.3):
    """Features where the boundary clips are close to the action: action = prototype_k + noise; the `hard` steps
    before and after it = prototype_k + delta * d + noise (d one fixed direction); the rest = a per-video
    background + noise. Instances span their steps' centre times +- half a step."""
    protos = np.random.default_rng(99).normal(size=(classes, channels))
    protos *= scale / np.linalg.norm(protos, axis=1, keepdims=True)
    d = np.random.default_rng(98).normal(size=channels)
    d *= delta / np.linalg.norm(d)
    rng = np.random.default_rng(seed)
    feats, rows = {}, []
    for v in range(n_videos):
        name, t = f"syn{seed}_{v}", 160
        bg = rng.normal(size=channels)
        f = scale * bg / np.linalg.norm(bg) + rng.normal(size=(t, channels)) * noise
        pos = int(rng.integers(0, 6))
        while True:
            length = int(rng.integers(6, 16))
            a = pos + hard
            if a + length + hard > t:
                break
            k = int(rng.integers(classes))
            f[pos:a] = protos[k] + d + rng.normal(size=(hard, channels)) * noise
            f[a:a + length] = protos[k] + rng.normal(size=(length, channels)) * noise
            f[a + length:a + length + hard] = protos[k] + d + rng.normal(size=(hard, channels)) * noise
            rows.append({"video": name, "label": f"c{k}", "start": float(GRID.to_seconds(a)) - 0.1,
                         "end": float(GRID.to_seconds(a + length - 1)) + 0.1})
            pos = a + length + hard + int(rng.integers(4, 12))
        feats[name] = f.astype(np.float32)
    return feats, pd.DataFrame(rows)


CFG = {"hard_negative_seconds": 1.6}  # = the 8 boundary steps of `synthetic`


@pytest.fixture(scope="module")
def data():
    train, train_ann = synthetic(12, 0)
    test, test_ann = synthetic(6, 1)
    pools = build_sample_pools(test_ann, GRID, {v: len(x) for v, x in test.items()}, CFG["hard_negative_seconds"])
    return train, train_ann, test, pools


def gap_report(state, config, test, pools):
    f = make_embedder(state, config, "cpu")
    return pool_similarity(lambda v: f(test[v]), pools)


def test_embeddings_shape_unit_norm_and_checkpoint_roundtrip(data):
    train, train_ann, test, _ = data
    state, config, log = train_encoder(train, train_ann, GRID, {**CFG, "epochs": 1, "dim": 16}, device="cpu",
                                       progress=False)
    x = test["syn1_0"]
    z = embed(state, config, x, device="cpu", batch=7)  # batching must not change anything
    assert z.shape == (x.shape[0], 16) and z.dtype == np.float32
    assert np.allclose(np.linalg.norm(z, axis=1), 1.0, atol=1e-5)
    z = embed(state, config, x, device="cpu")
    assert np.allclose(z, embed(state, config, x, device="cpu", batch=7), atol=1e-6)
    buf = io.BytesIO()
    torch.save(state, buf)
    buf.seek(0)
    again = json.loads(json.dumps(config))
    assert np.array_equal(embed(torch.load(buf, weights_only=True), again, x, device="cpu"), z)
    assert config["in_channels"] == 32 and config["dim"] == 16 and config["loss"] == "triplet"
    assert config["iterations"] == len(log) and {"epoch", "iteration", "lr", "loss", "s_ap", "s_an"} <= set(log[0])
    assert not load_encoder(state, config, "cpu").training
    with pytest.raises(ValueError, match="per-step shape"):
        embed(state, config, x[:, :5], device="cpu")


def test_training_is_deterministic_with_a_seed(data):
    train, train_ann, _, _ = data
    cfg = {**CFG, "epochs": 2, "easy_negatives": True}
    epochs = []
    s1, c1, l1 = train_encoder(train, train_ann, GRID, cfg, seed=3, device="cpu", progress=False,
                               on_epoch=lambda done, total: epochs.append((done, total)), deterministic=True)
    assert epochs == [(1, 2), (2, 2)]  # progress reporting (TrainEncoder's luigi progress)
    s2, c2, l2 = train_encoder(train, train_ann, GRID, cfg, seed=3, device="cpu", progress=False, deterministic=True)
    s3, _, _ = train_encoder(train, train_ann, GRID, cfg, seed=4, device="cpu", progress=False)
    assert l1 == l2 and c1 == c2 and "s_aen" in l1[0]
    assert all(torch.equal(s1[k], s2[k]) for k in s1)
    assert not all(torch.equal(s1[k], s3[k]) for k in s1)


def test_encoder_learns_hard_negatives_on_held_out_videos(data):
    train, train_ann, test, pools = data
    raw = pool_similarity(test, pools)
    before = gap_report(*train_encoder(train, train_ann, GRID, {**CFG, "epochs": 0}, seed=0, device="cpu",
                                       progress=False)[:2], test, pools)
    state, config, log = train_encoder(train, train_ann, GRID, CFG, seed=0, device="cpu", progress=False)
    after = gap_report(state, config, test, pools)
    print(f"\nheld-out gap (positive - hard negative): raw features {raw['gap']:.3f}, untrained {before['gap']:.3f}, "
          f"trained {after['gap']:.3f}; s(a,p) {after['positive']:.3f}, s(a,hn) {after['hard_negative']:.3f}")
    assert pools.summary()["instances"] == before["n_instances"] == after["n_instances"] >= 20
    assert raw["gap"] < 0.1 and before["gap"] < 0.1  # by construction the boundary clips look like the action
    assert after["gap"] > before["gap"] + 0.5
    assert after["positive"] > 0.5 and after["hard_negative"] < 0.2
    assert np.mean([r["loss"] for r in log[-10:]]) < 0.5 * np.mean([r["loss"] for r in log[:10]])


def test_eq3_as_printed_collapses(data):
    """gamma = 1: only -s(a,p) is minimised, everything maps to one point and the gap vanishes."""
    train, train_ann, test, pools = data
    after = gap_report(*train_encoder(train, train_ann, GRID, {**CFG, "loss": "bapg", "gamma": 1.0}, device="cpu",
                                      progress=False)[:2], test, pools)
    assert after["hard_negative"] > 0.95 and abs(after["gap"]) < 0.05


def test_frame_cnn_encoder_trains_and_embeds():
    rng = np.random.default_rng(0)
    frames = {"f": rng.integers(0, 256, size=(12, 32, 32, 3), dtype=np.uint8)}
    state, config, log = train_encoder(frames, ann((3, 6), video="f"), UNIT,
                                       {"encoder": "cnn", "epochs": 2, "batch_size": 8, "dim": 8, "width": 8,
                                        "hidden": 16}, device="cpu", progress=False)
    z = embed(state, config, frames["f"], device="cpu")
    assert z.shape == (12, 8) and np.allclose(np.linalg.norm(z, axis=1), 1.0, atol=1e-5)
    assert config["in_channels"] is None and config["in_shape"] == [32, 32, 3] and len(log) == 2
    with pytest.raises(ValueError, match="'f'.*does not suit the mlp encoder"):
        train_encoder(frames, ann((3, 6), video="f"), UNIT, {"epochs": 1}, device="cpu", progress=False)


def test_bad_inputs_are_named():
    with pytest.raises(ValueError, match="unknown encoder config keys"):
        train_encoder({"v": np.zeros((5, 3), np.float32)}, ann((1, 2)), UNIT, {"lr_typo": 1}, progress=False)
    with pytest.raises(ValueError, match="'v'.*NaN"):
        train_encoder({"v": np.full((5, 3), np.nan, np.float32)}, ann((1, 2)), UNIT, progress=False)
    with pytest.raises(ValueError, match="no usable training instance"):
        train_encoder({"v": np.zeros((5, 3), np.float32)}, ann((0, 5)), UNIT, device="cpu", progress=False)
