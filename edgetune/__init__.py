"""edgetune: a Jupyter-first, reproducible companion to ACME, BlockTrainer, Deep Model Assembling and STRATO-PEFT."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("edgetune")
except PackageNotFoundError:  # a source tree that was never installed
    __version__ = "0+unknown"
