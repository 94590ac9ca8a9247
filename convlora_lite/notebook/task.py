"""The steps of one task in a domain notebook (03-08): :class:`Task`."""
from __future__ import annotations

from pathlib import Path

from convlora_lite.analysis.predictions import predict_runs
from convlora_lite.data.registry import get_dataset_spec
from convlora_lite.models.configs import get_config
from convlora_lite.notebook.display import show
from convlora_lite.plots.comparisons import compare_curves
from convlora_lite.plots.figures import error_map, plot_history, prediction_grid, preview_figure
from convlora_lite.reports import readings
from convlora_lite.reports.domain_readings import prediction_readings
from convlora_lite.reports.paper_tables import paper_results
from convlora_lite.reports.results_tables import collect_runs, results_table
from convlora_lite.training.config import TrainConfig
from convlora_lite.training.rundir import RunDir


class Task:
    """One task of a domain notebook (03-08): its data, recipe, runs, results, predictions and the paper."""

    def __init__(self, session, dataset: str, compared: bool = False) -> None:
        """``session``: the notebook's :class:`~convlora_lite.notebook.session.Session`; ``dataset``: a
        registry name; ``compared``: the task whose methods the notebook compares."""
        self.session, self.name, self.compared = session, dataset, compared
        self.spec = get_dataset_spec(dataset)
        self.root = session.prepare(dataset)
        self.runs: dict[str, list[RunDir]] = {}
        self.zero_shot = None  # filled by show_zero_shot
        self._baselines: dict[str, dict] = {}  # filled by baseline
        self._configs: dict[str, TrainConfig] = {}  # filled by config

    def config(self, method: str = "conv_lora") -> TrainConfig:
        """The resolved training config of ``method`` on this task under the session's preset (resolved once)."""
        if method not in self._configs:
            self._configs[method] = TrainConfig.resolve(self.name, method, self.session.preset, **self.session.budget)
        return self._configs[method]

    @property
    def run_paths(self) -> list[Path]:
        return [run.path for runs in self.runs.values() for run in runs]

    def dataset(self, split: str, train: bool = False):
        """The ``split`` of this task's dataset at the model's input size."""
        from convlora_lite.data.datasets import build_dataset

        return build_dataset(self.spec, split, self.root, self.config().image_size, train=train)

    def baseline(self, split: str) -> dict:
        """The metrics of predicting background everywhere on ``split`` (on the images the runs are scored
        on: the first ``max_eval_batches`` batches when the preset caps them). Computed once per split.
        Used in notebook 12."""
        if split not in self._baselines:
            config = self.config()
            cap = None if config.max_eval_batches is None else config.max_eval_batches * config.batch_size
            self._baselines[split] = readings.trivial_baseline(self.dataset(split), self.spec, max_items=cap)
        return self._baselines[split]

    def show_data(self, max_items: int = 200) -> None:
        """The split sizes, a preview of images and masks, and what the masks hold (train split).
        Used in notebooks 03, 04, 05, 06 and 07."""
        from convlora_lite.plots.class_statistics import class_statistics, plot_class_statistics

        print(self.spec.title, "| images per split:", {s: len(self.dataset(s)) for s in self.spec.all_splits})
        show(preview_figure(self.name, self.root))
        statistics = class_statistics(self.dataset("train"), self.spec.classes, max_items=max_items)
        show(statistics.round(2), plot_class_statistics(statistics, title=f"{self.name}: what the masks hold "
                                                                                "(train split)"))

    def show_zero_shot(self, max_items: int | None = None, n: int = 4) -> None:
        """Zero-shot promptable SAM (one box, one point per object) on the first test split, next to the filled
        boxes (on at most ``max_items`` test images), and its masks on the first ``n``. Multi-class tasks say why
        they have none. Used in notebooks 00, 03, 04, 05, 06, 07 and 13."""
        from convlora_lite.analysis.zero_shot import zero_shot_examples, zero_shot_scores
        from convlora_lite.models.sam import build_sam
        from convlora_lite.plots.comparisons import zero_shot_figure

        if self.spec.task != "binary":
            print(f"{self.name} is multi-class: promptable SAM gives class-agnostic masks, so there is no zero-shot "
                  "reading of its classes; fine-tuning adds the class head.")
            return
        split = self.spec.test_splits[0]
        sam = build_sam(self.session.model, self.session.checkpoint, image_size=self.config().image_size)
        with self.session.autocast():
            self.zero_shot = zero_shot_scores(sam, self.dataset(split), self.spec, max_items=max_items,
                                              device=self.session.device)
            examples = zero_shot_examples(sam, self.dataset(split), n=n, device=self.session.device)
        print(f"Zero-shot {self.session.model} on {self.name}/{split}, prompts from the test masks (x100):")
        show(self.zero_shot.round(1), zero_shot_figure(examples, title=f"Zero-shot {self.session.model} on "
                                                       f"{self.name}/{split}, prompted from the ground truth"))

    def show_recipe(self) -> None:
        """The official recipe of this task next to what this preset runs. Used in notebooks 03, 04, 05, 06 and 07."""
        from convlora_lite.reports.paper_tables import recipe_comparison

        show(recipe_comparison(self.config()))

    def train(self) -> dict[str, list[RunDir]]:
        """Train (or read back) the session's methods x seeds on this task (x :attr:`Session.comparison_seeds`
        seeds when it is the compared task). Used in notebooks 03, 04, 05, 06, 07, 12 and 13."""
        runs = self.session.train([self.name], seeds=self.session.comparison_seeds if self.compared else None)
        self.runs = {m: [r for r in runs if r.method == m] for m in self.session.methods}
        return self.runs

    def show_curves(self, method: str | None = None) -> None:
        """The training curves of ``method``'s first seed (default: the last method compared), then every
        method's validation selection metric overlaid, with the all-background score of the validation split.
        Used in notebooks 03, 04, 05, 06, 07 and 13."""
        method, metric = method or self.session.methods[-1], self.spec.select_metric
        show(plot_history(self.runs[method][0].path, self.spec),
                 compare_curves({m: [r.path for r in runs] for m, runs in self.runs.items()}, metric,
                                title=f"{self.name}: validation {metric}, every method",
                                baseline=self.baseline("val")[metric]))

    def show_results(self) -> None:
        """The test metrics, x100, mean (± std over seeds) of the runs that left the all-background floor (the
        readings' runs; every run, said so, when none did), then what they show.
        Used in notebooks 03, 04, 05, 06, 07 and 13."""
        runs = collect_runs(self.run_paths)
        baselines = {split: self.baseline(split) for split in self.spec.test_splits}
        failed = readings.failed_runs(runs, baselines, readings.selection_metric(runs, self.spec))
        kept = readings.without_runs(runs, failed)
        if len(failed):
            print(f"{len(failed)} of {runs['run_dir'].nunique()} runs never left the all-background floor (named "
                  "below): " + ("the table leaves them out." if len(kept) else
                                "so did every run, and the table shows them all: none of it is a result."))
        show(results_table(kept if len(kept) else runs))
        if self.spec.task == "multiclass":
            self.show_class_iou()
        self.show_reading()

    def show_reading(self) -> None:
        """What this task's runs show, computed (:func:`~convlora_lite.reports.readings.task_readings`)."""
        baselines = {split: self.baseline(split) for split in self.spec.test_splits}
        lines = readings.task_readings(collect_runs(self.run_paths), self.run_paths, self.spec, baselines,
                                       self.zero_shot, offline=self.session.offline)
        print("What these runs show (computed from their run directories):\n- " + "\n- ".join(lines))

    def show_against(self, other: "Task") -> None:
        """This task's runs against ``other``'s: the same dataset, methods and seeds on another backbone (another
        session's ``model``), seed by seed (:func:`~convlora_lite.reports.backbone_readings.backbone_readings`).
        Used in notebook 13."""
        from convlora_lite.reports.backbone_readings import backbone_readings

        baselines = {split: self.baseline(split) for split in self.spec.test_splits}
        lines = backbone_readings(collect_runs(other.run_paths), collect_runs(self.run_paths), other.session.model,
                                  self.session.model, baselines)
        print("The two backbones, seed by seed (computed from their run directories):\n- " + "\n- ".join(lines))

    def against_summary(self, other: "Task") -> str:
        """:meth:`show_against` in one sentence on the selection metric, for the takeaways
        (:func:`~convlora_lite.reports.backbone_readings.backbone_summary`). Used in notebook 13."""
        from convlora_lite.reports.backbone_readings import backbone_summary

        baselines = {split: self.baseline(split) for split in self.spec.test_splits}
        return backbone_summary(collect_runs(other.run_paths), collect_runs(self.run_paths), other.session.model,
                                self.session.model, baselines)

    def show_class_iou(self, method: str | None = None) -> None:
        """Per-category IoU of ``method``'s first run on its first test split (multi-class tasks), with the
        all-background mIoU."""
        import pandas as pd

        from convlora_lite.plots.class_statistics import class_iou_bars

        method, split = method or self.session.methods[-1], self.spec.test_splits[0]
        iou = self.runs[method][0].read_metrics()["test"][split]["iou_per_class"]
        show(pd.Series(iou, name="IoU (%)").mul(100).round(1).to_frame(),
                 class_iou_bars(iou, title=f"{method} on {self.name}: IoU per category ({split})",
                                baseline=self.baseline(split)["miou"]))

    def show_predictions(self, n: int = 4) -> None:
        """Per test split: images, ground truth and each method's prediction; the last method's errors.
        Used in notebooks 03, 04, 05, 06, 07 and 13."""
        last = self.session.methods[-1]
        seed, patch = self.runs[last][0].read_config_dict()["seed"], get_config(self.config().model).patch_size
        for split in self.spec.test_splits:
            images, masks, predictions = predict_runs({m: runs[0].path for m, runs in self.runs.items()}, split, n=n)
            data = self.dataset(split)
            names = [data[i]["name"] for i in range(len(images))]
            show(prediction_grid(images, masks, predictions, classes=self.spec.classes,
                                     title=f"{self.name}: {split} images"),
                     error_map(images, masks, predictions[last], classes=self.spec.classes, names=names,
                               title=f"{last} (seed {seed}) on {split}: where it is wrong"))
            print("\n".join(prediction_readings(masks, predictions, last, self.spec.classes, patch)))

    def show_paper(self) -> None:
        """Offline: the paper's row for context. At paper scale: each method next to the paper.
        Used in notebooks 03, 04, 05, 06 and 07."""
        from convlora_lite.reports.paper_tables import compare_with_paper

        if self.session.offline:
            print(f"{self.name} is a synthetic analog, trained offline on a small model for a few epochs: its numbers "
                  "are NOT comparable with the paper's (SAM ViT-H, the real data, the full schedule). The paper's row, "
                  "for context only:")
            show(paper_results(self.name))
            return
        for method, runs in self.runs.items():
            table = compare_with_paper([run.path for run in runs])
            print(f"{method} ({table.attrs['model']}) next to the paper (ViT-H); difference to the paper's "
                  f"{table.attrs['paper_row']} row:")
            show(table.round(2))
