"""Chapter 1, section 5: training throughput of the NumPy CNN against its Keras twin."""

from __future__ import annotations

from dlbook.book import present
from dlbook.book.context import Run
from dlbook.methods.nn import throughput


def speed(run: Run) -> dict:
    """Section 5: training throughput of the NumPy CNN against its Keras twin; saves the rates."""
    settings = run.settings
    channels = 1 if settings["color_mode"] == "grayscale" else 3
    size = settings["image_size"]
    bench = throughput.benchmark_cnn_training(
        input_shape=(size, size, channels),
        batch_size=settings["batch_size"],
        steps=settings["benchmark_steps"],
        rounds=settings["benchmark_rounds"],
        seed=run.seed,
    )
    keys = ("numpy_cnn_images_per_s", "keras_cnn_images_per_s", "numpy_over_keras")
    run.save({key: bench[key] for key in keys})
    return bench


def story_speed(bench: dict) -> str:
    """The throughput of each library and their ratio against the one-third target."""
    ratio = bench["numpy_over_keras"]
    shape = " x ".join(str(d) for d in bench["input_shape"])
    return (
        f"On {shape} inputs in batches of {bench['batch_size']}, best of {bench['rounds']} rounds of "
        f"{bench['steps']} steps, the NumPy CNN trains at "
        f"**{present.number(bench['numpy_cnn_images_per_s'])} images/s** and the Keras CNN at "
        f"**{present.number(bench['keras_cnn_images_per_s'])} images/s**: NumPy reaches "
        f"**{present.number(ratio, 2)}** of Keras's throughput (target at least 1/3: "
        f"{'met' if ratio >= throughput.TARGET else 'missed'}). The rounds ranged from "
        f"{present.number(min(bench['numpy_rounds']))} to {present.number(max(bench['numpy_rounds']))} "
        f"images/s for NumPy and {present.number(min(bench['keras_rounds']))} to "
        f"{present.number(max(bench['keras_rounds']))} for Keras, a measure of how much other work "
        "on the machine moves the figures."
    )
