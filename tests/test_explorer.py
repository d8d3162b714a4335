"""The results explorer: data gathering on a real organism run, and the page in a real browser.

The browser test drives Debian's Chromium (/usr/bin/chromium) through Selenium and its
ChromeDriver (/usr/bin/chromedriver); ``make test`` installs both when they are missing. It is
skipped, with the reason, only where the browser or its driver is absent. Set
``EGG_EXPLORER_SCREENSHOT=figures/explorer.png`` to keep its screenshot there (otherwise it
goes to the test's temporary folder).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
from pathlib import Path

import numpy as np
import pytest

from egg_interp.explorer.build import ExplorerOptions, collect, compact
from egg_interp.explorer.media import overlay_pixels
from egg_interp.explorer.page import write_explorer

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
BROWSER_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--window-size=1500,1150",
)


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    """A real results file of the organism: 4 scenes (one per family), EGG's maps saved to
    files with their deletion and insertion curves (4 steps, MoRF and LeRF), rel-att's maps
    not saved (the explorer recomputes them), base and EGG answers with a three-step loop."""
    from egg_interp.data.registry import load_dataset
    from egg_interp.metrics.deletion import FaithfulnessSettings
    from egg_interp.models import load_model
    from egg_interp.pipelines import PipelineOptions
    from egg_interp.runner import evaluate

    out = tmp_path_factory.mktemp("explorer") / "results.jsonl"
    adapter = load_model("organism", device="cpu")
    samples = load_dataset("scenes", ".", None, 4)
    common = dict(dataset="scenes", model="organism", progress=False)
    options = PipelineOptions(stop="fixed:3")
    evaluate(
        adapter,
        samples,
        ["egg"],
        ["base", "egg"],
        out,
        maps_dir=out.parent / "maps",
        pipeline_options=options,
        faithfulness=FaithfulnessSettings(steps=4, orders=("morf", "lerf")),
        **common,
    )
    evaluate(adapter, samples, ["rel_att"], [], out, **common)
    return out


def _page_data(path: Path) -> dict:
    text = path.read_text(encoding="utf-8")
    block = re.search(r'<script id="data" type="application/json">(.*?)</script>', text, re.S)
    return json.loads(block.group(1))


def test_overlay_pixels_normalise_and_mask():
    px = overlay_pixels(np.array([[1.0, 3.0], [np.nan, 2.0]]))
    assert px[..., 0].tolist() == [[0, 255], [0, 128]]
    assert px[..., 1].tolist() == [[255, 255], [0, 255]]
    assert overlay_pixels(np.full((2, 2), 5.0))[..., 0].max() == 0  # constant map: no peak


def test_compact_rounds_floats_only():
    assert compact({"a": [1 / 3, "inf", None, 7]}, 3) == {"a": [0.333, "inf", None, 7]}


def test_options_are_checked():
    from egg_interp.errors import EggError

    with pytest.raises(EggError, match="map_px"):
        ExplorerOptions(map_px=2)


def test_collect_reads_saved_maps_and_recomputes_the_others(results):
    data = collect(results, ExplorerOptions(plots=False))
    meta = data["meta"]
    assert data["methods"] == ["egg", "rel_att"] and data["pipelines"] == ["base", "egg"]
    assert meta["map_sources"] == {"egg": {"saved": 4}, "rel_att": {"recomputed": 4}}
    assert meta["models"] == ["organism"] and meta["with_media"] == 4
    assert {c["config_hash"] for c in meta["configs"].values()} == {
        json.loads(line)["config_hash"] for line in results.read_text().splitlines()
    }
    for s in data["samples"]:
        assert s["image"].startswith("data:image/jpeg;base64,")
        assert all(m["overlay"].startswith("data:image/png;base64,") for m in s["maps"].values())
        steps = s["pipelines"]["egg"]["steps"]
        assert len(steps) >= 2
        for step in steps:  # every crop of every step has its picture
            for key in step["crops_in_keys"] + step["crop_boxes_keys"]:
                assert s["crops"][key].startswith("data:image/jpeg;base64,")
    # without recomputation, rel-att's maps are missing, and the page says so
    bare = collect(results, ExplorerOptions(recompute=False, max_media=2, plots=False))
    assert bare["meta"]["map_sources"]["rel_att"] == {"none": 2}
    assert sum(s["image"] is not None for s in bare["samples"]) == 2


def test_cli_writes_one_self_contained_page(results, tmp_path, capsys):
    from egg_interp.cli import main

    out = tmp_path / "report.html"
    assert main(["explore", str(results), "--out", str(out), "--no-plots"]) == 0
    assert "4 samples" in capsys.readouterr().out
    text = out.read_text(encoding="utf-8")
    assert not re.search(r'(src|href)="(https?:)?//', text)  # nothing fetched from a network
    assert "<h3>Localisation per method" in text
    assert _page_data(out)["meta"]["n_samples"] == 4
    assert main(["explore", str(tmp_path / "missing.jsonl")]) == 2


def _driver():
    webdriver = pytest.importorskip("selenium.webdriver", reason="selenium is in the dev extras")
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in BROWSER_FLAGS:
        options.add_argument(flag)
    profile = tempfile.mkdtemp(prefix="egg-explorer-chromium-")
    options.add_argument(f"--user-data-dir={profile}")
    driver = webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=options)
    return driver, profile


@pytest.mark.skipif(
    not (CHROMIUM.exists() and CHROMEDRIVER.exists()),
    reason="Chromium or ChromeDriver absent (/usr/bin/chromium, /usr/bin/chromedriver); "
    "`make test` installs Debian's chromium and chromium-driver",
)
def test_page_in_a_real_browser(results, tmp_path):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support.ui import Select, WebDriverWait

    page = write_explorer(results, tmp_path / "report.html", ExplorerOptions())
    assert page.n_samples == 4 and page.bytes < 2_000_000
    driver, profile = _driver()
    try:
        driver.get(page.path.resolve().as_uri())
        wait = WebDriverWait(driver, 20)

        def text(el_id):
            return driver.find_element(By.ID, el_id).text

        def rows():
            return driver.find_elements(By.CSS_SELECTOR, "#samples tbody tr")

        def ready():  # "1" once the overlay canvas is painted
            return driver.execute_script("return document.getElementById('overlay').dataset.ready")

        def overlay():  # the overlay's pixels
            return driver.execute_script("return document.getElementById('overlay').toDataURL()")

        assert driver.find_element(By.TAG_NAME, "h1").text.startswith("Results explorer")
        assert "organism" in text("facts") and "UTC" in text("facts")
        assert len(driver.find_elements(By.CSS_SELECTOR, ".plots img")) >= 1
        assert text("count") == "4 of 4 samples" and len(rows()) == 4

        # filter the table: one question family, then back to all
        Select(driver.find_element(By.ID, "family")).select_by_visible_text("detail")
        assert text("count") == "1 of 4 samples" and len(rows()) == 1
        assert "detail" in text("view-title")
        Select(driver.find_element(By.ID, "family")).select_by_index(0)
        assert len(rows()) == 4
        presets = [o.text for o in Select(driver.find_element(By.ID, "preset")).options]
        assert "EGG map misses, rel_att hits" in presets
        assert "egg answer right, base wrong" in presets
        Select(driver.find_element(By.ID, "preset")).select_by_visible_text("all samples")

        # sort by the sample column, descending on a second click
        header = driver.find_element(By.CSS_SELECTOR, '#samples th[data-key="id"]')
        header.click()
        header.click()
        ids = [r.get_attribute("data-id") for r in rows()]
        assert ids == sorted(ids, reverse=True)

        # switch the map method: the overlay's pixels change
        wait.until(lambda d: ready() == "1")
        before = overlay()
        driver.find_element(By.CSS_SELECTOR, '#methods button[data-method="rel_att"]').click()
        wait.until(lambda d: ready() == "1" and overlay() != before)
        assert "recomputed" in text("map-info")
        assert not driver.find_elements(By.CSS_SELECTOR, "#curves polyline")  # none measured
        driver.find_element(By.CSS_SELECTOR, '#methods button[data-method="egg"]').click()
        wait.until(lambda d: ready() == "1" and overlay() == before)
        assert "saved file" in text("map-info")
        # EGG's deletion and insertion curves, MoRF and LeRF, saved with its maps
        lines = driver.find_elements(By.CSS_SELECTOR, "#curves polyline.curve")
        drawn = {(el.get_attribute("data-curve"), el.get_attribute("data-order")) for el in lines}
        assert drawn == {(c, o) for c in ("deletion", "insertion") for o in ("morf", "lerf")}
        assert "saved with the map" in text("curves")

        # step through the loop: label, entropies and crops follow the step
        assert text("step-label").startswith("step 1 of ")
        n_steps = int(text("step-label").split()[-1])
        assert n_steps >= 2
        first = text("step-info")
        driver.find_element(By.ID, "step-next").click()
        assert text("step-label") == f"step 2 of {n_steps}"
        assert "spatial entropy" in text("step-info") and "top-1 answer" in text("step-info")
        assert text("step-info") != first or len(
            driver.find_elements(By.CSS_SELECTOR, "#step-crops figure.input")
        )
        assert driver.find_elements(By.CSS_SELECTOR, "#step-crops img")

        # keyboard: next and previous sample (from the first row of the table)
        rows()[0].click()
        title = text("view-title")
        assert title.startswith("1 / 4")
        body = driver.find_element(By.TAG_NAME, "body")
        body.send_keys(Keys.ARROW_RIGHT)
        assert text("view-title") != title and text("view-title").startswith("2 / 4")
        body.send_keys(Keys.ARROW_LEFT)
        assert text("view-title") == title
        assert len(driver.find_elements(By.CSS_SELECTOR, "#answers tr[data-pipeline]")) == 2
        errors = [e for e in driver.get_log("browser") if e.get("level") == "SEVERE"]
        assert not errors, errors  # no script error, no failed request

        driver.execute_script("document.getElementById('browser').scrollIntoView()")
        shot = Path(os.environ.get("EGG_EXPLORER_SCREENSHOT") or tmp_path / "explorer.png")
        shot.parent.mkdir(parents=True, exist_ok=True)
        assert driver.save_screenshot(str(shot)) and shot.stat().st_size > 10_000
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


# ------------------------------------------------------------------ the map source


def test_map_source_saved_recomputed_and_one_error_policy(results, tmp_path):
    """Saved maps are read, others recomputed (the recomputed rel-att map reproduces its
    line's scores), and what cannot be loaded is one note, never an exception."""
    from egg_interp.map_source import MapLine, MapSource, read_map_lines
    from egg_interp.maps import AttributionMap
    from egg_interp.scoring import score_map

    lines = read_map_lines([results])
    egg = next(x for x in lines if x.record["name"] == "egg")
    rel = next(x for x in lines if x.record["name"] == "rel_att" and x.key == egg.key)
    source = MapSource()
    sample = source.samples([egg.record])[egg.key]
    image = source.image(sample)
    amap, src = source.map(egg, image, sample.question)
    assert src == "saved" and egg.saved is not None
    np.testing.assert_array_equal(
        amap.images[0].primary.values, AttributionMap.load(egg.saved).images[0].primary.values
    )
    amap, src = source.map(rel, image, sample.question)
    assert src == "recomputed" and source.notes == []
    rescored = score_map(amap, sample.boxes)["scores"]
    for name in ("pointing_game", "energy_pointing_game", "relevance_rank_accuracy", "auc"):
        assert rescored[name] == rel.record["scores"][name]  # the scores of the heat map
    # recorded weights that differ from the model's: said once
    other = MapLine(
        {**rel.record, "config": {**rel.record["config"], "weights": "0" * 16}}, rel.folder
    )
    source.map(other, image, sample.question)
    source.map(other, image, sample.question)
    assert len(source.notes) == 1 and "weights differ" in source.notes[0]
    # a model that cannot be loaded: one note, no map, no retry, no exception
    bad = MapSource(model=str(tmp_path / "no-checkpoint"))
    assert bad.map(rel, image, sample.question) == (None, "none")
    assert bad.map(rel, image, sample.question) == (None, "none")
    assert len(bad.notes) == 1 and "cannot load the model" in bad.notes[0]
    assert MapSource(recompute=False).map(rel, image, sample.question) == (None, "none")
    # a dataset that cannot be loaded: a note, no sample
    missing = MapSource()
    assert missing.samples([{**egg.record, "dataset": "no_such_benchmark"}]) == {}
    assert "no_such_benchmark: cannot load the images" in missing.notes[0]


def test_grids_use_the_same_source(results, tmp_path):
    from egg_interp.compare import comparison_grids

    written, notes = comparison_grids([results], tmp_path / "grids", 2)
    assert len(written) == 2 and notes == []
    # with a model that cannot be loaded, the saved egg maps are still drawn; one note
    written, notes = comparison_grids(
        [results], tmp_path / "grids2", 1, model=str(tmp_path / "no-checkpoint")
    )
    assert len(written) == 1 and len(notes) == 1 and "cannot load the model" in notes[0]


def test_page_lists_the_registry_scores_and_labels_targets(tmp_path, monkeypatch):
    """Synthetic lines (no image needed): the page's score columns are the registry's map
    scores with their arrows, a declared faithfulness score among them; a map of another
    target than the method's default is labelled with it."""
    from egg_interp.metrics.registry import SCORES, Score, register
    from egg_interp.results import ResultsWriter

    register(Score("deletion_t", "map", len, ("heat",), "lower", "-", "deletion AUC", "faith"))
    try:
        path = tmp_path / "r.jsonl"
        with ResultsWriter(path) as w:
            for name, target in (("egg", "entropy"), ("saliency", "logprob"), ("rel_att", "none")):
                w.write(
                    {
                        "sample_id": "s1",
                        "kind": "map",
                        "name": name,
                        "config_hash": name * 4,
                        "dataset": "nowhere",
                        "model": "m",
                        "target": target,
                        "scores": {"pointing_game": 1.0, "deletion_t": 0.25},
                    }
                )
        data = collect(path, ExplorerOptions(max_media=0, plots=False))
    finally:
        SCORES.pop("deletion_t")
    assert data["methods"] == ["egg", "rel_att", "saliency[logprob]"]
    names = [s["name"] for s in data["scores"]]
    assert names[0] == "pointing_game" and names[-1] == "deletion_t"
    assert data["scores"][-1]["arrow"] == "\u2193" and data["scores"][-1]["header"] == (
        "deletion AUC \u2193"
    )
    assert data["samples"][0]["maps"]["saliency[logprob]"]["scores"]["deletion_t"] == 0.25


def test_page_tables_carry_the_direction_arrows(results, tmp_path):
    from egg_interp.explorer.page import report_html

    text = report_html([results], plots=False)
    assert '<th title="higher is better">pointing_game \u2191</th>' in text


def test_explore_takes_threads(results, tmp_path, monkeypatch):
    from egg_interp.cli import build_parser

    monkeypatch.setenv("EGG_INTERP_THREADS", "3")
    assert build_parser().parse_args(["explore", str(results)]).threads == 3
    assert build_parser().parse_args(["explore", str(results), "--threads", "1"]).threads == 1
