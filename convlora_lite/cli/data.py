"""``convlora data``: list, download, verify and synthesise the datasets of the registry.

    convlora data list
    convlora data download NAME [--root DIR] [--base-url URL] [--keep-zip]
    convlora data verify NAME [--root DIR]
    convlora data synth NAME|all [--root DIR] [--size N] [--seed S] [--n-train N] [--n-val N] [--n-test N]
"""
from __future__ import annotations

import argparse

from convlora_lite.data.registry import DATASETS

_DEFAULT_ROOT = "data"


def register(subparsers) -> None:
    parser = subparsers.add_parser("data", help="list, download, verify or synthesise datasets",
                                   description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    actions = parser.add_subparsers(dest="action", required=True, metavar="ACTION")

    listing = actions.add_parser("list", help="the registered datasets and their official recipes")
    listing.set_defaults(func=_list)

    download = actions.add_parser("download", help="download, check and extract a dataset")
    download.add_argument("name",
                          help="a real dataset: " + ", ".join(n for n, s in DATASETS.items() if not s.synthetic))
    download.add_argument("--root", default=_DEFAULT_ROOT, help="data root (default: %(default)s)")
    download.add_argument("--base-url", default=None,
                          help="mirror that replaces the official S3 prefix (also $CONVLORA_DATA_BASE_URL)")
    download.add_argument("--keep-zip", action="store_true", help="keep the archive after extracting it")
    download.set_defaults(func=_download)

    verify = actions.add_parser("verify", help="check every file of a dataset; exit 1 on problems")
    verify.add_argument("name")
    verify.add_argument("--root", default=_DEFAULT_ROOT, help="data root (default: %(default)s)")
    verify.set_defaults(func=_verify)

    synth = actions.add_parser("synth", help="write the offline synthetic analog of a task")
    synth.add_argument("name", help="a task (polyp, synth_polyp, ...) or 'all'")
    synth.add_argument("--root", default=_DEFAULT_ROOT, help="data root (default: %(default)s)")
    synth.add_argument("--size", type=int, dest="image_size", help="image side in pixels")
    synth.add_argument("--seed", type=int)
    synth.add_argument("--n-train", type=int)
    synth.add_argument("--n-val", type=int)
    synth.add_argument("--n-test", type=int)
    synth.set_defaults(func=_synth)


def _list(args) -> int:
    header = ("name", "task", "metrics", "loss", "select", "epochs", "lr", "source")
    rows = [header] + [
        (s.name, s.task, ",".join(s.metrics), s.loss, f"{s.select_metric} ({s.select_mode})",
         str(s.epochs), f"{s.lr:g}", "synthetic" if s.synthetic else ("gdrive" if s.gdrive_id else "zip"))
        for s in DATASETS.values()
    ]
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    for row in rows:
        print("  ".join(cell.ljust(width) for cell, width in zip(row, widths)).rstrip())
    return 0


def _download(args) -> int:
    from convlora_lite.data.install import download_dataset

    path = download_dataset(args.name, args.root, args.base_url, keep_archive=args.keep_zip)
    print(f"{args.name}: ready at {path}")
    return 0


def _verify(args) -> int:
    from convlora_lite.data.verify import verify_dataset

    report = verify_dataset(args.name, args.root)
    print(report)
    return 0 if report.ok else 1


def _synth(args) -> int:
    from convlora_lite.data.synthetic import generate_synthetic

    names = [n for n, s in DATASETS.items() if s.synthetic] if args.name == "all" else [args.name]
    options = {key: getattr(args, key) for key in ("image_size", "n_train", "n_val", "n_test", "seed")
               if getattr(args, key) is not None}
    for name in names:
        print(f"{name}: written to {generate_synthetic(name, args.root, **options)}")
    return 0
