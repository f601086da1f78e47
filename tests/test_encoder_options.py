"""The encoder's boundary options (stages/bapg/encoder_options.py; benchmarks/bench_encoder_boundaries.py): the
temporal-context window and its edge padding, the same embedding in training, the similarity stage and single-video
inference, distance-weighted hard negatives, eq. 3's hinge with gamma < 1, learning with each option, and the
TrainEncoder --options parameter."""
import io
import json

import numpy as np
import pytest
import torch

from tal_pipeline.models.encoder import bapg_loss, build_encoder, hinge_active
from tal_pipeline.stages.bapg.encoder import embed, load_encoder, make_embedder, train_encoder
from tal_pipeline.stages.bapg.encoder_options import context_windows
from tal_pipeline.stages.bapg.sample_pools import build_sample_pools
from tests.test_encoder import CFG, GRID, UNIT, ann, synthetic

pytestmark = pytest.mark.usefixtures("torch_one_thread")  # deterministic, and fair to other tests


@pytest.fixture(scope="module")
def data():
    """tests/test_encoder.py's data: 12 training and 6 held-out videos whose boundary clips look like the action."""
    train, train_ann = synthetic(12, 0)
    test, test_ann = synthetic(6, 1)
    pools = build_sample_pools(test_ann, GRID, {v: len(x) for v, x in test.items()}, CFG["hard_negative_seconds"])
    return train, train_ann, test, pools


def test_context_windows_shapes_and_edge_padding():
    x = np.arange(12, dtype=np.float32).reshape(6, 2)  # step t holds [2t, 2t + 1]
    w = context_windows(x, np.array([0, 3, 5]), 5)
    assert w.shape == (3, 5, 2) and w.dtype == np.float32
    # rows are the steps t-2 .. t+2, the first / last step repeated past the ends (replicate padding)
    assert w[:, :, 0].tolist() == [[0, 0, 0, 2, 4], [2, 4, 6, 8, 10], [6, 8, 10, 10, 10]]
    assert np.array_equal(context_windows(x, np.arange(6), 1)[:, 0], x)
    with pytest.raises(ValueError, match="odd"):
        context_windows(x, np.array([0]), 4)
    with pytest.raises(ValueError, match=r"\[0, 6\)"):
        context_windows(x, np.array([6]), 3)
    for bad in (2, 1, -3, 4.5):
        with pytest.raises(ValueError, match="context must be"):
            build_encoder("mlp", 2, context=bad)
    with pytest.raises(ValueError, match="cnn encoder has no temporal context"):
        build_encoder("cnn", context=3)
    enc = build_encoder("mlp", 2, 8, 4, context=5)
    assert enc(torch.from_numpy(w)).shape == (3, 4) and enc.net[0].in_features == 10
    with pytest.raises(ValueError, match=r"windows \(N, 5, 2\)"):
        enc(torch.from_numpy(x))


def test_context_embedding_depends_on_neighbours_within_the_window_only():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(40, 6)).astype(np.float32)
    state, config, _ = train_encoder({"v": x}, ann((10, 20)), UNIT, {"epochs": 0, "context": 7, "dim": 8},
                                     device="cpu", progress=False)
    assert config["context"] == 7 and config["in_shape"] == [6]
    f = make_embedder(state, config, "cpu")
    z = f(x)
    for j in (0, 17, 39):  # an edge step, a middle step, the last step
        y = x.copy()
        y[j] += 5.0
        changed = np.flatnonzero(np.abs(f(y) - z).max(axis=1) > 1e-6)
        within = np.arange(max(0, j - 3), min(40, j + 4))
        assert changed.tolist() == within.tolist()  # every step whose window holds j, and no other


def test_context_embedder_equals_training_time_embedding(data):
    """make_embedder on a whole video (inference, SimilarityMatrices) = the training loop's windows, any batch."""
    from tal_pipeline.stages.bapg.encoder import _gather

    train, train_ann, test, _ = data
    cfg = {**CFG, "epochs": 1, "context": 9, "dim": 16}
    state, config, _ = train_encoder(train, train_ann, GRID, cfg, device="cpu", progress=False)
    x = test["syn1_0"]  # (160, 32)
    whole = make_embedder(state, config, "cpu")(x)
    np.testing.assert_allclose(whole, make_embedder(state, config, "cpu", batch=7)(x), atol=1e-6)  # BLAS rounding
    model = load_encoder(state, config, "cpu")
    steps = np.arange(x.shape[0])
    with torch.no_grad():
        at_training = model(torch.from_numpy(_gather([x], np.zeros_like(steps), steps, 9))).numpy()
    np.testing.assert_allclose(whole[4:-4], at_training[4:-4], atol=1e-6)  # away from the edges
    np.testing.assert_allclose(whole, at_training, atol=1e-6)  # and at them: the same replicate padding
    buf = io.BytesIO()
    torch.save(state, buf)
    buf.seek(0)
    again = embed(torch.load(buf, weights_only=True), json.loads(json.dumps(config)), x, device="cpu")
    assert np.array_equal(again, whole)


def test_context_encoder_embeds_the_same_in_the_similarity_stage_and_single_video_inference(data, tmp_path,
                                                                                            monkeypatch):
    from types import SimpleNamespace

    import tal_pipeline.stages.bapg.similarity as similarity
    from tal_pipeline.stages.detectors.inference import detector_input

    train, train_ann, test, _ = data
    state, config, _ = train_encoder(train, train_ann, GRID, {**CFG, "epochs": 1, "context": 5, "dim": 8},
                                     device="cpu", progress=False)
    x = test["syn1_2"]
    want = embed(state, config, x, device="cpu")
    torch.save({"state": state, "config": config}, tmp_path / "checkpoint.pt")  # a TrainEncoder folder
    assert np.array_equal(similarity.embed_with_checkpoint(tmp_path, x), want)  # SimilarityMatrices
    seen = []

    def capture(embeddings, block=1024):  # detector_input embeds, then builds S: stop there
        seen.append(np.asarray(embeddings))
        raise StopIteration

    monkeypatch.setattr(similarity, "similarity_matrix", capture)
    ckpt = {"recipe": SimpleNamespace(bapg=SimpleNamespace(use_encoder=True, block=1024)),
            "encoder": {"state": state, "config": json.loads(json.dumps(config))}}
    with pytest.raises(StopIteration):
        detector_input(x, ckpt, "syn1_2")  # single-video inference (tal-pipeline detect)
    assert np.array_equal(seen[0], want)


def test_distance_weights_on_a_hand_made_pool():
    from tal_pipeline.stages.bapg.encoder_options import boundary_distances, hard_negative_weights

    # UNIT grid: step i centred at i + 0.5 s. Instance [4, 7) holds steps 4, 5, 6; hard negatives 2, 3 (centres
    # 2.5, 3.5: 1.5 s and 0.5 s before the start) and 7, 8 (7.5, 8.5: 0.5 s and 1.5 s after the end).
    (pool,) = build_sample_pools(ann((4, 7)), UNIT, {"v": 12}, 2.0).instances
    assert pool.hard_negative.tolist() == [2, 3, 7, 8]
    assert boundary_distances(pool, UNIT).tolist() == [1.5, 0.5, 0.5, 1.5]
    w = hard_negative_weights(pool, UNIT, 0.5)
    e = np.exp(-np.array([1.5, 0.5, 0.5, 1.5]) / 0.5)
    np.testing.assert_allclose(w, e / e.sum())
    assert w.sum() == pytest.approx(1.0) and w[1] / w[0] == pytest.approx(np.exp(2.0))
    assert hard_negative_weights(pool, UNIT, 0.0) is None  # off: uniform
    with pytest.raises(ValueError, match="hard_negative_tau"):
        hard_negative_weights(pool, UNIT, -1.0)


def test_distance_weighted_sampler_draws_near_negatives_more_and_off_is_unchanged():
    from tal_pipeline.stages.bapg.encoder import TripletSampler
    from tal_pipeline.stages.bapg.encoder_options import negative_weights

    pools = build_sample_pools(ann((4, 7), (12, 15)), UNIT, {"v": 24}, 3.0)
    weights = negative_weights(pools.instances, UNIT, 0.5)
    draws = TripletSampler(pools, np.random.default_rng(0), 2, negative_prob=weights).batch(20000)
    first = pools.instances[0]
    neg = draws[np.isin(draws[:, 1], first.positive), 3]
    freq = np.array([(neg == h).mean() for h in first.hard_negative])
    np.testing.assert_allclose(freq, weights[0], atol=0.02)
    # tau = 0 (None weights) draws exactly what the sampler drew before the option existed
    a = TripletSampler(pools, np.random.default_rng(1), 2).batch(64)
    b = TripletSampler(pools, np.random.default_rng(1), 2, negative_prob=negative_weights(pools.instances, UNIT, 0.0))
    assert np.array_equal(a, b.batch(64))


def test_eq3_variant_hinge_is_active_on_a_hand_made_case():
    s_ap = torch.tensor([0.9, 0.9, 0.6])
    s_an = torch.tensor([0.7, 0.3, 0.95], requires_grad=True)  # a hard negative, an easy one, a very hard one
    assert hinge_active("bapg", s_ap, s_an.detach(), gamma=1.0).tolist() == [False, False, False]  # as printed
    assert hinge_active("bapg", s_ap, s_an.detach(), gamma=0.5).tolist() == [True, False, True]
    assert hinge_active("triplet", s_ap, s_an.detach(), margin=0.2).tolist() == [True, False, True]
    loss = bapg_loss(s_ap, s_an, 0.5)  # ([0.2]_+ - 0.9 + [−0.2]_+ - 0.9 + [0.45]_+ - 0.6) / 3
    assert loss.item() == pytest.approx((0.2 - 0.9 - 0.9 + 0.45 - 0.6) / 3)
    (g,) = torch.autograd.grad(loss, s_an)
    assert g.tolist() == pytest.approx([1 / 3, 0.0, 1 / 3])  # the active hinges push their negatives away
    (g,) = torch.autograd.grad(bapg_loss(s_ap, s_an, 1.0), s_an)
    assert torch.count_nonzero(g) == 0


@pytest.mark.parametrize("option", [{"context": 5}, {"hard_negative_tau": 0.5}, {"loss": "bapg", "gamma": 0.5},
                                    {"context": 5, "hard_negative_tau": 0.5, "margin": 0.5}],
                         ids=["context", "tau", "eq3-gamma", "combined"])
def test_a_few_steps_lower_the_loss_with_each_option(data, option):
    train, train_ann, _, _ = data
    cfg = {**CFG, **option, "epochs": 3, "iterations_per_epoch": 12, "lr_milestones": []}
    state, config, log = train_encoder(train, train_ann, GRID, cfg, seed=0, device="cpu", progress=False)
    losses = [r["loss"] for r in log]
    assert len(losses) == 36 and all(np.isfinite(losses))
    assert np.mean(losses[-6:]) < np.mean(losses[:6]) - 0.05
    assert 0.0 <= log[0]["hinge_active"] <= 1.0 and log[0]["hinge_active"] > 0  # the hinge acts from the start
    assert config["context"] == option.get("context", 0)
    assert config["train"]["hard_negative_tau"] == option.get("hard_negative_tau", 0.0)


def test_train_encoder_task_options_are_merged_over_the_flags():
    import pipeline  # noqa: F401  (reads luigi's files, registers the tasks)
    from pipeline.bapg_tasks import TrainEncoder
    from tal_pipeline.stages.bapg.encoder import DEFAULT_ENCODER

    default = TrainEncoder()
    assert default.spec().config == DEFAULT_ENCODER
    task = TrainEncoder(margin=1.0, options={"context": 5, "lr_milestones": [0.5]})
    assert task.spec().config == {**DEFAULT_ENCODER, "context": 5, "margin": 1.0, "lr_milestones": [0.5]}
    assert task.artifact_path() != default.artifact_path()
    assert TrainEncoder(margin=1.0, options={"lr_milestones": [0.5], "context": 5}).artifact_path() == \
        task.artifact_path()
    with pytest.raises(ValueError, match=r"unknown encoder config keys \['contxt'\]"):
        TrainEncoder(options={"contxt": 5}).spec()
