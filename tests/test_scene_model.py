"""The shipped real-photo pipeline: its head as arrays, saved and loaded, run by predict and
evaluate-scenes, and the chapter's check that the shipped copy gives the page's boxes."""

import csv
import json

import numpy as np
import pytest
from PIL import Image

from dlbook import cli
from dlbook.facemask import scene_model
from dlbook.facemask.data.voc import SCENE_CLASSES
from dlbook.facemask.scene_classifier import SCENE_LABELS


def _sklearn_head(labels, seed=0):
    from dlbook.methods import heads

    rng = np.random.default_rng(seed)
    x = rng.normal(size=(len(labels), 6)) + np.asarray(labels)[:, None]
    return heads.fit_logistic(x, np.asarray(labels), 1.0, seed), x


@pytest.mark.parametrize("labels", [[0, 1, 3] * 10, [0, 1] * 10, [0, 1, 2, 3] * 8])
def test_linear_head_gives_scikit_learns_probabilities(labels):
    model, x = _sklearn_head(labels)
    head = scene_model.LinearHead.from_estimator(model, len(SCENE_LABELS))
    probs = head.predict_proba(x)
    assert probs.shape == (len(x), len(SCENE_LABELS))
    np.testing.assert_allclose(probs[:, model.classes_], model.predict_proba(x), atol=1e-10)
    missing = sorted(set(range(len(SCENE_LABELS))) - set(labels))
    assert (probs[:, missing] == 0).all()


def test_pipeline_settings_that_cannot_run_are_refused():
    with pytest.raises(scene_model.SceneModelError, match="needs the detector's head"):
        scene_model.ScenePipeline("own", "own", "efficientnet_lite0", cut=0.3)
    with pytest.raises(scene_model.SceneModelError, match="judge='head'"):
        scene_model.ScenePipeline("blazeface", "own", "efficientnet_lite0", cut=0.3)
    with pytest.raises(scene_model.SceneModelError, match="use one of"):
        scene_model.ScenePipeline("yolo", "own", "efficientnet_lite0", cut=0.3)


def lite0_or_skip():
    from dlbook.methods import backbones

    ok, why = backbones.available("efficientnet_lite0")
    if not ok:
        pytest.skip(why)


@pytest.fixture
def saved_pipeline(tmp_path):
    """An own-detector pipeline judged by a head on Lite0 features, saved; untrained weights
    whose boxes still cover the photo (a low detector floor keeps every peak)."""
    lite0_or_skip()
    import keras

    from dlbook.facemask.detect.own import model as own

    keras.utils.set_random_seed(0)
    detector = own.build_head({8: 40, 16: 112}, 3, width=8, depth=1)
    rng = np.random.default_rng(0)
    labels = np.arange(40) % 4
    x = rng.normal(size=(40, 1280)) + labels[:, None] * 0.1
    from dlbook.methods import heads

    head = scene_model.LinearHead.from_estimator(
        heads.fit_logistic(x, labels, 1.0, 0), len(SCENE_LABELS)
    )
    pipeline = scene_model.ScenePipeline(
        "own",
        "head",
        "efficientnet_lite0",
        cut=0.2,
        input_size=64,
        detector_min_score=0.0,
        max_boxes=5,
        crop_size=64,
        use_det_score=True,
        detector_head=detector,
        class_head=head,
    )
    folder = tmp_path / "models" / scene_model.FOLDER
    scene_model.save(pipeline, folder)
    return pipeline, folder


def _photo(rng, size=(48, 64)):
    return rng.integers(0, 256, (*size, 3), dtype=np.uint8)


def test_a_saved_pipeline_loads_back_and_finds_the_same_faces(saved_pipeline):
    pipeline, folder = saved_pipeline
    loaded = scene_model.load(folder)
    assert scene_model.is_scene_model(folder) and scene_model.is_scene_model(
        folder / scene_model.SETTINGS_FILE
    )
    image = _photo(np.random.default_rng(1))
    boxes, labels, scores = pipeline.find(image)
    again = loaded.find(image)
    assert 0 < len(boxes) <= 5 and (np.diff(scores) <= 0).all()  # best first
    assert ((labels >= 0) & (labels < 3)).all()
    assert (boxes[:, 2] <= 64).all() and (boxes[:, 3] <= 48).all()  # the photo's pixels
    np.testing.assert_allclose(again[0], boxes)
    np.testing.assert_array_equal(again[1], labels)
    np.testing.assert_allclose(again[2], scores, atol=1e-6)
    kept = loaded.find(image, min_score=float(np.median(scores)))
    assert len(kept[0]) == int((scores >= np.median(scores)).sum())
    faces = loaded.faces(image, min_score=pipeline.min_score)  # as a user reads them
    assert [name for _, name, _ in faces] == [SCENE_CLASSES[c] for c in labels]
    x, y, width, height = faces[0][0]
    np.testing.assert_allclose([x, y, x + width, y + height], boxes[0], atol=1.0)  # whole px
    assert len(loaded.faces(image)) == int((scores >= pipeline.cut).sum())  # default: the cut


def test_an_altered_or_missing_file_is_named(saved_pipeline, tmp_path):
    _, folder = saved_pipeline
    with pytest.raises(scene_model.SceneModelError, match="does not exist"):
        scene_model.load(tmp_path / "nowhere")
    (folder / scene_model.HEAD_FILE).write_bytes(b"changed")
    with pytest.raises(scene_model.SceneModelError, match="class_head.npz differs"):
        scene_model.load(folder)
    (folder / scene_model.SETTINGS_FILE).write_text("{")
    with pytest.raises(scene_model.SceneModelError, match="not valid JSON"):
        scene_model.load(folder)


def test_predict_with_the_pipeline_writes_one_scene_class_per_face(saved_pipeline, tmp_path):
    pipeline, folder = saved_pipeline
    rng = np.random.default_rng(2)
    (tmp_path / "photos").mkdir()
    for k in range(2):
        Image.fromarray(_photo(rng)).save(tmp_path / "photos" / f"p{k}.png")
    (tmp_path / "photos" / "broken.jpg").write_bytes(b"not an image")
    out = tmp_path / "faces.csv"
    status = cli.main(
        ["predict", "--model", str(folder), "--images", str(tmp_path / "photos"),
         "--out", str(out), "--no-progress", "--min-score", "0"]
    )  # fmt: skip
    assert status == 0
    rows = list(csv.DictReader(open(out)))
    assert {r["path"].rsplit("/", 1)[-1] for r in rows} == {"p0.png", "p1.png"}
    assert all(r["class"] in ("with_mask", "without_mask", "mask_weared_incorrect") for r in rows)
    assert all(float(r["score"]) >= 0 and r["x"] != "" for r in rows)
    cut = cli.main(
        ["predict", "--model", str(folder), "--images", str(tmp_path / "photos"),
         "--out", str(tmp_path / "cut.csv"), "--no-progress"]
    )  # fmt: skip
    kept = list(csv.DictReader(open(tmp_path / "cut.csv")))
    assert cut == 0 and all(r["class"] == "" or float(r["score"]) >= pipeline.cut for r in kept)
    assert len([r for r in kept if r["class"]]) <= len(rows)


def test_fit_with_the_pipeline_is_refused(saved_pipeline, tmp_path, capsys):
    _, folder = saved_pipeline
    status = cli.main(
        ["predict", "--model", str(folder), "--images", str(tmp_path), "--out",
         str(tmp_path / "x.csv"), "--detect", "--fit"]
    )  # fmt: skip
    assert status == 2 and "judges mask fit itself" in capsys.readouterr().err


def test_evaluate_scenes_runs_the_pipeline_and_ranks_every_box(saved_pipeline, tmp_path):
    _, folder = saved_pipeline
    xml = (
        "<annotation><size><width>64</width><height>48</height></size><object><name>with_mask"
        "</name><bndbox><xmin>8</xmin><ymin>8</ymin><xmax>30</xmax><ymax>30</ymax></bndbox>"
        "</object></annotation>"
    )
    (tmp_path / "images").mkdir()
    (tmp_path / "annotations").mkdir()
    rng = np.random.default_rng(3)
    for stem in ("a", "b"):
        Image.fromarray(_photo(rng)).save(tmp_path / "images" / f"{stem}.jpg")
        (tmp_path / "annotations" / f"{stem}.xml").write_text(xml)
    out = tmp_path / "report.json"
    status = cli.main(
        ["evaluate-scenes", "--images", str(tmp_path / "images"), "--annotations",
         str(tmp_path / "annotations"), "--out", str(out), "--model", str(folder),
         "--n-boot", "3", "--no-progress"]
    )  # fmt: skip
    report = json.loads(out.read_text())
    assert status == 0 and report["photos"] == 2 and report["model"] == str(folder)
    assert report["boxes_found"] == 10  # max_boxes 5 per photo, none cut: AP sees the ranking


def test_agreement_counts_matching_boxes_and_score_gaps():
    from dlbook.experiments.real_photos.shipping import agreement

    box = np.array([[0.0, 0.0, 10.0, 10.0]])
    expected = [(box, np.array([0]), np.array([0.9])), (box, np.array([1]), np.array([0.5]))]
    got = [
        (box, np.array([0]), np.array([0.9 + 1e-4])),
        (np.vstack([box + 5, box]), np.array([1, 2]), np.array([0.5, 0.4])),  # class differs
    ]
    check = agreement(expected, got)
    assert check["boxes"] == 2 and check["matched"] == 0.5 and check["extra"] == 1
    assert check["max_score_difference"] == pytest.approx(1e-4)


def test_boxes_that_cannot_reach_the_cut_are_not_judged(saved_pipeline, monkeypatch):
    pipeline, _ = saved_pipeline
    image = _photo(np.random.default_rng(4))
    everything = pipeline.find(image, 0.0)
    detector_scores = pipeline.find_boxes(image)[2]
    floor = float(np.median(detector_scores))
    judged = []
    original = pipeline.judge_boxes
    monkeypatch.setattr(
        pipeline,
        "judge_boxes",
        lambda im, b, lab, s: judged.append(len(b)) or original(im, b, lab, s),
    )
    kept = pipeline.find(image, floor)
    keep = everything[2] >= floor
    np.testing.assert_allclose(kept[0], everything[0][keep])
    np.testing.assert_allclose(kept[2], everything[2][keep])
    assert judged[0] == int((detector_scores >= floor).sum()) < len(detector_scores)


def test_the_demo_page_runs_the_pipeline(saved_pipeline, tmp_path):
    import dataclasses
    from pathlib import Path

    from dlbook.facemask import analyse, demo

    pipeline = dataclasses.replace(saved_pipeline[0], cut=0.0)  # untrained: its scores are low
    folder = scene_model.save(pipeline, tmp_path / "cut0").parent
    engine = analyse.load_engine(folder)
    assert engine.scenes is not None and engine.columns == analyse.SCENE_COLUMNS
    assert "No conformal flag" in demo.about_markdown(engine)
    photo = Path(__file__).parent / "data" / "two_faces.jpg"
    found = analyse.analyse_files(engine, [str(photo)], tmp_path / "out")
    faces = found["results"][0].faces
    assert faces
    rows = analyse.table_rows(found["results"])
    assert all(len(row) == len(analyse.SCENE_COLUMNS) for row in rows) and len(rows) == len(faces)
    assert all(f.score >= pipeline.cut and f.shown_class in analyse.COLOURS for f in faces)
    written = list(csv.DictReader(open(found["csv"])))
    assert [r["class"] for r in written if r["class"]] == [f.label for f in faces]


def test_predict_without_a_model_or_a_build_names_the_build(monkeypatch, tmp_path, capsys):
    from dlbook.facemask import predict

    monkeypatch.setattr(predict, "default_model", lambda detect: tmp_path / "full" / "m.keras")
    status = cli.main(["predict", "--images", str(tmp_path), "--out", str(tmp_path / "x.csv")])
    assert status == 2 and "run the full build" in capsys.readouterr().err
