"""The Jupyter kernel `edgetune`: this environment's Python, under one name for papermill, nbval and JupyterLab.

The kernelspec goes to the user's Jupyter folder, so a JupyterLab installed anywhere else lists it too. It names
its interpreter by absolute path; `ensure_kernel` rewrites it when it points at another environment (another
checkout's `.venv`, a bare system Python), so a notebook never runs on code other than this environment's.
"""

from __future__ import annotations

import sys
from pathlib import Path

KERNEL = "edgetune"
DISPLAY_NAME = "Python (edgetune)"


def ensure_kernel(quiet: bool = False) -> str:
    """Register this interpreter as the kernel `edgetune` unless it already is; returns the kernel's Python."""
    from jupyter_client.kernelspec import KernelSpecManager, NoSuchKernel

    try:
        spec = KernelSpecManager().get_kernel_spec(KERNEL)
        if same_environment(spec.argv[0]):
            return spec.argv[0]
    except NoSuchKernel:
        pass
    from ipykernel.kernelspec import install

    install(user=True, kernel_name=KERNEL, display_name=DISPLAY_NAME)
    if not quiet:
        print(f"edgetune: registered the Jupyter kernel {KERNEL!r} for {sys.executable}", file=sys.stderr)
    return sys.executable


def same_environment(executable: str) -> bool:
    """Whether `executable` is this environment's interpreter. Compared by environment folder (`sys.prefix`), not
    by resolving symlinks: every venv's `python` links to the same base interpreter."""
    path = Path(executable)
    return path.is_absolute() and path.parent.parent.absolute() == Path(sys.prefix).absolute()
