"""TadTR: temporal deformable attention and the 1-D RoIAlign against naive loops, Hungarian matching against known
optima, padding, segment refinement, actionness scoring, the health check, +BAPG at initialisation, training lowers
the loss, and a checkpoint round trip through the registry."""
import itertools
import math

import pytest
import torch
import torch.nn.functional as F

from tal_pipeline.models.detector_registry import build_detector, resolve_fusion_config, resolve_model_config
from tal_pipeline.models.tadtr.deformable_attention import TemporalDeformableAttention, deformable_core
from tal_pipeline.models.tadtr.matcher import hungarian_match, matching_cost
from tal_pipeline.models.tadtr.model import TadTR
from tal_pipeline.models.tadtr.roi_align import roi_align_1d
from tal_pipeline.stages.detectors.data import build_training_set, collate
from tal_pipeline.stages.detectors.detection import detect, load_detector
from tal_pipeline.stages.detectors.training import resolve_train_config, train_detector
from tests.synthetic_features import synthetic_feature_dataset

pytestmark = pytest.mark.usefixtures("torch_one_thread")  # deterministic, and fair to other tests

SMALL = {"width": 16, "heads": 2, "enc_layers": 2, "dec_layers": 2, "queries": 8, "enc_points": 2, "dec_points": 3,
         "dropout": 0.0, "roi_bins": 4}


def _lerp(seq: torch.Tensor, p: float, length: int) -> torch.Tensor:
    """Naive linear interpolation of seq (T, D) at step position p; steps outside [0, length) count as zero."""
    i0 = math.floor(p)
    out = torch.zeros(seq.shape[1], dtype=torch.float64)
    for i, w in ((i0, 1.0 - (p - i0)), (i0 + 1, p - i0)):
        if 0 <= i < length:
            out += w * seq[i].double()
    return out


def _naive_attention(attn: TemporalDeformableAttention, query, reference, source, lengths):
    """The TDA sum written out: every (video, query, head, point) on its own, python floats for the positions."""
    b, q, d = query.shape
    m, k = attn.heads, attn.points
    dh = d // m
    value = attn.value_proj(source)  # (B, T, D)
    dt = attn.offsets(query).view(b, q, m, k)
    a = torch.softmax(attn.weights(query).view(b, q, m, k), -1)
    out = torch.zeros(b, q, d, dtype=torch.float64)
    for bi, qi, h, j in itertools.product(range(b), range(q), range(m), range(k)):
        n = int(lengths[bi])
        if reference.dim() == 2:
            loc = float(reference[bi, qi]) + float(dt[bi, qi, h, j]) / n
        else:
            c, w = (float(v) for v in reference[bi, qi])
            loc = c + float(dt[bi, qi, h, j]) / k * w / 2
        v = _lerp(value[bi, :, h * dh:(h + 1) * dh], loc * n - 0.5, n)
        out[bi, qi, h * dh:(h + 1) * dh] += float(a[bi, qi, h, j]) * v
    return attn.output_proj(out.float())


@pytest.mark.parametrize("segment_reference", [False, True])
def test_deformable_attention_equals_a_naive_loop(segment_reference):
    torch.manual_seed(0)
    attn = TemporalDeformableAttention(8, heads=2, points=3)
    with torch.no_grad():  # offsets that reach past both ends and between steps, uneven attention
        attn.offsets.weight.normal_(0, 30.0)
        attn.weights.weight.normal_(0, 1.0)
    b, t, q = 2, 11, 5
    source, query = torch.randn(b, t, 8), torch.randn(b, q, 8)
    valid = torch.ones(b, t, dtype=torch.bool)
    valid[1, 7:] = False  # video 1 has 7 real steps
    source[1, 7:] = 1e3  # padding must never be read
    lengths = valid.sum(1).float()
    reference = torch.rand(b, q, 2) * torch.tensor([1.0, 0.6]) if segment_reference else torch.rand(b, q)
    with torch.no_grad():
        got = attn(query, reference, source, valid, lengths)
        want = _naive_attention(attn, query, reference, source, lengths)  # steps >= L are zero there
    assert got.shape == (b, q, 8)
    assert torch.allclose(got, want, atol=1e-5)


def test_deformable_sampling_equals_grid_sample_on_full_videos():
    # grid_sample on N x C x 1 x T (zeros padding, align_corners=False) is the reference's sampler: same numbers
    torch.manual_seed(1)
    b, t, m, dh, q, k = 2, 9, 2, 3, 4, 5
    value, loc = torch.randn(b, t, m, dh), torch.rand(b, q, m, k) * 1.4 - 0.2
    w = torch.softmax(torch.randn(b, q, m, k), -1)
    got = deformable_core(value, torch.ones(b, t, dtype=torch.bool), loc, torch.full((b,), float(t)), w)
    img = value.permute(0, 2, 3, 1).reshape(b * m, dh, 1, t)  # (B*M, Dh, 1, T)
    grid = torch.stack([2 * loc - 1, torch.zeros_like(loc)], -1).permute(0, 2, 1, 3, 4).reshape(b * m, q, k, 2)
    sampled = F.grid_sample(img, grid, mode="bilinear", padding_mode="zeros", align_corners=False)  # (B*M, Dh, Q, K)
    want = (sampled * w.permute(0, 2, 1, 3).reshape(b * m, 1, q, k)).sum(-1)  # (B*M, Dh, Q)
    want = want.view(b, m, dh, q).permute(0, 3, 1, 2).reshape(b, q, m * dh)
    assert torch.allclose(got, want, atol=1e-6)


def test_roi_align_equals_a_naive_interpolation():
    torch.manual_seed(0)
    b, c, t, bins, samples = 2, 3, 12, 4, 3
    feats = torch.randn(b, c, t)
    lengths = torch.tensor([12.0, 8.0])
    feats[1, :, 8:] = 1e3  # padding: never read
    segs = torch.tensor([[[1.2, 6.7], [-2.0, 3.0], [9.5, 14.0]], [[0.0, 7.0], [5.3, 5.4], [2.0, 11.0]]])
    got = roi_align_1d(feats, segs, lengths, bins, samples)
    assert got.shape == (b, 3, c, bins)
    for bi, r in itertools.product(range(b), range(3)):
        s, e = (float(v) for v in segs[bi, r])
        n = int(lengths[bi])
        for i in range(bins):
            acc = torch.zeros(c, dtype=torch.float64)
            for j in range(samples):
                p = min(max(s + (i + (j + 0.5) / samples) * (e - s) / bins, 0.0), n - 1.0)
                acc += _lerp(feats[bi].T, p, n) / samples
            assert torch.allclose(got[bi, r, :, i].double(), acc, atol=1e-5), (bi, r, i)


def test_hungarian_matching_finds_the_optimum_where_greedy_does_not():
    # greedy would take (0, 0) = 1 and then pay 100; the optimum is the cross, 2 + 2
    rows, cols = hungarian_match(torch.tensor([[1.0, 2.0], [2.0, 100.0], [5.0, 7.0]]))
    assert rows.tolist() == [0, 1] and cols.tolist() == [1, 0]
    cost = torch.rand(6, 3, generator=torch.Generator().manual_seed(3))
    rows, cols = hungarian_match(cost)
    best = min(itertools.permutations(range(6), 3), key=lambda qs: sum(float(cost[q, g]) for g, q in enumerate(qs)))
    assert sum(float(cost[r, c]) for r, c in zip(rows, cols)) == pytest.approx(sum(float(cost[q, g])
                                                                                  for g, q in enumerate(best)))
    empty = hungarian_match(torch.zeros(4, 0))
    assert empty[0].numel() == 0 and empty[1].numel() == 0


def test_matching_cost_pairs_each_target_with_its_own_query():
    # query 2 predicts target 0 (class 1), query 0 predicts target 1 (class 0), query 1 is background
    logits = torch.tensor([[4.0, -4.0], [-4.0, -4.0], [-4.0, 4.0]])
    segs = torch.tensor([[0.7, 0.2], [0.5, 0.9], [0.2, 0.1]])
    gt = torch.tensor([[0.21, 0.1], [0.69, 0.22]])
    cost = matching_cost(logits, segs, gt, torch.tensor([1, 0]), 6.0, 5.0, 2.0)
    rows, cols = hungarian_match(cost)
    assert dict(zip(cols.tolist(), rows.tolist())) == {0: 2, 1: 0}
    # the class cost alone decides between two identical segments
    both = matching_cost(logits[[0, 2]], torch.tensor([[0.5, 0.2]] * 2), torch.tensor([[0.5, 0.2]] * 2),
                         torch.tensor([1, 0]), 1.0, 0.0, 0.0)
    assert hungarian_match(both)[1].tolist() == [1, 0]


def _batch():
    feats, ann, labels, grid, durations = synthetic_feature_dataset(4, channels=12, num_classes=2, seed=2, min_len=40,
                                                                    max_len=56)
    items = build_training_set(feats, ann, labels, grid)
    return collate([(it.features, it.segments, it.labels) for it in items], "cpu")


def test_padding_never_changes_a_videos_outputs():
    torch.manual_seed(0)
    model = TadTR(12, 2, **SMALL).eval()
    x, mask, _ = _batch()
    n = int(mask[0].sum())
    padded = torch.cat([x[:1, :, :n], torch.randn(1, 12, 9) * 50], 2)  # garbage past the end
    pmask = torch.cat([mask[:1, :n], torch.zeros(1, 9, dtype=torch.bool)], 1)
    with torch.no_grad():
        ref, got = model(x[:1, :, :n], mask[:1, :n]), model(padded, pmask)
    for key in ("logits", "segments", "actionness"):
        assert torch.allclose(ref[key], got[key], atol=1e-5), key


def test_segment_refinement_is_relative_to_the_detached_previous_layer():
    torch.manual_seed(0)
    model = TadTR(12, 2, **SMALL)
    x, mask, targets = _batch()
    with torch.no_grad():  # heads that refine: every layer's segment differs from its predecessor's
        for head in model.decoder.seg_heads:
            head.layers[-1].weight.normal_(0, 0.5)
    out = model(x, mask)
    assert not torch.allclose(out["segments"][0], out["segments"][1])
    # a loss on the last layer only reaches the first layer's segment head through the queries, not its output
    out["segments"][-1].sum().backward()
    first = model.decoder.seg_heads[0].layers[-1].weight.grad
    assert first is None or float(first.abs().sum()) == 0.0
    assert float(model.decoder.seg_heads[1].layers[-1].weight.grad.abs().sum()) > 0


def test_score_is_class_probability_times_actionness_and_health_counts_matched_queries():
    model = TadTR(4, 3, **SMALL)
    logits = torch.full((2, 1, 3, 3), -20.0)
    logits[:, 0, 0, 2], logits[:, 0, 1, 0] = 2.0, 0.0
    segs = torch.tensor([[[0.25, 0.2], [0.75, 0.1], [0.5, 0.05]]]).expand(2, 1, 3, 2).clone()
    out = {"logits": logits, "segments": segs, "lengths": torch.tensor([20.0]),
           "actionness": torch.tensor([[0.9, 0.5, 0.1]])}
    seg, score, lab = model.predict(out)[0]  # the other pairs score ~1e-9 x actionness: below score_thresh
    assert lab.tolist() == [2, 0]
    assert score.tolist() == pytest.approx([torch.sigmoid(torch.tensor(2.0)).item() * 0.9, 0.5 * 0.5])
    assert seg[0].tolist() == pytest.approx([0.15 * 20 - 0.5, 0.35 * 20 - 0.5])  # (centre, width) -> steps
    good = [{"segments": torch.tensor([[2.6, 6.4], [13.5, 15.5]]), "labels": torch.tensor([2, 0])}]
    health = model.regression_health(out, good)
    assert health["fg_locations"] == 2 and health["positive_share"] == 1.0
    far = [{"segments": torch.tensor([[30.0, 35.0]]), "labels": torch.tensor([1])}]  # no prediction overlaps it
    assert model.regression_health(out, far)["positive_share"] == 0.0


def test_perfect_predictions_cost_nothing_and_the_roi_is_the_widened_segment(monkeypatch):
    model = TadTR(4, 3, **SMALL)
    # ground truth [2.5, 6.5] and [9.5, 17.5] steps of a 20-step window: (centre, width) = ((s + e) / 2 + 0.5) / L,
    # (e - s) / L with step i centred at (i + 0.5) / L
    targets = [{"segments": torch.tensor([[2.5, 6.5], [9.5, 17.5]]), "labels": torch.tensor([2, 0])}]
    perfect = torch.tensor([[[0.25, 0.2], [0.7, 0.4], [0.05, 0.01]]]).expand(2, 1, 3, 2)
    logits = torch.full((2, 1, 3, 3), -30.0)
    logits[:, 0, 0, 2] = logits[:, 0, 1, 0] = 30.0
    out = {"logits": logits, "segments": perfect, "lengths": torch.tensor([20.0]),
           "actionness": torch.tensor([[0.2, 0.4, 0.0]])}  # the segments' own tIoUs: 1, 1, 0
    loss = model.loss(out, targets)
    for key in ("cls", "l1", "iou", "aux"):
        assert float(loss[key]) < 1e-6, key
    assert float(loss["actionness"]) == pytest.approx((0.8 + 0.6 + 0.0) / 3)
    swapped = model.loss(out, [{**targets[0], "labels": torch.tensor([0, 2])}])
    # the class cost dominates the matching: each query is matched to the target of its class, far from its segment
    assert float(swapped["cls"]) < 1e-6 and float(swapped["l1"]) > 0.5
    seen = {}

    def spy(features, segments, lengths, bins, samples):
        seen["span"] = segments
        return torch.zeros(segments.shape[0], segments.shape[1], features.shape[1], bins)

    monkeypatch.setattr("tal_pipeline.models.tadtr.model.roi_align_1d", spy)
    model._actionness(torch.zeros(1, 20, 16), perfect[-1], torch.tensor([20.0]))
    # widened 1.5 x about its centre: [2.5, 6.5] -> [1.5, 7.5]; [9.5, 17.5] -> [7.5, 19.5]
    assert seen["span"][0, :2].flatten().tolist() == pytest.approx([1.5, 7.5, 7.5, 19.5])


def test_bapg_fusion_at_initialisation_is_exactly_the_baseline():
    c, k = 12, 5
    x, mask, targets = _batch()
    opts = resolve_model_config("tadtr", SMALL)
    torch.manual_seed(0)
    base = build_detector("tadtr", c, 2, opts).eval()
    torch.manual_seed(0)
    fused = build_detector("tadtr", c + k, 2, opts, bapg_channels=k, fusion=resolve_fusion_config()).eval()
    b = torch.randn(x.shape[0], k, x.shape[2]) * 5 + 1
    with torch.no_grad():
        ref, got = base(x, mask), fused(torch.cat([x, b], 1), mask)
    for key in ref:
        assert torch.equal(ref[key], got[key]), key
    fused.train()
    fused.loss(fused(torch.cat([x, b], 1), mask), targets)["total"].backward()
    assert fused.outer.weight.grad.abs().sum() > 0  # the zero-initialised fusion learns from the first step


def test_a_few_training_steps_lower_the_loss():
    torch.manual_seed(0)
    model = TadTR(12, 2, **SMALL)
    x, mask, targets = _batch()
    opt = torch.optim.AdamW(model.parameters(), lr=2e-3)

    def loss() -> float:
        model.eval()
        with torch.no_grad():
            return float(model.loss(model(x, mask), targets)["total"])

    before = loss()
    model.train()
    for _ in range(25):
        opt.zero_grad()
        model.loss(model(x, mask), targets)["total"].backward()
        opt.step()
    after = loss()
    assert after < 0.6 * before, (before, after)


def test_checkpoint_round_trip_gives_identical_detections(tmp_path):
    feats, ann, labels, grid, durations = synthetic_feature_dataset(3, channels=12, num_classes=2, seed=4, min_len=60,
                                                                    max_len=90)
    state, cfg, log = train_detector("tadtr", feats, ann, labels, grid, {"epochs": 1, "max_seq_len": 32,
                                                                          "model": SMALL}, progress=False)
    assert cfg["model"] == resolve_model_config("tadtr", SMALL)  # every option recorded
    assert cfg["health"]["fg_locations"] > 0 and log
    torch.save({"state": state, "config": cfg}, tmp_path / "ckpt.pt")
    loaded = torch.load(tmp_path / "ckpt.pt", weights_only=True)
    model, _ = load_detector(loaded["state"], loaded["config"], "cpu")
    assert all(torch.equal(v, state[k]) for k, v in model.state_dict().items())
    before = detect("tadtr", state, cfg, feats, labels, grid, durations)
    after = detect("tadtr", loaded["state"], loaded["config"], feats, labels, grid, durations)
    assert after == before and sum(len(d) for d in before.values()) > 0
    video = sorted(feats)[0]  # a video longer than the window: detections come from several windows
    assert feats[video].shape[0] > 32 and max(d["segment"][1] for d in before[video]) > grid.to_seconds(32.0)


def test_the_recipe_trains_on_the_reference_window():
    assert resolve_train_config("tadtr")["max_seq_len"] == 128  # the reference's THUMOS14 slice_len
    assert resolve_train_config("tadtr", {"max_seq_len": 64})["max_seq_len"] == 64
