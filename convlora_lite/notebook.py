"""The one namespace the notebooks import (d2l style): a session made from the parameters cell,
the per-task steps of the domain notebooks, and the shared sweep folder.

::

    from convlora_lite import notebook as nb

    session = nb.Session(PRESET, DATA_ROOT, CHECKPOINT, OUTPUT_DIR, methods=METHODS, seeds=SEEDS)
    polyp = session.task("polyp")          # synth_polyp offline; downloaded once at paper scale
    polyp.show_data(); polyp.show_recipe()
    polyp.train(); polyp.show_curves(); polyp.show_results()
    polyp.show_predictions(N_IMAGES); polyp.show_paper()

Every notebook that trains (00 and 03 to 10) shares one sweep folder per preset,
``{output_dir}/sweep_{preset}/{dataset}/{method}/seed{seed}``, filled through
:func:`convlora_lite.training.sweep.reproduce`: a finished run is read back, an interrupted one
resumes, so each run is trained once however many notebooks show it. The notebooks train with the
presets as they are; the only offline adjustment is the data: on ``smoke`` the synthetic analogs
are tiny (4 training images of 64 px) and kept in ``{data_root}/smoke`` so they never replace the
full-size ones.

The ``show_*`` methods display their tables and figures (IPython's ``display``) and return
nothing; the computing is done by the library modules they call.
"""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

from convlora_lite.analysis.expert_routing import plot_scale_maps, record_routing
from convlora_lite.analysis.parameter_counts import paper_param_table, parse_methods
from convlora_lite.analysis.predictions import predict_run, predict_runs
from convlora_lite.data.install import is_installed
from convlora_lite.data.registry import DATASETS, get_dataset_spec
from convlora_lite.plots.comparisons import compare_curves, disagreement_map, metric_bars, params_vs_score
from convlora_lite.plots.diagrams import conv_lora_diagram, sam_diagram
from convlora_lite.plots.figures import (
    display_image,
    error_map,
    overlay,
    plot_history,
    prediction_grid,
    preview_figure,
    save_loss_curve,
)
from convlora_lite.plots.widgets import (
    expert_explorer,
    own_image,
    prediction_explorer,
    routing_explorer,
    use_inline_figures,
)
from convlora_lite.reports.paper_tables import paper_results, param_comparison
from convlora_lite.reports.readings import routing_reading
from convlora_lite.reports.results_tables import collect_runs, results_table
from convlora_lite.training.config import TrainConfig, preset_value
from convlora_lite.training.presets import get_preset
from convlora_lite.training.rundir import RunDir

#: what a notebook finds in this namespace besides :class:`Session` (the library's own functions).
__all__ = ["Session", "Task", "RunDir", "collect_runs", "display_image", "error_map", "metric_bars", "overlay",
           "param_comparison", "paper_results", "plot_history", "plot_scale_maps", "predict_run", "predict_runs",
           "prediction_grid", "preview_figure", "record_routing", "results_table", "routing_reading",
           "prediction_explorer", "routing_explorer", "expert_explorer", "sam_diagram", "conv_lora_diagram",
           "own_image", "example_image", "paper_param_table", "params_vs_score", "disagreement_map"]

#: generate_synthetic sizes per offline preset (cpu: the library's defaults).
SYNTHETIC_SIZES: dict[str, dict] = {"smoke": {"n_train": 4, "n_val": 2, "n_test": 2, "image_size": 64}, "cpu": {}}
#: the presets that run offline, on the bundled micro SAM and the synthetic analogs.
OFFLINE_PRESETS = ("smoke", "cpu")


#: where Colab mounts Google Drive (``drive.mount``); outputs under it survive the session.
COLAB_DRIVE = "/content/drive"


def on_colab() -> bool:
    """Whether this kernel runs on Google Colab."""
    import sys

    return "google.colab" in sys.modules


def notebook_data_root(preset: str, data_root) -> Path:
    """Where a notebook's datasets live: ``data_root``, or ``data_root/smoke`` for ``smoke``."""
    root = Path(data_root).resolve()
    return root / "smoke" if preset == "smoke" else root


def ensure_synthetic(datasets, preset: str, data_root) -> Path:
    """Generate every ``synth_<task>`` of ``datasets`` that is not installed (missing, or its
    generation was interrupted; :func:`~convlora_lite.data.install.is_installed`) at the preset's
    size. Real datasets are left alone: the notebooks' ``download_dataset`` installs them, and
    accepts a folder once ``convlora data install`` adopted it. Returns the data root used."""
    from convlora_lite.data.synthetic import generate_synthetic

    root = notebook_data_root(preset, data_root)
    for name in datasets:
        spec = get_dataset_spec(name)
        if spec.synthetic and not is_installed(spec, root):
            generate_synthetic(spec.name, root, **SYNTHETIC_SIZES.get(preset, {}))
    return root


#: the budget knobs of every notebook's parameters cell -> the TrainConfig field each one sets.
BUDGET_KNOBS = {"EPOCHS": "epochs", "IMAGE_SIZE": "image_size", "MAX_TRAIN_BATCHES": "max_train_batches"}
_KNOB_TAGS = {"epochs": "e", "image_size": "px", "max_train_batches": "b"}


def sweep_dir(output_dir, preset: str, budget: dict | None = None) -> Path:
    """The shared sweep folder of ``preset`` under ``output_dir``; a shrunk or grown budget (TrainConfig
    overrides such as ``{"epochs": 2}``) gets its own folder, so its runs never meet the preset's."""
    tag = "".join(f"_{_KNOB_TAGS[k]}{v}" for k, v in sorted((budget or {}).items()))
    return Path(output_dir).resolve() / f"sweep_{preset}{tag}"


def run_sweep(preset: str, datasets, methods, seeds: int, output_dir, data_root, checkpoint="auto",
              log=print, budget: dict | None = None) -> Path:
    """Train the grid datasets x methods x ``seeds`` seeds on ``preset`` with the ``budget`` overrides
    (finished runs are read back) and write ``results.md``/``results.csv``; returns the sweep folder."""
    from convlora_lite.reports.results_tables import write_results
    from convlora_lite.training.sweep import reproduce

    root = ensure_synthetic(datasets, preset, data_root)
    folder = sweep_dir(output_dir, preset, budget)
    runs = reproduce(preset, list(datasets), list(methods), seeds, output_dir=folder, log=log, data_root=str(root),
                     checkpoint=checkpoint, on_finish=save_loss_curve, **(budget or {}))
    write_results(folder, runs)
    return folder


def example_image(dataset: str, root, path, size: tuple[int, int] = (413, 297)) -> Path:
    """Write the first test image of ``dataset`` (under ``root``) to ``path`` at another size
    (width, height; not square, not the model's), as a stand-in for a photo of your own."""
    from PIL import Image

    from convlora_lite.data.datasets import build_dataset

    spec = get_dataset_spec(dataset)
    image, _ = build_dataset(spec, spec.test_splits[0], root, 64, train=False).load_pair(0)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    picture = image if isinstance(image, Image.Image) else Image.fromarray(image)
    picture.convert("RGB").resize(size, Image.BICUBIC).save(path)
    return path


def _display(*objects) -> None:
    from IPython.display import display

    display(*objects)


class Session:
    """A notebook's settings, read from its ``parameters`` cell.

    Args:
        preset: ``smoke``, ``cpu`` (offline), ``colab`` or ``paper``.
        data_root, output_dir: where the datasets and the sweep folder live (made absolute).
        checkpoint: ``"auto"``, ``"none"`` (random weights) or a path to SAM weights.
        methods: comma-separated PEFT methods the notebook compares.
        seeds: seeds per (dataset, method); ``0`` or ``None`` means the preset's (1 offline and on
            ``colab``, 3 on ``paper``: the paper's mean of 3 seeds).
        epochs, image_size, max_train_batches: the budget knobs (``None``: the preset's), passed
            to every run's TrainConfig; named ``EPOCHS``, ``IMAGE_SIZE``, ``MAX_TRAIN_BATCHES`` in the
            notebooks and ``--epochs``, ``--image-size``, ``--max-train-batches`` on the command line.
        compare_seeds: offline, the seeds of the one task per notebook whose methods are compared
            (the domain notebooks' and 08's ``COMPARE_SEEDS = 3``: a gap can then be weighed against
            the spread over seeds; default 1, no extra seeds); at paper scale that task has the
            preset's seeds like the others (``colab``'s hour has room for one).
        announce: print which mode this is (the offline caveat, or the paper-scale settings).
    """

    def __init__(self, preset: str, data_root, checkpoint="auto", output_dir="runs/notebooks",
                 methods: str | Sequence[str] = "lora,conv_lora", seeds: int | None = 0, *,
                 epochs: int | None = None, image_size: int | None = None, max_train_batches: int | None = None,
                 compare_seeds: int = 1, announce: bool = True) -> None:
        from convlora_lite.training.sweep import seeds_for

        get_preset(preset)  # an unknown preset fails here, with the list of names
        self.preset = preset
        self.offline = preset in OFFLINE_PRESETS
        self.checkpoint = None if checkpoint == "none" else checkpoint
        self.data_root, self.output_dir = Path(data_root).resolve(), Path(output_dir).resolve()
        names = methods.split(",") if isinstance(methods, str) else methods
        self.methods = [m.strip() for m in names if m.strip()]
        self.seeds = seeds_for(preset, seeds or None)  # 0 / None: the preset's number of seeds
        self.compare_seeds = compare_seeds
        self.tasks: list[Task] = []
        given = dict(epochs=epochs, image_size=image_size, max_train_batches=max_train_batches)
        self.budget = {k: v for k, v in given.items() if v not in (None, "", 0)}
        use_inline_figures()
        if announce:
            print(self.describe())

    @property
    def model(self) -> str:
        """The SAM backbone the preset trains."""
        return preset_value(self.preset, "model")

    @property
    def device(self) -> str:
        """Where a notebook's own models compute: a GPU when there is one, else the CPU."""
        from convlora_lite.training.devices import resolve_device

        return resolve_device("auto")

    @property
    def comparison_seeds(self) -> int:
        """How many seeds a compared task (and 08's grid) trains: ``compare_seeds`` offline (at least
        the session's seeds), the session's seeds at paper scale."""
        return max(self.compare_seeds, len(self.seeds)) if self.offline else len(self.seeds)

    @property
    def image_size(self) -> int:
        """The input side the preset trains at (the ``IMAGE_SIZE`` knob when set), which the
        notebooks' own models (probes, zero-shot SAM, the opened layer) use as well."""
        from convlora_lite.models.sam import get_config

        return (self.budget.get("image_size") or get_preset(self.preset).overrides.get("image_size")
                or get_config(self.model).image_size)

    def autocast(self):
        """A context for the notebook's own forward passes: the preset's precision on this device, as
        its runs are scored (:func:`~convlora_lite.training.devices.inference_precision`: fp16 autocast
        on a GPU, plain fp32 on the CPU, where the trainer also runs fp32)."""
        from convlora_lite.training import devices

        precision = devices.inference_precision(preset_value(self.preset, "precision"), self.device)
        return devices.autocast(self.device, precision)

    @property
    def sweep(self) -> Path:
        """The shared sweep folder of this preset."""
        return sweep_dir(self.output_dir, self.preset, self.budget)

    def describe(self) -> str:
        """One paragraph: which mode this is, and where data, runs and weights come from."""
        if self.offline:
            mode = (f"OFFLINE mode (preset {self.preset!r}): the bundled micro_sam on synthetic analogs "
                    "(synth_<task>), not the real data or SAM ViT-H; the numbers are NOT comparable with the paper's. "
                    "Paper scale: -p PRESET colab|paper (real SAM weights, real datasets, the official recipe).")
        else:
            mode = (f"PAPER-SCALE mode (preset {self.preset!r}): {self.model} with real SAM weights, real datasets "
                    "(downloaded into DATA_ROOT when missing), the official recipe.")
        if not self.offline and self.device == "cpu":
            mode += ("\nNo GPU found: every model runs on the CPU in fp32, hours at this preset. On Colab: Runtime > "
                     "Change runtime type > a GPU (T4), then run the notebook again.")
        if on_colab() and not str(self.output_dir).startswith(COLAB_DRIVE):
            mode += (f"\nOn Colab: OUTPUT_DIR {self.output_dir} is lost when the session ends. Mount Google Drive "
                     f"(from google.colab import drive; drive.mount(\"{COLAB_DRIVE}\")) and set OUTPUT_DIR under "
                     f"{COLAB_DRIVE}/MyDrive/ to resume after a disconnect.")
        budget = ", ".join(f"{k}={v}" for k, v in self.budget.items()) or "the preset's"
        extra = self.comparison_seeds > len(self.seeds)
        compared = f" ({self.comparison_seeds} for the compared task)" if extra else ""
        return (f"{mode}\ndata: {self.data_root} | outputs: {self.output_dir} | checkpoint: {self.checkpoint}\n"
                f"methods: {self.methods} | seeds: {self.seeds}{compared} | budget: {budget}")

    def dataset_name(self, task: str) -> str:
        """The dataset a task trains on: its ``synth_`` analog offline, the real one at paper scale."""
        return f"synth_{task}" if self.offline else task

    def prepare(self, dataset: str) -> Path:
        """Make ``dataset`` available (generate an analog, or download once) and return its root."""
        from convlora_lite.data.install import download_dataset

        root = ensure_synthetic([dataset], self.preset, self.data_root)
        if not get_dataset_spec(dataset).synthetic:
            download_dataset(dataset, root)
        return root

    def grid(self, datasets: str = "auto", methods: str = "auto") -> tuple[list[str], list[str]]:
        """The datasets and methods of a comparison grid. ``"auto"``: polyp (its ``synth_`` analog
        offline) with decoder_only, VPT, LoRA and Conv-LoRA offline and on ``colab`` (a grid that
        fits a session, ``benchmarks/colab_budget.md``); on ``paper`` the seven real datasets and all
        nine methods. Otherwise comma-separated names (``"all"`` for every method)."""
        small = self.preset != "paper"
        if datasets == "auto":
            chosen = [self.dataset_name("polyp")] if small else [n for n, s in DATASETS.items() if not s.synthetic]
        else:
            chosen = [d.strip() for d in datasets.split(",") if d.strip()]
        for name in chosen:
            get_dataset_spec(name)  # an unknown name fails here, with the list of names
        if methods == "auto":
            return chosen, ["decoder_only", "vpt", "lora", "conv_lora"] if small else parse_methods("all")
        return chosen, parse_methods(methods)

    def train(self, datasets: Sequence[str], methods: Sequence[str] | None = None, seeds: int | None = None,
              ) -> list[RunDir]:
        """Train (or read back) every run of ``datasets`` x ``methods`` x ``seeds`` seeds (default: the
        session's; the preset's seed and the next integers); returns the runs in that order."""
        from convlora_lite.training.sweep import seeds_for

        methods = list(methods or self.methods)
        seeds = seeds_for(self.preset, seeds or len(self.seeds))
        for dataset in datasets:
            self.prepare(dataset)
        run_sweep(self.preset, datasets, methods, len(seeds), self.output_dir, self.data_root, self.checkpoint,
                  budget=self.budget)
        return [RunDir.of(self.sweep, d, m, s) for d in datasets for m in methods for s in seeds]

    def task(self, task: str, compared: bool = False) -> "Task":
        """The steps of one paper task (``polyp``, ``camo``, ...) in a domain notebook; ``compared``: the
        task whose methods the notebook compares, trained with :attr:`comparison_seeds` seeds."""
        self.tasks.append(Task(self, self.dataset_name(task), compared))
        return self.tasks[-1]

    def show_grid_reading(self, runs: Sequence[RunDir]) -> None:
        """What a grid's ``runs`` (from :meth:`train`) show, one dataset at a time (:meth:`Task.show_reading`);
        the datasets then count among the session's tasks in :meth:`show_takeaways`."""
        for dataset in dict.fromkeys(run.dataset for run in runs):
            task = Task(self, dataset)
            for run in runs:
                if run.dataset == dataset:
                    task.runs.setdefault(run.method, []).append(run)
            self.tasks.append(task)
            task.show_reading()

    def show_takeaways(self) -> None:
        """The notebook's closing numbers, computed: the trainable budget here and on ViT-H, and for
        every task trained in this session, the leader on its first test metric and Conv-LoRA against LoRA."""
        from convlora_lite.reports import readings

        lines = [readings.budget_reading(self.model)]
        for task in self.tasks:
            if task.runs:
                runs = collect_runs([run.path for runs in task.runs.values() for run in runs])
                verdict = readings.conv_lora_verdict(runs)
                best = readings.method_readings(runs)[0]
                lines += [best] + ([verdict.replace(readings.CONV_LORA_OFFLINE_NOTE, "").strip()] if verdict else [])
        print("Takeaways (computed from this run):\n- " + "\n- ".join(lines))


class Task:
    """One task of a domain notebook: its data, recipe, runs, results, predictions and the paper."""

    def __init__(self, session: Session, dataset: str, compared: bool = False) -> None:
        self.session, self.name, self.compared = session, dataset, compared
        self.spec = get_dataset_spec(dataset)
        self.root = session.prepare(dataset)
        self.runs: dict[str, list[RunDir]] = {}
        self.zero_shot = None  # filled by show_zero_shot
        self._baselines: dict[str, dict] = {}  # filled by baseline

    def dataset(self, split: str, train: bool = False):
        """The ``split`` of this task's dataset at the model's input size."""
        from convlora_lite.data.datasets import build_dataset

        return build_dataset(self.spec, split, self.root, self.config().image_size, train=train)

    def baseline(self, split: str) -> dict:
        """The task's metrics (fractions) of predicting background everywhere on ``split``
        (:func:`~convlora_lite.reports.readings.trivial_baseline`), on the images the runs are scored on:
        the first ``max_eval_batches`` batches when the preset caps them. Computed once per split."""
        from convlora_lite.reports.readings import trivial_baseline

        if split not in self._baselines:
            config = self.config()
            cap = None if config.max_eval_batches is None else config.max_eval_batches * config.batch_size
            self._baselines[split] = trivial_baseline(self.dataset(split), self.spec, max_items=cap)
        return self._baselines[split]

    def config(self, method: str = "conv_lora"):
        """The resolved training config of ``method`` on this task under the session's preset."""

        return TrainConfig.resolve(self.name, method, self.session.preset, **self.session.budget)

    def show_data(self, max_items: int = 200) -> None:
        """The split sizes, a preview of images and masks, and what the masks hold (train split)."""
        from convlora_lite.plots.class_statistics import class_statistics, plot_class_statistics
        from convlora_lite.plots.figures import label_map_figure

        print(self.spec.title, "| images per split:", {s: len(self.dataset(s)) for s in self.spec.all_splits})
        _display(preview_figure(self.name, self.root))
        statistics = class_statistics(self.dataset("train"), self.spec.classes, max_items=max_items)
        _display(statistics.round(2), plot_class_statistics(statistics, title=f"{self.name}: what the masks hold "
                                                                                "(train split)"))
        if self.spec.task == "multiclass":
            train = self.dataset("train")
            items = [train[i] for i in range(min(4, len(train)))]
            _display(label_map_figure([i["image"] for i in items], [i["mask"] for i in items], self.spec.classes,
                                      title=f"{self.name}: label maps (train)"))

    def show_zero_shot(self, max_items: int | None = None) -> None:
        """Zero-shot promptable SAM (one box, one point) on the first test split, next to the filled box.
        Multi-class tasks say why they have none."""
        from convlora_lite.analysis.zero_shot import zero_shot_scores
        from convlora_lite.models.sam import build_sam

        if self.spec.task != "binary":
            print(f"{self.name} is multi-class: promptable SAM gives class-agnostic masks, so there is no zero-shot "
                  "reading of its classes; fine-tuning adds the class head.")
            return
        split = self.spec.test_splits[0]
        sam = build_sam(self.session.model, self.session.checkpoint, image_size=self.config().image_size)
        with self.session.autocast():
            self.zero_shot = zero_shot_scores(sam, self.dataset(split), self.spec, max_items=max_items,
                                              device=self.session.device)
        del sam
        print(f"Zero-shot {self.session.model} on {self.name}/{split}, prompts from the test masks (x100):")
        _display(self.zero_shot.round(1))

    def show_recipe(self) -> None:
        """The official recipe of this task next to what this preset runs."""
        from convlora_lite.reports.paper_tables import recipe_comparison

        _display(recipe_comparison(self.config()))

    def train(self) -> dict[str, list[RunDir]]:
        """Train (or read back) the session's methods x seeds on this task (x :attr:`Session.comparison_seeds`
        seeds when it is the compared task)."""
        runs = self.session.train([self.name], seeds=self.session.comparison_seeds if self.compared else None)
        self.runs = {m: [r for r in runs if r.method == m] for m in self.session.methods}
        return self.runs

    def show_curves(self, method: str | None = None) -> None:
        """The training curves of ``method``'s first seed (default: the last method compared), then every
        method's validation selection metric overlaid, with the all-background score of the validation split."""
        method, metric = method or self.session.methods[-1], self.spec.select_metric
        _display(plot_history(self.runs[method][0].path, self.spec),
                 compare_curves({m: [r.path for r in runs] for m, runs in self.runs.items()}, metric,
                                title=f"{self.name}: validation {metric}, every method",
                                baseline=self.baseline("val")[metric]))

    def show_results(self) -> None:
        """The test metrics of every run, x100, mean (± std over seeds), then what they show."""
        _display(results_table(collect_runs([run.path for runs in self.runs.values() for run in runs])))
        if self.spec.task == "multiclass":
            self.show_class_iou()
        self.show_reading()

    def show_reading(self) -> None:
        """What this task's runs show, computed: which method is ahead and by how much against the seed
        spread, Conv-LoRA against LoRA, the all-background floor, and whether training had converged."""
        from convlora_lite.reports import readings

        runs = collect_runs([run.path for runs in self.runs.values() for run in runs])
        lines = readings.method_readings(runs)
        verdict = readings.conv_lora_verdict(runs)
        lines += [verdict] if verdict else []
        for split in self.spec.test_splits:
            lines += readings.baseline_readings(runs, self.baseline(split), split)
        lines += readings.convergence_readings([r.path for runs in self.runs.values() for r in runs], self.spec)
        if self.zero_shot is not None:
            lines += readings.zero_shot_readings(self.zero_shot, runs, self.spec.test_splits[0])
        print("What these runs show (computed from their run directories):\n- " + "\n- ".join(lines))

    def show_class_iou(self, method: str | None = None) -> None:
        """Per-category IoU of ``method``'s first run on its first test split (multi-class tasks), with the
        all-background mIoU."""
        import pandas as pd

        from convlora_lite.plots.class_statistics import class_iou_bars

        method = method or self.session.methods[-1]
        split = self.spec.test_splits[0]
        iou = self.runs[method][0].read_metrics()["test"][split]["iou_per_class"]
        _display(pd.Series(iou, name="IoU (%)").mul(100).round(1).to_frame(),
                 class_iou_bars(iou, title=f"{method} on {self.name}: IoU per category ({split})",
                                baseline=self.baseline(split)["miou"]))

    def show_predictions(self, n: int = 4) -> None:
        """Per test split: images, ground truth and each method's prediction; the last method's errors."""
        from convlora_lite.analysis.predictions import predict_runs
        from convlora_lite.plots.figures import error_map, prediction_grid

        last = self.session.methods[-1]
        for split in self.spec.test_splits:
            images, masks, predictions = predict_runs({m: runs[0].path for m, runs in self.runs.items()}, split, n=n)
            _display(prediction_grid(images, masks, predictions, classes=self.spec.classes,
                                     title=f"{self.name}: {split} images"),
                     error_map(images, masks, predictions[last], classes=self.spec.classes,
                               title=f"{last} on {split}: where it is wrong"))

    def show_paper(self) -> None:
        """Offline: the paper's row for context. At paper scale: each method next to the paper."""
        from convlora_lite.reports.paper_tables import compare_with_paper, paper_results

        if self.session.offline:
            print(f"{self.name} is a synthetic analog, trained offline on a small model for a few epochs: its numbers "
                  "are NOT comparable with the paper's (SAM ViT-H, the real data, the full schedule). The paper's row, "
                  "for context only:")
            _display(paper_results(self.name))
            return
        for method, runs in self.runs.items():
            table = compare_with_paper([run.path for run in runs])
            print(f"{method} ({table.attrs['model']}) next to the paper (ViT-H); difference to the paper's "
                  f"{table.attrs['paper_row']} row:")
            _display(table.round(2))
