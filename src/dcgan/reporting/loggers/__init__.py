"""Where a run's numbers, images and messages go: a small interface (base.py) and one file per
backend (tensorboard.py). The loop and the hooks talk to a `Loggers` fan-out only."""

from dcgan.reporting.loggers.base import SCALAR_TAGS, Logger, Loggers

__all__ = ["SCALAR_TAGS", "Logger", "Loggers"]
