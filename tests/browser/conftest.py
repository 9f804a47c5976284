"""Fixtures for the browser tests: real marimo / JupyterLab servers and Debian's Chromium.

Every server (:mod:`.servers`) runs in a private temporary folder (its own copy of the demo
notebook, its own lake through ``SQLROOMS_NB_LAKE``, its own Jupyter settings) on a free port and
is stopped at teardown.

Pages come from the ``open_page`` factory. Each records its browser console; at teardown every
page is screenshotted to ``test-artifacts/<test>-<page>.png`` with its console log beside it
(``.log``), and each server's output is saved as ``test-artifacts/<test>-<server>.log``.
"""

from __future__ import annotations

import re
import shutil
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, ConsoleMessage, Page, Playwright, sync_playwright

from .servers import (
    CHROMIUM,
    CHROMIUM_ARGS,
    REPO,
    VIEWPORT,
    Server,
    free_port,
    marimo_server,
    read_lake,
    server_env,
)

ARTIFACTS = REPO / "test-artifacts"


def _artifact_name(request: pytest.FixtureRequest, suffix: str) -> Path:
    ARTIFACTS.mkdir(exist_ok=True)
    test = re.sub(r"[^A-Za-z0-9_.-]+", "_", request.node.name)
    return ARTIFACTS / f"{test}-{suffix}"


@pytest.fixture
def artifact(request: pytest.FixtureRequest) -> Callable[[str], Path]:
    """``artifact("page-a-before-stop.png")`` -> a path in test-artifacts/ named after the test."""
    return lambda suffix: _artifact_name(request, suffix)


@pytest.fixture(scope="session")
def playwright() -> Iterator[Playwright]:
    with sync_playwright() as p:
        yield p


@pytest.fixture(scope="session")
def browser(playwright: Playwright) -> Iterator[Browser]:
    if not CHROMIUM.exists():
        pytest.fail(
            f"{CHROMIUM} is missing: `make test` installs it (apt-get install chromium), "
            "or set SQLROOMS_NB_CHROMIUM"
        )
    browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
    yield browser
    browser.close()


@pytest.fixture
def open_page(
    browser: Browser, request: pytest.FixtureRequest
) -> Iterator[Callable[[str, str], Page]]:
    """``open_page(name, url)`` -> a Page in its own browser context (another person), with its
    console recorded. Screenshots and logs go to test-artifacts/ at teardown."""
    opened: list[tuple[str, Page, list[str]]] = []

    def open_(name: str, url: str) -> Page:
        context = browser.new_context(viewport=VIEWPORT)
        page = context.new_page()
        log: list[str] = []

        def on_console(message: ConsoleMessage) -> None:
            log.append(f"{time.strftime('%H:%M:%S')} {message.type}: {message.text}")

        page.on("console", on_console)
        page.on("pageerror", lambda error: log.append(f"pageerror: {error}"))
        opened.append((name, page, log))
        page.goto(url)
        return page

    yield open_
    for name, page, log in opened:
        try:
            _screenshots(page, request, name)
        except Exception as exc:  # a crashed page still gets its log written
            log.append(f"screenshot failed: {exc}")
        _artifact_name(request, f"{name}.log").write_text("\n".join(log) + "\n")
        page.context.close()


def _screenshots(page: Page, request: pytest.FixtureRequest, name: str) -> None:
    """The page (scrolled to the widget, if there is one) and the widget alone."""
    root = page.locator("[data-testid=snb-root]")
    if root.count():
        root.first.scroll_into_view_if_needed(timeout=5_000)
    page.screenshot(path=_artifact_name(request, f"{name}.png"), full_page=True)
    if root.count():
        root.first.screenshot(path=_artifact_name(request, f"{name}-widget.png"), timeout=5_000)


def _save_server_artifacts(request: pytest.FixtureRequest, server: Server) -> None:
    """The server's output, and what its lake holds once it has stopped."""
    shutil.copyfile(server.log_path, _artifact_name(request, f"{server.name}.log"))
    if (server.lake / "catalog.sqlite").exists():
        _artifact_name(request, f"{server.name}-lake.txt").write_text(read_lake(server.lake))


def _running(server: Server, request: pytest.FixtureRequest) -> Iterator[Server]:
    """Start ``server``, yield it, then stop it and save its log and lake to test-artifacts/."""
    server.start()
    try:
        yield server
    finally:
        server.stop()
        _save_server_artifacts(request, server)


@pytest.fixture
def marimo_demo(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Server]:
    """A running ``marimo edit demo.py`` on a copy of notebooks/demo.py with a private lake."""
    folder = tmp_path / "marimo"
    folder.mkdir()
    shutil.copy(REPO / "notebooks" / "demo.py", folder / "demo.py")
    lake = tmp_path / "lake"
    server = marimo_server(folder, "demo.py", lake, tmp_path / "marimo.log")
    yield from _running(server, request)


@pytest.fixture
def jupyter_demo(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Server]:
    """A running JupyterLab serving a folder with a copy of notebooks/demo.ipynb, a private lake
    and private Jupyter config/data/runtime/settings/workspace folders (no user kernelspecs,
    no saved layouts). ``window.jupyterapp`` is exposed so tests can run JupyterLab commands."""
    folder = tmp_path / "jupyter"
    folder.mkdir()
    shutil.copy(REPO / "notebooks" / "demo.ipynb", folder / "demo.ipynb")
    lake = tmp_path / "lake"
    state = tmp_path / "jupyter-state"
    # No "get notified about official Jupyter news?" toast over the notebook.
    news = state / "settings" / "@jupyterlab" / "apputils-extension"
    news.mkdir(parents=True)
    (news / "notification.jupyterlab-settings").write_text(
        '{"fetchNews": "false", "checkForUpdates": false}'
    )
    port = free_port()
    server = Server(
        name="jupyterlab",
        argv=[
            sys.executable,
            "-m",
            "jupyterlab",
            "--no-browser",
            "--allow-root",
            "--IdentityProvider.token=",
            "--ServerApp.password=",
            "--ServerApp.port_retries=0",
            "--ServerApp.ip=127.0.0.1",
            f"--ServerApp.port={port}",
            f"--ServerApp.root_dir={folder}",
            "--LabApp.expose_app_in_browser=True",
        ],
        cwd=folder,
        env=server_env(
            lake,
            JUPYTER_CONFIG_DIR=str(state / "config"),
            JUPYTER_DATA_DIR=str(state / "data"),
            JUPYTER_RUNTIME_DIR=str(state / "runtime"),
            JUPYTERLAB_SETTINGS_DIR=str(state / "settings"),
            JUPYTERLAB_WORKSPACES_DIR=str(state / "workspaces"),
        ),
        port=port,
        ready_path="/api/status",
        log_path=tmp_path / "jupyterlab.log",
        lake=lake,
    )
    yield from _running(server, request)
