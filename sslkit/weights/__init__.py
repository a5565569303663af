"""Initialising a backbone from external weights (``init_from``), with a report of what was loaded."""

from sslkit.state_loading import LoadResult, load_by_name
from sslkit.weights.init_from import DEFAULT_MIN_FRACTION, initialise
from sslkit.weights.report import REPORT_FILE, InitReport
from sslkit.weights.sources import SourceWeights, read_weights

__all__ = ["DEFAULT_MIN_FRACTION", "REPORT_FILE", "InitReport", "LoadResult", "SourceWeights", "initialise",
           "load_by_name", "read_weights"]
