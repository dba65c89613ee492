"""Summaries of per-letter scores and paired comparisons between two systems."""

import math
from collections.abc import Sequence

import numpy as np


def _is_missing(value: float | None) -> bool:
    return value is None or math.isnan(value)


def describe(values: Sequence[float | None]) -> dict:
    """Mean, sample std (ddof=1), median and count of the values that are not None/NaN.

    Statistics that need more values than are present (any with n=0, std with n=1) are None.
    """
    present = np.array([v for v in values if not _is_missing(v)], dtype=float)
    n = len(present)
    return {
        "mean": float(present.mean()) if n else None,
        "std": float(present.std(ddof=1)) if n > 1 else None,
        "median": float(np.median(present)) if n else None,
        "n": n,
    }


def bootstrap_diff_ci(
    a: Sequence[float | None],
    b: Sequence[float | None],
    n_resamples: int = 2000,
    seed: int = 0,
    confidence: float = 0.95,
) -> dict:
    """Paired mean difference b - a with a percentile bootstrap confidence interval.

    a[i] and b[i] score the same row; rows missing either value are left out (n says how many
    pairs remain). Resampling whole rows keeps the pairing, so row difficulty cancels out.
    """
    if len(a) != len(b):
        raise ValueError(f"paired samples differ in length: {len(a)} vs {len(b)}")
    differences = np.array(
        [y - x for x, y in zip(a, b) if not (_is_missing(x) or _is_missing(y))], dtype=float
    )
    if len(differences) == 0:
        raise ValueError("no row has both values")
    rng = np.random.default_rng(seed)
    resampled_rows = rng.integers(0, len(differences), size=(n_resamples, len(differences)))
    resampled_means = differences[resampled_rows].mean(axis=1)
    tail = (1 - confidence) / 2
    low, high = np.quantile(resampled_means, [tail, 1 - tail])
    return {"diff": float(differences.mean()), "low": float(low), "high": float(high), "n": len(differences)}
