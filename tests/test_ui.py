"""The Dagster UI in a real browser: `swarm-learn ui` (webserver + daemon) on loopback for a
materialized data root, driven by headless Debian Chromium through Selenium. Slow (`pytest -m slow`);
`.ci/run` installs Chromium."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from swarm_learn_assets.core.storage.locks import pid_alive

from .processes import descendants

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[1]
ARTIFACTS = REPO / "tests" / "artifacts"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_for(url: str, process: subprocess.Popen, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"the UI exited with {process.returncode}")
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            time.sleep(0.5)
    raise TimeoutError(f"{url} did not answer within {timeout:.0f} s")


def _browser():
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    chromium, driver = shutil.which("chromium"), shutil.which("chromedriver")
    assert chromium and driver, "install Debian's chromium and chromium-driver (see .ci/run)"
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--window-size=1400,1000"):
        options.add_argument(flag)
    return webdriver.Chrome(service=Service(driver), options=options)


def _text_appears(browser, *texts: str, timeout: float = 60) -> str:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    WebDriverWait(browser, timeout).until(
        lambda b: all(t in b.find_element(By.TAG_NAME, "body").text for t in texts)
    )
    return browser.find_element(By.TAG_NAME, "body").text


def test_asset_graph_and_asset_page_show_assets_partitions_and_metadata(tmp_path: Path):
    data, home = tmp_path / "data", tmp_path / "home"
    env = {**os.environ, "DAGSTER_HOME": str(home), "SWARM_LEARN_DATA": str(data)}
    cli = [sys.executable, "-m", "swarm_learn_assets.cli"]
    subprocess.run([*cli, "simulate", "--scenarios", "2", "--sessions", "3", "--seed", "5"], env=env, check=True,
                   capture_output=True)
    subprocess.run([*cli, "materialize"], env=env, check=True, capture_output=True)

    port = _free_port()
    webserver = subprocess.Popen(
        [*cli, "ui", "--host", "127.0.0.1", "--port", str(port)],
        env=env, cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
    )
    browser = None
    try:
        url = f"http://127.0.0.1:{port}"
        _wait_for(f"{url}/server_info", webserver, timeout=180)
        browser = _browser()
        browser.get(f"{url}/asset-groups/sessions")  # the asset graph, one node per group
        _text_appears(browser, "Global asset lineage", "sessions", "scenarios", "training")
        ARTIFACTS.mkdir(exist_ok=True)
        browser.save_screenshot(str(ARTIFACTS / "ui-asset-graph.png"))

        browser.get(f"{url}/assets")
        _text_appears(browser, "raw_records", "episodes", "session_snapshot", "scenario_model", "sft_dataset",
                      "lora_adapter", "applied_adapter")

        browser.get(f"{url}/assets/episodes")  # the latest materialization and its metadata
        page = _text_appears(browser, "Latest materialization", "Row count", "success_rate", "episodes_by_scenario",
                             "worker_task_outcomes", "Latest check results")
        browser.save_screenshot(str(ARTIFACTS / "ui-episodes.png"))
        assert str(data / "episodes") in page  # the output path

        browser.get(f"{url}/assets/episodes?view=partitions")
        partitions = _text_appears(browser, "Materialized (6)", "Missing (0)", "deploy-rollout.s0001",
                                   "troubleshooting.s0003")
        assert "Failed (0)" in partitions
    finally:
        if browser is not None:
            browser.quit()
        tree = descendants(webserver.pid)  # dagster dev, its webserver, daemon and code servers
        webserver.send_signal(signal.SIGTERM)  # as a service manager stops `swarm-learn ui`
        try:
            webserver.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(webserver.pid, signal.SIGKILL)
            raise
    assert len(tree) >= 3, tree
    left = [pid for pid in tree if pid_alive(pid)]
    assert left == [], f"still running after swarm-learn ui stopped: {left}"

