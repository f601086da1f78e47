"""BAPG fusion (a wrapper that starts as the baseline), detector settings recorded in checkpoints, the training
health check, and the boundary ablations (random and ground-truth change points)."""
from __future__ import annotations

import inspect
import json

import numpy as np
import pytest
import torch

from tal_pipeline.models.actionformer.model import ActionFormer
from tal_pipeline.models.detector_registry import DETECTORS, build_detector, resolve_fusion_config, resolve_model_config
from tal_pipeline.models.fusion import BAPGFusion
from tal_pipeline.stages.detectors.detection import detect, load_detector
from tal_pipeline.stages.detectors.training import train_detector
from tests.synthetic_features import synthetic_feature_dataset

SMALL_MODEL = {"afsd": {"width": 16, "levels": 3}, "actionformer": {"width": 16, "levels": 3, "window": 5},
               "tridet": {"width": 16, "levels": 3}}


def _outputs(model, x, mask):
    model.eval()
    with torch.no_grad():
        out = model(x, mask)
    return {k: v for k, v in out.items() if torch.is_tensor(v) and k != "features"}


@pytest.mark.parametrize("name", ["afsd", "actionformer", "tridet"])
def test_fusion_at_initialisation_is_exactly_the_baseline(name, torch_one_thread):
    C, K, T = 12, 7, 24
    torch.manual_seed(0)
    model = resolve_model_config(name, SMALL_MODEL[name])
    base = build_detector(name, C, 3, model)
    torch.manual_seed(0)
    fused = build_detector(name, C + K, 3, model, bapg_channels=K, fusion=resolve_fusion_config())
    assert isinstance(fused, BAPGFusion) and fused.fusion_norm() == 0.0
    fused.set_bapg_statistics(np.full(K, 2.0), np.full(K, 3.0))
    x = torch.randn(2, C, T)
    b = torch.randn(2, K, T) * 5 + 1  # BAPG channels that would change the result if they leaked through
    mask = torch.ones(2, T, dtype=torch.bool)
    mask[1, 17:] = False
    ref, got = _outputs(base, x, mask), _outputs(fused, torch.cat([x, b], 1), mask)
    assert set(ref) == set(got)
    for key in ref:
        assert torch.equal(ref[key], got[key]), key
    # ... and the fusion is alive: the zero-initialised projection gets a gradient from the first step
    fused.train()
    segs = [{"segments": torch.tensor([[3.0, 9.0]]), "labels": torch.tensor([1])}] * 2
    fused.loss(fused(torch.cat([x, b], 1), mask), segs)["total"].backward()
    assert fused.outer.weight.grad.abs().sum() > 0


def test_fusion_standardises_and_masks_the_bapg_channels():
    torch.manual_seed(0)
    fused = build_detector("actionformer", 4 + 2, 2, resolve_model_config("actionformer", SMALL_MODEL["actionformer"]),
                           bapg_channels=2, fusion=resolve_fusion_config({"channel_dropout": 0.0}))
    with torch.no_grad():
        fused.outer.weight.fill_(0.1)
    fused.set_bapg_statistics([10.0, -5.0], [2.0, 4.0])
    x = torch.zeros(1, 6, 8)
    x[:, 4], x[:, 5] = 10.0, -5.0  # exactly the training means: standardised to 0
    mask = torch.ones(1, 8, dtype=torch.bool)
    mask[0, 6:] = False
    fused.eval()
    fv2, fv = fused.fuse(x, mask)
    bias = fused.outer(torch.relu(fused.inner(torch.zeros(1, 2, 1))))  # the projection of z = 0
    torch.testing.assert_close(fv2[..., :6], bias.expand(1, 4, 6))
    assert torch.equal(fv2[..., 6:], torch.zeros(1, 4, 2))  # padded steps get nothing added
    with pytest.raises(ValueError, match="channels"):
        fused.fuse(torch.zeros(1, 5, 8), mask)


def _data(num_videos=6, channels=10):
    return synthetic_feature_dataset(num_videos=num_videos, channels=channels, num_classes=2, seed=3, min_len=40,
                                     max_len=60, noise=0.3, signal=2.0)


def test_training_standardises_bapg_with_training_statistics(torch_one_thread):
    feats, ann, labels, grid, _ = _data()
    rng = np.random.default_rng(0)
    extra = {v: rng.normal(3.0, 2.0, size=(len(x), 3)).astype(np.float32) for v, x in feats.items()}
    both = {v: np.concatenate([x, extra[v]], 1) for v, x in feats.items()}
    state, cfg, _ = train_detector("actionformer", both, ann, labels, grid,
                                   {"epochs": 1, "model": SMALL_MODEL["actionformer"]}, bapg_channels=3,
                                   progress=False)
    allb = np.concatenate(list(extra.values()))
    np.testing.assert_allclose(state["bapg_mean"].numpy(), allb.mean(0), rtol=1e-4)
    np.testing.assert_allclose(state["bapg_std"].numpy(), allb.std(0), rtol=1e-4)
    assert cfg["bapg_channels"] == 3 and cfg["in_channels"] == 13 and cfg["fusion"]["hidden"] == 128


def test_health_check_flags_a_broken_run_and_passes_a_good_one(torch_one_thread):
    feats, ann, labels, grid, _ = _data()
    model = SMALL_MODEL["actionformer"]
    _, good, _ = train_detector("actionformer", feats, ann, labels, grid,
                                {"epochs": 30, "lr": 1e-3, "warmup_epochs": 2, "model": model}, progress=False)
    assert good["health"]["healthy"], good["health"]
    assert good["health"]["positive_share"] >= 0.9 and good["health"]["loss_ratio"] < 0.7
    # A learning rate of 0 trains nothing: the loss cannot fall, and the check says so.
    _, frozen, _ = train_detector("actionformer", feats, ann, labels, grid,
                                  {"epochs": 4, "lr": 0.0, "model": model}, progress=False)
    assert not frozen["health"]["healthy"]
    assert any("loss did not fall" in p for p in frozen["health"]["problems"])
    # A huge learning rate wrecks the run: flagged (or refused outright when the loss becomes non-finite).
    try:
        _, wild, _ = train_detector("actionformer", feats, ann, labels, grid,
                                    {"epochs": 6, "lr": 50.0, "grad_clip": 0.0, "warmup_epochs": 0, "model": model},
                                    progress=False)
    except FloatingPointError:
        return
    assert not wild["health"]["healthy"], wild["health"]


def test_checkpoint_loads_with_its_recorded_settings_after_defaults_change(monkeypatch, torch_one_thread):
    feats, ann, labels, grid, durations = _data(num_videos=3)
    state, cfg, _ = train_detector("actionformer", feats, ann, labels, grid, {"epochs": 1}, progress=False)
    assert cfg["model"] == resolve_model_config("actionformer")  # every option recorded, not only the given ones
    before = detect("actionformer", state, cfg, feats, labels, grid, durations)

    new = {"width": 32, "window": 5, "score_thresh": 0.5}  # tomorrow's code: other defaults

    class NewDefaults(ActionFormer):
        def __init__(self, in_channels, num_classes, **kw):
            super().__init__(in_channels, num_classes, **{**new, **kw})

    sig = inspect.signature(ActionFormer.__init__)
    NewDefaults.__init__.__signature__ = sig.replace(parameters=[
        p.replace(default=new[p.name]) if p.name in new else p for p in sig.parameters.values()])

    monkeypatch.setitem(DETECTORS, "actionformer", NewDefaults)
    with pytest.raises(RuntimeError):  # built from today's defaults the weights would not even fit
        build_detector("actionformer", cfg["in_channels"], cfg["num_classes"],
                       resolve_model_config("actionformer")).load_state_dict(state)
    model, _ = load_detector(state, cfg, "cpu")
    assert model.score_thresh == cfg["model"]["score_thresh"]
    assert detect("actionformer", state, cfg, feats, labels, grid, durations) == before


def test_unknown_settings_are_refused():
    feats, ann, labels, grid, _ = _data(num_videos=2)
    with pytest.raises(ValueError, match="unknown training setting"):
        train_detector("afsd", feats, ann, labels, grid, {"epoch": 3}, progress=False)
    with pytest.raises(ValueError, match="unknown option"):
        train_detector("afsd", feats, ann, labels, grid, {"model": {"widht": 8}}, progress=False)


def test_detector_settings_from_the_command_line_shape_the_artifact_path(tmp_path):
    from luigi.cmdline_parser import CmdlineParser

    from pipeline.detector_tasks import Detect, TrainDetector

    common = ["--paths-workdir", str(tmp_path), "--no-lock"]
    with CmdlineParser.global_instance(["TrainDetector", *common]):
        plain = TrainDetector(detector="actionformer").output().path
        assert TrainDetector(detector="actionformer").spec().train["epochs"] != 7
    with CmdlineParser.global_instance(["TrainDetector", *common, "--actionformer-train", '{"epochs": 7}',
                                        "--actionformer-model", '{"width": 32}']):
        task = TrainDetector(detector="actionformer")
        assert task.spec().train["epochs"] == 7 and task.spec().model == {"width": 32}
        assert task.output().path != plain
        # Detect passes only the variant on: the settings reach its TrainDetector through the configuration
        assert Detect(detector="actionformer").requires()["model"].output().path == task.output().path
        assert TrainDetector(detector="afsd").spec().train["epochs"] != 7  # per detector


def test_the_resolved_recipe_shapes_the_artifact_path(tmp_path, monkeypatch):
    """A changed recipe default gives a new TrainDetector path (an artifact trained with the old default must not
    look current); giving the recipe's own value explicitly keeps the default's path."""
    from luigi.cmdline_parser import CmdlineParser

    from pipeline.detector_tasks import TrainDetector
    from tal_pipeline.stages.detectors import training

    common = ["TrainDetector", "--paths-workdir", str(tmp_path), "--no-lock"]
    with CmdlineParser.global_instance(common):
        plain = TrainDetector(detector="tridet").output().path
    lr = training.DETECTOR_TRAIN["tridet"]["lr"]
    with CmdlineParser.global_instance([*common, "--tridet-train", json.dumps({"lr": lr})]):
        assert TrainDetector(detector="tridet").output().path == plain
    monkeypatch.setitem(training.DETECTOR_TRAIN, "tridet", {**training.DETECTOR_TRAIN["tridet"], "lr": lr / 10})
    with CmdlineParser.global_instance(common):
        assert TrainDetector(detector="tridet").output().path != plain
    monkeypatch.setitem(training.DEFAULT_TRAIN, "trunc_thresh", 0.25)  # a shared default too
    with CmdlineParser.global_instance(common):
        changed = TrainDetector(detector="afsd").output().path
    monkeypatch.undo()
    with CmdlineParser.global_instance(common):
        assert TrainDetector(detector="afsd").output().path != changed


def test_task_threads_share_the_cores_among_luigi_workers(monkeypatch):
    from luigi.cmdline_parser import CmdlineParser

    from pipeline.base import gpu_resources, task_threads

    monkeypatch.setattr("os.sched_getaffinity", lambda pid: set(range(8)), raising=False)
    monkeypatch.setattr("os.cpu_count", lambda: 8)
    for workers, threads in ((1, 8), (2, 4), (3, 2), (16, 1)):
        with CmdlineParser.global_instance(["TrainDetector", "--workers", str(workers)]):
            assert task_threads() == threads
    monkeypatch.setenv("TAL_PIPELINE_GPU_RESOURCE", "1")
    assert gpu_resources() == {"gpu": 1}


def _bapg_data():
    feats, ann, labels, grid, durations = _data(num_videos=3)
    rng = np.random.default_rng(1)
    both = {v: np.concatenate([x, rng.normal(size=(len(x), 3)).astype(np.float32)], 1) for v, x in feats.items()}
    return both, ann, labels, grid, durations


def test_fusion_lr_scale_is_a_fusion_setting(torch_one_thread):
    both, ann, labels, grid, _ = _bapg_data()
    small = {"epochs": 1, "warmup_epochs": 0, "model": SMALL_MODEL["actionformer"]}
    frozen, cfg, _ = train_detector("actionformer", both, ann, labels, grid, {**small, "fusion": {"lr_scale": 0.0}},
                                    bapg_channels=3, progress=False)
    assert cfg["fusion"] == resolve_fusion_config({"lr_scale": 0.0}) and "fusion_lr_scale" not in cfg["train"]
    assert cfg["fusion_norm"] == 0.0 and not frozen["outer.weight"].any()  # lr 0: the fusion never moved
    _, learning, _ = train_detector("actionformer", both, ann, labels, grid, small, bapg_channels=3, progress=False)
    assert learning["fusion"]["lr_scale"] == 0.1 and learning["fusion_norm"] > 0
    with pytest.raises(ValueError, match=r"unknown training setting\(s\) \['fusion_lr_scale'\]"):
        train_detector("actionformer", both, ann, labels, grid, {**small, "fusion_lr_scale": 0.5}, bapg_channels=3,
                       progress=False)


def test_build_detector_builds_only_resolved_settings():
    model = resolve_model_config("afsd", SMALL_MODEL["afsd"])
    assert isinstance(build_detector("afsd", 8 + 2, 2, model, bapg_channels=2, fusion=resolve_fusion_config()),
                      BAPGFusion)
    with pytest.raises(ValueError, match=r"not a resolved set of options \(missing \[.*'delta_a'"):
        build_detector("afsd", 8, 2, SMALL_MODEL["afsd"])  # partial options would take today's defaults
    with pytest.raises(ValueError, match=r"BAPG fusion settings: not a resolved .*missing \['lr_scale'\]"):
        build_detector("afsd", 8 + 2, 2, model, bapg_channels=2, fusion={"hidden": 8, "channel_dropout": 0.0,
                                                                         "input_dropout": 0.0})
    with pytest.raises(ValueError, match=r"unknown \['widht'\]"):
        build_detector("afsd", 8, 2, {**model, "widht": 8})


def test_checkpoint_loader_refuses_settings_of_another_version(tmp_path, torch_one_thread):
    from tal_pipeline.stages.detectors.checkpoint import load_checkpoint_file
    from tal_pipeline.stages.detectors.recipe import BapgRecipe, FeaturesRecipe, InferenceRecipe

    both, ann, labels, grid, _ = _bapg_data()
    state, cfg, _ = train_detector("actionformer", both, ann, labels, grid,
                                   {"epochs": 1, "model": SMALL_MODEL["actionformer"]}, bapg_channels=3, progress=False)
    recipe = InferenceRecipe(FeaturesRecipe("ImportFeatures", 4, 2, None),
                             bapg=BapgRecipe("oracle", False, None, (), (8.0,), 0.0, 1, 3, 128, 0,
                                                   ("pooled", "boundary")))
    cfg = {**cfg, "bapg": True, "inputs": recipe.to_dict()}
    torch.save({"state": state, "config": cfg}, tmp_path / "new.pt")
    ckpt = load_checkpoint_file(tmp_path / "new.pt")
    assert ckpt["recipe"] == recipe and ckpt["config"]["fusion"]["lr_scale"] == 0.1
    # Fusion settings without one of today's options: refused, not filled in.
    old = {**cfg, "fusion": {k: v for k, v in cfg["fusion"].items() if k != "lr_scale"}}
    torch.save({"state": state, "config": old}, tmp_path / "old.pt")
    with pytest.raises(ValueError, match=r"old\.pt: config: BAPG fusion settings: .*missing \['lr_scale'\].*"
                                         r"retrain it \(--TrainDetector-force\)"):
        load_checkpoint_file(tmp_path / "old.pt")
    no_inputs = {k: v for k, v in cfg.items() if k != "inputs"}
    torch.save({"state": state, "config": no_inputs}, tmp_path / "no_inputs.pt")
    with pytest.raises(ValueError, match=r"no_inputs\.pt: config: missing key\(s\) \['inputs'\]"):
        load_checkpoint_file(tmp_path / "no_inputs.pt")
    partial = {**cfg, "model": dict(SMALL_MODEL["actionformer"])}
    torch.save({"state": state, "config": partial}, tmp_path / "partial.pt")
    with pytest.raises(ValueError, match=r"partial\.pt: config: detector 'actionformer' options: not a resolved"):
        load_checkpoint_file(tmp_path / "partial.pt")
