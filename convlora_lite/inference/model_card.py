"""The model card (``README.md``) of a run shared on the Hugging Face Hub: :func:`model_card`.

The card opens with the Hub's YAML metadata, made and checked by ``huggingface_hub``'s
``ModelCardData``: ``library_name`` (``convlora_lite``: the Hub takes any library name; the known
ones only get a code snippet), ``license`` (Apache-2.0, SAM's weights' licence and the project's),
``pipeline_tag: image-segmentation``, ``tags``, ``base_model`` (the Hub's copy of the SAM variant the
run adapted, with ``base_model_relation: adapter``: the repository holds only the trainable tensors;
the bundled micro SAM and the test model have none) and the run's test scores as ``model-index``
eval results (one per test split and metric of the task), from the run's ``metrics.json``. No
``datasets``: none of the registry's datasets has a Hub id. The body says what the files are,
where the base weights come from, the scores, and how to use the model.
"""
from __future__ import annotations

from importlib.metadata import PackageNotFoundError, metadata

#: the Hub repositories of Meta's SAM variants (the same weights as the ``.pth`` files, in another format).
BASE_MODELS = {"vit_b": "facebook/sam-vit-base", "vit_l": "facebook/sam-vit-large", "vit_h": "facebook/sam-vit-huge"}
LICENSE = "apache-2.0"
LIBRARY = "convlora_lite"
PIPELINE = "image-segmentation"
TAGS = ("segment-anything", "conv-lora", "peft", "image-segmentation")


def project() -> tuple[str | None, str | None]:
    """``(version, repository URL)`` of the installed package: pyproject's version and ``Repository`` URL (the
    one place besides ``convlora_lite.REPOSITORY_URL``, which this layer cannot import); ``(None, None)`` for a
    source tree on the path that was never installed."""
    try:
        info = metadata(LIBRARY)
    except PackageNotFoundError:
        return None, None
    urls = dict(entry.split(", ", 1) for entry in info.get_all("Project-URL") or [])
    return info["Version"], urls.get("Repository")


def install_line() -> str:
    """``pip install`` of this version of the package from its repository."""
    version, url = project()
    return f'pip install "{LIBRARY} @ git+{url}@v{version}"' if url else f"pip install {LIBRARY}"


def dataset_title(spec: dict) -> str:
    """The registry's title of the run's dataset; the dataset's name for the user's own data."""
    from convlora_lite.data.registry import DATASETS

    registered = DATASETS.get(spec["name"])
    return registered.title if registered is not None and spec.get("shape") == "registry" else spec["name"]


def scores_of(spec: dict, metrics: dict) -> dict[str, dict[str, float]]:
    """split -> the task's metrics (scalar ones, in the spec's order) as the run's ``metrics.json`` holds them."""
    return {split: {name: float(scores[name]) for name in spec["metrics"] if isinstance(scores.get(name), (int, float))}
            for split, scores in metrics.get("test", {}).items()}


def card_data(config: dict, spec: dict, metrics: dict):
    """The card's metadata: a ``huggingface_hub.ModelCardData``."""
    from huggingface_hub import EvalResult, ModelCardData

    title = dataset_title(spec)
    results = [EvalResult(task_type=PIPELINE, task_name="Image Segmentation", dataset_type=spec["name"],
                          dataset_name=title, dataset_split=split, metric_type=name, metric_name=name,
                          metric_value=value)
               for split, scores in scores_of(spec, metrics).items() for name, value in scores.items()]
    method_tag = config["method"].replace("_", "-")
    base = BASE_MODELS.get(config["model"])
    return ModelCardData(
        library_name=LIBRARY, license=LICENSE, pipeline_tag=PIPELINE, tags=list(dict.fromkeys((*TAGS, method_tag))),
        base_model=base, base_model_relation="adapter" if base else None,
        metrics=sorted({r.metric_type for r in results}) or None,
        model_name=f"{config['model']}-{method_tag}-{spec['name']}", eval_results=results or None)


def _base_sentence(base: dict) -> str:
    """Where the base weights of an export come from, for the card's list of files."""
    from convlora_lite.models.configs import get_config

    if base.get("random_seed") is not None:
        return f"a random SAM `{base['model']}` drawn from the run's seed ({base['random_seed']}), rebuilt on loading"
    url = get_config(base["model"]).checkpoint_url
    found = (f"Meta's official checkpoint, which {LIBRARY} downloads on first use" if url and url.endswith(
        "/" + base["file"]) else f"found as the run found it (`checkpoint: {base['checkpoint']}`)")
    return (f"`{base['file']}` (sha256 `{base['sha256']}`), {found}; where it lies elsewhere, pass its path with "
            "`--checkpoint` (`checkpoint=` in Python), checked against that sha256")


def _scores_table(scores: dict[str, dict[str, float]]) -> str:
    names = list(dict.fromkeys(name for split in scores.values() for name in split))
    rows = [f"| {split} | " + " | ".join(f"{values[n]:.4f}" if n in values else "" for n in names) + " |"
            for split, values in scores.items()]
    return "\n".join([f"| split | {' | '.join(names)} |", "|---" * (len(names) + 1) + "|", *rows])


def model_card(config: dict, spec: dict, base: dict, metrics: dict, *, n_parameters: int, weights_file: str,
               config_file: str) -> str:
    """The ``README.md`` of a Hub folder: ``config`` (the resolved run config), ``spec`` and ``base`` (the
    export's spec summary and base-weights reference), ``metrics`` (the run's ``metrics.json``), the number
    of exported parameters and the folder's two other files' names."""
    method, model, dataset = config["method"], config["model"], dataset_title(spec)
    scores = scores_of(spec, metrics)
    partial = metrics.get("max_eval_batches")
    url = project()[1]
    prompt = config.get("prompt", "none")
    prompting = "prompt-free" if prompt == "none" else f"with {prompt} prompts (kept promptable)"
    lines = [
        "---", card_data(config, spec, metrics).to_yaml(), "---", "",
        f"# {method} on {dataset} (SAM `{model}`)", "",
        f"The Segment Anything Model `{model}` fine-tuned {prompting} with **{method}** on {dataset} "
        f"({spec['task']}; classes: {', '.join(spec['classes'])}) by {f'[{LIBRARY}]({url})' if url else LIBRARY}, "
        f"at {config['image_size']} px, seed {config['seed']}: the best of {metrics.get('epochs_run')} epoch(s) "
        f"(epoch {metrics.get('best_epoch')}) by validation {metrics.get('select_metric')}.", "",
        "## Files", "",
        f"- `{weights_file}`: the trainable tensors only ({n_parameters:,} parameters), with the resolved config, "
        "the dataset's classes and metrics and the base weights' reference in its metadata (the file "
        "`convlora export` writes).",
        f"- `{config_file}`: the resolved training config.",
        f"- Not here: SAM's frozen base weights, {_base_sentence(base)}.", "",
        "## Test scores", "",
        _scores_table(scores) if scores else "The run recorded no test scores.", "",
        *([f"Scored on at most {partial} batch(es) per split (`max_eval_batches`): a quick look, not the "
           "whole test set.", ""] if partial else []),
        "## Use it", "",
        "```bash",
        install_line(),
        "convlora hub pull REPO_ID --output model    # REPO_ID: this repository's name, user/name",
        "convlora predict --run-dir model photos/ --output-dir masks",
        "```", "",
        "```python",
        "from convlora_lite import Segmenter",
        'segmenter = Segmenter.from_run("model")      # the pulled folder',
        'mask = segmenter.segment("photo.jpg")        # uint8 (H, W) at the photo\'s size',
        "```", "",
        f"Licence: {LICENSE} (SAM's weights and {LIBRARY}); the training data's own terms apply to its use.", "",
    ]
    return "\n".join(lines)
