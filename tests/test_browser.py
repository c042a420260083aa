"""The motivation notebook as a reader meets it: JupyterLab started headless, the notebook opened in headless Chromium,
Run All, then the figures must be on the page and no cell may end in an error.

Needs Debian's `chromium` and `chromium-driver` (`make notebooks` installs them where it can); without them the test
skips and says so. Run by `make notebooks` (marker `notebook`).
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

pytestmark = pytest.mark.notebook
ROOT = Path(__file__).resolve().parent.parent
CHROMIUM, DRIVER = shutil.which("chromium"), shutil.which("chromedriver")
NOTEBOOK = "01_motivation.ipynb"
FIGURES = 5  # figures the motivation notebook saves (and so must show)


@pytest.fixture
def lab(tmp_path):
    """JupyterLab on a free localhost port with a token, rooted at a folder holding a smoke-profile copy."""
    import papermill as pm

    from edgetune.kernel import ensure_kernel

    ensure_kernel(quiet=True)  # into this test's own Jupyter folder (conftest sets JUPYTER_DATA_DIR)

    workdir = tmp_path / "lab"
    workdir.mkdir()
    pm.execute_notebook(
        str(ROOT / "notebooks" / NOTEBOOK),
        str(workdir / NOTEBOOK),
        parameters={"profile": "smoke", "force": True},  # train, so a progress bar shows
        prepare_only=True,
        kernel_name="edgetune",
        language="python",
    )
    settings = tmp_path / "settings" / "@jupyterlab" / "notebook-extension"
    settings.mkdir(parents=True)
    # render every cell (JupyterLab 4 only renders the cells in view by default), so all outputs are in the DOM
    (settings / "tracker.jupyterlab-settings").write_text(json.dumps({"windowingMode": "none"}))
    news = tmp_path / "settings" / "@jupyterlab" / "apputils-extension"
    news.mkdir(parents=True)
    (news / "notification.jupyterlab-settings").write_text(json.dumps({"fetchNews": "false"}))
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    token = secrets.token_hex(16)
    env = {
        **os.environ,
        "JUPYTERLAB_SETTINGS_DIR": str(tmp_path / "settings"),
        "EDGETUNE_FIGURES": os.environ.get("EDGETUNE_CI_FIGURES") or str(tmp_path / "figures"),
        "EDGETUNE_RUNS": os.environ.get("EDGETUNE_CI_RUNS") or str(tmp_path / "runs"),
    }
    log = (tmp_path / "lab.log").open("w")
    server = subprocess.Popen(
        [
            sys.executable, "-m", "jupyterlab", "--no-browser", "--allow-root", f"--port={port}",
            "--ServerApp.ip=127.0.0.1", f"--ServerApp.root_dir={workdir}", f"--IdentityProvider.token={token}",
            "--LabApp.expose_app_in_browser=True",
        ],
        env=env, stdout=log, stderr=subprocess.STDOUT,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        _wait(lambda: _ok(f"{url}/api/status?token={token}"), 90, "JupyterLab did not start", tmp_path / "lab.log")
        yield f"{url}/lab/tree/{NOTEBOOK}?token={token}", tmp_path
    finally:
        server.terminate()
        server.wait(timeout=30)
        log.close()


def _ok(url: str) -> bool:
    try:
        return urllib.request.urlopen(url, timeout=2).status == 200
    except OSError:
        return False


def _wait(check, timeout: float, message: str, log: Path | None = None):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.5)
    tail = log.read_text()[-3000:] if log and log.exists() else ""
    raise AssertionError(f"{message} within {timeout:.0f} s\n{tail}")


STATE = """
const app = window.jupyterapp;
const panel = app && [...app.shell.widgets('main')].find(w => w.content && w.sessionContext);
if (!panel || !panel.content || !panel.sessionContext || !panel.sessionContext.session) return null;
const kernel = panel.sessionContext.session.kernel;
const cells = panel.content.widgets.filter(c => c.model.type === 'code');
return {
  status: kernel ? kernel.status : 'none',
  pending: cells.filter(c => c.model.executionCount === null).length,
  errors: cells.flatMap(c => c.model.outputs.toJSON()).filter(o => o.output_type === 'error')
               .map(o => o.ename + ': ' + o.evalue),
  warnings: cells.flatMap(c => c.model.outputs.toJSON())
               .filter(o => o.output_type === 'stream' && /Warning|IProgress not found/.test(String(o.text))),
  widgets: cells.flatMap(c => c.model.outputs.toJSON())
               .filter(o => o.data && o.data['application/vnd.jupyter.widget-view+json']).length,
  rendered_widgets: document.querySelectorAll('.jp-OutputArea-output .jupyter-widgets').length,
  mimes: cells.flatMap(c => c.model.outputs.toJSON())
               .map(o => o.output_type + ':' + Object.keys(o.data || {}).join('+')),
  images: [...document.querySelectorAll('.jp-OutputArea-output img')]
               .filter(i => i.complete && i.naturalWidth > 0 && i.getBoundingClientRect().height > 0).length,
};
"""


@pytest.mark.skipif(
    not (CHROMIUM and DRIVER),
    reason="no browser: install Debian's chromium and chromium-driver (`make system-deps` as root) to run it",
)
def test_run_all_in_jupyterlab_shows_figures_and_no_error(lab):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    url, tmp_path = lab
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in (
        "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync", "--disable-quic",
        "--window-size=1400,1000", f"--user-data-dir={tmp_path / 'chromium'}",
    ):  # fmt: skip
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(DRIVER), options=options)
    try:
        driver.get(url)
        _wait(lambda: (s := driver.execute_script(STATE)) and s["status"] == "idle", 120, "the kernel did not start")
        driver.execute_script("return window.jupyterapp.commands.execute('notebook:run-all-cells')")
        state = _wait(
            lambda: (s := driver.execute_script(STATE)) and s["pending"] == 0 and s["status"] == "idle" and s,
            600,
            "Run All did not finish",
        )
        driver.save_screenshot(str(tmp_path / "lab.png"))
        assert state["errors"] == []
        assert state["warnings"] == []
        assert state["widgets"] >= 1 and state["rendered_widgets"] >= 1, f"no progress widget: {state}"
        assert state["images"] >= FIGURES, f"{state['images']} figures visible, expected {FIGURES}"
        shutil.copy(tmp_path / "lab.png", _screenshot_dir() / "jupyterlab_motivation.png")
    finally:
        driver.quit()


def _screenshot_dir() -> Path:
    """Kept beside the CI run for a person to look at."""
    folder = Path(os.environ.get("EDGETUNE_CI_RUNS") or ROOT / "runs") / "browser"
    folder.mkdir(parents=True, exist_ok=True)
    return folder
