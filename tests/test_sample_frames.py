import math

import numpy as np
import pytest

from tal_pipeline.stages.data.sample_frames import FrameSampler, find_video, sample_frames_to_store, sample_video
from tal_pipeline.storage.zarr_store import ArtifactStore


@pytest.mark.parametrize("name, frames, fps_src", [("mmaction2_demo", 280, 28.0), ("v_GGSY1Qvo990", 355, 981 / 50)])
def test_real_videos_frame_counts_and_timestamps(shared_data, name, frames, fps_src):
    fps = 8.0
    out, info = sample_video(shared_data / "videos" / f"{name}.mp4", fps, 112)
    duration = frames / fps_src
    assert abs(out.shape[0] - duration * fps) <= 1
    assert out.shape[1:] == (112, 112, 3) and out.dtype == np.uint8
    assert info.source_frames == frames
    assert info.source_fps == pytest.approx(fps_src, rel=1e-6)
    assert info.duration == pytest.approx(duration, abs=1.0 / fps_src)
    np.testing.assert_allclose(info.timestamps, np.arange(out.shape[0]) / fps)


def test_sampled_frame_is_the_one_on_screen(tiny_synthetic):
    # At 15 fps source and 5 fps target, sample k is source frame 3k exactly.
    path = tiny_synthetic / "synth_0000.mp4"
    every, _ = sample_video(path, 15.0, 64)
    third, info = sample_video(path, 5.0, 64)
    assert third.shape[0] == math.ceil(every.shape[0] / 3)
    np.testing.assert_array_equal(third, every[::3][: third.shape[0]])


def test_resize_and_centre_crop_keep_the_middle(shared_data):
    frames, _ = sample_video(shared_data / "videos" / "mmaction2_demo.mp4", 1.0, 64)
    assert frames.shape[1:] == (64, 64, 3)
    assert frames.std() > 10  # real content, not a blank frame


def test_time_origin_first(tmp_path):
    # A video whose timestamps start late: with "zero" the first frame is repeated before it.
    import av

    path = tmp_path / "late.mp4"
    with av.open(str(path), "w") as c:
        s = c.add_stream("libx264", rate=10)
        s.width = s.height = 32
        s.pix_fmt = "yuv420p"
        for i in range(20):
            frame = av.VideoFrame.from_ndarray(np.full((32, 32, 3), i * 10, np.uint8), format="rgb24")
            frame.pts = i + 10  # starts at 1.0 s (time base 1/10)
            for p in s.encode(frame):
                c.mux(p)
        for p in s.encode():
            c.mux(p)
    zero, info = sample_video(path, 10, 32)
    first, info_first = sample_video(path, 10, 32, time_origin="first")
    assert info.first_timestamp == pytest.approx(1.0, abs=0.11)
    assert zero.shape[0] == first.shape[0] + 10
    np.testing.assert_array_equal(zero[10:], first)


@pytest.mark.parametrize("content, message", [
    (b"", "empty"),
    (b"this is not a video at all" * 100, "not a readable video"),
])
def test_bad_files_name_the_video(tmp_path, content, message):
    path = tmp_path / "bad.mp4"
    path.write_bytes(content)
    with pytest.raises(ValueError, match=rf"video 'bad'.*{message}"):
        sample_video(path, 8, 32)


def test_truncated_file(tmp_path, tiny_synthetic):
    data = (tiny_synthetic / "synth_0001.mp4").read_bytes()
    path = tmp_path / "trunc.mp4"
    path.write_bytes(data[: len(data) // 3])
    with pytest.raises(ValueError, match="trunc"):
        sample_video(path, 8, 32)


def test_find_video_any_extension(tmp_path):
    (tmp_path / "clip.MKV").write_bytes(b"x")
    assert find_video(tmp_path, "clip").name == "clip.MKV"
    with pytest.raises(FileNotFoundError, match="video 'other'"):
        find_video(tmp_path, "other")


def test_store_worker_streams_in_chunks(tmp_path, tiny_synthetic):
    store = ArtifactStore(tmp_path / "frames.zarr")
    store.begin({"params": {"x": 1}})
    sample_frames_to_store("synth_0002", videos_dir=str(tiny_synthetic), store_path=str(store.path), fps=8, size=48,
                           chunk_len=7)
    arr = store.read("synth_0002")
    direct, info = sample_video(tiny_synthetic / "synth_0002.mp4", 8, 48)
    np.testing.assert_array_equal(arr[...], direct)
    assert arr.chunks[0] == 7 and arr.attrs["source_frames"] == info.source_frames
    assert len(arr.attrs["timestamps"]) == arr.shape[0]


def test_sampler_rejects_bad_arguments(tiny_synthetic):
    with pytest.raises(ValueError, match="fps"):
        FrameSampler(tiny_synthetic / "synth_0000.mp4", 0, 32)
