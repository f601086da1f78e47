"""What is in a cached Zarr store: videos, shapes, dtypes, attributes, completeness; and a picture."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import zarr

from tal_pipeline.storage.zarr_store import ArtifactStore

LONG_ATTR = 12  # attribute lists longer than this are summarised in the listing


def _short(value):
    if isinstance(value, list) and len(value) > LONG_ATTR:
        return {"list_of": len(value), "first": value[:3], "last": value[-1]}
    if isinstance(value, dict):
        return {k: _short(v) for k, v in value.items()}
    return value


def describe_store(path: str | Path, full_attrs: bool = False) -> dict:
    """{"complete": bool, "attrs": {...}, "videos": {id: {"shape", "dtype", "attrs", "complete"}}}."""
    store = ArtifactStore(path)
    if not store.exists():
        raise FileNotFoundError(f"{path} is not a Zarr store written by this pipeline (no zarr.json)")
    group = zarr.open_group(str(store.path), mode="r")
    done = store.done_videos()
    videos = {}
    for video in sorted(done):
        array = zarr.open_array(str(store.path / video), mode="r")
        attrs = dict(array.attrs)
        videos[video] = {
            "shape": list(array.shape),
            "dtype": str(array.dtype),
            "chunks": list(array.chunks),
            "attrs": attrs if full_attrs else _short(attrs),
            "complete": True,
        }
    out = {"path": str(store.path), "complete": store.is_complete(), "attrs": dict(group.attrs), "videos": videos}
    if store.is_complete():
        out["skipped"] = store.completion().get("skipped", {})
    if store.tmp_root.exists():
        out["unfinished"] = sorted(p.name for p in store.tmp_root.iterdir())
    return out


def format_listing(info: dict) -> str:
    lines = [f"{info['path']}  complete={info['complete']}  videos={len(info['videos'])}"]
    params = info["attrs"].get("params", {}).get("params")
    if params:
        lines.append("params: " + ", ".join(f"{k}={v}" for k, v in sorted(params.items())))
    for video, meta in info["videos"].items():
        keys = ", ".join(f"{k}={v}" for k, v in meta["attrs"].items() if not isinstance(v, (list, dict)))
        lines.append(f"  {video:30s} {str(tuple(meta['shape'])):22s} {meta['dtype']:8s} {keys}")
    for video, reason in info.get("skipped", {}).items():
        lines.append(f"  {video:30s} SKIPPED: {reason}")
    for name in info.get("unfinished", []):
        lines.append(f"  (unfinished temporary: {name})")
    return "\n".join(lines)


def plot_video(path: str | Path, video: str, out: str | Path, max_frames: int = 12) -> Path:
    """Heatmap for a 2-D array (e.g. a similarity matrix), a frame strip for images (T, H, W, 3)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    array = ArtifactStore(path).read(video)
    out = Path(out)
    if array.ndim == 4 and array.shape[-1] == 3:
        n = min(max_frames, array.shape[0])
        picks = np.linspace(0, array.shape[0] - 1, n).round().astype(int)
        times = array.attrs.get("timestamps")
        fig, axes = plt.subplots(1, n, figsize=(1.6 * n, 2.0))
        for ax, i in zip(np.atleast_1d(axes), picks):
            ax.imshow(array[int(i)])
            ax.set_title(f"{times[i]:.1f}s" if times else f"#{i}", fontsize=8)
            ax.axis("off")
    elif array.ndim == 2:
        data = np.asarray(array[...], dtype=np.float32)
        fig, ax = plt.subplots(figsize=(6, 5) if data.shape[0] == data.shape[1] else (10, 4))
        im = ax.imshow(data if data.shape[0] == data.shape[1] else data.T, aspect="auto", cmap="viridis",
                       interpolation="nearest")
        ax.set_xlabel("time step")
        ax.set_ylabel("time step" if data.shape[0] == data.shape[1] else "channel")
        fig.colorbar(im, ax=ax)
    else:
        raise ValueError(f"{path}: video {video!r} has shape {array.shape}: no plot for it (2-D or (T,H,W,3) only)")
    fig.suptitle(f"{video}  {tuple(array.shape)} {array.dtype}", fontsize=9)
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=100)
    plt.close(fig)
    return out
