"""``analyze(volume, ...)``: segment -> measure -> report, with progress and cancel; what the CLI and Slicer call."""

from .analyze import Analysis, analyze, get_reporter, prepare_volume

__all__ = ["Analysis", "analyze", "get_reporter", "prepare_volume"]
