"""Exact sign-flip permutation p-values for paired differences: every one of the 2^n ways of flipping the signs of
the n differences, not a random sample of them.

Why by hand: scipy.stats.permutation_test draws random permutations once n is large, and has no one-sided test
against a shifted null (the paper's size) in the form the verdict needs; the exact enumeration is a few lines.
"""

from __future__ import annotations

import math

import numpy as np

MAX_PAIRS = 24  # 2^24 sums: a few seconds; a claim has 5-8 seeds


def _flipped_sums(d: np.ndarray) -> np.ndarray:
    """Σ s_i d_i for every sign vector s in {-1, +1}^n, in chunks so that no 2^n × n matrix is held at once."""
    n = len(d)
    if n > MAX_PAIRS:
        raise ValueError(f"{n} pairs: an exact sign-flip test enumerates 2^{n} sign vectors (at most {MAX_PAIRS})")
    bits = np.arange(n, dtype=np.int64)
    out, chunk = np.empty(2**n), 1 << 16
    for start in range(0, 2**n, chunk):
        codes = np.arange(start, min(start + chunk, 2**n), dtype=np.int64)
        signs = 1.0 - 2.0 * ((codes[:, None] >> bits) & 1)  # bit i set: the i-th difference flipped
        out[start : start + len(codes)] = signs @ d
    return out


def _tolerance(d: np.ndarray) -> float:
    # sums that are equal in exact arithmetic can differ in the last bits; they must count as ties
    return 1e-9 * max(1.0, float(np.abs(d).sum()))


def sign_flip_p(differences: list[float] | np.ndarray) -> float:
    """Two-sided p of H0 "the differences are symmetric about 0": the share of sign flips whose |sum| is at least
    the observed |sum|. The identity and the all-flipped vector always count, so p >= 2 / 2^n."""
    d = np.asarray(differences, float)
    if len(d) == 0:
        return math.nan
    sums = _flipped_sums(d)
    return float(np.mean(np.abs(sums) >= abs(d.sum()) - _tolerance(d)))


def sign_flip_p_below(differences: list[float] | np.ndarray, bound: float) -> float:
    """One-sided p of H0 "the differences are symmetric about `bound`" against "they lie below it": the share of
    sign flips of d - bound whose sum is at most the observed one (p >= 1 / 2^n)."""
    e = np.asarray(differences, float) - bound
    if len(e) == 0:
        return math.nan
    return float(np.mean(_flipped_sums(e) <= e.sum() + _tolerance(e)))


def smallest_p(n: int, two_sided: bool = True) -> float:
    """The smallest p an exact sign-flip test on n pairs can give."""
    return (2.0 if two_sided else 1.0) / 2.0**n
