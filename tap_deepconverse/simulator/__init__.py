"""A local simulator of the DeepConverse Export API, for tests and demos."""

from .dataset import Dataset, format_record, format_time, generate_dataset
from .server import (
    API_PATHS,
    DEFAULT_API_KEY,
    FAULT_KINDS,
    HOSTILE_KINDS,
    STATS_PATH,
    RequestLogEntry,
    Simulator,
    SimulatorOptions,
)

__all__ = [
    "API_PATHS",
    "DEFAULT_API_KEY",
    "FAULT_KINDS",
    "HOSTILE_KINDS",
    "STATS_PATH",
    "Dataset",
    "RequestLogEntry",
    "Simulator",
    "SimulatorOptions",
    "format_record",
    "format_time",
    "generate_dataset",
]
