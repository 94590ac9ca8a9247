"""What a handful of seeds can say about the difference between two methods (``docs/metrics.md``, "Seed statistics").

Two methods trained on the same seeds share their data order and initial weights, so their difference is read
per seed (a paired comparison): method A minus method B on each seed, then

* :func:`paired_comparison`: per (dataset, split, metric) of a
  :func:`~convlora_lite.reports.results_tables.collect_runs` table, the per-seed differences, their mean, sample
  standard deviation and :data:`CONFIDENCE` two-sided t interval (:func:`difference_interval`), each method's own
  standard deviation over the seeds, and the minimum detectable difference at that spread
  (:func:`minimum_detectable_difference`);
* :func:`minimum_detectable_difference`: the smallest true difference a paired t-test on ``n`` seeds finds with
  probability :data:`POWER` at the two-sided level :data:`LEVEL`, exact from the noncentral t distribution.

Every sentence that uses the power and the level names them: :data:`POWER_AND_LEVEL`.
"""
from __future__ import annotations

import numpy as np
import pandas as pd
from scipy import optimize, stats

#: the power at which :func:`minimum_detectable_difference` is computed.
POWER = 0.8
#: the two-sided significance level of the paired t-test.
LEVEL = 0.05
#: the coverage of :func:`difference_interval`: 1 - :data:`LEVEL`.
CONFIDENCE = 1 - LEVEL
#: the words every sentence that uses :data:`POWER` and :data:`LEVEL` says.
POWER_AND_LEVEL = f"{100 * POWER:.0f} % power, {100 * LEVEL:.0f} % two-sided level"


def difference_interval(differences, confidence: float = CONFIDENCE) -> tuple[float, float] | None:
    """The two-sided t confidence interval of the mean of ``differences`` (n,): mean +- t_{(1+c)/2, n-1} sd/sqrt(n)
    with the sample sd (ddof 1); ``None`` for fewer than 2 values."""
    values = np.asarray(differences, dtype=float)
    if len(values) < 2:
        return None
    half = stats.t.ppf((1 + confidence) / 2, len(values) - 1) * values.std(ddof=1) / np.sqrt(len(values))
    return float(values.mean() - half), float(values.mean() + half)


def paired_power(difference: float, sd: float, n: int, level: float = LEVEL) -> float:
    """The probability that a two-sided paired t-test at ``level`` on ``n`` seeds rejects "no difference" when the
    true mean difference is ``difference`` and the differences' sd is ``sd``: with the noncentrality
    nc = difference sqrt(n) / sd and df = n - 1, P(T > t_crit) + P(T < -t_crit) for T ~ noncentral t(df, nc).
    The lower tail is taken as the upper tail at -nc, where scipy stays finite."""
    df, noncentrality = n - 1, difference * np.sqrt(n) / sd
    critical = stats.t.ppf(1 - level / 2, df)
    return float(stats.nct.sf(critical, df, noncentrality) + stats.nct.sf(critical, df, -noncentrality))


def minimum_detectable_difference(sd: float, n: int, power: float = POWER, level: float = LEVEL) -> float | None:
    """The smallest true mean difference a two-sided paired t-test at ``level`` on ``n`` seeds detects with
    probability ``power``, when the per-seed differences have standard deviation ``sd`` (in the differences' units;
    0 for ``sd`` 0). Solved exactly for the noncentral t (:func:`paired_power`) with Brent's method; ``None`` for
    ``n`` < 2 (no test) or an unknown ``sd``. For large ``n`` it approaches (z_{1-level/2} + z_power) sd / sqrt(n)."""
    if n < 2 or not np.isfinite(sd):
        return None
    high = 1.0  # in units of sd: doubled until the power is reached, then bracketed
    while paired_power(high, 1.0, n, level) < power:
        high *= 2
    effect = optimize.brentq(lambda d: paired_power(d, 1.0, n, level) - power, 0.0, high, xtol=1e-10)
    return float(effect * sd)


def paired_comparison(runs: pd.DataFrame, a: str, b: str) -> pd.DataFrame:
    """Method ``a`` minus method ``b`` on the seeds both ran, per (dataset, split, metric) of a
    :func:`~convlora_lite.reports.results_tables.collect_runs` table, every value x100.

    One row per (dataset, split, metric) where both methods have runs, columns: dataset, split, metric, seeds
    (the paired seeds, sorted), n, mean_a, mean_b (over the paired seeds), sd_a, sd_b (each method's sample sd over
    those seeds), differences (a - b per seed, in the order of ``seeds``), mean (of the differences), sd (their
    sample sd), low, high (:func:`difference_interval`) and mdd (:func:`minimum_detectable_difference` at ``sd``);
    sd, low, high are NaN and mdd ``None`` for one paired seed. n is 0 where the methods share no seed."""
    keys = ["dataset", "split", "metric"]
    rows = []
    pair = runs[runs["method"].isin([a, b])]
    for key, part in pair.groupby(keys, sort=False):
        table = part.pivot_table(index="seed", columns="method", values="value", aggfunc="mean") * 100
        if not {a, b} <= set(table.columns):
            continue
        table = table[[a, b]].dropna().sort_index()
        differences = (table[a] - table[b]).to_numpy()
        interval = difference_interval(differences) or (np.nan, np.nan)
        sd = float(differences.std(ddof=1)) if len(differences) > 1 else np.nan
        rows.append(dict(zip(keys, key), seeds=tuple(table.index), n=len(table), mean_a=table[a].mean(),
                         mean_b=table[b].mean(), sd_a=table[a].std(), sd_b=table[b].std(),
                         differences=tuple(differences), mean=float(differences.mean()) if len(table) else np.nan,
                         sd=sd, low=interval[0], high=interval[1], mdd=minimum_detectable_difference(sd, len(table))))
    return pd.DataFrame(rows, columns=[*keys, "seeds", "n", "mean_a", "mean_b", "sd_a", "sd_b", "differences", "mean",
                                       "sd", "low", "high", "mdd"])
