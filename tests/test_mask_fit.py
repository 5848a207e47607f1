import csv
import json

import numpy as np
import pytest
from PIL import Image

from dlbook import cli
from dlbook.facemask import fit as mask_fit
from dlbook.methods import heads

# eyes, nose tip, mouth corners of an upright face on a 224 px image
LANDMARKS = np.array([[80, 90], [144, 90], [112, 125], [92, 150], [132, 150]], dtype=np.float64)
EYES, NOSE, MOUTH, CHIN = (80, 90), (112, 125), (112, 150), (112, 178)


def _covered(fit, seed, landmarks=LANDMARKS):
    image = np.full((224, 224, 3), 128, np.uint8)
    drawn, covered = mask_fit.draw_mask(image, landmarks, fit, np.random.default_rng(seed))
    assert drawn.shape == image.shape and drawn.dtype == np.uint8
    assert (drawn[covered] != 128).any() and (drawn[~covered] == 128).mean() > 0.8
    return lambda point: bool(covered[point[1], point[0]])


@pytest.mark.parametrize("seed", range(20))
def test_mask_covers_what_its_fit_says(seed):
    correct = _covered("correct", seed)
    assert correct(NOSE) and correct(MOUTH) and correct(CHIN) and not correct(EYES)
    nose_exposed = _covered("nose_exposed", seed)
    assert not nose_exposed(NOSE) and nose_exposed(MOUTH) and nose_exposed(CHIN)
    chin = _covered("chin", seed)
    assert not chin(NOSE) and not chin(MOUTH) and chin(CHIN)


def test_mask_follows_a_rotated_face():
    centre = np.array([112.0, 112.0])
    turn = np.array([[0.0, -1.0], [1.0, 0.0]])  # 90 degrees: the face lies on its side
    rotated = (LANDMARKS - centre) @ turn.T + centre
    covered = _covered("correct", 0, rotated)
    nose = tuple(int(v) for v in (np.array(NOSE) - centre) @ turn.T + centre)
    eye = tuple(int(v) for v in (np.array(EYES) - centre) @ turn.T + centre)
    assert covered(nose) and not covered(eye)


def test_draw_mask_rejects_an_unknown_fit():
    with pytest.raises(ValueError, match="fit='loose'"):
        mask_fit.mask_outline(LANDMARKS, "loose", np.random.default_rng(0))


def test_synthetic_set_skips_faces_without_landmarks_and_balances_the_fits():
    images = np.full((3, 224, 224, 3), 100, np.uint8)
    marks = np.stack([LANDMARKS, np.full((5, 2), np.nan), LANDMARKS])
    masked, labels, source = mask_fit.synthetic_set(images, marks, 32, seed=0)
    assert masked.shape == (6, 32, 32, 3)
    assert np.bincount(labels).tolist() == [2, 2, 2] and set(source) == {0, 2}


class _MeanColourModel:
    """Stand-in fit model: class 0 for a red crop, 2 for a blue one."""

    def predict(self, batch, verbose=0):
        means = batch.mean(axis=(1, 2))
        return np.stack([means[:, 0], np.zeros(len(batch)), means[:, 2]], axis=1)


def test_add_fit_column_classifies_masked_faces_only(tmp_path):
    red = np.zeros((100, 100, 3), np.uint8)
    red[..., 0] = 200
    blue = np.zeros((100, 100, 3), np.uint8)
    blue[..., 2] = 200
    Image.fromarray(red).save(tmp_path / "red.png")
    Image.fromarray(blue).save(tmp_path / "blue.png")
    out = tmp_path / "faces.csv"
    rows = [
        ["path", "label", "prob_with_mask", "x", "y", "width", "height"],
        [tmp_path / "red.png", "with_mask", "0.9", 10, 10, 50, 50],
        [tmp_path / "blue.png", "with_mask", "0.8", 20, 20, 40, 40],
        [tmp_path / "blue.png", "without_mask", "0.1", 0, 0, 30, 30],
        [tmp_path / "red.png", "no_face", "", "", "", "", ""],
    ]
    with open(out, "w", newline="") as handle:
        csv.writer(handle).writerows(rows)
    assert mask_fit.add_fit_column(out, _MeanColourModel(), {"image_size": 16}) == 2
    with open(out, newline="") as handle:
        written = list(csv.DictReader(handle))
    assert [r["fit"] for r in written] == ["correct", "chin", "", ""]
    assert written[0]["prob_with_mask"] == "0.9"  # the other columns are kept


def test_add_fit_column_needs_boxes(tmp_path):
    out = tmp_path / "images.csv"
    out.write_text("path,label,prob_with_mask\na.png,with_mask,0.9\n")
    with pytest.raises(ValueError, match="--fit needs --detect"):
        mask_fit.add_fit_column(out, _MeanColourModel(), {"image_size": 16})


def test_predict_fit_without_detect_is_refused(tmp_path, capsys):
    status = cli.main(
        ["predict", "--model", str(tmp_path / "m.keras"), "--images", str(tmp_path),
         "--out", str(tmp_path / "o.csv"), "--fit"]
    )  # fmt: skip
    assert status == 2 and "--fit needs --detect" in capsys.readouterr().err


def test_fit_model_folds_the_scaler_into_one_keras_model(tmp_path):
    import keras

    rng = np.random.default_rng(0)
    feats = rng.normal(size=(90, 4)) * [1, 5, 0.2, 3] + [0, 2, -1, 4]
    labels = np.repeat([0, 1, 2], 30)
    feats[labels == 1, 0] += 3
    feats[labels == 2, 2] += 2
    classifier = heads.fit_logistic(feats, labels)
    images = rng.uniform(0, 255, (5, 8, 8, 3)).astype(np.float32)
    inputs = keras.Input((8, 8, 3))
    pooled = keras.layers.GlobalAveragePooling2D()(inputs)
    backbone = keras.Model(inputs, keras.layers.Concatenate()([pooled, pooled[:, :1]]))
    model = mask_fit.build_fit_model(backbone, classifier, 8)
    expected = classifier.predict_proba(np.asarray(backbone(images)))
    np.testing.assert_allclose(model.predict(images, verbose=0), expected, atol=1e-4)
    path = mask_fit.save_fit_model(model, tmp_path / "mask_fit.keras", {"image_size": 8})
    loaded, meta = mask_fit.load_fit_model(path)
    assert meta["class_names"] == list(mask_fit.FIT_CLASSES)
    assert json.loads(path.with_suffix(".json").read_text())["image_size"] == 8


def test_cached_landmarks_runs_the_detector_once_per_image_set():
    calls = []

    class _Detector:
        class model:  # noqa: N801 - stands in for MTCNN's ``detector.model``
            @staticmethod
            def detect_faces(image):
                calls.append(1)
                keypoints = dict(zip(mask_fit.KEYPOINTS, LANDMARKS.tolist(), strict=True))
                return [{"confidence": 0.99, "box": [60, 70, 100, 120], "keypoints": keypoints}]

    images = np.zeros((2, 224, 224, 3), np.uint8)
    first = mask_fit.cached_landmarks(images, _Detector)
    again = mask_fit.cached_landmarks(images, _Detector)
    assert len(calls) == 2  # two images, detected once
    np.testing.assert_array_equal(first, np.stack([LANDMARKS, LANDMARKS]))
    np.testing.assert_array_equal(again, first)
    mask_fit.cached_landmarks(images + 1, _Detector)
    assert len(calls) == 4  # other images: detected again
