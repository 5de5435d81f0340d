"""Monitoring: drift statistics, drift checks and reports."""

from loopml.monitor.check import DriftCheck, check_drift
from loopml.monitor.drift import DriftReport, FeatureDrift, compute_drift

__all__ = ["DriftCheck", "DriftReport", "FeatureDrift", "check_drift", "compute_drift"]
