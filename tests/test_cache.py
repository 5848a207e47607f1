"""The content-keyed cache: keys change with any input, entries are written whole."""

import numpy as np
import pytest

from dlbook.core import cache


def test_digest_changes_with_any_part():
    x = np.arange(6, dtype=np.float32).reshape(2, 3)
    base = cache.digest(x, {"lr": 0.1, "epochs": 3}, "adam", None)
    assert base == cache.digest(x.copy(), {"epochs": 3, "lr": 0.1}, "adam", None)
    assert base != cache.digest(x.reshape(3, 2), {"lr": 0.1, "epochs": 3}, "adam", None)
    assert base != cache.digest(x.astype(np.float64), {"lr": 0.1, "epochs": 3}, "adam", None)
    assert base != cache.digest(x, {"lr": 0.1, "epochs": 4}, "adam", None)
    assert cache.digest(1) != cache.digest("1") != cache.digest(1.0)
    with pytest.raises(TypeError, match="object"):
        cache.digest(object())


def test_write_atomically_leaves_no_temporary_file(tmp_path):
    path = cache.entry("things", cache.digest("a"), ".npy")
    cache.write_atomically(path, lambda p: np.save(p, np.ones(3)))
    np.testing.assert_array_equal(np.load(path), np.ones(3))
    assert [p.name for p in path.parent.iterdir()] == [path.name]


def test_the_same_architecture_built_twice_has_one_description():
    import keras

    def build():
        inputs = keras.Input((4,))
        return keras.Model(inputs, keras.layers.Dense(2)(keras.layers.Dense(3)(inputs)))

    first, second = build(), build()
    assert first.layers[1].name != second.layers[1].name
    assert cache.architecture(first) == cache.architecture(second)
    wider = keras.Model(first.input, keras.layers.Dense(5)(first.output))
    assert cache.architecture(wider) != cache.architecture(first)
