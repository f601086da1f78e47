"""Similarity matrices (BAPG II-C, eq. 2; docs/method.md §3): S[i, j] = cosine similarity of the encoder
embeddings of feature steps i and j, one (T, T) float16 array per video.

S is written tile by tile (tile = Zarr chunk, `block` x `block`), so memory stays O(T * D + block^2)
however long the video: a 25-minute THUMOS14 video (T = 11000) never holds the 11000^2 matrix in RAM.
Only tiles on or above the diagonal are computed; the tile below is the transpose of the same
numbers, so S is exactly symmetric, and the diagonal is exactly 1 (cosine of a vector with itself).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from tal_pipeline.stages.data.timegrid import TimeGrid
from tal_pipeline.storage.manifest import verified_file
from tal_pipeline.storage.zarr_store import ArtifactStore

DEFAULT_BLOCK = 1024


def unit_rows(x: np.ndarray, video: str = "") -> np.ndarray:
    """Rows scaled to unit L2 norm: (T, D) -> (T, D) float32. A zero row is refused (its cosine is undefined)."""
    x = np.asarray(x, dtype=np.float32)
    if x.ndim != 2 or x.shape[0] == 0:
        raise ValueError(f"video {video!r}: embeddings must be a non-empty (T, D) array, got shape {x.shape}")
    if not np.isfinite(x).all():
        raise ValueError(f"video {video!r}: embeddings hold NaN/inf")
    norm = np.linalg.norm(x, axis=1, keepdims=True)  # (T, 1)
    zero = np.flatnonzero(norm[:, 0] == 0)
    if zero.size:
        raise ValueError(f"video {video!r}: {zero.size} step(s) have a zero embedding (first at step {zero[0]}); "
                         "cosine similarity is undefined there")
    return x / norm


def similarity_tiles(embeddings: np.ndarray, block: int = DEFAULT_BLOCK, video: str = ""):
    """Yield (rows slice, cols slice, tile float16) covering S = E E^T, E = unit rows of `embeddings`.

    Each tile on or above the diagonal is computed once; the mirrored tile is its transpose.
    """
    e = unit_rows(embeddings, video)  # (T, D)
    T = e.shape[0]
    for r0 in range(0, T, block):
        rows = slice(r0, min(T, r0 + block))
        for c0 in range(r0, T, block):
            cols = slice(c0, min(T, c0 + block))
            tile = e[rows] @ e[cols].T  # (nr, nc) float32: eq. 2 for unit vectors
            if c0 == r0:
                tile = 0.5 * (tile + tile.T)  # float rounding can differ between S[i, j] and S[j, i]
                np.fill_diagonal(tile, 1.0)
            tile = np.clip(tile, -1.0, 1.0).astype(np.float16)
            yield rows, cols, tile
            if c0 != r0:
                yield cols, rows, tile.T


def similarity_matrix(embeddings: np.ndarray, block: int = DEFAULT_BLOCK) -> np.ndarray:
    """The whole (T, T) float16 S in memory (small T: tests, the CLI, single-video inference)."""
    T = np.asarray(embeddings).shape[0]
    S = np.empty((T, T), dtype=np.float16)
    for rows, cols, tile in similarity_tiles(embeddings, block):
        S[rows, cols] = tile
    return S


def write_similarity(store_path: str | Path, video: str, embeddings: np.ndarray, grid: TimeGrid,
                     block: int = DEFAULT_BLOCK, **attrs) -> None:
    """Write S of one video tile by tile into its (T, T) float16 array (chunks = tiles)."""
    T = int(np.asarray(embeddings).shape[0])
    meta = {**grid.to_attrs(), "symmetric": True, "diagonal": 1.0,
            "definition": "S[i, j] = cosine(embedding_i, embedding_j) (BAPG eq. 2)", **attrs}
    store = ArtifactStore(store_path)
    with store.video_array(video, (T, T), np.float16, (block, block), ["time", "time_other"], meta) as array:
        for rows, cols, tile in similarity_tiles(embeddings, block, video):
            array[rows, cols] = tile


def similarity_matrix_to_store(video: str, *, features_store: str, store_path: str, encoder: str | dict | None,
                               block: int = DEFAULT_BLOCK, device: str = "cpu", num_threads: int | None = None,
                               frames_store: str | None = None) -> None:
    """SimilarityMatrices for one video: features (or frames) -> encoder embeddings -> S in Zarr.

    encoder: folder of a TrainEncoder checkpoint (checkpoint.pt), or {video: folder} (cross-fitting: each
    video's own encoder), or None to use the features themselves (the ablation "no contrastive encoder").
    A frame encoder (config "encoder": "cnn") embeds the frame at each feature step's centre time, read from
    `frames_store` (stages.data.frame_steps), so S is (T', T') on the feature grid either way.
    """
    from tal_pipeline.storage.features import read_features

    if isinstance(encoder, dict):
        encoder = encoder[video]
    if encoder is None:
        embeddings, grid = read_features(features_store, video)  # (T, C)
        source = "features"
    else:
        checkpoint = load_encoder_checkpoint(encoder)
        if checkpoint["config"]["encoder"] == "cnn":
            from tal_pipeline.stages.data.frame_steps import feature_grid, read_step_frames

            if frames_store is None:
                raise ValueError(f"video {video!r}: encoder {encoder} is a frame encoder (cnn) and needs the sampled "
                                 "frames (frames_store), which were not given")
            steps, grid = feature_grid(features_store, video)
            inputs = read_step_frames(frames_store, video, grid, steps)  # (T', H, W, 3) uint8
        else:
            inputs, grid = read_features(features_store, video)  # (T, C)
        embeddings = embed_checkpoint(checkpoint, inputs, device=device, num_threads=num_threads)
        source = f"encoder {Path(encoder).name}"
    write_similarity(store_path, video, embeddings, grid, block, embedding=source)


def load_encoder_checkpoint(encoder: str | Path) -> dict:
    """{"state", "config"} of the TrainEncoder checkpoint in folder `encoder` (weights only)."""
    import torch

    path = Path(encoder) / "checkpoint.pt"
    if not path.is_file():
        raise FileNotFoundError(f"encoder checkpoint {path} does not exist (run TrainEncoder)")
    return torch.load(verified_file(path), map_location="cpu", weights_only=True)


def embed_checkpoint(checkpoint: dict, inputs: np.ndarray, device: str = "cpu",
                     num_threads: int | None = None) -> np.ndarray:
    """Embeddings (T, D) of one video's encoder inputs with a loaded checkpoint, on `num_threads` torch threads."""
    from tal_pipeline.stages.bapg.encoder import embed
    from tal_pipeline.stages.data.features import torch_threads

    with torch_threads(num_threads):
        return embed(checkpoint["state"], checkpoint["config"], inputs, device=device)


def embed_with_checkpoint(encoder: str | Path, features: np.ndarray, device: str = "cpu",
                          num_threads: int | None = None) -> np.ndarray:
    """Embeddings (T, D) of features (T, C) (frames (T, H, W, 3) for a cnn encoder) with the encoder checkpoint
    in folder `encoder`."""
    return embed_checkpoint(load_encoder_checkpoint(encoder), features, device, num_threads)
