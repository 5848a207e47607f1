"""The predict command: batched, decoded in the background, the same CSV as one at a time."""

import csv

import numpy as np
import pytest
from PIL import Image

from dlbook.facemask import classify, predict


@pytest.fixture
def shipped(shipped_classifier):
    """The shared tiny shipped classifier (``conftest.shipped_classifier``)."""
    return shipped_classifier


@pytest.fixture
def folder(tmp_path):
    """75 photos of assorted sizes and formats (more than two batches), one broken file."""
    rng = np.random.default_rng(0)
    root = tmp_path / "photos"
    (root / "sub").mkdir(parents=True)
    for index in range(75):
        size = (int(rng.integers(12, 60)), int(rng.integers(12, 60)))
        image = rng.integers(0, 256, (*size, 3), dtype=np.uint8)
        image[..., 0] = rng.integers(0, 256)  # a red level per photo: both classes occur
        suffix = ".png" if index % 3 else ".jpg"
        Image.fromarray(image).save(root / ("sub" if index % 2 else "") / f"p{index:03d}{suffix}")
    (root / "sub" / "broken.jpg").write_bytes(b"\xff\xd8\xff truncated")
    return root


def _read(path):
    with open(path, newline="") as handle:
        return list(csv.reader(handle))


def test_batched_prediction_writes_the_one_at_a_time_csv(shipped, folder, tmp_path, capsys):
    model, meta = classify.load_shipped_model(shipped)
    files, _ = predict.collect_image_files([folder])
    assert len(files) == 76 > 2 * predict.BATCH_SIZE
    reference, ref_skipped = predict.predict_one_at_a_time(model, 16, files)
    batched, skipped = predict.predict_files(model, 16, files, progress=False)
    assert skipped == ref_skipped and len(skipped) == 1
    one = _read(predict.write_predictions_csv(reference, tmp_path / "one.csv"))
    many = _read(predict.write_predictions_csv(batched, tmp_path / "many.csv"))
    assert {row[1] for row in many[1:]} == {"with_mask", "without_mask"}
    assert [row[:2] for row in many] == [row[:2] for row in one]
    probs = np.array([[float(a[2]), float(b[2])] for a, b in zip(one[1:], many[1:], strict=True)])
    np.testing.assert_allclose(probs[:, 1], probs[:, 0], atol=2e-6)  # the CSV's last digit


def test_fast_runtime_gives_the_same_predictions(shipped, folder):
    model, _ = classify.load_shipped_model(shipped)
    files, _ = predict.collect_image_files([folder])
    keras_rows, _ = predict.predict_files(model, 16, files, progress=False, runtime_name="keras")
    fast_rows, _ = predict.predict_files(model, 16, files, progress=False, runtime_name="tflite")
    assert [r.label for r in fast_rows] == [r.label for r in keras_rows]
    np.testing.assert_allclose(
        [r.prob_with_mask for r in fast_rows], [r.prob_with_mask for r in keras_rows], atol=1e-5
    )


def test_decoding_keeps_file_order_and_bounds_the_batches(folder):
    files, _ = predict.collect_image_files([folder])
    kept_all, skipped_all, sizes = [], [], []
    for images, kept, skipped in predict.decoded_batches(files, 16, batch_size=10):
        assert len(images) == len(kept) and len(kept) + len(skipped) <= 10
        assert all(image.shape == (16, 16, 3) for image in images)
        kept_all += kept
        skipped_all += [path for path, _ in skipped]
        sizes.append(len(kept) + len(skipped))
    assert kept_all == [f for f in files if f.name != "broken.jpg"]
    assert [p.rsplit("/", 1)[-1] for p in skipped_all] == ["broken.jpg"] and sizes[-1] == 6


def test_predict_progress_in_a_log_is_a_few_lines(shipped, folder, tmp_path, capfd):
    status = predict.run(shipped, [folder], tmp_path / "out.csv", progress=True)
    assert status == 0
    err = capfd.readouterr().err
    progress_lines = [line for line in err.splitlines() if line.startswith("predicting")]
    assert 2 <= len(progress_lines) <= 5
    assert "absl" not in err and "oneDNN" not in err


def test_detect_rows_name_one_of_the_three_classes_and_a_score(tmp_path):
    rows = [
        predict.Prediction("a.jpg", "with_mask", 0.9, (1, 2, 30, 40)),
        predict.Prediction("a.jpg", "without_mask", 0.25, (50, 2, 20, 20)),
        predict.Prediction("b.jpg", "no_face", None),
    ]
    path = predict.write_predictions_csv(rows, tmp_path / "p.csv")
    written = list(csv.DictReader(open(path, newline="")))
    assert [r["class"] for r in written] == ["with_mask", "without_mask", ""]
    assert [r["score"] for r in written] == ["0.900000", "0.750000", ""]  # P(the class said)
    assert all(r["class"] in (*predict.SCENE_CLASSES, "") for r in written)


def test_detect_csv_has_box_columns_even_without_faces(tmp_path):
    path = predict.write_predictions_csv(
        [predict.Prediction("b.jpg", "no_face", None)], tmp_path / "p.csv", detect=True
    )
    assert path.read_text().splitlines()[0] == (
        "path,label,prob_with_mask,x,y,width,height,class,score"
    )


def test_apply_fit_marks_badly_worn_masks(tmp_path):
    path = tmp_path / "faces.csv"
    path.write_text(
        "path,label,prob_with_mask,x,y,width,height,class,score,fit\n"
        "a.jpg,with_mask,0.9,1,1,9,9,with_mask,0.9,correct\n"
        "a.jpg,with_mask,0.8,20,1,9,9,with_mask,0.8,nose_exposed\n"
        "a.jpg,without_mask,0.1,40,1,9,9,without_mask,0.9,\n"
    )
    assert predict.apply_fit(path) == 1
    written = list(csv.DictReader(open(path, newline="")))
    assert [r["class"] for r in written] == ["with_mask", "mask_weared_incorrect", "without_mask"]
    assert written[1]["score"] == "0.8"
