"""Bad inputs, one test per case: every one fails with a clear error naming the file/video and the
problem, the other videos' work is kept, and per-video stages list the bad ones in their failure
report. Covered elsewhere (not repeated here): the restricted unpickler refusing os.system in a
Flax .ckpt pickle (test_i3d.py::test_restricted_unpickler_refuses_other_globals); `""`, `{}` and
`{"database": {}}` annotation files, segments past the end, unknown labels and unsafe ids
(test_annotations.py); ImportFeatures through luigi with NaN / wrong width / missing files
(test_import_features.py); a truncated video through luigi with resume (test_pipeline_frames.py).
"""
from __future__ import annotations

import ast
import json
import math
import os
import pickle
import re
import shutil
from fractions import Fraction
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from tal_pipeline.stages.data.sample_frames import FrameSampler, sample_frames_to_store
from tal_pipeline.stages.parallel import run_per_video
from tal_pipeline.storage.zarr_store import ArtifactStore
from tests.conftest import REPO, dataset_args, run_luigi

SOURCE_DIRS = ("pipeline", "stages", "models", "storage")


def _index_image(i: int, size: int) -> np.ndarray:
    """Frame i as 6 black/white vertical bands (its index in binary): survives lossy coding."""
    image = np.zeros((size, size, 3), np.uint8)
    band = size // 8
    for bit in range(6):
        if i >> bit & 1:
            image[:, (bit + 1) * band:(bit + 2) * band] = 255
    return image


def _image_index(image: np.ndarray) -> int:
    size = image.shape[1]
    band = size // 8
    centres = [(bit + 1) * band + band // 2 for bit in range(6)]
    return sum(1 << bit for bit, x in enumerate(centres) if image[:, x].mean() > 127)


def _write_video(path: Path, n: int = 40, rate: int = 10, start: int = 0, codec: str = "libx264",
                 options: dict | None = None, container_options: dict | None = None, size: int = 48,
                 noise: bool = False) -> None:
    """n frames (frame i at pts start + i, time base 1/rate): index bands, or noise (large packets)."""
    import av

    rng = np.random.default_rng(0)
    with av.open(str(path), "w", options=container_options or {}) as c:
        s = c.add_stream(codec, rate=rate)
        s.width = s.height = size
        s.pix_fmt = "yuv420p"
        s.options = {"threads": "1", **(options or {})}  # the same bytes on any machine (x264 threads change them)
        for i in range(n):
            image = rng.integers(0, 255, (size, size, 3), dtype=np.uint8) if noise else _index_image(i, size)
            frame = av.VideoFrame.from_ndarray(image, format="rgb24")
            frame.pts = start + i
            for p in s.encode(frame):
                c.mux(p)
        for p in s.encode():
            c.mux(p)


def _write_audio_only(path: Path) -> None:
    import av

    with av.open(str(path), "w") as c:
        s = c.add_stream("aac", rate=44100)
        for i in range(20):
            frame = av.AudioFrame.from_ndarray(np.zeros((1, 1024), np.float32), format="fltp", layout="mono")
            frame.sample_rate, frame.pts = 44100, i * 1024
            for p in s.encode(frame):
                c.mux(p)
        for p in s.encode():
            c.mux(p)


def _new_store(path: Path) -> ArtifactStore:
    store = ArtifactStore(path)
    store.begin({"params": {"test": 1}})
    return store


def _leftovers(store: ArtifactStore) -> list[str]:
    """Temporaries of unfinished videos (a half-written artifact would show here)."""
    return sorted(p.name for p in store.tmp_root.iterdir()) if store.tmp_root.exists() else []


# ---------------------------------------------------------------------------------------------
# SampleFrames: truncated, empty, not a video, audio only
# ---------------------------------------------------------------------------------------------
CUT = r"is truncated(: its frames end at .* but the file declares 6\.00 s| or corrupt after frame \d+ )"
BAD_VIDEOS = {
    # video id: (file name, what the message must say)
    "cut_half": ("cut_half.mp4", r"not a readable video file: truncated"),  # index (moov) at the end: gone
    # The decoder's threads (one per core) decide which: one thread raises at the cut packet, several end early.
    "cut_front": ("cut_front.mp4", CUT),
    "cut_mkv": ("cut_mkv.mkv", CUT),
    "zero_bytes": ("zero_bytes.mp4", r"is empty \(0 bytes\)"),
    "text_file": ("text_file.mp4", r"not a readable video file"),
    "audio_only": ("audio_only.mp4", r"has no video stream \(audio-only"),
}


@pytest.fixture(scope="module")
def bad_videos(tmp_path_factory, tiny_synthetic) -> Path:
    """A videos folder: two good synthetic videos next to every kind of bad file."""
    folder = tmp_path_factory.mktemp("bad_videos")
    for good in ("synth_0000", "synth_0001"):
        shutil.copy(tiny_synthetic / f"{good}.mp4", folder)
    data = (tiny_synthetic / "synth_0002.mp4").read_bytes()
    (folder / "cut_half.mp4").write_bytes(data[: len(data) // 2])
    # Files whose first half still decodes: an mp4 with its index at the front, and an mkv.
    for name, opts in (("front.mp4", {"movflags": "faststart"}), ("whole.mkv", {})):
        _write_video(folder.parent / name, n=90, rate=15, container_options=opts, size=64, noise=True)
    for src, dst in (("front.mp4", "cut_front.mp4"), ("whole.mkv", "cut_mkv.mkv")):
        whole = (folder.parent / src).read_bytes()
        (folder / dst).write_bytes(whole[: len(whole) // 2])
    (folder / "zero_bytes.mp4").write_bytes(b"")
    (folder / "text_file.mp4").write_text("this is a text file, not a video\n" * 50)
    _write_audio_only(folder / "audio_only.mp4")
    database = {video: {"subset": "train" if i % 2 else "test", "duration": 12.0, "fps": 15.0, "annotations": []}
                for i, video in enumerate(["synth_0000", "synth_0001", *BAD_VIDEOS])}
    (folder / "annotations.json").write_text(json.dumps({"database": database}))
    return folder


def test_bad_video_files_fail_clearly_keep_the_others_and_are_reported(tmp_path, bad_videos):
    # Decision (stages/data/sample_frames.py docstring, README): a truncated file fails as a whole, also
    # when its first part decodes; nothing of it is written, and --skip-bad-videos goes on without it.
    store = _new_store(tmp_path / "frames.zarr")
    for video, (name, problem) in BAD_VIDEOS.items():
        with pytest.raises(ValueError, match=rf"video '{video}': .*{re.escape(name)}.*{problem}"):
            sample_frames_to_store(video, videos_dir=str(bad_videos), store_path=str(store.path), fps=4, size=32)
    assert store.done_videos() == set() and _leftovers(store) == []

    videos = ["synth_0000", *BAD_VIDEOS, "synth_0001"]
    result = run_per_video(sample_frames_to_store, videos, scheduler="threads", num_workers=2,
                           videos_dir=str(bad_videos), store_path=str(store.path), fps=4, size=32)
    assert sorted(result.done) == ["synth_0000", "synth_0001"]
    assert set(result.failures) == set(BAD_VIDEOS)
    for video, (name, problem) in BAD_VIDEOS.items():
        assert re.search(rf"^ValueError: video '{video}': .*{re.escape(name)}.*{problem}", result.failures[video])
    assert store.done_videos() == {"synth_0000", "synth_0001"} and _leftovers(store) == []
    assert store.read("synth_0001").shape[1:] == (32, 32, 3)

    # The real stage (pipeline/base.py run_videos): fails naming them, keeps the others, writes the report.
    workdir = tmp_path / "runs"
    run = run_luigi(["SampleFrames", *dataset_args(bad_videos, workdir), "--SampleFrames-size", "32",
                     "--SampleFrames-fps", "4", "--dask-scheduler", "synchronous"], tmp_path)
    assert run.returncode == 30, run.stderr[-3000:]
    [path] = workdir.glob("frames-*.zarr")
    staged = ArtifactStore(path)
    assert not staged.is_complete() and staged.done_videos() == {"synth_0000", "synth_0001"}
    report = json.loads(staged.failure_report.read_text())
    assert set(report["failures"]) == set(BAD_VIDEOS)
    for video, (name, problem) in BAD_VIDEOS.items():
        assert re.search(rf"{re.escape(name)}.*{problem}", report["failures"][video]), report["failures"][video]
    assert "6 of 8 videos failed" in run.stderr and "--skip-bad-videos" in run.stderr


# ---------------------------------------------------------------------------------------------
# ExtractFeatures: a video shorter than one I3D window
# ---------------------------------------------------------------------------------------------
def test_video_shorter_than_one_window_fails_alone(tmp_path):
    import torch

    from tal_pipeline.models.i3d import I3D
    from tal_pipeline.stages.data.features import extract_video_features

    torch.manual_seed(0)
    weights = tmp_path / "random_i3d.pt"
    torch.save(I3D().state_dict(), weights)
    frames = _new_store(tmp_path / "frames.zarr")
    rng = np.random.default_rng(0)
    for video, count in (("short", 10), ("long", 20)):
        frames.write_video(video, rng.integers(0, 255, (count, 32, 32, 3), dtype=np.uint8), 8,
                           ["time", "y", "x", "rgb"], {"fps": 8.0, "duration": count / 8})
    feats = _new_store(tmp_path / "features.zarr")
    result = run_per_video(extract_video_features, ["short", "long"], scheduler="synchronous",
                           frames_store=str(frames.path), store_path=str(feats.path), window=16, stride=4,
                           weights=str(weights), weights_sha256="test", device="cpu", num_threads=2)
    assert result.done == ["long"]
    assert re.search(r"video 'short' has 10 frames, fewer than one window of 16 \(1\.25 s sampled at 8 fps",
                     result.failures["short"])
    assert feats.done_videos() == {"long"} and _leftovers(feats) == []
    assert feats.read("long").shape == (2, 1024)
    report = json.loads(feats.write_failure_report("features", result.failures).read_text())
    assert list(report["failures"]) == ["short"]


# ---------------------------------------------------------------------------------------------
# SampleFrames: timestamps that start late and arrive out of order
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["late_bframes.avi", "late_bframes.mkv"])
def test_late_out_of_order_timestamps_sample_by_presentation_time(tmp_path, name):
    import av

    path = tmp_path / name
    # MPEG-4 part 2 with B-frames: packets in decode order, so their timestamps go back and forth.
    _write_video(path, n=40, rate=10, start=10, codec="mpeg4", options={"bf": "2"})  # frames at 1.0 .. 4.9 s
    with av.open(str(path)) as c:
        pts = [p.pts for p in c.demux(c.streams.video[0]) if p.pts is not None]
    assert pts != sorted(pts), "the file should hold B-frames (packet timestamps out of order)"

    store = _new_store(tmp_path / "frames.zarr")
    video = path.stem
    sample_frames_to_store(video, videos_dir=str(tmp_path), store_path=str(store.path), fps=4, size=48)
    array = store.read(video)
    attrs = array.attrs
    assert attrs["first_timestamp"] == pytest.approx(1.0)
    assert attrs["duration"] == pytest.approx(5.0)  # last frame at 4.9 s + one frame
    assert array.shape[0] == math.ceil(5.0 * 4) == 20  # the count follows the real duration
    np.testing.assert_allclose(attrs["timestamps"], np.arange(20) / 4)  # recorded, ascending
    # Sample k shows the frame on screen at k/4 s: frame 0 before 1.0 s, then frame floor(10 t) - 10.
    expected = [max(0, math.floor(10 * k / 4 + 1e-9) - 10) for k in range(20)]
    shown = [_image_index(image) for image in array[...]]
    assert shown == expected


def test_frames_decoded_out_of_order_are_reordered(tmp_path, monkeypatch):
    """Decoders that hand frames out of presentation order: the reorder buffer restores it."""
    import av

    import tal_pipeline.stages.data.sample_frames as sf

    frames = [av.VideoFrame.from_ndarray(np.full((16, 16, 3), i * 6, np.uint8), format="rgb24") for i in range(30)]
    order = [0, 3, 1, 2, 6, 4, 5, 9, 7, 8] + list(range(10, 30))
    stream = SimpleNamespace(average_rate=Fraction(10), guessed_rate=None)

    def fake_decoded(path, video, shuffled=True):
        for i in (order if shuffled else range(30)):
            yield 0.5 + i / 10, frames[i], stream

    monkeypatch.setattr(sf, "_decoded_frames", fake_decoded)
    sampler = FrameSampler(tmp_path / "x.avi", 5, 16)
    out = np.stack([image for _, image in sampler])
    assert sampler.info.out_of_order == 3 and sampler.info.first_timestamp == pytest.approx(0.5)
    monkeypatch.setattr(sf, "_decoded_frames", lambda p, v: fake_decoded(p, v, shuffled=False))
    reference = FrameSampler(tmp_path / "x.avi", 5, 16)
    np.testing.assert_array_equal(out, np.stack([image for _, image in reference]))
    assert sampler.info.timestamps == reference.info.timestamps == sorted(sampler.info.timestamps)


# ---------------------------------------------------------------------------------------------
# annotations
# ---------------------------------------------------------------------------------------------
def test_bad_annotation_files(tmp_path):
    from tal_pipeline.storage.annotations import load_annotations

    def write(name: str, content: str | bytes) -> Path:
        path = tmp_path / name
        path.write_bytes(content if isinstance(content, bytes) else content.encode())
        return path

    def video(annotations, duration=10.0):
        return {"subset": "train", "duration": duration, "fps": 25, "annotations": annotations}

    for name, content, message in [
        ("zero.json", b"", r"zero\.json is empty \(0 bytes\)"),
        ("cut.json", '{"database": {"v1": {"subset": "tr', r"cut\.json is not valid JSON"),
        ("binary.json", b"\xff\xfe\x00garbage", r"binary\.json is not valid JSON"),
        ("obj.json", "{}", r"obj\.json: expected an object with a 'database'"),
        ("nodb.json", '{"database": {}}', r"nodb\.json: 'database' holds no video"),
        ("list.json", "[1, 2]", r"list\.json: expected an object"),
        ("amb.json", json.dumps({"database": {"v1": {**video([]), "ambiguous": [5]}}}), r"v1.*malformed ambiguous"),
        ("nolabel.json", json.dumps({"database": {"v1": video([{"segment": [1, 2], "label": None}])}}),
         r"v1.*no label"),
        ("zero.csv", b"", r"zero\.csv is empty"),
        ("bad_Annotation.csv", b"\xff\xfe\x00\x01", r"bad_Annotation\.csv is not a readable CSV"),
    ]:
        with pytest.raises(ValueError, match=message):
            load_annotations(write(name, content))

    # Segments outside the video: clipped or dropped, with warnings naming the video.
    path = write("outside.json", json.dumps({"database": {
        "v1": video([{"segment": [-2.0, 3.0], "label": "A"}, {"segment": [-3.0, -1.0], "label": "A"},
                     {"segment": [8.0, 14.0], "label": "B"}, {"segment": [11.0, 12.0], "label": "B"}])}}))
    ann = load_annotations(path)
    assert ann.actions[["label", "start", "end"]].values.tolist() == [["A", 0.0, 3.0], ["B", 8.0, 10.0]]
    warnings = " | ".join(ann.warnings)
    for text in ("clipped 1 negative segment start(s) to 0 in v1", "dropped 1 segment(s) that end before the video",
                 "dropped 1 segment(s) that start after the video ends", "clipped 1 segment end(s)"):
        assert text in warnings
    with pytest.raises(ValueError, match="v1.*negative time"):
        load_annotations(path, beyond_duration="keep")

    # Unknown labels, given the label list.
    with pytest.raises(ValueError, match=r"video 'v1': unknown label 'B'"):
        load_annotations(path, labels=["A"])

    # Video ids that could escape the store folder or are not file names.
    for bad_id in ("../etc", "a/b", "a\\b", "..", "v1\n", "/abs"):
        with pytest.raises(ValueError, match="not file-name safe"):
            load_annotations(write("ids.json", json.dumps({"database": {bad_id: video([])}})))


# ---------------------------------------------------------------------------------------------
# imported features
# ---------------------------------------------------------------------------------------------
def test_imported_features_nan_inf_or_wrong_width(tmp_path):
    from tal_pipeline.stages.data.import_features import import_video_features

    src = tmp_path / "feats"
    src.mkdir()
    rng = np.random.default_rng(0)
    good = rng.normal(size=(12, 8))
    np.save(src / "good.npy", good)
    nan = good.copy()
    nan[4, 2] = np.nan
    np.save(src / "has_nan.npy", nan)
    inf = good.copy()
    inf[7, 0] = np.inf
    np.save(src / "has_inf.npy", inf)
    np.save(src / "narrow.npy", rng.normal(size=(12, 6)))
    (src / "broken.npy").write_bytes(b"\x93NUMPY garbage")
    store = _new_store(tmp_path / "features.zarr")
    videos = ["good", "has_nan", "has_inf", "narrow", "broken"]
    result = run_per_video(import_video_features, videos, scheduler="synchronous", source=str(src),
                           store_path=str(store.path), fps_by_video={v: 25.0 for v in videos}, window=16,
                           stride=4, width=8)
    assert result.done == ["good"]
    failures = result.failures
    assert re.search(r"video 'has_nan': features in .*has_nan\.npy hold 1 NaN and 0 inf .*first at step 4",
                     failures["has_nan"])
    assert re.search(r"video 'has_inf': features in .*has_inf\.npy hold 0 NaN and 1 inf .*first at step 7",
                     failures["has_inf"])
    assert re.search(r"video 'narrow': features in .*narrow\.npy are 6 wide, expected 8", failures["narrow"])
    assert re.search(r"video 'broken': .*broken\.npy is not a plain numeric \.npy", failures["broken"])
    assert store.done_videos() == {"good"} and _leftovers(store) == []
    np.testing.assert_allclose(store.read("good")[...], good.astype(np.float32))


# ---------------------------------------------------------------------------------------------
# weights
# ---------------------------------------------------------------------------------------------
def test_missing_or_corrupt_weights_files(tmp_path, monkeypatch):
    import torch

    from tal_pipeline.models.i3d_weights import cached_weights_path, ensure_i3d_weights, load_state_dict_file

    monkeypatch.setenv("TAL_PIPELINE_CACHE", str(tmp_path / "cache"))
    quiet = {"progress": lambda _: None}
    missing = tmp_path / "nowhere" / "i3d.pt"
    with pytest.raises(FileNotFoundError, match=re.escape(str(missing))):
        ensure_i3d_weights(source=missing, **quiet)
    with pytest.raises(FileNotFoundError, match=re.escape(str(missing))):
        load_state_dict_file(missing)

    buffer = tmp_path / "whole.pt"
    torch.save({"w": torch.ones(3)}, buffer)
    cut = tmp_path / "cut.pt"
    cut.write_bytes(buffer.read_bytes()[: buffer.stat().st_size // 2])
    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(os.urandom(256))
    empty = tmp_path / "empty.pt"
    empty.write_bytes(b"")
    for path, message in ((cut, "corrupt or not a torch state dict"), (garbage, "corrupt or not a torch state dict"),
                          (empty, r"empty \(0 bytes\)"), (buffer, "not an I3D RGB state dict"),
                          (tmp_path, "is a directory")):
        with pytest.raises(ValueError, match=rf"{re.escape(str(path))}.*{message}"):
            load_state_dict_file(path)
        with pytest.raises(ValueError, match=re.escape(str(path))):
            ensure_i3d_weights(source=path, **quiet)
    assert not cached_weights_path().exists()  # nothing half-written into the cache


# ---------------------------------------------------------------------------------------------
# security
# ---------------------------------------------------------------------------------------------
class _System:
    def __init__(self, command):
        self.command = command

    def __reduce__(self):
        return (os.system, (self.command,))


def _calls(tree: ast.AST, owner: str, names: tuple[str, ...]):
    for node in ast.walk(tree):
        if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr in names
                and isinstance(node.func.value, ast.Name) and node.func.value.id == owner):
            yield node


def _keyword(call: ast.Call, name: str):
    for kw in call.keywords:
        if kw.arg == name:
            return kw.value.value if isinstance(kw.value, ast.Constant) else "<not a constant>"
    return None


def test_no_code_execution_from_files_and_no_public_bind(tmp_path):
    from tal_pipeline.models.i3d_weights import load_numpy_pickle, load_state_dict_file

    marker = tmp_path / "pwned"
    evil = _System(f"echo x > {marker}")
    # The numpy-only unpickler (Flax .ckpt weights) and torch.load(weights_only=True) (.pt files).
    with pytest.raises(ValueError, match=r"evil\.ckpt: refusing global (posix|os|nt)\.system"):
        load_numpy_pickle(pickle.dumps({"params": evil}), "evil.ckpt")
    import torch

    evil_pt = tmp_path / "evil.pt"
    torch.save({"w": evil}, evil_pt)
    with pytest.raises(ValueError, match=re.escape(str(evil_pt))):
        load_state_dict_file(evil_pt)
    assert not marker.exists()

    files = sorted(p for d in SOURCE_DIRS for p in (REPO / d).rglob("*.py"))
    assert len(files) > 20
    unsafe, binds = [], []
    for file in files:
        text = file.read_text()
        tree = ast.parse(text, str(file))
        where = file.relative_to(REPO)
        for call in _calls(tree, "torch", ("load",)):
            if _keyword(call, "weights_only") is not True:
                unsafe.append(f"{where}:{call.lineno}: torch.load without weights_only=True")
        for call in _calls(tree, "np", ("load",)):
            if _keyword(call, "allow_pickle") not in (None, False):
                unsafe.append(f"{where}:{call.lineno}: np.load with allow_pickle")
        for call in _calls(tree, "pickle", ("load", "loads")):
            unsafe.append(f"{where}:{call.lineno}: pickle.{call.func.attr} (use a restricted Unpickler)")
        for node in ast.walk(tree):
            if (isinstance(node, ast.Constant) and isinstance(node.value, str)
                    and re.search(r"\b0\.0\.0\.0\b|^::$|^\[::\]", node.value)):
                binds.append(f"{where}:{node.lineno}: {node.value!r}")
    for cfg in (REPO / "luigi.cfg", REPO / "pipeline" / "luigi.cfg"):
        binds += [f"{cfg}: {line}" for line in cfg.read_text().splitlines()
                  if "0.0.0.0" in line and not line.lstrip().startswith("#")]
    assert unsafe == []
    assert binds == [], "nothing may listen on all interfaces by default"
