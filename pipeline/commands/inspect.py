"""`tal-pipeline inspect STORE [--json] [--plot VIDEO --out FILE.png]`: look inside a cached artifact."""
import json

HELP = "list or plot what a Zarr artifact store holds"


def handle(args) -> int:
    from tal_pipeline.storage.summary import describe_store, format_listing, plot_video

    if args.plot:
        if not args.out:
            raise ValueError("--plot needs --out FILE.png")
        print(plot_video(args.store, args.plot, args.out))
        return 0
    info = describe_store(args.store, full_attrs=args.json)
    if args.json:
        print(json.dumps({"complete": info["complete"], "videos": info["videos"], "attrs": info["attrs"],
                          "skipped": info.get("skipped", {})}, indent=1))
    else:
        print(format_listing(info))
    return 0


def add_arguments(p) -> None:
    p.add_argument("store", help="path of a .zarr store written by the pipeline")
    p.add_argument("--json", action="store_true", help="machine-readable listing")
    p.add_argument("--plot", metavar="VIDEO", help="draw this video's array (heatmap or frame strip)")
    p.add_argument("--out", metavar="FILE.png", help="where to write the plot")
