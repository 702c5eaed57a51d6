"""The Snakemake DAG end to end on a tiny demo, what reruns when an option changes, and its
report opened in headless Chromium.

Runs the real `snakemake` command in a scratch folder with a small config (tens of images,
one epoch), so it takes about a minute on two cores.
"""

from __future__ import annotations

import csv
import io
import json
import os
import re
import shutil
import signal
import subprocess
import time

import numpy as np
import pytest
import scipy.io
import yaml
from helpers import (
    OUTPUTS,
    REFERENCE,
    TINY,
    copy_run,
    mean_cell,
    planned_jobs,
    snakemake,
    snakemake_command,
    write_config,
)
from PIL import Image

from pose_pipeline.data.store import open_store
from pose_pipeline.models import read_checkpoint

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def first_run(tiny_run, tmp_path_factory):
    """(the folder, what Snakemake printed) of the whole tiny DAG run once (the session's run,
    copied: these tests build more in it and change its config)."""
    workdir, output = tiny_run
    return copy_run(workdir, tmp_path_factory.mktemp("workflow")), output


@pytest.fixture(scope="module")
def finished_run(first_run):
    return first_run[0]


def test_whole_dag_builds_every_output(finished_run):
    for output in OUTPUTS:
        assert (finished_run / output).exists(), output
    rows = list(csv.reader(open(finished_run / "results/pckh/tiny.csv")))
    assert rows[0][:9] == ["metric", "Head", "Shoulder", "Elbow", "Wrist", "Hip", "Knee", "Ankle", "Mean"]
    assert [r[0] for r in rows[1:3]] == ["PCKh@0.5", "PCKh@0.1"]
    # the table is the score of this run's predictions against this run's validation store
    val_store = finished_run / "results/stores/demo/val.zarr"
    assert len(open_store(val_store)) == TINY["datasets"]["demo"]["synthetic"]["val"]
    assert rows[1][8] != "" and rows[1][8] == mean_cell(
        finished_run / "results/predict/tiny/preds.mat", val_store, "pckh"
    )
    summary = list(csv.DictReader(open(finished_run / "results/summary.csv")))
    assert [r["experiment"] for r in summary] == ["tiny"]
    assert summary[0]["dataset"] == "demo" and summary[0]["arch"] == "hourglass" and summary[0]["stacks"] == "1"
    assert summary[0]["epochs"] == "1" and int(summary[0]["params"]) > 0 and float(summary[0]["train_time_s"]) > 0
    assert summary[0]["PCKh@0.5 Mean"] == rows[1][8]
    assert "on the original" in (finished_run / "results/logs/examples/tiny.log").read_text()
    if REFERENCE.exists():  # the published predictions, scored with the reference PCKh
        reference = json.loads((finished_run / "results/pckh/reference/demo.json").read_text())
        assert f"{reference['table']['PCKh@0.5']['Mean']:.2f}" == "81.46"
    for rule in ("demo_data", "convert", "train", "predict", "score", "plot", "examples", "compare", "summary"):
        assert list((finished_run / "results/benchmarks" / rule).glob("*.tsv")), rule
        assert list((finished_run / "results/logs" / rule).glob("*.log")), rule


def test_each_long_job_says_how_to_follow_its_log(first_run):
    workdir, output = first_run
    for job, log in [
        ("demo_data (synthetic=demo)", "demo_data/demo"),
        ("convert (dataset=demo,split=train)", "convert/demo_train"),
        ("convert (dataset=demo,split=val)", "convert/demo_val"),
        ("train (experiment=tiny)", "train/tiny"),
        ("predict (experiment=tiny)", "predict/tiny"),
    ]:
        assert re.search(
            rf"^Job \d+: {re.escape(job)}: follow its log with: tail -f results/logs/{log}.log$", output, re.MULTILINE
        ), (job, output[-3000:])
        assert (workdir / f"results/logs/{log}.log").stat().st_size > 0
    # what the README promises the train log shows: a line per epoch with the time left
    assert re.search(
        r"epoch 1/1: train loss .* images/s, \d+:\d\d:\d\d elapsed, 0:00:00 left$",
        (workdir / "results/logs/train/tiny.log").read_text(),
        re.MULTILINE,
    )


def test_second_run_has_nothing_to_do(finished_run):
    assert planned_jobs(snakemake(finished_run, "--dry-run")) == {}


def test_mpii_submission_target_builds_from_the_test_people(finished_run):
    target = "results/submission/tiny/pred_keypoints_mpii.mat"
    jobs = planned_jobs(snakemake(finished_run, "--dry-run", target))
    assert jobs == {"convert": 1, "predict_test": 1, "mpii_submission": 1}  # the trained model is reused
    snakemake(finished_run, target)
    store = open_store(finished_run / "results/stores/demo/test.zarr")
    assert store.attrs["split"] == "test" and len(store) == TINY["datasets"]["demo"]["synthetic"]["test"]
    preds = scipy.io.loadmat(finished_run / "results/predict/tiny/test/preds.mat")["preds"]
    pred = scipy.io.loadmat(finished_run / target, squeeze_me=True, struct_as_record=False)["pred"]
    assert [entry.image.name for entry in pred] == list(store.image_name)  # one test person per demo image
    for entry, person in zip(pred, preds):
        points = entry.annorect.annopoints.point
        assert [p.id for p in points] == list(range(16))
        np.testing.assert_allclose([[p.x, p.y] for p in points], person)
    assert planned_jobs(snakemake(finished_run, "--dry-run", target)) == {}


def _config_with(**changes) -> dict:
    config = yaml.safe_load(yaml.safe_dump(TINY))
    for dotted, value in changes.items():
        node = config
        *path, key = dotted.split(".")
        for part in path:
            node = node[part]
        node[key] = value
    return config


def test_plot_option_reruns_only_plotting(finished_run):
    write_config(finished_run, _config_with(**{"plots.dpi": 50}))
    try:
        jobs = planned_jobs(snakemake(finished_run, "--dry-run"))
    finally:
        write_config(finished_run, TINY)
    assert set(jobs) - {"all"} == {"plot", "examples", "compare"}


def test_training_option_reruns_train_predict_score_plot(finished_run):
    write_config(finished_run, _config_with(**{"experiments.tiny.training.lr": 0.001}))
    try:
        jobs = planned_jobs(snakemake(finished_run, "--dry-run"))
    finally:
        write_config(finished_run, TINY)
    assert set(jobs) - {"all"} == {"train", "predict", "score", "plot", "examples", "compare", "summary"}


def test_evaluation_option_does_not_retrain(finished_run):
    write_config(finished_run, _config_with(**{"experiments.tiny.evaluation.flip_test": False}))
    try:
        jobs = planned_jobs(snakemake(finished_run, "--dry-run"))
    finally:
        write_config(finished_run, TINY)
    assert set(jobs) - {"all"} == {"predict", "score", "plot", "examples", "compare", "summary"}


def test_new_experiment_reruns_only_the_comparison(finished_run):
    """A second experiment: its own chain runs, the existing one's does not; of what is
    already built only the side-by-side chart and table are redone."""
    config = _config_with()
    config["experiments"]["tiny2"] = {
        **config["experiments"]["tiny"],
        "model": {"arch": "hourglass", "stacks": 2, "blocks": 1, "features": 16},
    }
    config["default_experiments"] = ["tiny", "tiny2"]
    write_config(finished_run, config)
    try:
        jobs = planned_jobs(snakemake(finished_run, "--dry-run"))
    finally:
        write_config(finished_run, TINY)
    assert jobs == {
        "train": 1,
        "predict": 1,
        "score": 1,
        "plot": 1,
        "examples": 1,
        "compare": 1,
        "summary": 1,
        "all": 1,
    }


@pytest.fixture(scope="module")
def report(finished_run):
    snakemake(finished_run, "--report", "results/report.html")
    return finished_run / "results/report.html"


def test_report_builds_with_the_plots(report):
    html = report.read_text()
    for plot in (
        "curves.png",
        "pckh.png",
        "skeletons.png",
        "joints.png",
        "examples.png",
        "pckh_all.png",
        "summary.csv",
    ):
        assert plot in html, plot
    assert html.count("data:image/png;base64") >= 6 or html.count("image/png") >= 6


@pytest.mark.parametrize("target", ["snakemake", "group"])
def test_sigterm_during_training_loses_no_finished_output(tiny_run, tmp_path, target):
    """Issue 17's "plain SIGTERM leaves finished outputs marked incomplete", tried while train
    runs. SIGTERM to the snakemake process alone: it lets train finish, starts nothing more,
    and the next run does only the later rules. SIGTERM to the whole group (as a terminal or a
    batch system sends it): train is stopped and is the first job the next run plans. Either way
    nothing finished is redone or marked incomplete (the dry run would refuse incomplete
    files), and nothing half-written is left."""
    # the session's demo data and stores, so that the run starts at train
    copy_run(tiny_run[0], tmp_path, ("results/data", "results/stores"))
    write_config(tmp_path, _config_with(**{"experiments.tiny.training.epochs": 3}))
    command = snakemake_command(tmp_path)
    train_log, model = tmp_path / "results/logs/train/tiny.log", tmp_path / "results/train/tiny/model.pt"
    run = subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True
    )  # a group of its own, with its jobs
    try:
        deadline = time.monotonic() + 600
        while not (train_log.exists() and "epoch" in train_log.read_text()):  # training has begun
            assert run.poll() is None and time.monotonic() < deadline, run.communicate()[0][-3000:]
            time.sleep(0.2)
        assert not model.exists()
        (os.kill if target == "snakemake" else os.killpg)(run.pid, signal.SIGTERM)
        output = run.communicate(timeout=600)[0]
    finally:
        if run.poll() is None:
            os.killpg(run.pid, signal.SIGKILL)
            run.wait()
    assert run.returncode != 0 and not list((tmp_path / "results").rglob("*.partial*")), output[-3000:]
    marked_incomplete = [p for p in (tmp_path / ".snakemake/incomplete").rglob("*") if p.is_file()]
    assert not marked_incomplete, output[-3000:]
    jobs = planned_jobs(snakemake(tmp_path, "--dry-run"))
    assert not {"demo_data", "convert"} & set(jobs) and {"predict", "score"} <= set(jobs)
    if target == "snakemake":
        assert "Will exit after finishing currently running jobs" in output
        assert read_checkpoint(model)["epoch"] == 3  # the whole run, not a part of it
        assert "train" not in jobs
    else:
        assert not model.exists() and "train" in jobs


@pytest.fixture(scope="module")
def browser():
    """Headless Chromium (Debian's, on PATH) driven by Playwright; skips where either is absent."""
    sync_api = pytest.importorskip("playwright.sync_api", reason="no playwright (pip install -e '.[test]')")
    executable = shutil.which("chromium")
    if executable is None:
        pytest.skip("no Chromium to open the report in (Debian: apt-get install chromium; .ci/run installs it)")
    # no sandbox as root (CI's containers); no GPU on these machines
    args = ["--disable-gpu"] + (["--no-sandbox"] if os.geteuid() == 0 else [])
    with sync_api.sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=executable, headless=True, args=args)
        try:
            yield chromium
        finally:
            chromium.close()


def open_page(browser, url: str):
    """(the page at `url` in a 1400x900 view, the list its console errors, uncaught exceptions
    and failed loads go to as they happen)."""
    page = browser.new_page(viewport={"width": 1400, "height": 900}, device_scale_factor=1)
    errors: list[str] = []
    page.on(
        "console",
        lambda message: (
            message.type in ("error", "assert") and errors.append(f"{message.text} {message.location.get('url', '')}")
        ),
    )
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.on("requestfailed", lambda request: errors.append(f"{request.failure} {request.url}"))
    page.goto(url, wait_until="load")
    return page, errors


def test_report_in_a_browser_lists_and_renders_every_plot(finished_run, report, browser):
    """Headless Chromium opens the report without a console error, and every plot the
    workflow draws is reached through the report's navigation and shown: the browser decoded
    the very PNG (its size, its pixels on the screen), not a blank or broken image."""
    plots = sorted(path for path in OUTPUTS if path.endswith(".png"))
    page, errors = open_page(browser, report.as_uri())
    try:
        shown = report_images(page)
    finally:
        page.close()
    assert errors == []
    assert sorted(shown) == plots
    for path, (image, screenshot) in shown.items():
        drawn = Image.open(finished_run / path).convert("RGB")
        assert image["same_data"] and tuple(image["natural"]) == drawn.size, (path, image)
        seen, offset = where_shown(screenshot, drawn, image)
        assert seen.std() > 10, path  # not blank
        # compared at a quarter of the shown size, both area-averaged: the browser scales a wide
        # plot down with its own filter, whose aliasing of thin lines is not a rendering fault
        small = (max(1, seen.shape[1] // 4), max(1, seen.shape[0] // 4))
        seen_small = np.asarray(Image.fromarray(seen.astype(np.uint8)).resize(small, Image.BOX), dtype=float)
        expected = np.asarray(drawn.resize(small, Image.BOX), dtype=float)
        difference = np.abs(seen_small - expected).mean()
        assert difference < 5, (path, difference, offset)
        other = next(p for p in shown if p != path)  # and the comparison tells plots apart
        elsewhere = np.asarray(Image.open(finished_run / other).convert("RGB").resize(small, Image.BOX), dtype=float)
        assert np.abs(seen_small - elsewhere).mean() > difference + 5, (path, other)


def where_shown(screenshot, drawn, image: dict) -> tuple[np.ndarray, tuple[int, int]]:
    """The pixels of `screenshot` (the image's box with a margin of page) where `drawn`, at the
    size it is shown, matches best, and that place's offset from the box the page reported: a
    layout that moved by a few pixels between measuring and capturing is not a rendering fault."""
    width, height = round(image["box"]["width"]), round(image["box"]["height"])
    target = np.asarray(drawn.resize((width, height), Image.BOX), dtype=float)
    pixels = np.asarray(screenshot.convert("RGB"), dtype=float)
    candidates = [
        (np.abs(pixels[y : y + height, x : x + width] - target).mean(), (x, y))
        for y in range(pixels.shape[0] - height + 1)
        for x in range(pixels.shape[1] - width + 1)
    ]
    assert candidates, (image, screenshot.size)
    _, (x, y) = min(candidates)
    inset_x, inset_y = image["inset"]
    return pixels[y : y + height, x : x + width], (x - inset_x, y - inset_y)


# Snakemake's report (9.x) is a single-page React app with no URL routing: a result is reached
# as a reader reaches it, by clicking its category in the navigation, then the eye button of its
# row (for each value of the label toggles above the table). `app` is the app's own global.
RENDERED = "new Promise(done => setTimeout(done, 0))"  # React has rendered the click's update
CLICK_CATEGORY = f"""async name => {{
    const home = document.querySelector('nav ol a');
    if (home) home.click();  // back to the menu that lists the categories
    await {RENDERED};
    const link = [...document.querySelectorAll('nav a')].find(a => a.textContent.trim() === name);
    if (link) link.click();
    await {RENDERED};
    return !!link;
}}"""
CLICK_TOGGLE = f"""async n => {{
    document.querySelectorAll('nav input[type=radio]')[n].click();
    await {RENDERED};
}}"""
SHOW_RESULT = f"""async row => {{
    document.querySelectorAll('nav a[iconname=eye]')[row].click();
    await {RENDERED};
    const img = [...document.images].find(i => !i.closest('nav'));
    if (app.state.content !== 'img' || !img) return null;
    await img.decode();
    // the layout may still move (centring, a scrollbar): wait for two frames with one box
    let box = img.getBoundingClientRect();
    for (let frame = 0; frame < 60; frame++) {{
        await new Promise(done => requestAnimationFrame(() => requestAnimationFrame(done)));
        const now = img.getBoundingClientRect();
        if (now.x === box.x && now.y === box.y && now.width === box.width && now.height === box.height) break;
        box = now;
    }}
    return {{path: app.state.resultPath, same_data: img.src === results[app.state.resultPath].data_uri,
             natural: [img.naturalWidth, img.naturalHeight],
             box: {{x: box.x, y: box.y, width: box.width, height: box.height}}}};
}}"""
MARGIN = 8  # CSS pixels of page around each screenshot of a result


def report_images(page) -> dict[str, tuple[dict, Image.Image]]:
    """Every image result the report's navigation leads to: its path -> (what the page shows,
    a screenshot of it with up to MARGIN pixels of the page around it; `image["inset"]` is
    where the image's box starts in the screenshot). Fails when a category of the report's
    data has no link."""
    shown = {}
    for category in page.evaluate("Object.keys(categories)"):
        assert page.evaluate(CLICK_CATEGORY, category), f"no link to category {category}"
        toggles = page.evaluate("document.querySelectorAll('nav input[type=radio]').length")
        for toggle in range(-1, toggles):  # -1: as the category opens
            if toggle >= 0:
                page.evaluate(CLICK_TOGGLE, toggle)
            for row in range(page.evaluate("document.querySelectorAll('nav a[iconname=eye]').length")):
                image = page.evaluate(SHOW_RESULT, row)
                if image is not None and image["path"] not in shown:
                    # the viewport's pixels (not the full page's): the layout stays as measured
                    png = page.screenshot(clip=with_margin(image), animations="disabled", caret="initial")
                    shown[image["path"]] = image, Image.open(io.BytesIO(png))
    return shown


def with_margin(image: dict) -> dict:
    """The clip of `image`'s box grown by MARGIN on each side (not past the page's top left);
    records in `image["inset"]` the box's offset inside it."""
    box = image["box"]
    x, y = max(0.0, box["x"] - MARGIN), max(0.0, box["y"] - MARGIN)
    image["inset"] = (round(box["x"] - x), round(box["y"] - y))
    width, height = box["x"] - x + box["width"] + MARGIN, box["y"] - y + box["height"] + MARGIN
    return {"x": x, "y": y, "width": width, "height": height}


def test_misspelt_config_key_stops_the_dag_with_one_message(tmp_path):
    config = _config_with()
    config["experiments"]["tiny"]["training"]["epohcs"] = 2
    write_config(tmp_path, config)
    done = subprocess.run(snakemake_command(tmp_path, "--dry-run"), capture_output=True, text=True, timeout=300)
    assert done.returncode != 0
    assert "experiments.tiny.training: unknown key 'epohcs' (did you mean 'epochs'?)" in done.stdout + done.stderr
