"""ExtractFeatures: I3D RGB features over sliding windows of sampled frames (pure functions, no luigi).

Feature i is the 1024-d avg-pooled Mixed_5c output of frames [i*stride, i*stride + window)
(stages.data.timegrid: centred at (i*stride + window/2) / fps seconds). Frames are uint8 RGB
(T, H, W, 3) as SampleFrames writes them; they are scaled to [-1, 1] here.

Precision (stages.data.gpu_feed.PRECISIONS): fp32 (the default, on every device; TF32 off on a GPU, so its
features are those of the CPU up to rounding) or a reduced one, bf16 / fp16 autocast, for speed on a GPU. The
setting is recorded with the features and shapes their artifact path (pipeline.data_tasks.ExtractFeatures).
On a GPU (stages.data.gpu_feed): cuDNN autotuning, a batch size from free memory, frames pinned on the decoding
thread and uploaded once asynchronously, features kept on the GPU until the video is done.
"""
from __future__ import annotations

import contextlib
import queue
import threading
from collections.abc import Iterable, Iterator
from pathlib import Path

import numpy as np
import torch

from tal_pipeline.stages.data.gpu_feed import COMPUTE_DTYPES, check_precision, cuda_settings, gpu_batch_size, pad_batch
from tal_pipeline.stages.data.timegrid import TimeGrid, num_windows
from tal_pipeline.stages.runtime import resolve_device

DEFAULT_WINDOW = 16
DEFAULT_STRIDE = 4


def default_batch_size(device: torch.device, frame_shape=None, window: int = DEFAULT_WINDOW,
                       precision: str = "fp32") -> int:
    """Windows per forward pass: on a GPU as many as half its free memory holds (gpu_batch_size); on CPU small
    (throughput flattens out, memory does not)."""
    if device.type == "cuda" and frame_shape is not None:
        return gpu_batch_size(device, frame_shape, window, precision)
    return 32 if device.type == "cuda" else 4


@contextlib.contextmanager
def torch_threads(num_threads: int | None):
    """Use `num_threads` intra-op threads inside the block (process-wide in torch), then restore.

    None keeps the current setting: under Dask/luigi workers the caller (or OMP_NUM_THREADS set by
    distributed's nanny) decides, so parallel videos do not oversubscribe the cores.
    """
    if num_threads is None:
        yield
        return
    if num_threads < 1:
        raise ValueError(f"num_threads must be >= 1, got {num_threads}")
    before = torch.get_num_threads()
    torch.set_num_threads(int(num_threads))
    try:
        yield
    finally:
        torch.set_num_threads(before)


def _check_frames(chunk, video: str) -> np.ndarray:
    chunk = np.asarray(chunk)
    if chunk.dtype != np.uint8 or chunk.ndim != 4 or chunk.shape[-1] != 3:
        raise ValueError(f"{video or 'video'}: frames must be uint8 (T, H, W, 3), got {chunk.dtype} {chunk.shape}")
    return chunk


def _prefetch(chunks: Iterable[np.ndarray], depth: int = 2, prepare=None) -> Iterator:
    """Pull chunks from `chunks` on a background thread so decoding overlaps model compute; prepare(chunk), when
    given, runs on that thread too (checking, pinning for a GPU copy)."""
    q: queue.Queue = queue.Queue(maxsize=depth)
    done = object()
    stop = threading.Event()

    def worker():
        try:
            for chunk in chunks:
                if stop.is_set():
                    return
                q.put(prepare(chunk) if prepare is not None else chunk)
            q.put(done)
        except BaseException as exc:  # re-raised in the consumer
            q.put(exc)

    thread = threading.Thread(target=worker, name="i3d-frame-prefetch", daemon=True)
    thread.start()
    try:
        while True:
            item = q.get()
            if item is done:
                return
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        stop.set()
        while thread.is_alive():  # unblock a worker waiting on a full queue
            try:
                q.get_nowait()
            except queue.Empty:
                thread.join(0.05)


def _windows_batch(span: np.ndarray | torch.Tensor, window: int, stride: int, dtype: torch.dtype | None = None
                   ) -> torch.Tensor:
    """Frames covering nb consecutive windows (numpy on CPU, a uint8 tensor on the GPU) -> model input
    (nb, 3, window, H, W) in [-1, 1], float32, or `dtype` (a reduced precision: the input arrives in the compute
    dtype, so autocast casts no activation, only each weight once per video).

    Each frame is converted once per batch; only the model input itself repeats frames shared by overlapping
    windows.
    """
    x = span if isinstance(span, torch.Tensor) else torch.from_numpy(np.ascontiguousarray(span))  # (S, H, W, 3)
    views = x.unfold(0, window, stride)                           # (nb, H, W, 3, window) view, no copy
    views = views.permute(0, 3, 4, 1, 2)                          # (nb, 3, window, H, W) view
    # The one copy, channels-last (NDHWC): the frames' natural order, and conv3d's faster layout on CPU (method.md §1).
    out = views.to(dtype=torch.float32, memory_format=torch.channels_last_3d)   # (nb, 3, window, H, W)
    out = out.div_(127.5).sub_(1.0)                               # RGB in [-1, 1]
    return out if dtype is None else out.to(dtype)                # rounded once, from float32


def extract_features(
    frames: np.ndarray | Iterable[np.ndarray],
    model: torch.nn.Module,
    window: int = DEFAULT_WINDOW,
    stride: int = DEFAULT_STRIDE,
    batch_size: int | None = None,
    device: str | torch.device | None = None,
    num_threads: int | None = None,
    precision: str = "fp32",
    video: str = "",
) -> np.ndarray:
    """I3D features of every full window: float32 (num_windows(T, window, stride), 1024).

    frames: uint8 (T, H, W, 3), or an iterable of such chunks (consecutive frames; decoded, checked and, for a
    GPU, pinned on a background thread while the model runs). model: an eval-mode models.i3d.I3D (already on
    `device`; None = the model's device). precision: fp32 | bf16 | fp16 (PRECISIONS; bf16 / fp16: autocast).
    batch_size: windows per forward pass (None: default_batch_size). num_threads: torch CPU threads for this call
    (None: leave as set by the caller). Raises ValueError when the video is shorter than one window.
    """
    if window < 1 or stride < 1:
        raise ValueError(f"window and stride must be >= 1, got window={window}, stride={stride}")
    if model.training:
        raise ValueError("extract_features needs the model in eval mode (BatchNorm running statistics)")
    check_precision(precision)
    device = resolve_device(device) if device is not None else next(model.parameters()).device
    name = video or "video"
    cuda = device.type == "cuda"

    def prepare(chunk):  # on the decoding thread for an iterable: check, and pin for an asynchronous upload
        chunk = _check_frames(chunk, name)
        return torch.from_numpy(np.ascontiguousarray(chunk)).pin_memory() if cuda and len(chunk) else chunk

    dtype = COMPUTE_DTYPES[precision]
    with contextlib.ExitStack() as stack:
        stack.enter_context(torch_threads(num_threads))
        stack.enter_context(torch.inference_mode())
        stack.enter_context(cuda_settings(device, precision))
        if dtype is not None:  # one autocast for the video: each weight is cast once, not once per batch
            stack.enter_context(torch.autocast(device.type, dtype=dtype))
        if isinstance(frames, np.ndarray):
            chunks: Iterable = [prepare(frames)]
        else:
            chunks = _prefetch(frames, prepare=prepare)
            stack.callback(chunks.close)  # stop the prefetch thread even when we raise
        feats = _WindowRunner(model, window, stride, batch_size, device, precision, name).run(chunks)
    return feats


class _WindowRunner:
    """Consumes consecutive frame chunks, runs I3D on every full window in batches, returns (N, 1024) float32.

    The frames not yet consumed by a finished window are buffered (numpy on CPU; on a GPU, uploaded once per
    chunk, asynchronously from pinned memory); features stay on the device until the video is done (no host
    sync per batch).
    """

    def __init__(self, model, window, stride, batch_size, device, precision, name):
        self.model, self.window, self.stride, self.device = model, window, stride, device
        self.batch_size, self.precision, self.name = batch_size, precision, name
        self.dtype = COMPUTE_DTYPES[precision]
        self.cuda = device.type == "cuda"
        self.buf = None        # frames from buf_start on (numpy, or a uint8 tensor on the GPU)
        self.buf_start = 0     # global index of buf[0]
        self.next_win = 0      # next window to compute
        self.out: list[torch.Tensor] = []

    def run(self, chunks) -> np.ndarray:
        total, frame_shape = 0, None
        for chunk in chunks:
            if len(chunk) == 0:
                continue
            shape = tuple(chunk.shape[1:])
            if frame_shape is None:
                frame_shape = shape
                self.batch_size = self.batch_size or default_batch_size(self.device, shape, self.window,
                                                                        self.precision)
            if shape != frame_shape:
                raise ValueError(f"{self.name}: frame size changed from {frame_shape[:2]} to {shape[:2]}")
            if self.cuda:
                chunk = chunk.to(self.device, non_blocking=True)
            self.buf = chunk if self.buf is None or len(self.buf) == 0 else self._cat(self.buf, chunk)
            total += len(chunk)
            while num_windows(total, self.window, self.stride) - self.next_win >= self.batch_size:
                self._batch(self.batch_size)
        remaining = num_windows(total, self.window, self.stride) - self.next_win
        if self.next_win == 0 and remaining <= 0:
            raise ValueError(f"{self.name}: {total} frames is shorter than one I3D window of {self.window} frames")
        while remaining > 0:
            self._batch(min(self.batch_size, remaining))
            remaining = num_windows(total, self.window, self.stride) - self.next_win
        return torch.cat(self.out).float().cpu().numpy()  # the one host copy

    def _cat(self, a, b):
        return torch.cat([a, b]) if self.cuda else np.concatenate([a, b])

    def _batch(self, count: int) -> None:
        f0 = self.next_win * self.stride - self.buf_start
        f1 = (self.next_win + count - 1) * self.stride + self.window - self.buf_start
        xb = _windows_batch(self.buf[f0:f1], self.window, self.stride, self.dtype)  # (count, 3, window, H, W)
        if self.cuda:  # a few batch shapes for cuDNN's autotuner
            xb = pad_batch(xb, self.batch_size)
        self.out.append(self.model(xb, with_logits=False)[:count])              # (count, 1024)
        self.next_win += count
        drop = min(self.next_win * self.stride - self.buf_start, len(self.buf))  # frames never needed again
        self.buf, self.buf_start = self.buf[drop:], self.buf_start + drop


# ---------------------------------------------------------------------------------------------
# the ExtractFeatures stage's per-video worker (and single-video inference)
# ---------------------------------------------------------------------------------------------
_MODELS: dict[tuple[str, str], torch.nn.Module] = {}
_MODELS_LOCK = threading.Lock()


def shared_i3d(device: torch.device, weights: str | Path) -> torch.nn.Module:
    """One eval-mode I3D per process, device and weights file, shared by every video this process runs."""
    from tal_pipeline.models.i3d_weights import load_i3d

    key = (str(device), str(weights))
    with _MODELS_LOCK:
        if key not in _MODELS:
            _MODELS[key] = load_i3d(device, weights=weights)
        return _MODELS[key]


def require_one_window(video: str, frames: int, fps: float, window: int, source: str, consequence: str) -> None:
    """Refuse a video with fewer frames than one I3D window, before any model is loaded, naming the video, its
    frames, fps, duration, the window and `source` (where the frames came from)."""
    if frames >= window:
        return
    timing = f"{frames / fps:.2f} s sampled at {fps:g} fps; a window needs {window / fps:.2f} s; " if fps > 0 else ""
    raise ValueError(f"video {video!r} has {frames} frames, fewer than one window of {window} ({timing}{source}): "
                     f"{consequence}")


def extract_video_features(video: str, *, frames_store: str, store_path: str, window: int, stride: int,
                           weights: str, weights_sha256: str, device: str = "auto", batch_size: int = 0,
                           num_threads: int = 0, precision: str = "fp32") -> None:
    """Per-video worker of ExtractFeatures (module-level: Dask may pickle it); the precision is recorded with the
    features (attribute "precision")."""
    from tal_pipeline.storage.features import write_features
    from tal_pipeline.storage.zarr_store import ArtifactStore

    frames = ArtifactStore(frames_store).read(video)
    # Before loading the model: a short video fails alone, with the numbers.
    require_one_window(video, int(frames.shape[0]), float(frames.attrs.get("fps", 0) or 0), window,
                       f"frames store {frames_store}", "no feature can be computed (sample at a higher fps, use a "
                       "smaller window, or skip the video)")
    dev = resolve_device(device)
    if num_threads and dev.type == "cpu":
        torch.set_num_threads(num_threads)  # process-wide: the task sets the same value for every video
    model = shared_i3d(dev, weights)
    chunk = frames.chunks[0]
    chunks = (frames[i:i + chunk] for i in range(0, frames.shape[0], chunk))  # decode from Zarr while I3D runs
    features = extract_features(chunks, model, window, stride, batch_size=batch_size or None, device=dev,
                                precision=precision, video=video)
    h, w = frames.shape[1:3]
    write_features(store_path, video, features, TimeGrid(float(frames.attrs["fps"]), window, stride),
                   input_size=[int(h), int(w)], weights_sha256=weights_sha256, device=str(dev),
                   duration=float(frames.attrs["duration"]), stream="rgb", precision=precision)
