"""In headless Chromium (Selenium): the MLflow UI of a tiny run (the experiment opens on its training
runs, the parent run shows its summary metrics, a child run its eval metric) and a report that fits a
1400-px page.

Screenshots go to ``$RLBENCH_MED_SCREENSHOTS`` when set, else the test's tmp dir; the tests print their paths.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from rlbench_med.cli import main
from rlbench_med.reports.tracking import child_runs, find_parent_run
from tests.reports.conftest import PLUGIN

CHROME_FLAGS = ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                "--disable-background-networking", "--disable-component-update", "--disable-sync",
                "--window-size=1600,1000", "--disable-dev-shm-usage")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_http(url: str, proc: subprocess.Popen, timeout: float) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"`rlbench-med ui` exited with code {proc.returncode} before serving {url}")
        try:
            with urllib.request.urlopen(url, timeout=5) as response:
                if response.status == 200:
                    return
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            pass
        time.sleep(1)
    pytest.fail(f"`rlbench-med ui` did not answer on {url} within {timeout:.0f} s")


def chrome(profile: Path):  # type: ignore[no-untyped-def]
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    binary = next((p for n in ("chromium", "chromium-browser", "google-chrome") if (p := shutil.which(n))), None)
    driver = shutil.which("chromedriver")
    if binary is None or driver is None:
        message = ("the browser test needs Chromium and its driver: install the Debian packages "
                   "`chromium` and `chromium-driver` (apt-get install -y chromium chromium-driver)")
        # CI installs them and must run this test; elsewhere a missing browser is a setup gap.
        if os.environ.get("RLBENCH_MED_REQUIRE_BROWSER") or os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    options = webdriver.ChromeOptions()
    options.binary_location = binary
    # the profile lives in the test's own tmp_path (pytest's retention removes it), not in a /tmp folder of its own
    for flag in (*CHROME_FLAGS, f"--user-data-dir={profile}"):
        options.add_argument(flag)
    return webdriver.Chrome(service=Service(driver), options=options)


@pytest.mark.slow
@pytest.mark.browser
def client_metrics(uri: str, run_id: str) -> dict[str, float]:
    from mlflow.tracking import MlflowClient

    return dict(MlflowClient(uri).get_run(run_id).data.metrics)


def test_mlflow_ui_opens_on_training_runs_with_summary_child_runs_and_eval_f1(tmp_path: Path, tracked: str) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    assert main(["run", "--suite", "fake_suite", "--runner", "fake", "--plugin", PLUGIN, "--algos", "drpo,grpo",
                 "--seeds", "0", "--out", "tiny"]) == 0
    parent = find_parent_run(tracked, "rlbench-med/fake_suite")
    children = {r.info.run_name: r for r in child_runs(tracked, parent)}
    assert sorted(children) == ["drpo-seed0", "grpo-seed0"]
    f1 = children["drpo-seed0"].data.metrics["eval/overall/f1"]
    experiment_id = parent.info.experiment_id

    port = free_port()
    env = {**os.environ, "MLFLOW_TRACKING_URI": tracked}
    server = subprocess.Popen([sys.executable, "-m", "rlbench_med.cli", "ui", "--port", str(port)], env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    driver = None
    try:
        base = f"http://127.0.0.1:{port}"
        wait_http(base + "/", server, timeout=240)
        driver = chrome(tmp_path / "chrome-profile")
        wait = WebDriverWait(driver, 90)
        body = lambda: driver.find_element(By.TAG_NAME, "body").text  # noqa: E731

        # The experiment's own link opens on its training runs (not MLflow's GenAI overview).
        driver.get(f"{base}/#/experiments/{experiment_id}")
        wait.until(lambda d: parent.info.run_name in body())
        assert f"/experiments/{experiment_id}/runs" in driver.current_url
        assert "workflowType=machine_learning" in driver.current_url
        assert "rlbench-med/fake_suite" in body() and "Evaluation runs" not in body()
        # Child runs are nested under the sweep's run: expand it.
        expand = driver.find_element(
            By.XPATH, f"//a[.//text()='{parent.info.run_name}']/ancestor::div[@role='gridcell']//button")
        expand.click()
        wait.until(lambda d: "drpo-seed0" in body() and "grpo-seed0" in body())
        shots = Path(os.environ.get("RLBENCH_MED_SCREENSHOTS") or tmp_path)  # CI may keep them as artifacts
        shots.mkdir(parents=True, exist_ok=True)
        shot_runs = shots / "mlflow_ui_runs.png"
        driver.save_screenshot(str(shot_runs))

        # The sweep's run carries the per-algorithm summary of the primary metric.
        summary = {k: v for k, v in client_metrics(tracked, parent.info.run_id).items() if k.startswith("summary/")}
        assert sorted(summary) == ["summary/drpo/f1_strict", "summary/grpo/f1_strict"]
        driver.get(f"{base}/#/experiments/{experiment_id}/runs/{parent.info.run_id}")
        wait.until(lambda d: "summary/drpo/f1_strict" in body())
        text = body()
        for key, value in summary.items():
            assert key in text and any(v in text for v in (repr(value), f"{value:.4g}", f"{value:.3f}")), key
        metric = driver.find_element(By.XPATH, "//*[normalize-space(text())='summary/drpo/f1_strict']")
        driver.execute_script("arguments[0].scrollIntoView({block: 'center'});", metric)
        time.sleep(1)
        shot_parent = shots / "mlflow_ui_parent_summary.png"
        driver.save_screenshot(str(shot_parent))

        driver.get(f"{base}/#/experiments/{experiment_id}/runs/{children['drpo-seed0'].info.run_id}")
        wait.until(lambda d: "eval/overall/f1" in body())
        text = body()
        assert "drpo-seed0" in text
        assert any(s in text for s in (repr(f1), f"{f1:.4g}", f"{f1:.3f}")), f"eval/overall/f1 = {f1} not shown"
        metric = driver.find_element(By.XPATH, "//*[normalize-space(text())='eval/overall/f1']")
        driver.execute_script("arguments[0].scrollIntoView({block: 'center'});", metric)
        time.sleep(1)
        shot_run = shots / "mlflow_ui_child_run.png"
        driver.save_screenshot(str(shot_run))
        print(f"screenshots: {shot_runs} {shot_parent} {shot_run}")
        assert all(p.stat().st_size > 10_000 for p in (shot_runs, shot_parent, shot_run))
    finally:
        if driver is not None:
            driver.quit()
        os.killpg(server.pid, signal.SIGTERM)
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait(timeout=30)


@pytest.mark.slow
@pytest.mark.browser
def test_the_report_fits_a_1400_px_page(tmp_path: Path, tracked: str) -> None:
    """Six algorithms, two seeds (mean ± std cells): every table and figure of report.html fits a 1400-px window."""
    algos = "drpo,grpo,rloo,fake_const,drpo:k_max=3,grpo:std_norm=false"
    assert main(["run", "--suite", "fake_suite", "--runner", "fake", "--plugin", PLUGIN, "--algos", algos,
                 "--seeds", "0,1", "--out", "wide"]) == 0
    driver = chrome(tmp_path / "chrome-profile")
    try:
        driver.set_window_size(1400, 1000)
        driver.get((tmp_path / "wide" / "report.html").as_uri())
        inner = driver.execute_script("return window.innerWidth")
        assert driver.execute_script("return document.documentElement.scrollWidth") <= inner
        widest = driver.execute_script(
            "return Math.max(...[...document.querySelectorAll('table, img')].map(e => e.getBoundingClientRect().right))")
        assert widest <= inner
        height = driver.execute_script("return document.documentElement.scrollHeight")
        driver.set_window_size(1400, min(height + 200, 16000))
        shots = Path(os.environ.get("RLBENCH_MED_SCREENSHOTS") or tmp_path)
        shots.mkdir(parents=True, exist_ok=True)
        shot = shots / "report.png"
        driver.save_screenshot(str(shot))
        print(f"screenshot: {shot}")
        assert shot.stat().st_size > 10_000
    finally:
        driver.quit()
