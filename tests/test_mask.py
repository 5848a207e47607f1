import csv

import numpy as np
import pytest
from PIL import Image

from dlbook import cli
from dlbook.facemask import classify, data, predict
from dlbook.methods import heads


def _tiny_backbone(image_size):
    import keras

    inputs = keras.Input((image_size, image_size, 3))
    x = keras.layers.Rescaling(1 / 255)(inputs)
    return keras.Model(inputs, keras.layers.GlobalAveragePooling2D()(x))


@pytest.fixture
def tiny_model(tmp_path):
    """A shipped model whose P(with_mask) rises with the image's mean red level."""
    model = classify.build_shipped_model(_tiny_backbone(16), [20.0, 0.0, 0.0], -10.0, 2.0, 16)
    path, _ = classify.save_shipped_model(
        model, tmp_path / "model" / "mask_classifier.keras", {"image_size": 16, "temperature": 2.0}
    )
    return path


def test_shipped_model_applies_head_and_temperature(tiny_model):
    model, meta = classify.load_shipped_model(tiny_model)
    assert meta["class_names"] == list(data.CLASS_NAMES) and meta["image_size"] == 16
    images = np.zeros((2, 16, 16, 3), np.uint8)
    images[1, ..., 0] = 255
    # logit = 20 * mean red - 10, divided by T = 2.
    expected = classify.sigmoid(np.array([-10.0, 10.0]) / 2)
    assert np.allclose(classify.predict_images(model, images), expected, atol=1e-5)


def test_fit_temperature_recovers_the_true_temperature():
    rng = np.random.default_rng(0)
    true_logits = rng.normal(0, 2, 20_000)
    labels = (rng.uniform(size=true_logits.size) < classify.sigmoid(true_logits)).astype(int)
    assert classify.fit_temperature(3.0 * true_logits, labels) == pytest.approx(3.0, rel=0.05)
    with pytest.raises(ValueError, match="must be equal"):
        classify.fit_temperature(np.zeros(3), np.zeros(2))


def _write_images(folder):
    (folder / "nested").mkdir(parents=True)
    red = np.zeros((30, 20, 3), np.uint8)
    red[..., 0] = 250
    Image.fromarray(red).save(folder / "red.png")
    Image.fromarray(np.zeros((25, 25, 3), np.uint8)).save(folder / "nested" / "black image.jpg")
    (folder / "nested" / "broken.jpg").write_bytes(b"\xff\xd8\xff not really a jpeg")
    (folder / "notes.txt").write_text("not an image")


def test_predict_command_end_to_end(tiny_model, tmp_path, capsys):
    _write_images(tmp_path / "images")
    out = tmp_path / "preds.csv"
    status = cli.main(
        [
            "predict",
            "--model",
            str(tiny_model),
            "--images",
            str(tmp_path / "images"),
            str(tmp_path / "missing.jpg"),
            "--out",
            str(out),
            "--no-progress",
        ]
    )
    assert status == 0
    err = capsys.readouterr().err
    assert "broken.jpg" in err and "missing.jpg" in err
    with open(out, newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert list(rows[0]) == ["path", "label", "prob_with_mask"]
    by_name = {row["path"].rsplit("/", 1)[-1]: row for row in rows}
    assert set(by_name) == {"red.png", "black image.jpg"}  # the .txt is not walked into
    assert by_name["red.png"]["label"] == "with_mask"
    assert by_name["black image.jpg"]["label"] == "without_mask"
    assert float(by_name["red.png"]["prob_with_mask"]) > 0.99


def test_predict_command_exit_codes(tiny_model, tmp_path, capsys):
    out = tmp_path / "preds.csv"
    assert (
        cli.main(
            [
                "predict",
                "--model",
                str(tmp_path / "nope.keras"),
                "--images",
                ".",
                "--out",
                str(out),
                "--no-progress",
            ]
        )
        == 2
    )
    assert "does not exist" in capsys.readouterr().err
    bad = tmp_path / "bad" / "mask_classifier.keras"
    bad.parent.mkdir()
    bad.write_bytes(b"garbage")
    bad.with_suffix(".json").write_text('{"image_size": 16, "temperature": 1.0}')
    assert (
        cli.main(
            ["predict", "--model", str(bad), "--images", ".", "--out", str(out), "--no-progress"]
        )
        == 2
    )
    assert "not a loadable Keras model" in capsys.readouterr().err
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"")
    assert (
        cli.main(
            [
                "predict",
                "--model",
                str(tiny_model),
                "--images",
                str(broken),
                "--out",
                str(out),
                "--no-progress",
            ]
        )
        == 3
    )
    assert "no readable image" in capsys.readouterr().err
    assert not out.exists()


def test_linear_head_picks_a_strength_and_separates_the_classes():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(200, 5))
    y = (x[:, 0] > 0).astype(int)
    model, strength = heads.fit_logistic_chosen_on_validation(x[:150], y[:150], x[150:], y[150:])
    assert strength in (0.01, 0.1, 1.0, 10.0)
    assert (model.predict(x[150:]) == y[150:]).mean() > 0.9


def test_predict_with_detect_reports_images_without_faces(tiny_model, tmp_path, capsys):
    folder = tmp_path / "scenes"
    folder.mkdir()
    Image.fromarray(np.full((120, 160, 3), 128, np.uint8)).save(folder / "empty.png")
    out, annotated = tmp_path / "faces.csv", tmp_path / "annotated"
    status = cli.main(
        [
            "predict",
            "--model",
            str(tiny_model),
            "--images",
            str(folder),
            "--out",
            str(out),
            "--detect",
            "--annotated-dir",
            str(annotated),
            "--no-progress",
        ]
    )
    assert status == 0
    with open(out, newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == 1 and rows[0]["label"] == "no_face" and rows[0]["prob_with_mask"] == ""
    assert (annotated / "empty_annotated.png").is_file()


def test_predictions_csv_has_box_columns_when_faces_were_found(tmp_path):
    rows = [
        predict.Prediction("a.jpg", "with_mask", 0.9, (1, 2, 30, 40)),
        predict.Prediction("b.jpg", "no_face", None),
    ]
    lines = predict.write_predictions_csv(rows, tmp_path / "p.csv").read_text().splitlines()
    assert lines == [
        "path,label,prob_with_mask,x,y,width,height,class,score",
        "a.jpg,with_mask,0.900000,1,2,30,40,with_mask,0.900000",
        "b.jpg,no_face,,,,,,,",
    ]
