"""``python -m convlora_lite.pretrain micro_sam|micro_sam2|micro_mae [--steps N] [--seed S] ...``

Every field of :class:`SamPretrainConfig` (:class:`Sam2PretrainConfig`) / :class:`MaePretrainConfig` is an option
(``--batch-size``, ``--lr``, ...). The weights go to ``--out`` (default: the package's
``assets/<name>.safetensors``) with the JSON card beside them; the resumable state goes to
``--work-dir`` (``--resume`` continues an interrupted run with the same options).
"""
from __future__ import annotations

import argparse
import dataclasses
import shlex
import sys
import time

import torch

from convlora_lite.errors import UserError
from convlora_lite.models.checkpoints import ASSETS_DIR
from convlora_lite.pretrain.mae_pretrain import MaePretrainConfig, pretrain_mae
from convlora_lite.pretrain.sam_pretrain import Sam2PretrainConfig, SamPretrainConfig, pretrain_sam

TARGETS = {"micro_sam": (SamPretrainConfig, pretrain_sam), "micro_sam2": (Sam2PretrainConfig, pretrain_sam),
           "micro_mae": (MaePretrainConfig, pretrain_mae)}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m convlora_lite.pretrain", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="target", required=True)
    for name, (config_cls, _) in TARGETS.items():
        p = sub.add_parser(name, help=f"pretrain {name}")
        for f in dataclasses.fields(config_cls):
            p.add_argument("--" + f.name.replace("_", "-"), type=type(f.default), default=f.default,
                           help=f"(default {f.default})")
        p.add_argument("--threads", type=int, default=1, help="torch threads; part of what fixes the weights "
                       "(default 1; the card records the count the bundled weights used)")
        p.add_argument("--out", default=str(ASSETS_DIR / f"{name}.safetensors"),
                       help="weights file (card: same name .json)")
        p.add_argument("--work-dir", default=f"runs/pretrain/{name}",
                       help="resumable state (default runs/pretrain/NAME)")
        p.add_argument("--resume", action="store_true", help="continue the run saved in --work-dir")
        p.add_argument("--checkpoint-every", type=float, default=180.0, help="seconds between resume states")
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = build_parser().parse_args(argv)
    config_cls, run = TARGETS[args.target]
    cfg = config_cls(**{f.name: getattr(args, f.name) for f in dataclasses.fields(config_cls)})
    torch.set_num_threads(args.threads)
    command = "python -m convlora_lite.pretrain " + shlex.join(a for a in argv if a != "--resume")

    def log(message: str) -> None:
        print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)

    try:
        card = run(cfg, args.out, args.work_dir, command, args.threads, resume=args.resume,
                   checkpoint_every_s=args.checkpoint_every, log=log)
    except UserError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    log(f"wrote {args.out} ({card['train_wall_time_s']} s of training)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
