"""The dataset identity's per-process cache (pipeline/dataset.py): one walk of the folder while nothing changes, a new
walk when a file is added, removed, renamed or replaced (also in a subfolder and in a luigi graph built again in the
same process), the documented blind spot (a file rewritten in place) and forget_identities(), and no caching of a
folder changed within RACY_NS."""
from __future__ import annotations

import os
import time
from pathlib import Path

import numpy as np
import pytest

from pipeline import dataset
from tal_pipeline.synthetic.thumos_like_features import save_features

SETTLE = 0.05  # seconds: past the shortened racy window below


@pytest.fixture
def short_racy(monkeypatch):
    # 20 ms instead of 1 s, still longer than a Linux file-system timestamp tick (<= 10 ms): the tests wait SETTLE
    # after writing instead of a second each.
    monkeypatch.setattr(dataset, "RACY_NS", 20_000_000)
    dataset.forget_identities()
    yield
    dataset.forget_identities()


def _dataset(folder: Path, videos=("a", "b", "c")) -> dataset.DatasetSpec:
    features = folder / "features"
    features.mkdir(parents=True, exist_ok=True)
    for i, v in enumerate(videos):
        save_features(features / f"{v}.npy", np.full((4, 3), i, np.float32))
    (folder / "annotations.json").write_text('{"database": {}}')
    time.sleep(SETTLE)
    return dataset.DatasetSpec("", str(folder / "annotations.json"), "training", "validation", str(features), False)


def _uncached(spec: dataset.DatasetSpec) -> dict:
    with dataset.identity_cache(False):
        return dataset.identity(spec)


def _walks() -> int:
    return dataset.identity_counts()["walks"]


def test_one_walk_while_nothing_changes(tmp_path, short_racy):
    spec = _dataset(tmp_path)
    before = _walks()
    first = dataset.identity(spec)
    assert [dataset.identity(spec) for _ in range(5)] == [first] * 5
    assert _walks() == before + 1
    assert first == _uncached(spec) and first["features"]["files"] == 3
    counts = dataset.identity_counts()
    with dataset.identity_cache(False):  # the benchmark's "before": every call walks
        dataset.identity(spec), dataset.identity(spec)
    assert dataset.identity_counts() == {"calls": counts["calls"] + 2, "walks": counts["walks"] + 2}


@pytest.mark.parametrize("change", ["add", "remove", "rename", "replace", "subfolder"])
def test_a_changed_folder_is_walked_again(tmp_path, short_racy, change):
    spec = _dataset(tmp_path)
    nested = Path(spec.features) / "more"
    nested.mkdir()
    save_features(nested / "d.npy", np.zeros((2, 3), np.float32))
    time.sleep(SETTLE)
    old = dataset.identity(spec)
    assert dataset.identity(spec) == old
    features = Path(spec.features)
    if change == "add":
        save_features(features / "e.npy", np.zeros((4, 3), np.float32))
    elif change == "remove":
        (features / "b.npy").unlink()
    elif change == "rename":
        os.rename(features / "b.npy", features / "z.npy")
    elif change == "replace":  # same name and size, new content, written by the generators' rename
        save_features(features / "b.npy", np.full((4, 3), 7, np.float32))
    else:
        save_features(nested / "f.npy", np.zeros((2, 3), np.float32))
    walks = _walks()
    new = dataset.identity(spec)
    assert _walks() == walks + 1
    assert new != old and new == _uncached(spec)


def test_in_place_rewrite_is_seen_after_forget_identities(tmp_path, short_racy):
    spec = _dataset(tmp_path)
    old = dataset.identity(spec)
    np.save(Path(spec.features) / "a.npy", np.full((5, 3), 9, np.float32))  # same inode: the folder does not change
    assert _uncached(spec) != old  # the file did change
    assert dataset.identity(spec) == old  # the cache's documented blind spot, until told
    dataset.forget_identities()
    assert dataset.identity(spec) != old and dataset.identity(spec) == _uncached(spec)


def test_a_folder_changed_just_now_is_not_cached(tmp_path):
    dataset.forget_identities()
    features = tmp_path / "features"
    features.mkdir()
    save_features(features / "a.npy", np.zeros((2, 2), np.float32))
    spec = dataset.DatasetSpec("", str(tmp_path / "ann.json"), "train", "test", str(features), False)
    before = _walks()
    dataset.identity(spec), dataset.identity(spec)  # the real RACY_NS (1 s): written a moment ago
    assert _walks() == before + 2


def test_a_luigi_graph_built_again_in_process_sees_a_regenerated_dataset(tmp_path):
    from luigi.cmdline_parser import CmdlineParser
    from luigi.task_register import Register

    from pipeline.bapg_tasks import TrainEncoder
    from tal_pipeline.synthetic.anet_like import generate_anet_like

    folder = tmp_path / "anet"
    generate_anet_like(folder, videos=6, seed=0, width=16)
    time.sleep(1.1)  # the real racy window: this folder is cached
    args = ["TrainEncoder", "--dataset-features", str(folder / "features"), "--dataset-annotations",
            str(folder / "annotations.json"), "--paths-workdir", str(tmp_path / "runs"), "--no-lock"]
    spec = dataset.DatasetSpec("", str(folder / "annotations.json"), "train", "validation", str(folder / "features"),
                               False)

    def encoder_path() -> str:
        Register.clear_instance_cache()
        with CmdlineParser.global_instance(args):
            return TrainEncoder().output().path

    dataset.forget_identities()
    first = encoder_path()
    walks = _walks()
    assert encoder_path() == first and _walks() == walks  # cached: no walk
    features_before = dataset.identity(spec)["features"]
    generate_anet_like(folder, videos=6, seed=1, width=16)  # the same file names, other features
    assert encoder_path() != first
    assert dataset.identity(spec)["features"] != features_before
    assert dataset.identity(spec)["features"] == _uncached(spec)["features"]
