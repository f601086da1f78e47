"""`tal-pipeline segment --similarity FILE.npy --m 10,15,20`: TSC change points of one (T, T) similarity matrix."""
from __future__ import annotations

import json
from pathlib import Path

HELP = "TSC change points of a (T, T) similarity matrix saved with numpy"


def _parse_ms(text: str) -> list[int]:
    try:
        ms = [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise ValueError(f"--m must be a comma-separated list of integers, got {text!r}") from None
    if not ms or min(ms) < 0:
        raise ValueError(f"--m must list numbers of change points >= 0, got {text!r}")
    return ms


def handle(args) -> int:
    import numpy as np  # heavy imports inside the handler (the CLI imports every command module)

    from tal_pipeline.stages.bapg.tsc import change_points

    ms = _parse_ms(args.m)
    path = Path(args.similarity)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: similarity file not found")
    try:
        # memory-mapped: the kernel reads S in row blocks, so a large matrix is never loaded whole
        similarity = np.load(path, allow_pickle=False, mmap_mode="r")
    except (ValueError, OSError, EOFError) as exc:
        raise ValueError(f"{path}: not a readable .npy array ({exc})") from None
    if not isinstance(similarity, np.ndarray) or not np.issubdtype(similarity.dtype, np.number):
        raise ValueError(f"{path}: expected a numeric (T, T) array, got "
                         f"{getattr(similarity, 'dtype', type(similarity))}")
    result = change_points(similarity, ms=ms, min_size=args.min_size, name=str(path))
    if args.json:
        print(json.dumps({str(m): [int(t) for t in result[m]] for m in ms}))
    else:
        for m in ms:
            print(f"m={m}: " + " ".join(str(int(t)) for t in result[m]))
    return 0


def add_arguments(p) -> None:
    p.add_argument("--similarity", required=True, help="(T, T) similarity matrix, .npy")
    p.add_argument("--m", default="10,15,20", help="numbers of change points, comma-separated (default 10,15,20)")
    p.add_argument("--min-size", type=int, default=1, help="minimum segment length in steps (default 1)")
    p.add_argument("--json", action="store_true", help='print {"m": [change points], ...} as JSON')
