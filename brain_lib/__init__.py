"""Brain: train, judge and keep the prediction models of a crypto trading desk.

The package is split by domain (``features``, ``labels``, ``validation``, ``models``,
``backtest``, ``metrics``, ``training``, ``registry``, ``warehouse``, ``market``);
import what you need from its module. Importing ``brain_lib`` itself is cheap.
"""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("brain")
except PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0.0.0"

__all__ = ["__version__"]
