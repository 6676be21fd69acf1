"""xbench: a plugin-based benchmark harness for cross-modal knowledge distillation on video."""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

from xbench.errors import XbenchError

try:
    __version__ = version("xbench")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0+unknown"

__all__ = ["XbenchError", "__version__"]

from xbench.hookspecs import hookimpl

__all__ += ["hookimpl"]
