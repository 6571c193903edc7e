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

__all__ = ["__version__"]
