"""Drift thresholds: unit-free defaults, per-feature overrides, read from ``monitor: {drift:}``.

A feature is flagged on its **effect size** — how far the distribution moved — with the test's
p-value only as support (it must be small too): with a million rows every p-value is tiny, so a
p-value alone flags everything, while an effect size estimated from a few rows is noisy, so an
effect size alone flags noise. The defaults (see :class:`DriftThresholds`):

========================  =======  ==========================================================
threshold                 default  meaning
========================  =======  ==========================================================
``psi``                   0.2      PSI on reference-quantile bins (numeric and categorical);
                                   0.1–0.2 is the usual "watch", ≥ 0.2 "act"
``wasserstein``           0.2      Wasserstein-1 distance in units of the reference's standard
                                   deviation: a mean shift of 0.2 sd (Cohen's "small" effect)
``js``                    0.15     Jensen–Shannon distance, base 2, in [0, 1] (categorical);
                                   for small shifts it is about ``sqrt(PSI / 5.5)``, so 0.15
                                   sits between PSI 0.1 (0.13) and PSI 0.2 (0.19)
``alpha``                 0.05     family-wise level of the supporting test (KS, chi-square),
                                   Bonferroni-split over the features
``missing_rate``          0.1      rise in the share of missing values (absolute)
``out_of_range``          0.05     share of current values outside the reference's
                                   [min, max] (numeric) or unseen in it (categorical)
``drift_share``           0.3      share of flagged features that means the dataset drifts
``bins``                  10       PSI bins (reference quantiles)
``min_rows``              30       fewest rows on each side for any decision
``min_expected``          5        chi-square columns with a smaller expected count are
                                   summed into one "other" column
========================  =======  ==========================================================

In ``loopml.yaml``::

    monitor:
      drift:
        psi: 0.25
        wasserstein: 0.15
        features:
          age: {wasserstein: 0.3}
          country: {js: 0.2, out_of_range: 0.2}
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, fields, replace
from typing import Any

from loopml.errors import ConfigError

#: Thresholds that a feature may override (the rest are about the whole report).
FEATURE_KEYS = ("psi", "wasserstein", "js", "missing_rate", "out_of_range")


@dataclass(frozen=True)
class FeatureThresholds:
    """The thresholds that decide one feature (all resolved, no ``None``)."""

    psi: float = 0.2
    wasserstein: float = 0.2
    js: float = 0.15
    missing_rate: float = 0.1
    out_of_range: float = 0.05


@dataclass(frozen=True)
class DriftThresholds:
    """Defaults for every feature, per-feature overrides, and the report-wide settings."""

    psi: float = 0.2
    wasserstein: float = 0.2
    js: float = 0.15
    missing_rate: float = 0.1
    out_of_range: float = 0.05
    alpha: float = 0.05
    drift_share: float = 0.3
    bins: int = 10
    min_rows: int = 30
    min_expected: float = 5.0
    features: Mapping[str, Mapping[str, float]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        where = "monitor.drift"
        for key in FEATURE_KEYS:
            _non_negative(getattr(self, key), f"{where}.{key}")
        _between(self.alpha, f"{where}.alpha", 0.0, 1.0, "a number between 0 and 1 (exclusive)")
        if not (_real(self.drift_share) and 0 < self.drift_share <= 1):
            raise _bad(f"{where}.drift_share", self.drift_share, "a number in (0, 1]")
        _integer(self.bins, f"{where}.bins", 2)
        _integer(self.min_rows, f"{where}.min_rows", 1)
        _non_negative(self.min_expected, f"{where}.min_expected")
        if not isinstance(self.features, Mapping):
            raise _bad(f"{where}.features", self.features, "a mapping of feature: {threshold: n}")
        for name, over in self.features.items():
            if not isinstance(over, Mapping):
                raise _bad(f"{where}.features.{name}", over, "a mapping of threshold: number")
            for key, value in over.items():
                if key not in FEATURE_KEYS:
                    raise _unknown(f"{where}.features.{name}", key, FEATURE_KEYS)
                _non_negative(value, f"{where}.features.{name}.{key}")

    def for_feature(self, name: str) -> FeatureThresholds:
        """The thresholds for feature ``name``: its overrides over the defaults."""
        base = FeatureThresholds(**{k: float(getattr(self, k)) for k in FEATURE_KEYS})
        over = self.features.get(name)
        return replace(base, **{k: float(v) for k, v in over.items()}) if over else base

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["features"] = {k: dict(v) for k, v in self.features.items()}
        return data

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any] | None) -> DriftThresholds:
        """Thresholds from the ``monitor.drift`` mapping of ``loopml.yaml`` (``None``: defaults).

        Raises :class:`ConfigError` naming the field for an unknown key or a bad value.
        """
        where = "monitor.drift"
        if data is None:
            return cls()
        if not isinstance(data, Mapping):
            raise _bad(where, data, "a mapping of threshold: value")
        known = tuple(f.name for f in fields(cls))
        for key in data:
            if key not in known:
                raise _unknown(where, key, known)
        kwargs = dict(data)
        if "features" in kwargs and kwargs["features"] is None:
            kwargs["features"] = {}
        return cls(**kwargs)


def thresholds_from_config(config: Mapping[str, Any] | None) -> DriftThresholds:
    """:class:`DriftThresholds` from a whole project mapping (its ``monitor: {drift: ...}``)."""
    if config is None:
        return DriftThresholds()
    monitor = config.get("monitor")
    if monitor is None:
        return DriftThresholds()
    if not isinstance(monitor, Mapping):
        raise _bad("monitor", monitor, "a mapping with a 'drift' section")
    return DriftThresholds.from_mapping(monitor.get("drift"))


def _real(value: Any) -> bool:
    ok = isinstance(value, numbers.Real) and not isinstance(value, bool)
    return ok and math.isfinite(float(value))


def _non_negative(value: Any, where: str) -> None:
    if not (_real(value) and value >= 0):
        raise _bad(where, value, "a number >= 0")


def _between(value: Any, where: str, lo: float, hi: float, expected: str) -> None:
    if not (_real(value) and lo < value < hi):
        raise _bad(where, value, expected)


def _integer(value: Any, where: str, least: int) -> None:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < least:
        raise _bad(where, value, f"an integer of at least {least}")


def _bad(where: str, value: Any, expected: str) -> ConfigError:
    return ConfigError(
        f"{where} must be {expected}, got {value!r}",
        where={"field": where},
        hint=f"set {where} to {expected} in loopml.yaml, or remove it for the default",
    )


def _unknown(where: str, key: Any, known: tuple[str, ...]) -> ConfigError:
    return ConfigError(
        f"unknown key {key!r} in {where}",
        where={"field": f"{where}.{key}"},
        hint=f"known keys: {', '.join(known)}",
    )


__all__ = ["FEATURE_KEYS", "DriftThresholds", "FeatureThresholds", "thresholds_from_config"]
