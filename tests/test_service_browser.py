"""The service's page in headless Chromium: upload a recording, see its segments, screenshot it.

Runs the real server (uvicorn on 127.0.0.1, a free port, in a thread) and Debian's chromium and
chromedriver; skipped only when those two are not installed.
"""

from __future__ import annotations

import shutil
import socket
import threading
import time

import numpy as np
import pytest
import soundfile as sf
import uvicorn
from conftest import talk
from PIL import Image
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support import expected_conditions as ec
from selenium.webdriver.support.ui import WebDriverWait

from emolingua.service import create_app

CHROMIUM, CHROMEDRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"
WINDOW = (1200, 1400)

pytestmark = pytest.mark.skipif(not (shutil.which(CHROMIUM) and shutil.which(CHROMEDRIVER)),
                                reason=f"needs {CHROMIUM} and {CHROMEDRIVER} (Debian: apt-get install chromium "
                                       "chromium-driver)")  # fmt: skip


@pytest.fixture(scope="module")
def server(tiny_pipeline):
    """The base URL of the service on a free loopback port, stopped afterwards."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))  # bound before uvicorn starts: no other process can take the port
    app = create_app(model=tiny_pipeline, max_seconds=60.0)
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started and thread.is_alive() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert server.started, "the server did not start"
    yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    server.should_exit = True
    thread.join(10)
    sock.close()


@pytest.fixture
def browser(tmp_path):
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM  # with the driver's path, Selenium Manager is never asked
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--disable-background-networking", "--disable-component-update", "--disable-sync", "--no-first-run",
                f"--user-data-dir={tmp_path / 'profile'}", f"--window-size={WINDOW[0]},{WINDOW[1]}",
                # a fake microphone (a beeping tone), granted without asking
                "--use-fake-device-for-media-stream", "--use-fake-ui-for-media-stream"):  # fmt: skip
        options.add_argument(arg)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    yield driver
    driver.quit()


def test_an_uploaded_recording_is_shown_segment_by_segment(server, browser, tmp_path):
    recording = tmp_path / "talk.wav"
    sf.write(recording, talk([("silence", 1.0), ("speech", 2.5), ("silence", 1.0), ("speech", 2.5)]), 16000)
    browser.get(server + "/")
    wait = WebDriverWait(browser, 30)
    wait.until(lambda d: d.find_element(By.ID, "model").text.startswith("model "))  # /v1/models answered
    browser.find_element(By.ID, "file-input").send_keys(str(recording))
    wait.until(ec.element_to_be_clickable((By.ID, "analyse"))).click()
    rows = wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, "#result-table tbody tr"))

    labels = {"angry", "happy", "neutral", "sad"}
    cells = [[td.text for td in row.find_elements(By.TAG_NAME, "td")] for row in rows]
    assert cells and all(len(c) == 6 and c[2] in labels for c in cells), cells
    starts = [float(c[0]) for c in cells]
    assert starts == sorted(starts) and all(float(c[0]) < float(c[1]) <= 7.0 for c in cells)
    assert all(0 <= float(c[3]) <= 1 and 0 <= float(c[4]) <= 1 and 0 <= float(c[5]) <= 1 for c in cells)
    assert len(browser.find_elements(By.CSS_SELECTOR, "#timeline svg g.seg rect")) == len(rows)
    assert browser.find_element(By.ID, "summary-label").text in labels
    assert "talk.wav" in browser.find_element(By.ID, "status").text
    assert not browser.find_element(By.ID, "error").is_displayed()
    assert [e for e in browser.get_log("browser") if e["level"] == "SEVERE"] == []

    shot = tmp_path / "page.png"
    assert browser.save_screenshot(str(shot)) and shot.stat().st_size > 10_000
    width, height, ratio = browser.execute_script("return [innerWidth, innerHeight, devicePixelRatio]")
    pixels = np.asarray(Image.open(shot).convert("RGB"), dtype=np.float32)
    assert pixels.shape == (round(height * ratio), round(width * ratio), 3)
    assert pixels.std() > 10  # not a blank page
    colours = {tuple(p) for p in pixels.reshape(-1, 3)[:: 97].astype(int).tolist()}
    assert len(colours) > 20  # text, the timeline's segments, the table: more than a couple of flat fills


def test_a_refused_upload_shows_the_servers_reason(server, browser, tmp_path):
    junk = tmp_path / "notes.wav"
    junk.write_bytes(b"this is not audio " * 40)
    browser.get(server + "/")
    browser.find_element(By.ID, "file-input").send_keys(str(junk))
    browser.find_element(By.ID, "analyse").click()
    error = WebDriverWait(browser, 30).until(lambda d: d.find_element(By.ID, "error").is_displayed()
                                             and d.find_element(By.ID, "error"))  # fmt: skip
    assert error.text.startswith("415: notes.wav: not readable as audio")
    assert not browser.find_element(By.ID, "result").is_displayed()


def test_a_microphone_recording_is_sent_as_a_wav_the_server_reads(server, browser):
    browser.get(server + "/")
    button = browser.find_element(By.ID, "record-button")
    button.click()

    def recorded(driver) -> float:  # "2.3 s" while recording
        return float(driver.find_element(By.ID, "record-time").text.split(" ")[0] or 0)

    WebDriverWait(browser, 20).until(lambda d: recorded(d) >= 2.0)
    button.click()  # stop: the page writes a WAV and posts it
    WebDriverWait(browser, 30).until(lambda d: d.find_element(By.ID, "result").is_displayed()
                                     or d.find_element(By.ID, "error").is_displayed())  # fmt: skip
    assert not browser.find_element(By.ID, "error").is_displayed(), browser.find_element(By.ID, "error").text
    assert browser.find_element(By.ID, "status").text.startswith("recording.wav:")
    assert 2.0 <= float(browser.find_element(By.ID, "summary-duration").text.split()[0]) < 10.0
