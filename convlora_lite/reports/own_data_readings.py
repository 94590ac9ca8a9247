"""What one run on your own data shows (notebook 11): its score against predicting background everywhere on the
same test images, and how far one image moves that score when the test split is small."""
from __future__ import annotations

from convlora_lite.reports.readings import NO_FLOOR, run_baselines
from convlora_lite.reports.results_tables import collect_runs
from convlora_lite.reports.shown_numbers import better, shown
from convlora_lite.training.run_data import run_spec
from convlora_lite.training.rundir import RunDir

#: below this many test images, :func:`own_data_readings` says how far one image moves the score.
SMALL_TEST_SPLIT = 20


def own_data_readings(run_dir) -> list[str]:
    """What one run on your own data shows: per test split, its score on the first reported metric against
    predicting background everywhere on the same images (:func:`run_baselines`), and how far one image can move
    that score when the split is small (binary tasks, whose scores are means over images; a multi-class score is
    counted over the split's pixels). Used in notebook 11."""
    runs = collect_runs([run_dir])
    binary = run_spec(run_dir).task == "binary"
    baselines = run_baselines(run_dir)
    splits = RunDir(run_dir).read_split()["splits"]
    lines = []
    for split, part in runs.groupby("split", sort=False):
        first = part.iloc[0]
        count = len(splits.get(split, []))
        line = (f"{first['dataset']}/{split}: {first['method']} scores {first['metric']} {shown(100 * first['value'])} "
                f"on {count} image{'s' if count != 1 else ''}")
        if baselines is None:
            line += f". {NO_FLOOR}"
        else:
            floor = 100 * float(baselines[split][first["metric"]])
            beats = better(first["metric"], shown(100 * first["value"]), shown(floor))
            line += (f" against {shown(floor)} for predicting background everywhere: it "
                     f"{'beats' if beats else 'does NOT beat'} that floor.")
        if binary and count < SMALL_TEST_SPLIT:
            line += (f" With {count} test image{'s' if count != 1 else ''} one image moves the mean by up to "
                     f"{100 / max(count, 1):.0f} points: give the test split at least {SMALL_TEST_SPLIT} images "
                     "before you read the score.")
        lines.append(line)
    return lines

