"""Reference I3D feature extraction for the tests and the benchmark ratio: one window at a time, the plain loop
the batched stages.features.extract_features must agree with."""
from __future__ import annotations

import numpy as np
import torch

from tal_pipeline.stages.data.features import DEFAULT_STRIDE, DEFAULT_WINDOW, _check_frames
from tal_pipeline.stages.data.timegrid import num_windows


def extract_features_naive(
    frames: np.ndarray, model: torch.nn.Module, window: int = DEFAULT_WINDOW, stride: int = DEFAULT_STRIDE,
    device: str | torch.device | None = None,
) -> np.ndarray:
    """One window at a time, float32."""
    frames = _check_frames(frames, "video")
    n = num_windows(len(frames), window, stride)
    if n == 0:
        raise ValueError(f"video: {len(frames)} frames is shorter than one I3D window of {window} frames")
    device = torch.device(device) if device is not None else next(model.parameters()).device
    feats = []
    with torch.inference_mode():
        for i in range(n):
            clip = torch.from_numpy(frames[i * stride:i * stride + window]).to(device)  # (window, H, W, 3)
            x = clip.permute(3, 0, 1, 2).unsqueeze(0).float() / 127.5 - 1.0            # (1, 3, window, H, W)
            feats.append(model(x, with_logits=False)[0].float().cpu().numpy())         # (1024,)
    return np.stack(feats)                                                             # (n, 1024)
