"""`tal-pipeline synth`: write a synthetic dataset.

`--out DIR`: the small video dataset (mp4 files + annotations.json, synthetic/videos.py).
`--features OUT`: the THUMOS14-shaped feature-level benchmark (OUT/features/<video>.npy,
OUT/annotations.json, OUT/README.txt; synthetic/thumos_like.py), no videos.
"""


HELP = "generate the synthetic dataset (videos) or the THUMOS14-shaped feature benchmark"


def handle(args) -> int:
    if args.features is not None:
        from tal_pipeline.synthetic.thumos_like import generate_thumos_like

        path = generate_thumos_like(args.features, videos_train=args.videos_train, videos_test=args.videos_test,
                                    seed=args.seed, width=args.width, max_duration=args.max_duration)
        print(path)
        print(f"see {path.parent / 'README.txt'} for the luigi command")
        return 0
    from tal_pipeline.synthetic.videos import generate

    path = generate(args.out, videos=args.videos, seed=args.seed, duration=args.duration, size=args.size)
    print(path)
    return 0


def add_arguments(p) -> None:
    where = p.add_mutually_exclusive_group(required=True)
    where.add_argument("--out", help="output folder of the video dataset (mp4 files + annotations.json)")
    where.add_argument("--features", metavar="OUT",
                       help="instead: write the THUMOS14-shaped feature-level benchmark into OUT "
                            "(features/<video>.npy, annotations.json, README.txt)")
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    video = p.add_argument_group("video dataset (--out)")
    video.add_argument("--videos", type=int, default=16, help="number of videos (default 16)")
    video.add_argument("--duration", type=float, default=40.0, help="mean video duration in seconds (default 40)")
    video.add_argument("--size", type=int, default=128, help="frame size in pixels (default 128)")
    feats = p.add_argument_group("feature benchmark (--features)")
    feats.add_argument("--videos-train", type=int, default=60, help="videos in subset 'validation' (default 60)")
    feats.add_argument("--videos-test", type=int, default=40, help="videos in subset 'test' (default 40)")
    feats.add_argument("--width", type=int, default=256, help="feature width, at least 64 (default 256)")
    feats.add_argument("--max-duration", type=float, default=240.0,
                       help="cap on video durations in seconds, at least 10 (default 240; THUMOS14 goes to ~1700)")
