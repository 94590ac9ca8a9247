"""How a reading shows and compares scores: x100, rounded to :data:`DIGITS` decimals, and every difference, tie or
lead taken between the numbers so rounded, so that what a sentence says adds up on the page (96.1 against 96.1 is a
tie, never "ahead by 0.1"; 82.3 against 84.5 is -2.2). Used by :mod:`.readings`, :mod:`.paired_readings`,
:mod:`.figure_readings` and :mod:`.domain_readings`."""
from __future__ import annotations

from convlora_lite.training.metrics import METRIC_DIRECTIONS

#: the decimals a reading prints of a score x100.
DIGITS = 1


def shown(value: float) -> float:
    """``value`` (x100) as a reading prints it: rounded to :data:`DIGITS` decimals."""
    return round(float(value), DIGITS)


def better(metric: str, a: float, b: float) -> bool:
    """Whether score ``a`` is better than ``b`` on ``metric`` (higher, or lower for a lower-is-better metric)."""
    return a > b if METRIC_DIRECTIONS.get(metric, "max") == "max" else a < b


def lower_note(metric: str) -> str:
    """What a sentence adds after a lower-is-better metric's name (BER, MAE); nothing for the others."""
    return " (lower is better)" if METRIC_DIRECTIONS.get(metric) == "min" else ""
