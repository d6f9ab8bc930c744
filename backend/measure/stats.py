"""Spread of repeated measurements: mean ± 95 % confidence interval (Student's t) and CV.

Pure Python (the TUI imports it): the two-sided 97.5 % quantiles of Student's t are tabulated for
1–30 degrees of freedom (the repeats anyone runs) and approached by the normal 1.960 beyond; the
table is checked against ``scipy.stats.t.ppf`` in the tests. Importing scipy here would cost the UI
~0.5 s for thirty constants.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from statistics import mean, stdev

# t_{0.975, df} for df = 1..30
_T975 = (12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228,
         2.201, 2.179, 2.160, 2.145, 2.131, 2.120, 2.110, 2.101, 2.093, 2.086,
         2.080, 2.074, 2.069, 2.064, 2.060, 2.056, 2.052, 2.048, 2.045, 2.042)


def t975(df: int) -> float:
    """The two-sided 95 % quantile of Student's t with ``df`` degrees of freedom."""
    if df < 1:
        raise ValueError("t quantile needs at least 1 degree of freedom")
    return _T975[df - 1] if df <= len(_T975) else 1.960


@dataclass(frozen=True)
class Spread:
    """n values summarised: mean, sample standard deviation, 95 % CI half-width, CV."""

    n: int
    mean: float
    sd: float | None
    ci95: float | None      # half-width: mean ± ci95
    cv: float | None        # sd / mean

    @property
    def se(self) -> float | None:
        return None if self.sd is None else self.sd / math.sqrt(self.n)

    def label(self, digits: int = 4, scale: float = 1.0) -> str:
        """'1.2345 ± 0.0123 (CV 1.0 %, n=3)', or the bare mean when n < 2."""
        m = self.mean * scale
        if self.ci95 is None:
            return f"{m:.{digits}f} (n=1)"
        cv = "—" if self.cv is None else f"{self.cv * 100:.1f} %"
        return f"{m:.{digits}f} ± {self.ci95 * scale:.{digits}f} (CV {cv}, n={self.n})"


def spread(values: list[float | None]) -> Spread | None:
    """The spread of the measured values (None values are skipped); None when there are none."""
    vals = [float(v) for v in values if v is not None and not math.isnan(v)]
    if not vals:
        return None
    m = mean(vals)
    if len(vals) < 2:
        return Spread(n=1, mean=m, sd=None, ci95=None, cv=None)
    sd = stdev(vals)
    return Spread(n=len(vals), mean=m, sd=sd, ci95=t975(len(vals) - 1) * sd / math.sqrt(len(vals)),
                  cv=sd / m if m else None)


def within_noise(a: Spread | None, b: Spread | None) -> tuple[float, float, bool] | None:
    """(Δ = a − b, band, |Δ| ≤ band) with band = 2·√(se_a² + se_b²) — the rule Compare already
    applies to accuracy differences; None unless both sides have at least two repeats."""
    if a is None or b is None or a.se is None or b.se is None:
        return None
    band = 2 * math.sqrt(a.se ** 2 + b.se ** 2)
    delta = a.mean - b.mean
    return delta, band, abs(delta) <= band


@dataclass(frozen=True)
class RatioInterval:
    """A paired energy ratio B/A: exp(mean log-ratio) with the t-interval of the mean log-ratio, mapped back.

    Why the log: a ratio's noise is multiplicative, and the mean of log-ratios keeps A/B and B/A
    symmetric (their intervals are each other's reciprocals)."""

    n: int
    ratio: float
    low: float | None
    high: float | None

    @property
    def half_width(self) -> float | None:
        """The interval's relative half-width, (high − low) / 2 / ratio: 0.03 = ±3 %."""
        if self.low is None or self.high is None:
            return None
        return (self.high - self.low) / 2 / self.ratio


def paired_ratio_interval(pairs: list[tuple[float | None, float | None]]) -> RatioInterval | None:
    """The 95 % interval of the ratio ``b / a`` over ``(a, b)`` pairs measured together (the stopping rule
    of ``--repeats auto``). Pairs with a missing or non-positive side are left out; None when none is left;
    no interval (``low``/``high`` None) with a single pair."""
    logs = [math.log(b / a) for a, b in pairs
            if a is not None and b is not None and a > 0 and b > 0 and math.isfinite(a) and math.isfinite(b)]
    if not logs:
        return None
    m = mean(logs)
    if len(logs) < 2:
        return RatioInterval(n=1, ratio=math.exp(m), low=None, high=None)
    half = t975(len(logs) - 1) * stdev(logs) / math.sqrt(len(logs))
    return RatioInterval(n=len(logs), ratio=math.exp(m), low=math.exp(m - half), high=math.exp(m + half))
