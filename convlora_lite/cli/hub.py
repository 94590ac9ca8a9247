"""``convlora hub push`` / ``convlora hub pull``: a run's Hub folder (``convlora export --format hub``) to
and from the Hugging Face Hub."""
from __future__ import annotations


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "hub", help="share a run on the Hugging Face Hub (push) or fetch a shared one (pull)",
        description="Move a folder written by `convlora export --format hub` to and from the Hugging Face Hub. "
                    "Pushing needs an account and a token with write access: `hf auth login` (or "
                    "`huggingface-cli login`) stores one, or set HF_TOKEN.")
    actions = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
    push = actions.add_parser("push", help="upload a Hub folder to a model repository (private by default)",
                              description="Create the model repository (private unless --public; an existing one "
                                          "keeps its visibility) and upload the folder to it.")
    push.add_argument("folder", metavar="DIR", help="a folder written by `convlora export --format hub`")
    push.add_argument("--repo-id", required=True, help="the repository: user/name or org/name")
    push.add_argument("--public", action="store_true", help="create the repository public (default: private)")
    push.set_defaults(func=run_push)
    pull = actions.add_parser("pull", help="download a shared model for `convlora predict --run-dir`",
                              description="Download a model repository pushed with `convlora hub push`; "
                                          "`convlora predict --run-dir DIR` and Segmenter.from_run(DIR) take the "
                                          "folder.")
    pull.add_argument("repo_id", metavar="NAME", help="the repository: user/name or org/name")
    pull.add_argument("--output", metavar="DIR", help="where to put it (default: huggingface_hub's cache)")
    pull.add_argument("--revision", help="a branch, tag or commit (default: main)")
    pull.set_defaults(func=run_pull)


def run_push(args) -> int:
    from convlora_lite.inference.hub import push

    print(f"pushed {args.folder} to {push(args.folder, args.repo_id, public=args.public)}")
    return 0


def run_pull(args) -> int:
    from convlora_lite.inference.hub import pull

    folder = pull(args.repo_id, args.output, revision=args.revision)
    print(f"pulled {args.repo_id} to {folder}\npredict with: convlora predict --run-dir {folder} IMAGES "
          "--output-dir OUT")
    return 0
