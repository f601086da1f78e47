"""`tal-pipeline classify VIDEO [--json]`: Kinetics-400 top-5 of the I3D RGB model on one video.

Preprocessing exactly as the reference predictions tests/test_i3d.py checks against: decode every frame (rgb24),
take 64 frames at np.linspace(0, N-1, 64).round(), bilinear resize (align_corners=False) so the
short side is 256, centre crop 224x224, x / 127.5 - 1.
"""
from __future__ import annotations

import json
from pathlib import Path

HELP = "Kinetics-400 top-5 of the I3D RGB model on a video"


NUM_FRAMES = 64
SHORT_SIDE = 256
CROP = 224


def decode_all_frames(path: str | Path):
    """All frames of the first video stream as uint8 (N, H, W, 3), in decode order."""
    import av
    import numpy as np

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"video not found: {path}")
    try:
        with av.open(str(path)) as container:
            if not container.streams.video:
                raise ValueError(f"{path}: no video stream")
            frames = [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]
    except av.FFmpegError as exc:
        raise ValueError(f"{path}: cannot decode video: {exc}") from None
    if not frames:
        raise ValueError(f"{path}: the video has no decodable frames")
    return np.stack(frames)


def kinetics_clip(path: str | Path, num_frames: int = NUM_FRAMES):
    """The reference input tensor (1, 3, num_frames, 224, 224) float32 in [-1, 1]."""
    import numpy as np
    import torch
    import torch.nn.functional as F

    frames = decode_all_frames(path)                                   # (N, H, W, 3) uint8
    idx = np.linspace(0, len(frames) - 1, num_frames).round().astype(np.int64)
    x = torch.from_numpy(frames[idx]).permute(0, 3, 1, 2).float()     # (T, 3, H, W)
    h, w = x.shape[-2:]
    scale = SHORT_SIDE / min(h, w)
    size = (SHORT_SIDE, round(w * scale)) if h <= w else (round(h * scale), SHORT_SIDE)
    if size != (h, w):
        x = F.interpolate(x, size=size, mode="bilinear", align_corners=False)  # (T, 3, 256, W')
    top, left = (size[0] - CROP) // 2, (size[1] - CROP) // 2
    x = x[:, :, top:top + CROP, left:left + CROP]                     # (T, 3, 224, 224)
    x = x / 127.5 - 1.0
    return x.permute(1, 0, 2, 3).unsqueeze(0).contiguous()            # (1, 3, T, 224, 224)


def classify_video(path: str | Path, model=None, top: int = 5, num_frames: int = NUM_FRAMES) -> dict:
    """{'top5': [[label, index, probability], ...], 'logits': (400,) float32 ndarray}."""
    import torch

    from tal_pipeline.models.i3d_weights import kinetics400_labels, load_i3d

    model = model if model is not None else load_i3d()
    clip = kinetics_clip(path, num_frames)
    with torch.inference_mode():
        _, logits = model(clip, with_logits=True)                      # (1, 400)
    probs = torch.softmax(logits[0].double(), dim=0)
    labels = kinetics400_labels()
    order = torch.argsort(probs, descending=True)[:top].tolist()
    return {
        "top5": [[labels[i], int(i), round(float(probs[i]), 4)] for i in order],
        "logits": logits[0].numpy().astype("float32"),
    }


def handle(args) -> int:
    result = classify_video(args.video)
    if args.json:
        print(json.dumps({"top5": result["top5"]}))
    else:
        for label, index, prob in result["top5"]:
            print(f"{prob:7.4f}  {index:3d}  {label}")
    return 0


def add_arguments(p) -> None:
    p.add_argument("video", help="video file")
    p.add_argument("--json", action="store_true", help='print {"top5": [[label, index, probability], ...]}')
