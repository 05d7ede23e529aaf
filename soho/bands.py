"""Validation bands and claims from a set of reference runs (seeds x CPU kernel settings).

Why: a short CPU training run turns a change of floating-point kernel (AVX-512 vs AVX2, MKL
code path, thread count) into a change as large as a new seed, so a band must hold for runs
nobody has made yet. A band is therefore a two-sided normal *tolerance interval*: with
confidence ``CONFIDENCE`` it contains at least ``COVERAGE`` of all runs, whatever seed or CPU.
Its factor k (Howe 1969) grows as the number of runs shrinks, so a band from few runs is wide
by construction, not by hand:

    k = sqrt((n - 1) * (1 + 1/n) * z_{(1+p)/2}^2 / chi2_{1-gamma, n-1})

    band = mean ± max(k * sd, floor), clipped to the metric's range

with n the number of distinct seeds among the runs (runs of one seed under other kernels are
not independent) and sd over all runs.

The floor (in the metric's own units) covers metrics whose runs agree by luck: a model that
predicts one class in every reference run scores exactly the same each time (sd 0), and the
first run in which it does not can land anywhere within the evaluation set's sampling noise.
It is three binomial standard deviations at p = 0.5 of the smallest evaluation sets
(200 examples or held-out ITM decisions): 3 * 0.5 / sqrt(200) = 0.106, so 10 points downstream
and 0.1 for held-out fractions.

A claim is a comparison the table exists to show ("pre-trained beats no pre-training on VQA").
It is *established* when it holds in every reference run and its mean margin exceeds twice the
margin's standard deviation; ``validate`` then fails any run that breaks it, by name.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Mapping
from dataclasses import dataclass

from scipy import stats

COVERAGE = 0.999  # p: the share of all runs a band must contain (about 90 bands are checked at once)
CONFIDENCE = 0.95  # gamma: confidence that it does, given only n runs
SIGNIFICANCE = 2.0  # an established claim's mean margin exceeds this many standard deviations


def tolerance_factor(n: int, coverage: float = COVERAGE, confidence: float = CONFIDENCE) -> float:
    """Howe's two-sided normal tolerance factor k for ``n`` runs."""
    if n < 2:
        raise ValueError(f"a tolerance interval needs at least 2 runs (got {n})")
    z = stats.norm.ppf((1 + coverage) / 2)
    chi2 = stats.chi2.ppf(1 - confidence, n - 1)
    return math.sqrt((n - 1) * (1 + 1 / n) * z**2 / chi2)


def floor(key: str) -> float:
    """The narrowest half-width a band may have, in the metric's units."""
    return 0.1 if key.startswith("pretrain") else 10.0


def bounds(key: str) -> tuple[float, float]:
    """The values the metric can take: fractions for pre-training, percentages downstream."""
    return (0.0, 1.0) if key.startswith("pretrain") else (0.0, 100.0)


@dataclass(frozen=True)
class BandFit:
    """A metric's band and the statistics it came from (kept in the reference file as ``why``)."""

    low: float
    high: float
    mean: float
    sd: float
    k: float
    why: str


def fit_band(key: str, values: list[float], independent: int | None = None) -> BandFit:
    """The tolerance band of ``key`` from one value per reference run.

    ``independent``: how many of the runs are independent samples (the number of distinct
    seeds). Runs of one seed under other kernels share much of their outcome, so k is taken
    for that many samples, not for every run (a held-out seed broke bands built otherwise).
    """
    n = independent or len(values)
    k = tolerance_factor(n)  # first: its error names the cause when there are too few runs
    mean, sd = statistics.fmean(values), statistics.stdev(values)
    half = max(k * sd, floor(key))
    lowest, highest = bounds(key)
    low, high = max(lowest, mean - half), min(highest, mean + half)
    why = f"mean {mean:.3f} ± max(k {k:.2f} · sd {sd:.3f}, floor {floor(key)}) from {len(values)} runs of {n} seeds"
    return BandFit(round(low, 4), round(high, 4), mean, sd, k, why)


@dataclass(frozen=True)
class Claim:
    """``better`` exceeds ``worse`` (two metric keys), or ``better`` is at least ``at_least``."""

    name: str
    says: str
    better: str
    worse: str | None = None
    at_least: float | None = None

    def margin(self, value_of: Mapping[str, float | None]) -> float | None:
        """How far the claim holds (> 0 for a comparison, >= 0 for a threshold); None if a value is missing."""
        better = value_of.get(self.better)
        if better is None:
            return None
        if self.worse is None:
            return better - float(self.at_least or 0.0)
        worse = value_of.get(self.worse)
        return None if worse is None else better - worse

    def holds(self, margin: float | None) -> bool:
        if margin is None:
            return False
        return margin >= 0 if self.worse is None else margin > 0


def parse_claims(spec: Mapping[str, Mapping], source: str) -> list[Claim]:
    """Claims from a ``name -> {says, better, worse | at_least}`` mapping; a bad entry names itself."""
    found = []
    for name, entry in spec.items():
        if not isinstance(entry, Mapping) or "better" not in entry or "says" not in entry:
            raise ValueError(f"{source}: claim {name!r} needs 'says' and 'better'")
        if (entry.get("worse") is None) == (entry.get("at_least") is None):
            raise ValueError(f"{source}: claim {name!r} needs exactly one of 'worse' or 'at_least'")
        at_least = entry.get("at_least")
        found.append(
            Claim(
                name=str(name),
                says=str(entry["says"]),
                better=str(entry["better"]),
                worse=entry.get("worse"),
                at_least=None if at_least is None else float(at_least),
            )
        )
    return found


@dataclass(frozen=True)
class ClaimEvidence:
    """A claim's margin in each reference run, how often it held, and the margins' mean and sd."""

    margins: dict[str, float | None]
    held: int
    mean: float | None
    sd: float | None

    @property
    def established(self) -> bool:
        """Held in every run, with a mean margin above SIGNIFICANCE standard deviations."""
        if self.held < len(self.margins) or self.mean is None or self.sd is None:
            return False
        return self.mean > SIGNIFICANCE * self.sd


def weigh_claim(claim: Claim, runs: Mapping[str, Mapping[str, float | None]]) -> ClaimEvidence:
    """The claim's margin in each reference run (run name -> metric key -> value)."""
    margins = {name: claim.margin(values) for name, values in runs.items()}
    present = [m for m in margins.values() if m is not None]
    held = sum(claim.holds(m) for m in margins.values())
    if len(present) < 2:
        return ClaimEvidence(margins, held, None, None)
    return ClaimEvidence(margins, held, statistics.fmean(present), statistics.stdev(present))
