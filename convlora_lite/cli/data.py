"""``convlora data``: list, download, install, verify and synthesise the datasets of the registry.

    convlora data list
    convlora data download NAME [--root DIR] [--base-url URL] [--keep-zip]
    convlora data install NAME ARCHIVE_OR_FOLDER [--root DIR] [--move]
    convlora data verify NAME [--root DIR]
    convlora data verify --data-dir PATH [--task binary|multiclass] [--seed S]
    convlora data synth NAME|all [--root DIR] [--size N] [--seed S] [--n-train N] [--n-val N] [--n-test N]

``install`` is for data fetched by hand: an archive as downloaded (checked like a download) or a
folder holding the dataset (verified file by file, then adopted where it is, or copied into
place). A dataset is installed when it has its completion marker; training and the notebooks
use only installed datasets.
"""
from __future__ import annotations

import argparse

from convlora_lite.data.registry import DATASETS

_DEFAULT_ROOT = "data"


def register(subparsers) -> None:
    parser = subparsers.add_parser("data", help="list, download, install, verify or synthesise datasets",
                                   description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    actions = parser.add_subparsers(dest="action", required=True, metavar="ACTION")

    listing = actions.add_parser("list", help="the registered datasets and their official recipes")
    listing.set_defaults(func=_list)

    download = actions.add_parser("download", help="download, check and extract a dataset")
    download.add_argument("name",
                          help="a real dataset: " + ", ".join(n for n, s in DATASETS.items() if not s.synthetic))
    download.add_argument("--root", default=_DEFAULT_ROOT, help="data root (default: %(default)s)")
    download.add_argument("--base-url", default=None,
                          help="mirror that replaces the official S3 prefix and Google Drive: URL/{official zip "
                               "name}, Trans10K-v2 as URL/Trans10K_cls12.zip (also $CONVLORA_DATA_BASE_URL)")
    download.add_argument("--keep-zip", action="store_true", help="keep the archive after extracting it")
    download.set_defaults(func=_download)

    install = actions.add_parser("install", help="install an archive downloaded by hand, or adopt a folder",
                                 description="Install a dataset from an archive you downloaded (checked like a "
                                             "download: CRCs, layout, every file) or a folder that holds it "
                                             "(verified file by file, then adopted in place or copied into place).")
    install.add_argument("name", help="a real dataset: " + ", ".join(n for n, s in DATASETS.items() if not s.synthetic))
    install.add_argument("source", metavar="ARCHIVE_OR_FOLDER",
                         help="the downloaded archive (zip, or Trans10K-v2's archive as Google Drive serves it), "
                              "or the folder that holds the dataset")
    install.add_argument("--root", default=_DEFAULT_ROOT, help="data root (default: %(default)s)")
    install.add_argument("--move", action="store_true",
                         help="move a folder that lies elsewhere into place instead of copying it")
    install.set_defaults(func=_install)

    verify = actions.add_parser("verify", help="check every file of a dataset; exit 1 on problems")
    verify.add_argument("name", nargs="?", help="a registry dataset (or --data-dir for your own data)")
    verify.add_argument("--data-dir", help="your own data (folder, split folders, CSV or COCO JSON)")
    verify.add_argument("--task", choices=("binary", "multiclass"), help="own data: the task (default: from classes)")
    verify.add_argument("--seed", type=int, help="own data: the seed of the 80/10/10 split that is checked")
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


def _install(args) -> int:
    from convlora_lite.data.install import install_dataset

    path = install_dataset(args.name, args.source, args.root, move=args.move)
    print(f"{args.name}: ready at {path}")
    return 0


def _verify(args) -> int:
    from convlora_lite.errors import ConfigError

    if args.data_dir:
        from convlora_lite.data.own import verify_own_data
        from convlora_lite.training.presets import OFFICIAL_SEED

        report = verify_own_data(args.data_dir, task=args.task, seed=OFFICIAL_SEED if args.seed is None else args.seed)
        print(report)
        return 0 if report.ok else 1
    if not args.name:
        raise ConfigError("give a dataset NAME or --data-dir PATH.")
    from convlora_lite.data.install import install_dir, is_installed
    from convlora_lite.data.registry import get_dataset_spec
    from convlora_lite.data.verify import verify_dataset

    report = verify_dataset(args.name, args.root)
    print(report)
    spec = get_dataset_spec(args.name)
    if report.ok and not is_installed(spec, args.root):
        target = install_dir(spec, args.root)
        print(f"Not installed yet (no completion marker): training and the notebooks use it once adopted with "
              f"`convlora data install {spec.name} {target} --root {args.root}`.")
    return 0 if report.ok else 1


def _synth(args) -> int:
    from convlora_lite.data.synthetic import generate_synthetic

    names = [n for n, s in DATASETS.items() if s.synthetic] if args.name == "all" else [args.name]
    options = {key: getattr(args, key) for key in ("image_size", "n_train", "n_val", "n_test", "seed")
               if getattr(args, key) is not None}
    for name in names:
        print(f"{name}: written to {generate_synthetic(name, args.root, **options)}")
    return 0
