"""`tal-pipeline synth --out DIR`: write the synthetic dataset (mp4 files + annotations.json)."""


def handle(args) -> int:
    from stages.synthetic import generate

    path = generate(args.out, videos=args.videos, seed=args.seed, duration=args.duration, size=args.size)
    print(path)
    return 0


def register(sub) -> None:
    p = sub.add_parser("synth", help="generate the synthetic dataset")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--videos", type=int, default=16, help="number of videos (default 16)")
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    p.add_argument("--duration", type=float, default=40.0, help="mean video duration in seconds (default 40)")
    p.add_argument("--size", type=int, default=128, help="frame size in pixels (default 128)")
    p.set_defaults(func=handle)
