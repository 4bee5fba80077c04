"""The live flow widget in a real JupyterLab, in a real (headless) Chromium.

Starts ``jupyter lab`` on a free loopback port with a random token, opens
``tests/fixtures/flow_widget.ipynb`` (outputs cleared) in Debian's Chromium driven by
Playwright, runs all cells from the Run menu, and checks what a learner would see: the flow
widget with "succeeded: 20", the plotly timeline with its bars, and the final-state Sankey.
A screenshot goes to ``tests/artifacts/flow_widget.png``.

Run it alone with ``pytest -m browser tests`` (or ``make test-browser``). What it needs is
installed inside the test run when missing: ``apt-get install chromium`` (root only; after
``apt-get update``) and ``pip install playwright`` (its Python package only: the browser is
Debian's, never ``playwright install``). If that cannot be done, the test is skipped and says why.
"""
from __future__ import annotations

import importlib
import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import nbformat
import pytest

pytestmark = [pytest.mark.browser, pytest.mark.slow, pytest.mark.timeout(900)]  # may apt-install Chromium first

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
FIXTURE = HERE / "fixtures" / "flow_widget.ipynb"
ARTIFACTS = HERE / "artifacts"
CHROMIUM = "/usr/bin/chromium"
PLAYWRIGHT = "playwright==1.65.2"
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync"]


def _say(message: str) -> None:
    """Progress for slow installs, shown even under pytest's output capture."""
    print(f"\n[test_browser] {message}", file=sys.__stderr__, flush=True)


def _run(cmd: list[str], timeout: float) -> tuple[bool, str]:
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout,
                              env=dict(os.environ, DEBIAN_FRONTEND="noninteractive"))
    except (OSError, subprocess.TimeoutExpired) as exc:
        return False, str(exc)
    return proc.returncode == 0, (proc.stdout + proc.stderr)[-1500:]


@pytest.fixture(scope="session")
def chromium() -> str:
    if not os.path.exists(CHROMIUM):
        if os.geteuid() != 0 or not shutil.which("apt-get"):
            pytest.skip(f"{CHROMIUM} is missing and cannot be installed here (needs root and apt-get): "
                        "run `apt-get install chromium` as root")
        _say("chromium is missing: apt-get update && apt-get install -y chromium (once, a minute or two)")
        ok, log = _run(["apt-get", "update", "-q"], timeout=600)
        if ok:
            ok, log = _run(["apt-get", "install", "-y", "-q", "chromium"], timeout=900)
        if not ok or not os.path.exists(CHROMIUM):
            pytest.skip(f"could not install chromium with apt-get: {log.strip().splitlines()[-1:]}")
    return CHROMIUM


@pytest.fixture(scope="session")
def sync_playwright():
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        _say(f"the playwright package is missing: pip install {PLAYWRIGHT} (its driver only, no browser download)")
        ok, log = _run([sys.executable, "-m", "pip", "install", "-q", PLAYWRIGHT], timeout=600)
        if not ok:
            pytest.skip(f"could not pip install {PLAYWRIGHT}: {log.strip().splitlines()[-1:]}")
        importlib.invalidate_caches()
        from playwright.sync_api import sync_playwright
    return sync_playwright


def _get(url: str, timeout: float = 2.0) -> int:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:
            return resp.status
    except Exception:
        return 0


def _processes_mentioning(text: str) -> list[int]:
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if text.encode() in (entry / "cmdline").read_bytes():
                    pids.append(int(entry.name))
            except OSError:
                pass
    return pids


@pytest.fixture
def jupyterlab(tmp_path):
    """A JupyterLab on 127.0.0.1:<free port> whose root holds the fixture with its outputs cleared."""
    from celerylab.ports import free_port

    root = tmp_path / "root"
    root.mkdir()
    nb = nbformat.read(FIXTURE, as_version=4)
    for cell in nb.cells:
        if cell.cell_type == "code":
            cell.outputs, cell.execution_count = [], None
    nbformat.write(nb, root / FIXTURE.name)
    config = tmp_path / "config"
    (config / "labconfig").mkdir(parents=True)
    (config / "labconfig" / "page_config.json").write_text(json.dumps(
        {"disabledExtensions": {"@jupyterlab/apputils-extension:announcements": True}}))
    runtime = tmp_path / "runtime"
    env = dict(os.environ, JUPYTER_CONFIG_DIR=str(config), JUPYTER_RUNTIME_DIR=str(runtime),
               IPYTHONDIR=str(tmp_path / "ipython"), CELERYLAB_LOG_DIR=str(tmp_path / "logs"))
    env.pop("CELERYLAB_BROKER_URL", None)
    env.pop("CELERYLAB_APP_CONF", None)
    port, token = free_port(), secrets.token_hex(16)
    cmd = [str(Path(sys.executable).parent / "jupyter"), "lab", "--ip=127.0.0.1", "--no-browser",
           f"--port={port}", f"--ServerApp.token={token}", f"--ServerApp.root_dir={root}",
           "--ServerApp.port_retries=0", "--LabApp.news_url=None",
           "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate",
           f"--LabApp.workspaces_dir={tmp_path / 'workspaces'}",
           f"--LabApp.user_settings_dir={tmp_path / 'settings'}"]
    if os.geteuid() == 0:
        cmd.append("--allow-root")
    log = open(tmp_path / "jupyterlab.log", "wb")
    server = subprocess.Popen(cmd, env=env, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                              start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while _get(f"{base}/api/status?token={token}") != 200:
            if server.poll() is not None or time.monotonic() > deadline:
                pytest.fail("JupyterLab did not start:\n" + (tmp_path / "jupyterlab.log").read_text()[-3000:])
            time.sleep(0.25)
        yield base, token, root
    finally:
        # A clean shutdown stops the kernel too (its atexit stops the worker and the broker).
        req = urllib.request.Request(f"{base}/api/shutdown", method="POST",
                                     headers={"Authorization": f"token {token}"})
        try:
            urllib.request.urlopen(req, timeout=5).close()
        except Exception:
            pass
        try:
            server.wait(20)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait(5)
        log.close()
        deadline = time.monotonic() + 10
        while _processes_mentioning(str(runtime)) and time.monotonic() < deadline:
            time.sleep(0.2)
        for pid in _processes_mentioning(str(runtime)):  # a kernel that outlived its server
            os.kill(pid, signal.SIGKILL)


def test_flow_widget_in_jupyterlab(chromium, sync_playwright, jupyterlab, tmp_path):
    base, token, _ = jupyterlab
    ARTIFACTS.mkdir(exist_ok=True)
    shot = ARTIFACTS / "flow_widget.png"
    started = time.monotonic()
    with sync_playwright() as pw:
        context = pw.chromium.launch_persistent_context(
            str(tmp_path / "chromium-profile"), executable_path=chromium, headless=True,
            args=CHROMIUM_FLAGS, viewport={"width": 1400, "height": 2300})
        try:
            page = context.pages[0] if context.pages else context.new_page()
            errors = []
            page.on("pageerror", lambda exc: errors.append(str(exc)))
            page.goto(f"{base}/lab/tree/{FIXTURE.name}?token={token}", timeout=60_000)
            page.wait_for_selector(".jp-NotebookPanel .jp-Cell", timeout=60_000)
            # the kernel is connected and idle before we run anything (else Lab asks for a kernel)
            page.locator(".jp-StatusBar-TextItem", has_text="| Idle").first.wait_for(timeout=60_000)

            try:
                _run_all_and_check(page, shot)
            except Exception:
                page.screenshot(path=str(ARTIFACTS / "flow_widget_failure.png"), full_page=True)
                (ARTIFACTS / "flow_widget_failure.html").write_text(page.content())
                raise
            assert not errors, errors
        finally:
            context.close()
    assert shot.exists() and shot.stat().st_size > 10_000
    assert time.monotonic() - started < 120


def _run_all_and_check(page, shot: Path) -> None:
    if True:
        if True:
            page.locator(".lm-MenuBar-item", has_text="Run").first.click()
            page.locator(".lm-Menu-item", has_text="Run All Cells").first.click()
            dialog = page.locator(".jp-Dialog")
            page.wait_for_timeout(500)
            if dialog.count():                 # e.g. "Select Kernel": keep the suggested one
                dialog.locator(".jp-mod-accept").first.click()

            # the live flow widget, redrawn from real events while the cell runs
            flow = page.locator(".widget-html .celerylab-flow")
            flow.filter(has_text="succeeded: 20").first.wait_for(timeout=90_000)
            # the last cell ran: the watch block has ended and the final state is displayed
            page.locator(".jp-OutputArea-output", has_text="succeeded: 20").last.wait_for(timeout=60_000)
            page.wait_for_selector(".jp-RenderedPlotly .sankey .node-label",
                                   timeout=30_000, state="attached")
            page.wait_for_timeout(1000)  # let plotly finish drawing before the screenshot
            page.screenshot(path=str(shot), full_page=True)

            flow_text = flow.first.inner_text()
            assert "succeeded: 20" in flow_text and "failed: 2" in flow_text
            assert "demo@lab" in flow_text and "band 9: sent 2" in flow_text
            plots = page.locator(".js-plotly-plot")
            assert plots.count() >= 3      # timeline + queue depth (FigureWidgets) + final Sankey
            bars = page.locator(".js-plotly-plot .barlayer .point")
            assert bars.count() == 22      # one bar per task run on the Gantt chart
            sankey_labels = page.locator(".jp-RenderedPlotly .sankey .node-label").all_text_contents()
            assert "succeeded: 20" in sankey_labels and "failed: 2" in sankey_labels
            body = page.locator("body").inner_text()
            assert "Error displaying widget" not in body
            assert "sum of results: 380" in body
