"""`tal-pipeline synth`: write a synthetic dataset.

`--out DIR`: the small video dataset (mp4 files + annotations.json, synthetic/videos.py).
`--features OUT`: a feature-level benchmark (OUT/features/<video>.npy, OUT/annotations.json, OUT/README.txt), no
videos: the THUMOS14-shaped one (synthetic/thumos_like.py, `--preset thumos14`, the default) or the
ActivityNet-1.3-shaped one (synthetic/anet_like.py, `--preset anet`, `--videos N`: 1,000 by default).
"""
import argparse

HELP = "generate the synthetic dataset (videos) or a feature benchmark (THUMOS14- or ActivityNet-shaped)"

# Options whose default depends on the mode: each is applied only where it was given or belongs.
VIDEO_DEFAULT, ANET_DEFAULT = 16, 1000


class _Given(argparse.Action):
    """Stores the value and remembers that it was given on the command line (args.given)."""

    def __call__(self, parser, namespace, values, option_string=None):
        setattr(namespace, self.dest, values)
        namespace.given = {*getattr(namespace, "given", set()), self.dest}


def _forget_cached_identities() -> None:
    # The folder was (re)written: a luigi graph built later in this process must not reuse its old identity.
    from pipeline import dataset

    dataset.forget_identities()


def _features(args) -> int:
    given = getattr(args, "given", set())
    if args.preset == "anet":
        wrong = sorted(given & {"videos_train", "videos_test", "max_duration"})
        if wrong:
            raise ValueError(f"--preset anet takes --videos N (its subsets are ActivityNet's proportions), not "
                             f"{', '.join('--' + w.replace('_', '-') for w in wrong)}")
        from tal_pipeline.synthetic.anet_like import generate_anet_like

        videos = args.videos if "videos" in given else ANET_DEFAULT
        path = generate_anet_like(args.features, videos=videos, seed=args.seed, width=args.width)
    else:
        if "videos" in given:
            raise ValueError("the THUMOS14-shaped benchmark takes --videos-train / --videos-test, not --videos")
        from tal_pipeline.synthetic.thumos_like import generate_thumos_like

        path = generate_thumos_like(args.features, videos_train=args.videos_train, videos_test=args.videos_test,
                                    seed=args.seed, width=args.width, max_duration=args.max_duration)
    _forget_cached_identities()
    print(path)
    print(f"see {path.parent / 'README.txt'} for the luigi command")
    return 0


def handle(args) -> int:
    if args.features is not None:
        return _features(args)
    if "preset" in getattr(args, "given", set()):
        raise ValueError("--preset applies to the feature benchmark (--features), not to the videos (--out)")
    from tal_pipeline.synthetic.videos import generate

    path = generate(args.out, videos=args.videos, seed=args.seed, duration=args.duration, size=args.size)
    _forget_cached_identities()
    print(path)
    return 0


def add_arguments(p) -> None:
    where = p.add_mutually_exclusive_group(required=True)
    where.add_argument("--out", help="output folder of the video dataset (mp4 files + annotations.json)")
    where.add_argument("--features", metavar="OUT",
                       help="instead: write a feature-level benchmark into OUT "
                            "(features/<video>.npy, annotations.json, README.txt)")
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    p.add_argument("--videos", type=int, default=VIDEO_DEFAULT, action=_Given,
                   help=f"number of videos: of the video dataset (default {VIDEO_DEFAULT}) or of the "
                        f"ActivityNet-shaped benchmark (default {ANET_DEFAULT}; 20000 for the scale run)")
    video = p.add_argument_group("video dataset (--out)")
    video.add_argument("--duration", type=float, default=40.0, help="mean video duration in seconds (default 40)")
    video.add_argument("--size", type=int, default=128, help="frame size in pixels (default 128)")
    feats = p.add_argument_group("feature benchmark (--features)")
    feats.add_argument("--preset", choices=["thumos14", "anet"], default="thumos14", action=_Given,
                       help="thumos14: THUMOS14-shaped (20 classes, many short actions; default); anet: "
                            "ActivityNet-1.3-shaped (200 classes, ~2-minute videos, 1-2 long actions, fps 15, "
                            "window 16, stride 16, subsets training / validation / testing)")
    feats.add_argument("--width", type=int, default=256,
                       help="feature width, at least 64 for thumos14 and 16 for anet (default 256)")
    feats.add_argument("--videos-train", type=int, default=60, action=_Given,
                       help="thumos14: videos in subset 'validation' (default 60)")
    feats.add_argument("--videos-test", type=int, default=40, action=_Given,
                       help="thumos14: videos in subset 'test' (default 40)")
    feats.add_argument("--max-duration", type=float, default=240.0, action=_Given,
                       help="thumos14: cap on video durations in seconds, at least 10 (default 240; THUMOS14 goes "
                            "to ~1700)")
