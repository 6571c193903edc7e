"""DIN Lab: the Decentralized Intelligence Network, run for real on one machine.

Layers (imports run downhill only, enforced by import-linter):
``config, errors, cid`` <- ``chain, storage, secagg, he, learning, scoring`` <- ``roles``
<- ``protocol`` <- ``experiment`` <- ``widgets, cli``.
"""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("din-lab")
except PackageNotFoundError:  # running from a source tree without installation
    __version__ = "0.0.0+unknown"

__all__ = ["PLAINTEXT_BASELINE", "ExperimentConfig", "__version__", "run"]  # noqa: F822 - lazy, see __getattr__


def __getattr__(name: str):
    """``din_lab.run(config)``, ``din_lab.ExperimentConfig`` and ``din_lab.PLAINTEXT_BASELINE``, imported on first use (so that
    ``import din_lab`` stays light and the lower layers, which read ``__version__``, never pull in
    the experiment layer)."""
    import importlib

    if name == "run":
        return importlib.import_module("din_lab.experiment").run
    if name in ("ExperimentConfig", "PLAINTEXT_BASELINE"):
        return getattr(importlib.import_module("din_lab.config"), name)
    raise AttributeError(f"module 'din_lab' has no attribute {name!r}")
