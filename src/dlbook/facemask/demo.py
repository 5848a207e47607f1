"""The ``python -m dlbook demo`` command: a local web page to try the shipped model on photos.

Drop one or many photos (or take a webcam snapshot); every face is boxed and coloured by class,
listed in a table with its box, P(mask), fit and conformal set, counted per class, and flagged
"have a person check" when the model is unsure (``dlbook.facemask.analyse`` does the work). The
page runs on Gradio: requests queue (one runs at a time), uploads and outputs live in a temporary
folder removed when the app stops, and a bad file is answered on the page.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import shutil
import signal
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

from dlbook.core import paths
from dlbook.facemask import classify, runtime, scene_model
from dlbook.facemask.analyse import (
    ALPHA,
    CHECK,
    Engine,
    analyse_files,
    class_counts,
    counts_markdown,
    load_engine,
    table_rows,
)

DEFAULT_MODEL = paths.REPO_ROOT / "results" / "full" / "models" / "mask_classifier.keras"
BUILD_COMMAND = "python -m dlbook build --profile full --only mask_detection real_photos"
KEEP_S = 3600
"""A request's files (uploads, annotated photos, CSV) are removed after this many seconds."""


# ---------------------------------------------------------------------------------------------
# The page


def about_markdown(engine: Engine) -> str:
    """The page's introduction: what it does, the colours and what the flag means."""
    text = (
        "Drop one or many photos (or take a webcam snapshot). Every face is boxed and coloured: "
        "green **mask**, red **no mask**, orange **mask worn wrong** (nose or mouth uncovered"
        + (", from the fit model)." if engine.scenes is None else ").")
    )
    c = engine.calibration
    if c is not None:
        text += (
            f"\n\n**{CHECK}** marks a face whose conformal prediction set (chapter 6: split "
            f"conformal, LAC score, alpha = {c.alpha:g}, calibrated on {c.n} validation images "
            f"of this model) does not hold exactly one class: at this alpha the sets hold the "
            f"true class for at least {1 - c.alpha:.0%} of faces like the validation images, so "
            "a set with both classes (or none) means the model cannot tell."
        )
    return "\n\n".join([text, *engine.notes])


@contextlib.contextmanager
def private_temp_dir():
    """A temporary folder for Gradio's uploads and outputs (``GRADIO_TEMP_DIR``), removed after.

    Some Gradio modules read the variable once, at import, and write there later (a second app in
    one process, a late copy), so the folder is removed again when the process exits.
    """
    folder = tempfile.mkdtemp(prefix="dlbook-demo-")
    atexit.register(shutil.rmtree, folder, ignore_errors=True)
    saved = os.environ.get("GRADIO_TEMP_DIR")
    os.environ["GRADIO_TEMP_DIR"] = folder
    try:
        yield Path(folder)
    finally:
        if saved is None:
            os.environ.pop("GRADIO_TEMP_DIR", None)
        else:
            os.environ["GRADIO_TEMP_DIR"] = saved
        shutil.rmtree(folder, ignore_errors=True)


def request_folder(max_age_s: float = KEEP_S) -> Path:
    """A new folder for one request's files, in the page's temporary folder; folders of earlier
    requests older than ``max_age_s`` go, so a long-running page does not fill the disk."""
    root = Path(os.environ.get("GRADIO_TEMP_DIR") or tempfile.gettempdir())
    for old in root.glob("request-*"):
        if time.time() - old.stat().st_mtime > max_age_s:
            shutil.rmtree(old, ignore_errors=True)
    return Path(tempfile.mkdtemp(prefix="request-", dir=root))


def page_outputs(engine: Engine, files: list[str]) -> tuple:
    """The Gradio outputs for ``files``: first annotated photo, all of them, table, counts, CSV,
    status."""
    import gradio as gr

    found = analyse_files(engine, list(files or []), request_folder())
    results = found["results"]
    first = results[0].annotated if results else None
    many = len(results) > 1
    gallery = gr.update(
        value=[(r.annotated, r.name) for r in results] if many else [], visible=many
    )
    counts = counts_markdown(class_counts(results), engine.calibration is not None)
    status = "\n".join(f"- {note}" for note in found["notes"]) or ("Done." if files else "")
    csv_path = str(found["csv"]) if found["csv"] else None
    return first, gallery, table_rows(results), counts if results else "", csv_path, status


def snapshot_outputs(engine: Engine, image) -> tuple:
    """The Gradio outputs for a webcam snapshot (RGB array, or None when cleared)."""
    if image is None:
        return page_outputs(engine, [])
    path = request_folder() / "webcam.png"
    Image.fromarray(np.asarray(image, dtype=np.uint8)[..., :3]).save(path)
    return page_outputs(engine, [str(path)])


def build_app(engine: Engine):
    """The Gradio page (``gradio.Blocks``), its requests queued one at a time."""
    import gradio as gr

    with gr.Blocks(
        title="Face masks: try the book's model",
        analytics_enabled=False,
        delete_cache=(KEEP_S, KEEP_S),  # Gradio's copies of uploads and outputs
    ) as app:
        gr.Markdown("# Face masks: try the book's model")
        gr.Markdown(about_markdown(engine), elem_id="about")
        with gr.Row():
            files = gr.File(file_count="multiple", label="Photos", elem_id="photos")
            webcam = gr.Image(sources=["webcam"], type="numpy", label="Webcam snapshot")
        status = gr.Markdown(elem_id="status")
        counts = gr.Markdown(elem_id="counts")
        first = gr.Image(label="Faces found", elem_id="annotated", interactive=False, height=400)
        gallery = gr.Gallery(
            label="Every photo", elem_id="photos-annotated", columns=4, visible=False
        )
        table = gr.Dataframe(headers=engine.columns, label="One row per face", elem_id="faces")
        csv_file = gr.File(label="CSV (same columns as predict --detect)", elem_id="csv")
        outputs = [first, gallery, table, counts, csv_file, status]
        files.upload(lambda f: page_outputs(engine, f), files, outputs, api_name="analyse")
        webcam.input(
            lambda image: snapshot_outputs(engine, image), webcam, outputs, api_name="snapshot"
        )
    return app.queue(default_concurrency_limit=1, max_size=64)


def launch(app, port: int | None, open_browser: bool, block: bool = True):
    """Start ``app`` on 127.0.0.1 (``port`` None: Gradio picks a free one)."""
    import gradio as gr

    system = gr.themes.Default(font=["system-ui", "sans-serif"], font_mono=["monospace"])
    return app.launch(
        server_name="127.0.0.1",
        server_port=port,
        inbrowser=open_browser,
        prevent_thread_lock=not block,
        max_file_size="50mb",
        ssr_mode=False,
        quiet=True,
        theme=system,
    )


def missing_model_message(model_path) -> str:
    """What to say when there is no model file."""
    return (
        f"error: no model at {model_path}. The full build ships it; build it with\n"
        f"    {BUILD_COMMAND}\n"
        "(or `make book`), or pass --model path/to/mask_scenes (or mask_classifier.keras)."
    )


def default_model() -> Path:
    """What the page runs without ``--model``: the real-photo pipeline the last full build
    shipped (``results/full/models/mask_scenes/``), else its classifier."""
    from dlbook.facemask.predict import default_model as shipped

    return shipped(detect_faces=True)


def run(model_path=None, port=None, open_browser=True, data_dir=None, alpha=ALPHA) -> int:
    """The ``demo`` command: exit status 0 when stopped, 2 when the model cannot be loaded."""
    model_path = Path(model_path or default_model())
    if not model_path.exists():
        print(missing_model_message(model_path), file=sys.stderr)
        return 2
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
    # Stopped by a signal, the temporary folder is still removed (the ``with`` block unwinds).
    previous = signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    try:
        return _serve(model_path, port, open_browser, data_dir, alpha)
    finally:
        signal.signal(signal.SIGTERM, previous)


def _serve(model_path, port, open_browser, data_dir, alpha) -> int:
    start = time.perf_counter()
    with private_temp_dir():
        try:
            engine = load_engine(model_path, data_dir, alpha)
        except (classify.ModelLoadError, scene_model.SceneModelError) as error:
            print(f"error: {error}", file=sys.stderr)
            return 2
        app = build_app(engine)
        try:
            launch(app, port, open_browser, block=False)
        except OSError as error:
            print(f"error: the page cannot start on port {port} ({error})", file=sys.stderr)
            return 2
        print(
            f"demo running at {app.local_url} (started in {time.perf_counter() - start:.1f} s); "
            "Ctrl+C stops it",
            file=sys.stderr,
        )
        try:
            app.block_thread()
        finally:
            app.close()
    return 0


def measure_start(model_path, data_dir=None, timeout_s: float = 180.0) -> float:
    """Seconds from ``python -m dlbook demo`` being started to its page answering (a new process)."""
    import subprocess
    import urllib.request

    port = free_port()
    command = [sys.executable, "-m", "dlbook", "demo", "--no-browser", "--port", str(port)]
    command += ["--model", str(model_path)] + (["--data-dir", str(data_dir)] if data_dir else [])
    start = time.perf_counter()
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        while time.perf_counter() - start < timeout_s:
            if process.poll() is not None:
                raise RuntimeError(f"the demo exited with status {process.returncode}")
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=1):
                    return time.perf_counter() - start
            except OSError:
                time.sleep(0.1)
        raise TimeoutError(f"the demo did not answer within {timeout_s:g} s")
    finally:
        process.terminate()
        process.wait(timeout=30)


def free_port() -> int:
    """A port on 127.0.0.1 free at the time of asking."""
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def benchmark(model_path, photo, repeats: int = 20, data_dir=None) -> dict:
    """Print and return the app's start time and its server-side time for a 640x480 photo.

    The start time runs ``python -m dlbook demo`` in a new process until its page answers.
    ``photo`` is scaled to fit a 640x480 canvas; the time covers reading it, finding,
    classifying, fit-checking and flagging its faces, drawing them and writing the CSV (median
    and best of ``repeats``, after the start's warm-up).
    """
    from PIL import ImageOps

    started = measure_start(model_path, data_dir)
    with private_temp_dir() as folder:
        engine = load_engine(model_path, data_dir)
        canvas = Image.new("RGB", (640, 480), (205, 210, 215))
        with Image.open(photo) as image:
            image = ImageOps.contain(image.convert("RGB"), (640, 480))
            canvas.paste(image, ((640 - image.width) // 2, (480 - image.height) // 2))
        path = folder / "bench.jpg"
        canvas.save(path, quality=90)
        times = []
        for _ in range(repeats):
            tick = time.perf_counter()
            page_outputs(engine, [str(path)])
            times.append(time.perf_counter() - tick)
        faces = len(analyse_files(engine, [str(path)], folder / "out")["results"][0].faces)
    found = {
        "start_s": started,
        "photo_640x480_median_ms": 1000 * float(np.median(times)),
        "photo_640x480_min_ms": 1000 * float(np.min(times)),
        "faces": faces,
        "cpu_threads": runtime.cpu_threads(),
        "load_average": os.getloadavg()[0],
    }
    print(
        f"app start {found['start_s']:.1f} s (process start to page answering); 640x480 photo "
        f"with {faces} faces: {found['photo_640x480_median_ms']:.0f} ms median, "
        f"{found['photo_640x480_min_ms']:.0f} ms best of {repeats} ({found['cpu_threads']} CPU "
        f"threads, load average {found['load_average']:.1f})"
    )
    return found
