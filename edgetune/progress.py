"""Progress bars: a widget in JupyterLab, a text bar on a terminal, and a text bar streamed to `edgetune reproduce`.

`tqdm.auto` already picks the widget inside a Jupyter kernel (ipywidgets is a dependency) and text elsewhere. The
one case it cannot know is a kernel that papermill runs for the command line: there a widget would be invisible to
the person waiting, so the CLI sets `EDGETUNE_PROGRESS=text` and the kernel's bars are written as text to its
stderr, which the CLI streams to the terminal while the cell runs.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterable
from typing import Any

TEXT_ENV = "EDGETUNE_PROGRESS"


def progress(iterable: Iterable | None = None, **kwargs: Any):
    """`tqdm(iterable, **kwargs)` with the bar suited to where it runs (see the module docstring)."""
    if os.environ.get(TEXT_ENV) == "text":
        from tqdm.std import tqdm

        kwargs.setdefault("mininterval", 2.0)  # each update is a message through the kernel: keep them few
        kwargs.setdefault("file", sys.stderr)
        kwargs.setdefault("dynamic_ncols", False)
        kwargs.setdefault("ncols", 100)
        return tqdm(iterable, **kwargs)
    from tqdm.auto import tqdm

    return tqdm(iterable, **kwargs)
