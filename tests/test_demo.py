"""The demo page: the faces the CLI finds, bad files answered, the Gradio client, a real browser.

``tests/data/two_faces.jpg`` (10 KB) is composed for these tests from two face crops of the
mask-scenes photos ``maksssksksss669`` (masked) and ``maksssksksss609`` (unmasked), CC0, pasted
on a plain grey background. The model is a tiny one made here (P(mask) from the mean colour), so
the tests need neither the book's build nor its data; ``DLBOOK_DEMO_MODEL`` points the browser
test at a real shipped model instead (its screenshot then goes to ``_static/``).
"""

from __future__ import annotations

import csv
import os
import shutil
import tempfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from dlbook import cli
from dlbook.core import paths
from dlbook.facemask import analyse, classify, predict

PHOTO = Path(__file__).parent / "data" / "two_faces.jpg"
CHROMIUM = Path("/usr/bin/chromium")
SCREENSHOT = paths.REPO_ROOT / "_static" / "try_it_demo.jpg"


def _tiny_model(folder: Path) -> Path:
    """A shipped model whose P(with_mask) falls with the crop's mean red (the masked face is less red)."""
    import keras

    inputs = keras.Input((16, 16, 3))
    pooled = keras.layers.GlobalAveragePooling2D()(keras.layers.Rescaling(1 / 255)(inputs))
    model = classify.build_shipped_model(
        keras.Model(inputs, pooled), [-20.0, 0.0, 0.0], 11.0, 2.0, 16
    )
    path, _ = classify.save_shipped_model(
        model, folder / "mask_classifier.keras", {"image_size": 16, "temperature": 2.0}
    )
    return path


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    """The tiny model, a synthetic dataset to calibrate on, and the engine loaded from them."""
    from dlbook.facemask.data import make_synthetic_dataset

    root = tmp_path_factory.mktemp("demo")
    data_dir = make_synthetic_dataset(root / "face-mask", n_per_class=60, image_size=32, seed=2)
    real_model = os.environ.get("DLBOOK_DEMO_MODEL")
    if real_model:  # calibrated on the real data, with the real cache
        return {
            "model": Path(real_model),
            "data_dir": data_dir,
            "engine": analyse.load_engine(real_model),
        }
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("DLBOOK_CACHE", str(root / "cache"))
        model_path = _tiny_model(root)
        engine = analyse.load_engine(model_path, data_dir)
    return {"model": model_path, "data_dir": data_dir, "engine": engine}


def _cli_rows(model_path, tmp_path) -> list[dict]:
    out = tmp_path / "cli.csv"
    assert predict.run(model_path, [PHOTO], out, detect_faces=True, progress=False) == 0
    with open(out, newline="") as handle:
        return list(csv.DictReader(handle))


def _rows(path) -> list[dict]:
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


# ---------------------------------------------------------------------------------------------
# The prediction function


def test_the_page_finds_the_faces_and_classes_the_cli_finds(setup, tmp_path):
    found = analyse.analyse_files(setup["engine"], [str(PHOTO)], tmp_path / "out")
    cli_rows = _cli_rows(setup["model"], tmp_path)
    ours = _rows(found["csv"])
    assert len(cli_rows) == 2 and len(ours) == 2
    for mine, theirs in zip(ours, cli_rows, strict=True):
        assert mine["path"] == PHOTO.name
        assert [mine[k] for k in ("label", "x", "y", "width", "height")] == [
            theirs[k] for k in ("label", "x", "y", "width", "height")
        ]
        assert float(mine["prob_with_mask"]) == pytest.approx(
            float(theirs["prob_with_mask"]), abs=1e-5
        )
    classes = {row[6] for row in analyse.table_rows(found["results"])}
    assert classes == {"mask" if r["label"] == "with_mask" else "no mask" for r in cli_rows}


def test_the_tiny_model_tells_the_two_faces_apart(setup, tmp_path):
    """Guards the test photo: both classes occur, so a swapped label would be caught."""
    found = analyse.analyse_files(setup["engine"], [str(PHOTO)], tmp_path)
    if os.environ.get("DLBOOK_DEMO_MODEL"):
        pytest.skip("checks the tiny model only")
    assert sorted(f.label for f in found["results"][0].faces) == ["with_mask", "without_mask"]


def test_counts_cover_every_class_and_the_flag():
    faces = [
        analyse.Face((0, 0, 5, 5), "with_mask", 0.9, "", ("with_mask",)),
        analyse.Face((9, 0, 5, 5), "with_mask", 0.6, "chin", ("without_mask", "with_mask")),
        analyse.Face((0, 9, 5, 5), "without_mask", 0.1, "", ("without_mask",)),
    ]
    result = analyse.PhotoResult("p.jpg", faces, np.zeros((20, 20, 3), np.uint8), [])
    assert analyse.class_counts([result]) == {
        "mask": 1,
        "no mask": 1,
        "mask worn wrong": 1,
        "to check": 1,
    }
    checks = [row[-1] for row in analyse.table_rows([result])]
    assert checks == ["", analyse.CHECK, ""]


def test_a_webcam_snapshot_is_analysed_like_an_upload(setup):
    from dlbook.facemask import demo

    snapshot = np.asarray(Image.open(PHOTO).convert("RGB"))
    with demo.private_temp_dir():
        first, _, rows, counts, csv_path, status = demo.snapshot_outputs(setup["engine"], snapshot)
        assert [r[0] for r in rows] == ["webcam.png"] * 2 and first.shape == snapshot.shape
        assert counts.startswith("**2** faces") and Path(csv_path).is_file()
        assert demo.snapshot_outputs(setup["engine"], None)[2] == []


def test_the_fit_column_is_the_one_predict_fit_adds(setup, tmp_path):
    """With a fit model beside the classifier, masked faces get predict --fit's fit column."""
    import keras

    from dlbook.facemask import fit

    if os.environ.get("DLBOOK_DEMO_MODEL"):
        pytest.skip("checks the tiny model only")
    folder = tmp_path / "models"
    model_path = _tiny_model(folder)
    inputs = keras.Input((16, 16, 3))
    pooled = keras.layers.GlobalAveragePooling2D()(keras.layers.Rescaling(1 / 255)(inputs))
    head = keras.layers.Dense(3, activation="softmax")
    probs = head(pooled)
    head.set_weights(
        [np.array([[0, 9, 0], [0, 0, 9], [9, 0, 0]], np.float32), np.zeros(3, np.float32)]
    )
    fit.save_fit_model(keras.Model(inputs, probs), folder / "mask_fit.keras", {"image_size": 16})
    engine = analyse.load_engine(model_path, setup["data_dir"], detector=setup["engine"].detector)
    found = analyse.analyse_files(engine, [str(PHOTO)], tmp_path / "out")
    out = tmp_path / "cli.csv"
    assert predict.run(model_path, [PHOTO], out, detect_faces=True, progress=False) == 0
    assert fit.run_fit(out, folder / "mask_fit.keras") == 0
    theirs, ours = _rows(out), _rows(found["csv"])
    assert [r["fit"] for r in ours] == [r["fit"] for r in theirs]
    assert any(r["fit"] in fit.FIT_CLASSES for r in ours)
    shown = [row[6] for row in analyse.table_rows(found["results"])]
    assert shown == [analyse.display_class(r["label"], r["fit"]) for r in theirs]


# ---------------------------------------------------------------------------------------------
# Conformal flag


def test_sets_hold_both_classes_only_for_unsure_faces():
    scores = np.linspace(0.0, 0.6, 99)  # LAC true-label scores: the threshold is their 90th %
    calibration = analyse.calibrate(scores, alpha=0.1)
    assert calibration.threshold == pytest.approx(np.sort(scores)[89])
    sets = analyse.conformal_sets(np.array([0.02, 0.5, 0.97]), calibration)
    assert sets == [("without_mask",), ("without_mask", "with_mask"), ("with_mask",)]
    assert analyse.conformal_sets(np.array([0.5]), None) == [None]


def test_calibration_scores_are_computed_once_per_model_file(setup, monkeypatch, tmp_path):
    from dlbook.facemask import data

    model, metadata = classify.load_shipped_model(setup["model"])
    first = analyse.calibration_scores(setup["model"], model, metadata, setup["data_dir"])
    assert first.ndim == 1 and len(first) >= 9 and ((first >= 0) & (first <= 1)).all()

    def no_data(*args, **kwargs):
        raise AssertionError("the cached scores should have been used")

    monkeypatch.setattr(data, "load_face_mask", no_data)
    again = analyse.calibration_scores(setup["model"], model, metadata, setup["data_dir"])
    np.testing.assert_array_equal(first, again)
    copy = tmp_path / "other" / "mask_classifier.keras"
    copy.parent.mkdir()
    shutil.copy(setup["model"], copy)  # same bytes, same sha256: still cached
    np.testing.assert_array_equal(first, analyse.calibration_scores(copy, model, metadata))


def test_the_page_states_alpha(setup):
    from dlbook.facemask import demo

    text = demo.about_markdown(setup["engine"])
    assert "alpha = 0.1" in text and analyse.CHECK in text


# ---------------------------------------------------------------------------------------------
# Bad input


def test_bad_files_are_answered_and_the_good_one_still_analysed(setup, tmp_path):
    text = tmp_path / "notes.txt"
    text.write_text("not a photo")
    truncated = tmp_path / "cut.jpg"
    truncated.write_bytes(PHOTO.read_bytes()[: PHOTO.stat().st_size // 2])
    blank = tmp_path / "wall.png"
    Image.new("RGB", (320, 240), (200, 200, 200)).save(blank)
    files = [str(p) for p in (text, truncated, blank, PHOTO)]
    found = analyse.analyse_files(setup["engine"], files, tmp_path / "out")
    notes = "\n".join(found["notes"])
    assert "notes.txt: not an image" in notes
    assert "cut.jpg: corrupt or truncated image" in notes
    assert "wall.png: no face found" in notes
    assert [r.name for r in found["results"]] == ["wall.png", PHOTO.name]
    assert found["results"][0].annotated.shape == (240, 320, 3)
    assert len(found["results"][1].faces) == 2
    assert [r["label"] for r in _rows(found["csv"])][0] == "no_face"


def test_a_12000_px_photo_is_downscaled_and_said_so(setup, tmp_path):
    big = tmp_path / "panorama.jpg"
    Image.new("RGB", (12000, 600), (90, 120, 150)).save(big, quality=60)
    image, note = analyse.read_photo(big)
    assert image.shape == (205, analyse.MAX_SIDE, 3)
    assert "12,000 x 600 px, downscaled to 4,096 x 205 px" in note
    clear = tmp_path / "tall.png"
    Image.new("RGBA", (300, 12000), (0, 0, 0, 0)).save(clear)
    image, _ = analyse.read_photo(clear)
    assert image.shape == (analyse.MAX_SIDE, 102, 3) and (image == 255).all()  # onto white
    found = analyse.analyse_files(setup["engine"], [str(big)], tmp_path / "out")
    assert any("downscaled" in n for n in found["notes"])


def test_demo_without_a_model_names_the_build_command(tmp_path, capsys):
    from dlbook.facemask import demo

    status = cli.main(["demo", "--no-browser", "--model", str(tmp_path / "none.keras")])
    assert status == 2
    assert demo.BUILD_COMMAND in capsys.readouterr().err


# ---------------------------------------------------------------------------------------------
# The running app


@pytest.fixture(scope="module")
def app_url(setup):
    """The page served on a free localhost port, its uploads in a folder removed afterwards."""
    from dlbook.facemask import demo

    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
    with demo.private_temp_dir() as folder:
        app = demo.build_app(setup["engine"])
        demo.launch(app, demo.free_port(), open_browser=False, block=False)
        try:
            yield app.local_url, folder
        finally:
            app.close()
    assert not folder.exists()


def _table(result) -> list[list]:
    table = result[2]
    return table["data"] if isinstance(table, dict) else table


def test_old_request_folders_are_removed(tmp_path, monkeypatch):
    from dlbook.facemask import demo

    monkeypatch.setenv("GRADIO_TEMP_DIR", str(tmp_path))
    old = demo.request_folder()
    (old / "faces.csv").write_text("path\n")
    os.utime(old, (1, 1))
    new = demo.request_folder(max_age_s=60)
    assert not old.exists() and new.parent == tmp_path and new.is_dir()


def test_demo_on_a_busy_port_says_so(setup, capsys, monkeypatch):
    import socket

    from dlbook.facemask import demo

    monkeypatch.setattr(demo, "load_engine", lambda *args: setup["engine"])
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        status = demo.run(setup["model"], port, open_browser=False, data_dir=setup["data_dir"])
    assert status == 2
    assert f"cannot start on port {port}" in capsys.readouterr().err


def test_the_gradio_client_gets_the_faces_and_the_app_survives_a_bad_file(setup, app_url, tmp_path):
    from gradio_client import Client, handle_file

    url, folder = app_url
    client = Client(url, verbose=False)
    cli_labels = [r["label"] for r in _cli_rows(setup["model"], tmp_path)]
    good = client.predict([handle_file(str(PHOTO))], api_name="/analyse")
    rows = _table(good)
    assert len(rows) == 2
    assert [r[6] for r in rows] == ["mask" if c == "with_mask" else "no mask" for c in cli_labels]
    assert Path(good[4]).read_text().startswith("path,label,prob_with_mask,x,y,width,height")

    second = tmp_path / "again.jpg"
    shutil.copy(PHOTO, second)
    both = client.predict([handle_file(str(PHOTO)), handle_file(str(second))], api_name="/analyse")
    assert [r[0] for r in _table(both)] == [PHOTO.name] * 2 + ["again.jpg"] * 2
    assert len(both[1]["value"]) == 2 and len(_rows(both[4])) == 4  # every photo, one CSV

    text = tmp_path / "notes.txt"
    text.write_text("not a photo")
    bad = client.predict([handle_file(str(text))], api_name="/analyse")
    assert "not an image" in bad[5] and _table(bad) in ([], [[""] * len(analyse.COLUMNS)])
    jobs = [client.submit([handle_file(str(PHOTO))], api_name="/analyse") for _ in range(4)]
    assert [len(_table(job.result(timeout=120))) for job in jobs] == [2, 2, 2, 2]
    uploads = [p for p in folder.rglob("*") if p.is_file()]
    assert uploads and all(folder in p.parents for p in uploads)


@pytest.mark.slow
def test_a_real_browser_reads_the_faces_and_the_error(setup, app_url, tmp_path):
    if not CHROMIUM.exists():
        pytest.skip(f"{CHROMIUM} is missing: install Debian's chromium to run the browser test")
    from playwright.sync_api import sync_playwright

    url, _ = app_url
    cli_labels = [r["label"] for r in _cli_rows(setup["model"], tmp_path)]
    text = tmp_path / "notes.txt"
    text.write_text("not a photo")
    args = ["--no-sandbox", "--disable-gpu", "--disable-background-networking"]
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=str(CHROMIUM), headless=True, args=args
        )
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 1400})
            page.goto(url)
            page.locator("#photos input[type=file]").set_input_files(str(PHOTO))
            page.locator("#counts").get_by_text("faces").wait_for(timeout=60_000)
            rows = _rendered_rows(page)
            assert len(rows) == (len(cli_labels) if os.environ.get("DLBOOK_DEMO_MODEL") else 2)
            assert [r[6] for r in rows] == [
                analyse.SHOWN[c] for c in cli_labels if c in analyse.SHOWN
            ]
            if os.environ.get("DLBOOK_DEMO_MODEL"):
                page.screenshot(path=str(SCREENSHOT), full_page=True, type="jpeg", quality=80)
            page.get_by_label("Clear").first.click()
            page.locator("#photos input[type=file]").set_input_files(str(text))
            page.locator("#status").get_by_text("not an image").wait_for(timeout=60_000)
        finally:
            browser.close()


def _rendered_rows(page) -> list[list[str]]:
    """The face table's body cells as the browser renders them."""
    rows = page.locator("#faces [role=row].virtual-row")
    return [
        [cell.strip() for cell in rows.nth(i).locator("[role=gridcell]").all_inner_texts()]
        for i in range(rows.count())
    ]


@pytest.mark.slow
def test_the_benchmark_starts_the_command_and_times_a_photo(setup, capsys):
    from dlbook.facemask import demo

    folders = set(Path(tempfile.gettempdir()).glob("dlbook-demo-*"))
    found = demo.benchmark(setup["model"], PHOTO, repeats=2, data_dir=setup["data_dir"])
    # the command, stopped by SIGTERM, and the benchmark removed their temporary folders
    assert set(Path(tempfile.gettempdir()).glob("dlbook-demo-*")) == folders
    assert 0 < found["start_s"] < 180 and found["faces"] == 2
    assert 0 < found["photo_640x480_min_ms"] <= found["photo_640x480_median_ms"]
    assert "640x480 photo with 2 faces" in capsys.readouterr().out
