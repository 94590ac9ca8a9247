"""A notebook's settings and the runs it trains: :class:`Session` (made from the parameters cell)."""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

from convlora_lite.analysis.parameter_counts import parse_methods
from convlora_lite.data.install import download_dataset
from convlora_lite.data.registry import DATASETS, get_dataset_spec
from convlora_lite.models.configs import get_config
from convlora_lite.notebook.display import COLAB_DRIVE, KAGGLE_WORKING, on_colab, on_kaggle
from convlora_lite.notebook.task import Task
from convlora_lite.plots.figures import save_loss_curve
from convlora_lite.plots.widgets import use_inline_figures
from convlora_lite.progress import hide_folders
from convlora_lite.reports import readings
from convlora_lite.reports.results_tables import collect_runs, write_results
from convlora_lite.training import devices
from convlora_lite.training.config import TrainConfig, preset_value, run_image_size
from convlora_lite.training.presets import get_preset
from convlora_lite.training.run_data import ensure_synthetic
from convlora_lite.training.rundir import RunDir
from convlora_lite.training.sweep import run_sweep, seeds_for, sweep_dir
from convlora_lite.training.trainer import fit


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
            to every run's TrainConfig (``EPOCHS``, ``IMAGE_SIZE``, ``MAX_TRAIN_BATCHES`` in the notebooks).
        model: a backbone other than the preset's (``None``: the preset's), e.g. ``micro_sam2`` offline or
            ``sam2.1_hiera_small`` at paper scale (notebook 13); its runs get a sweep folder of their own.
        compare_seeds: offline, the seeds of the one task per notebook whose methods are compared
            (``COMPARE_SEEDS = 3`` in 03-08: a gap can then be weighed against the spread over seeds); at
            paper scale that task has the preset's seeds like the others.
        announce: print which mode this is (the offline caveat, or the paper-scale settings).

    What it prints names the notebook's folders by their parameters (``OUTPUT_DIR/sweep_cpu/...``, ``DATA_ROOT``;
    :meth:`shown`), never the machine's paths, and each run it trains or reads back in one line.

    Used in notebooks 00, 01, 02, 03, 04, 05, 06, 07, 08, 09, 10, 11, 12 and 13."""

    def __init__(self, preset: str, data_root, checkpoint="auto", output_dir="runs/notebooks",
                 methods: str | Sequence[str] = "lora,conv_lora", seeds: int | None = 0, *,
                 epochs: int | None = None, image_size: int | None = None, max_train_batches: int | None = None,
                 model: str | None = None, compare_seeds: int = 1, announce: bool = True) -> None:
        self.preset = preset
        self.offline = get_preset(preset).offline  # an unknown preset fails here, with the list of names
        self.checkpoint = None if checkpoint == "none" else checkpoint
        self.data_root, self.output_dir = Path(data_root).resolve(), Path(output_dir).resolve()
        names = methods.split(",") if isinstance(methods, str) else methods
        self.methods = [m.strip() for m in names if m.strip()]
        self.seeds = seeds_for(preset, seeds or None)  # 0 / None: the preset's number of seeds
        self.compare_seeds = compare_seeds
        self.tasks: list[Task] = []
        given = dict(epochs=epochs, image_size=image_size, max_train_batches=max_train_batches, model=model)
        self.budget = {k: v for k, v in given.items() if v not in (None, "", 0)}
        if model is not None:
            get_config(model)  # an unknown name fails here, with the list of names
        use_inline_figures()
        if announce:
            print(self.describe())

    def shown(self, text) -> str:
        """``text`` (a path or a message) as a notebook prints it: the output and data folders written as
        ``OUTPUT_DIR`` and ``DATA_ROOT`` (:func:`~convlora_lite.progress.hide_folders`). Used in notebooks 09 and 11."""
        return hide_folders(text, {"OUTPUT_DIR": self.output_dir, "DATA_ROOT": self.data_root})

    def _say(self, message: str) -> None:
        """Print one of the sweep's lines (one per run) with :meth:`shown` paths."""
        print(self.shown(message))

    @property
    def model(self) -> str:
        """The SAM backbone the session trains: its ``model`` when given, else the preset's."""
        return self.budget.get("model") or preset_value(self.preset, "model")

    @property
    def device(self) -> str:
        """Where a notebook's own models compute: a GPU when there is one, else the CPU."""
        return devices.resolve_device("auto")

    @property
    def comparison_seeds(self) -> int:
        """How many seeds a compared task (and 08's grid) trains: ``compare_seeds`` offline (at least
        the session's seeds), the session's seeds at paper scale."""
        return max(self.compare_seeds, len(self.seeds)) if self.offline else len(self.seeds)

    @property
    def image_size(self) -> int:
        """The input side the preset's runs train at (the ``IMAGE_SIZE`` knob when set; the same precedence
        as every run's :meth:`TrainConfig.resolve`), which the notebooks' own models use as well."""
        return run_image_size(self.preset, self.budget)

    def autocast(self):
        """A context for the notebook's own forward passes: the preset's precision on this device, as
        its runs are scored (fp16 autocast on a GPU, plain fp32 on the CPU). Used in notebooks 01, 02, 09, 10 and 12."""
        precision = devices.inference_precision(preset_value(self.preset, "precision"), self.device, self.model)
        return devices.autocast(self.device, precision)

    @property
    def sweep(self) -> Path:
        """The shared sweep folder of this preset and budget."""
        return sweep_dir(self.output_dir, self.preset, self.budget)

    def describe(self) -> str:
        """One paragraph: which mode this is, and where data, runs and weights come from."""
        if self.offline:
            mode = (f"OFFLINE mode (preset {self.preset!r}): the bundled {self.model} on synthetic analogs "
                    "(synth_<task>), not the real data or SAM ViT-H; the numbers are NOT comparable with the paper's. "
                    "Paper scale: -p PRESET colab|paper (real SAM weights, real datasets, the official recipe).")
        else:
            mode = (f"PAPER-SCALE mode (preset {self.preset!r}): {self.model} with real SAM weights, real datasets "
                    "(downloaded into DATA_ROOT when missing), the official recipe.")
        if not self.offline and self.device == "cpu":
            mode += ("\nNo GPU found: every model runs on the CPU in fp32, hours at this preset. On Colab: Runtime > "
                     "Change runtime type > a GPU (T4); on Kaggle: Settings > Accelerator > a GPU; then run the "
                     "notebook again.")
        if on_colab() and not str(self.output_dir).startswith(COLAB_DRIVE):
            mode += (f"\nOn Colab: OUTPUT_DIR {self.output_dir} is lost when the session ends. Mount Google Drive "
                     f"(from google.colab import drive; drive.mount(\"{COLAB_DRIVE}\")) and set OUTPUT_DIR under "
                     f"{COLAB_DRIVE}/MyDrive/ to resume after a disconnect.")
        if on_kaggle() and not str(self.output_dir).startswith(KAGGLE_WORKING):
            mode += (f"\nOn Kaggle: OUTPUT_DIR {self.output_dir} is lost when the session ends. Set OUTPUT_DIR under "
                     f"{KAGGLE_WORKING}, which Kaggle keeps as the notebook's output when you save a version.")
        budget = ", ".join(f"{k}={v}" for k, v in self.budget.items()) or "the preset's"
        extra = self.comparison_seeds > len(self.seeds)
        compared = f" ({self.comparison_seeds} for the compared task)" if extra else ""
        folders = f"data in DATA_ROOT, runs in {self.shown(self.sweep)}"
        return (f"{mode}\n{folders} | checkpoint: {self.shown(self.checkpoint)}\n"
                f"methods: {self.methods} | seeds: {self.seeds}{compared} | budget: {budget}")

    def dataset_name(self, task: str) -> str:
        """The dataset a task trains on: its ``synth_`` analog offline, the real one at paper scale.
        Used in notebooks 00, 02, 09 and 10."""
        return get_preset(self.preset).dataset(task)

    def prepare(self, dataset: str) -> Path:
        """Make ``dataset`` available (generate an analog, or download once) and return its root.
        Used in notebooks 00 and 02."""
        root = ensure_synthetic([dataset], self.preset, self.data_root)
        if not get_dataset_spec(dataset).synthetic:
            download_dataset(dataset, root)
        return root

    def grid(self, datasets: str = "auto", methods: str = "auto") -> tuple[list[str], list[str]]:
        """The datasets and methods of a comparison grid (notebook 08). ``"auto"``: polyp (its ``synth_``
        analog offline) with decoder_only, VPT, LoRA and Conv-LoRA offline and on ``colab`` (a grid that
        fits a session, ``benchmarks/colab_budget.md``); on ``paper`` the seven real datasets and all
        nine methods. Otherwise comma-separated names (``"all"`` for every method). Used in notebooks 08 and 12."""
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
        session's; the preset's seed and the next integers) in the sweep folder, and write its results
        table there; returns the runs in that order. Prints one line per run (which run, where, whether it was
        read back); the runs' own lines (size, estimate) stay out of the notebook.
        Used in notebooks 08, 09, 10 and 12."""
        for dataset in datasets:
            self.prepare(dataset)
        runs = run_sweep(self.preset, datasets, list(methods or self.methods), seeds or len(self.seeds),
                         self.output_dir, self.data_root, self.checkpoint, budget=self.budget,
                         on_finish=save_loss_curve, log=self._say, run_log=_quiet)
        write_results(self.sweep, runs)
        return runs

    def fit(self, dataset: str, method: str, seed: int | None = None, **overrides) -> Path:
        """Train (or read back) one run of ``method`` on ``dataset`` in the sweep folder, with the session's
        preset, checkpoint and budget and ``overrides`` (e.g. ``data_dir`` for your own data); prints its size
        and its directory in one line and returns the directory. Used in notebooks 00 and 11."""
        seed = self.seeds[0] if seed is None else seed
        if not overrides.get("data_dir"):
            overrides["data_root"] = str(self.prepare(dataset))
        config = TrainConfig.resolve(dataset, method, self.preset, seed=seed, resume=True,
                                     checkpoint=self.checkpoint, **{**self.budget, **overrides},
                                     output_dir=str(RunDir.of(self.sweep, dataset, method, seed).path))
        done = " (finished earlier: read back)" if RunDir(config.output_dir).is_complete() else ""
        self._say(f"{config.dataset} / {config.method} / seed {config.seed}: {config.model} at {config.image_size} px, "
                  f"{config.epochs} epoch(s) of {config.max_train_batches or 'all'} batches, lr {config.lr}, batch "
                  f"{config.batch_size} x {config.grad_accum} -> {config.output_dir}{done}")
        return fit(config, on_finish=save_loss_curve, log=_quiet)

    def task(self, task: str, compared: bool = False) -> "Task":
        """The steps of one paper task (``polyp``, ``camo``, ...) in a domain notebook; ``compared``: the
        task whose methods the notebook compares, trained with :attr:`comparison_seeds` seeds.
        Used in notebooks 00, 03, 04, 05, 06, 07, 12 and 13."""
        self.tasks.append(Task(self, self.dataset_name(task), compared))
        return self.tasks[-1]

    def show_grid_reading(self, runs: Sequence[RunDir]) -> None:
        """What a grid's ``runs`` (from :meth:`train`) show, one dataset at a time (:meth:`Task.show_reading`);
        the datasets then count among the session's tasks in :meth:`show_takeaways`. Used in notebook 08."""
        for dataset in dict.fromkeys(run.dataset for run in runs):
            task = Task(self, dataset)
            for run in runs:
                if run.dataset == dataset:
                    task.runs.setdefault(run.method, []).append(run)
            self.tasks.append(task)
            task.show_reading()

    def show_takeaways(self, own: Sequence[str] = (), budget: bool = False) -> None:
        """The notebook's closing numbers, computed: its ``own`` lines first (sentences a library reading computed
        in the notebook, e.g. :mod:`~convlora_lite.reports.figure_readings`), then
        :func:`~convlora_lite.reports.readings.takeaways` (the trainable budget where ``budget`` asks for it: the
        notebooks that count parameters, not every one; then each task trained here).
        Used in notebooks 00, 01, 02, 03, 04, 05, 06, 07, 08, 09, 10, 11 and 13."""
        tasks = [task for task in self.tasks if task.runs]
        lines = readings.takeaways(self.model, [collect_runs(task.run_paths) for task in tasks],
                                   [{split: task.baseline(split) for split in task.spec.test_splits} for task in tasks])
        lines = [*own, *(lines if budget else lines[1:])]
        print("Takeaways (computed from this run):\n- " + "\n- ".join(lines))


def _quiet(_message: str) -> None:
    """A run's own lines in a notebook: dropped (the sweep's line says which run; a live frontend shows its bar)."""
