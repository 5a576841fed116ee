"""The browser console in a real browser: headless Chromium (Debian's `chromium` and `chromium-driver`,
installed by .ci/run) driven with Selenium against the real server on the tiny repository.

Each page is used as a person would (draw with the pointer, upload a file, type, move the slider),
and what it shows is compared with what the API answers for the same input: the tiny models are
not accurate, so "the right class" is the class the server gives for those very pixels. Screenshots
go to $DNNZOO_ARTEFACTS/console (default: artefacts/console in the checkout) for a person to look at.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import urllib.request
from pathlib import Path

import pytest

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
DRIVER = shutil.which("chromedriver")
pytestmark = pytest.mark.skipif(not (CHROMIUM and DRIVER), reason="needs Debian's chromium and chromium-driver (.ci/run installs them)")
ARTEFACTS = Path(os.environ.get("DNNZOO_ARTEFACTS", Path(__file__).resolve().parents[2] / "artefacts")) / "console"
WAIT = 30


@pytest.fixture(scope="module")
def base(task_server) -> str:
    return f"http://127.0.0.1:{task_server.server.http_port}"


@pytest.fixture(scope="module")
def browser():
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1200,1000", "--disable-gpu"):
        options.add_argument(flag)
    driver = webdriver.Chrome(options=options, service=Service(DRIVER))
    ARTEFACTS.mkdir(parents=True, exist_ok=True)
    yield driver
    driver.quit()


def wait_for(driver, script: str, what: str):
    """Poll a JavaScript expression until it is truthy (Selenium's own wait), failing with `what`."""
    from selenium.common.exceptions import TimeoutException
    from selenium.webdriver.support.ui import WebDriverWait

    try:
        return WebDriverWait(driver, WAIT, poll_frequency=0.1).until(lambda d: d.execute_script("return " + script))
    except TimeoutException:
        error = driver.execute_script("return document.getElementById('error').textContent")
        raise AssertionError(f"the page never showed {what} (its error line: {error!r})") from None


def post(base: str, path: str, document: dict) -> dict:
    request = urllib.request.Request(base + path, json.dumps(document).encode(), {"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=30) as answer:
        return json.load(answer)


def shot(driver, name: str) -> None:
    driver.save_screenshot(str(ARTEFACTS / f"{name}.png"))


def open_page(driver, base: str, page: str) -> None:
    driver.get(f"{base}/#{page}")
    wait_for(driver, f"document.getElementById('page-{page}').classList.contains('shown')", f"the {page} page")


# Digits drawn as one pointer stroke each: the start (from the pad's centre), then each move.
STROKES = {
    "7": [(-80, -90), (80, 0), (80, 0), (-50, 90), (-50, 90)],
    "1": [(0, -100), (0, 100), (0, 100)],
    "2": [(-60, -60), (30, -40), (50, 10), (20, 40), (-50, 70), (-50, 70), (100, 0), (30, 0)],
    "3": [(-60, -90), (90, 0), (0, 0), (-60, 80), (60, 10), (10, 60), (-40, 40), (-60, -10)],
    "0": [(0, -100), (-50, 20), (-15, 60), (15, 60), (50, 20), (50, -20), (15, -60), (-15, -60), (-50, -20)],
}


def draw(browser, digit: str) -> list[str]:
    """Clear the pad, draw `digit`'s stroke, and return the labels of the bars the page then shows."""
    from selenium.webdriver.common.action_chains import ActionChains

    browser.find_element("id", "clear-pad").click()
    start, *moves = STROKES[digit]
    chain = ActionChains(browser).move_to_element_with_offset(browser.find_element("id", "pad"), *start).click_and_hold()
    for move in moves:
        chain = chain.move_by_offset(*move)
    chain.release().perform()
    wait_for(browser, "document.querySelectorAll('#bars .bar').length === 5", "five bars")
    return browser.execute_script("return [...document.querySelectorAll('#bars .bar')].map(b => b.dataset.label)")


def test_draw_a_digit_and_see_the_classes(browser, base):
    open_page(browser, base, "classify")
    shown = draw(browser, "7")
    sent = browser.execute_script("return document.getElementById('bars').dataset.sent")
    expected = post(base, "/v1/classify", {"images": [sent], "top_k": 5})["results"][0]["classes"]
    assert shown == [c["label"] for c in expected]
    shot(browser, "classify")


@pytest.mark.slow
def test_drawn_digits_get_their_class_from_the_quick_classifier(browser, quick_build):
    from tests.serving.conftest import server_config, start_server

    running = start_server(server_config(quick_build.repository, providers="cpu"))
    try:
        open_page(browser, f"http://127.0.0.1:{running.server.http_port}", "classify")
        answers = {digit: draw(browser, digit)[0] for digit in STROKES}
        shot(browser, "classify-quick")
    finally:
        running.stop()
    assert answers == {digit: digit for digit in STROKES}


def test_upload_a_scene_and_see_boxes(browser, base, tmp_path):
    from training.samples import write_samples

    write_samples(tmp_path)
    scene = tmp_path / "scene.png"
    open_page(browser, base, "detect")
    browser.find_element("id", "scene-file").send_keys(str(scene))
    wait_for(browser, "document.getElementById('scene-drawn').naturalWidth > 0", "the scene with its boxes")
    rows = browser.execute_script("return document.querySelectorAll('#detections tr').length") - 1
    expected = post(base, "/v1/detect", {"images": [base64.b64encode(scene.read_bytes()).decode()]})["results"][0]
    assert rows == len(expected["detections"])
    assert browser.execute_script("return document.getElementById('scene-drawn').naturalWidth") == 256
    shot(browser, "detect-upload")
    browser.find_element("id", "make-scene").click()  # a scene of GAN digits, made in the page
    wait_for(browser, "document.getElementById('scene-drawn').src.startsWith('data:') && "
                      "document.getElementById('scene-drawn').naturalWidth === 256", "a made scene")
    shot(browser, "detect-made")


def test_ask_for_neighbours_and_an_analogy(browser, base):
    open_page(browser, base, "words")
    for field, text in (("positive", "lists tuple"), ("negative", "list"), ("words-k", "5")):
        element = browser.find_element("id", field)
        element.clear()
        element.send_keys(text)
    browser.find_element("css selector", "#words-form button").click()
    wait_for(browser, "document.querySelectorAll('#neighbours tr').length === 6", "five neighbours")
    shown = browser.execute_script("return [...document.querySelectorAll('#neighbours tr')].slice(1).map(r => r.cells[1].textContent)")
    expected = post(base, "/v1/similar", {"positive": ["lists", "tuple"], "negative": ["list"], "top_k": 5})["neighbors"]
    assert shown == [n["word"] for n in expected]
    shot(browser, "words")


def test_forecast_is_plotted(browser, base):
    open_page(browser, base, "forecast")
    browser.find_element("id", "wave").click()
    browser.find_element("css selector", "#forecast-form button[type=submit]").click()
    wait_for(browser, "document.getElementById('plot').dataset.forecast === '10'", "a plotted forecast")
    # the plot has ink in both colours: history (blue) and forecast (orange)
    colours = browser.execute_script("""
        const c = document.getElementById('plot'), d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
        let blue = 0, orange = 0;
        for (let i = 0; i < d.length; i += 4) { if (d[i] < 60 && d[i + 2] > 150) blue++; if (d[i] > 220 && d[i + 1] > 100 && d[i + 1] < 150 && d[i + 2] < 60) orange++; }
        return [blue, orange];""")
    assert colours[0] > 100 and colours[1] > 20, colours
    shot(browser, "forecast")


def test_seed_slider_changes_the_grid(browser, base):
    open_page(browser, base, "generate")
    wait_for(browser, "document.getElementById('grid').dataset.seed === '1' && document.getElementById('grid').naturalWidth > 0", "the first grid")
    first = browser.execute_script("return document.getElementById('grid').src")
    browser.execute_script("const s = document.getElementById('seed'); s.value = 5; s.dispatchEvent(new Event('input'));")
    wait_for(browser, "document.getElementById('grid').dataset.seed === '5' && document.getElementById('grid').complete", "the grid of seed 5")
    assert browser.execute_script("return document.getElementById('grid').src") != first
    assert browser.execute_script("return document.getElementById('grid').naturalWidth") == 4 * (28 * 4 + 2) + 2
    shot(browser, "generate")


def test_autoencoder_shows_input_beside_reconstruction(browser, base):
    open_page(browser, base, "autoencoder")
    browser.find_element("id", "ae-gan").click()
    wait_for(browser, "document.getElementById('ae-out').naturalWidth === 28", "a reconstruction")
    assert "mean squared error" in browser.find_element("id", "ae-error").text
    shot(browser, "autoencoder")


def test_models_page_lists_every_model(browser, base):
    open_page(browser, base, "models")
    wait_for(browser, "document.querySelectorAll('#models tr').length > 1", "the models")
    rows = browser.execute_script("return [...document.querySelectorAll('#models tr')].slice(1).map(r => [r.cells[0].textContent, r.cells[2].textContent])")
    with urllib.request.urlopen(base + "/v1/models", timeout=30) as answer:
        expected = [[m["name"], m["state"]] for m in json.load(answer)["models"]]
    assert rows == expected
    shot(browser, "models")


def test_a_table_row_form_is_built_from_the_columns_and_predicts(browser, base):
    open_page(browser, base, "table")
    wait_for(browser, "document.querySelectorAll('#table-fields input').length > 0", "the column fields")
    model = browser.find_element("id", "table-model").text.split()[1]
    with urllib.request.urlopen(f"{base}/v2/models/{model}", timeout=30) as answer:
        columns = [i["name"] for i in json.load(answer)["inputs"]]
    assert browser.execute_script("return [...document.querySelectorAll('#table-fields input')].map(f => f.name)") == columns
    # hints: a text column offers the values training saw, a numeric one shows a typical value
    described = {c["name"]: c for c in post(base, "/v1/columns", {"model": model})["columns"]}
    offered = browser.execute_script("return [...document.querySelector('#table-fields input[name=island]').list.options].map(o => o.value)")
    assert offered == described["island"]["values"] and len(offered) >= 2
    hint = browser.find_element("css selector", "#table-fields input[name=bill_length_mm]").get_attribute("placeholder")
    mean = described["bill_length_mm"]["mean"]
    assert hint == "e.g. " + format(float(format(mean, ".4g")), "g")  # as JavaScript's Number(mean.toPrecision(4))
    row = {"island": "Biscoe", "bill_length_mm": 48.6, "flipper_length_mm": 230, "sex": "male"}
    for name, value in row.items():
        browser.find_element("css selector", f"#table-fields input[name={name}]").send_keys(str(value))
    browser.find_element("css selector", "#table-form button").click()
    wait_for(browser, "document.getElementById('table-answer').dataset.label", "a prediction")
    expected = post(base, "/v1/predict", {"model": model, "rows": [{c: row.get(c) for c in columns}]})["predictions"][0]
    assert browser.find_element("id", "table-answer").get_attribute("data-label") == expected["label"]
    shown = browser.execute_script("return [...document.querySelectorAll('#table-classes tr')].slice(1).map(r => r.cells[0].textContent)")
    assert shown == [c["label"] for c in expected["classes"]]
    shot(browser, "table")


def test_a_refused_request_greys_the_old_result_and_says_why_without_a_script_error(browser, base):
    open_page(browser, base, "words")
    browser.get_log("browser")  # drop what earlier pages logged
    browser.find_element("css selector", "#words-form button").click()
    wait_for(browser, "document.querySelectorAll('#neighbours tr').length > 1", "neighbours of the default word")
    field = browser.find_element("id", "positive")
    field.clear()
    field.send_keys("zzzznotaword")
    browser.find_element("css selector", "#words-form button").click()
    wait_for(browser, "!document.getElementById('error').hidden", "an error line")
    assert "zzzznotaword" in browser.find_element("id", "error").text
    assert browser.execute_script("return getComputedStyle(document.getElementById('neighbours')).opacity") == "0.25"
    shot(browser, "words-refused")
    assert not [e for e in browser.get_log("browser") if "Uncaught" in e["message"]]
    field.clear()
    field.send_keys("key")
    browser.find_element("css selector", "#words-form button").click()
    wait_for(browser, "document.getElementById('error').hidden", "the error line cleared by the next answer")
    assert browser.execute_script("return getComputedStyle(document.getElementById('neighbours')).opacity") == "1"


def test_an_empty_pad_and_a_pasted_csv_are_handled_in_the_page(browser, base, tmp_path):
    open_page(browser, base, "classify")
    browser.find_element("id", "clear-pad").click()
    browser.execute_script("document.getElementById('pad').dispatchEvent(new PointerEvent('pointerup'))")  # a release with no ink
    browser.execute_script("const p = document.getElementById('pad'); p.dispatchEvent(new PointerEvent('pointerdown', {pointerId: 1, clientX: -999, clientY: -999}));"
                           "p.dispatchEvent(new PointerEvent('pointerup', {pointerId: 1}))")
    wait_for(browser, "document.getElementById('error').textContent.includes('draw a digit first')", "the empty-pad message")
    open_page(browser, base, "forecast")
    series = [round(0.5 * __import__("math").sin(i / 4), 3) for i in range(30)]
    csv = "step,value\n" + "".join(f"{i},{v}\n" for i, v in enumerate(series))  # as `dnnzoo samples` writes series.csv
    browser.execute_script("document.getElementById('series').value = arguments[0]", csv)
    browser.find_element("css selector", "#forecast-form button[type=submit]").click()
    wait_for(browser, "document.getElementById('plot').dataset.forecast === '10'", "a forecast from the pasted CSV")
    expected = post(base, "/v1/forecast", {"series": series, "horizon": 10})["forecasts"][0]
    assert len(expected) == 10


def test_pages_fit_a_phone_screen(browser, base):
    browser.set_window_size(390, 844)
    try:
        for page in ("classify", "detect", "words", "forecast", "generate", "autoencoder", "table", "models"):
            open_page(browser, base, page)
            width = browser.execute_script("return document.documentElement.scrollWidth")
            assert width <= 390, f"the {page} page is {width} px wide on a 390 px screen"
            header = browser.execute_script("const h = document.querySelector('header').getBoundingClientRect(),"
                                            " a = [...document.querySelectorAll('#nav a')].map(x => x.getBoundingClientRect());"
                                            " return a.every(r => r.bottom <= h.bottom && r.right <= h.right)")
            assert header, f"a menu entry leaves the header on the {page} page"
        shot(browser, "phone-models")
    finally:
        browser.set_window_size(1200, 1000)
