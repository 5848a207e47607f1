"""Quiet output: progress bars that suit a log file, and TensorFlow's native start-up lines kept out.

``progress(total, desc)`` is a tqdm bar refreshed at most ``REFRESH_PER_S`` times a second on a
terminal; where stderr is not a terminal (a CI log, ``2> file``) it prints at most
``LOG_LINES`` plain lines (start, quarters, end) instead of one line per update.
``quiet_native_stderr()`` silences what TensorFlow's C++ core writes to file descriptor 2 (the
absl and oneDNN start-up notices, the XNNPACK delegate line), which ``TF_CPP_MIN_LOG_LEVEL``
no longer reaches, and passes any other line through.
"""

from __future__ import annotations

import contextlib
import os
import re
import sys
import tempfile
import time

REFRESH_PER_S = 4
LOG_LINES = 5
"""A non-interactive progress bar prints at most this many lines (0 %, 25 %, 50 %, 75 %, 100 %)."""

NATIVE_NOISE = re.compile(
    r"^(WARNING: All log messages before absl::InitializeLog\(\)"
    r"|INFO: Created TensorFlow Lite XNNPACK delegate"
    r"|[IW]\d{4} [\d:.]+ +\d+ \S+:\d+\]"
    r"|To enable the following instructions"
    r"|E0000 .*(cuInit|cuda)"
    r"|\[IPKernelApp\] WARNING \| Kernel is running over TCP without encryption"
    r")"
)
"""Lines from TensorFlow's native start-up, and the notebook kernel's notice that it talks to the
build over local TCP, that say nothing to a reader (matched at line start)."""


def set_tensorflow_log_level() -> None:
    """Set ``TF_CPP_MIN_LOG_LEVEL=2`` (warnings and errors only) unless the user set it."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


@contextlib.contextmanager
def quiet_native_stderr():
    """Hold what native code writes to stderr in the block; re-emit all but ``NATIVE_NOISE``."""
    fd = 2  # native code writes to the process's stderr, whatever ``sys.stderr`` is now
    sys.stderr.flush()
    saved = os.dup(fd)
    with tempfile.TemporaryFile(mode="w+b") as held:
        os.dup2(held.fileno(), fd)
        try:
            yield
        finally:
            sys.stderr.flush()
            os.dup2(saved, fd)
            os.close(saved)
            held.seek(0)
            text = held.read().decode("utf-8", "replace")
            kept = [line for line in text.splitlines() if line and not NATIVE_NOISE.match(line)]
            if kept:
                print("\n".join(kept), file=sys.stderr)


def import_tensorflow():
    """``import tensorflow`` with the log level set first and its start-up lines held back."""
    set_tensorflow_log_level()
    if "tensorflow" in sys.modules:
        return sys.modules["tensorflow"]
    with quiet_native_stderr():
        import tensorflow

        # Keras imports TensorFlow's native core lazily on first use; do it inside the block too.
        tensorflow.constant(0.0).numpy()
    return tensorflow


def quiet_tensorflow() -> None:
    """Import TensorFlow quietly and keep its Python-side logging (retracing notes, export
    paths) at errors only, for the rest of the process."""
    import logging

    tf = import_tensorflow()
    tf.get_logger().setLevel(logging.ERROR)
    logging.getLogger("absl").setLevel(logging.ERROR)


@contextlib.contextmanager
def quiet_block():
    """Hold TensorFlow's warnings and what the block prints to stdout (a library's progress
    lines) off the page; the chapter words what matters from the returned numbers."""
    import io
    import logging

    logger = logging.getLogger("tensorflow")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            yield
    finally:
        logger.setLevel(level)


def _is_terminal(stream) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False


class LogProgress:
    """A progress counter for non-interactive output: a few plain lines, not one per item."""

    def __init__(self, total: int | None, desc: str = "", unit: str = "it", file=None):
        self.total, self.desc, self.unit = total, desc, unit
        self.file = file if file is not None else sys.stderr
        self.n = 0
        self.start = time.perf_counter()
        self._next_mark = 0  # quarter of ``total`` that triggers the next line
        self._lines = 0
        self._closed = False
        self._report()

    def _report(self) -> None:
        elapsed = time.perf_counter() - self.start
        rate = self.n / elapsed if elapsed > 0 and self.n else 0.0
        of = f"/{self.total}" if self.total is not None else ""
        print(
            f"{self.desc}: {self.n}{of} ({elapsed:.1f} s, {rate:.1f} {self.unit}/s)",
            file=self.file,
            flush=True,
        )
        self._lines += 1
        self._next_mark += 1

    def update(self, n: int = 1) -> None:
        self.n += n
        if self.total and self.n < self.total and self._lines < LOG_LINES - 1:
            if self.n >= self._next_mark * self.total / (LOG_LINES - 1):
                self._report()

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self._report()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


class _Silent:
    n = 0

    def update(self, n: int = 1) -> None:
        self.n += n

    def close(self) -> None:
        pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        pass


def progress(total: int | None, desc: str = "", unit: str = "it", enabled: bool = True, file=None):
    """A progress bar to ``update(n)`` and ``close()`` (also a context manager).

    Parameters
    ----------
    total : items expected (None: unknown).
    desc, unit : its label and the unit of ``update``.
    enabled : False gives a silent counter.
    file : the stream (default stderr). A terminal gets a tqdm bar refreshed at most
        ``REFRESH_PER_S`` times a second; anything else at most ``LOG_LINES`` lines.
    """
    if not enabled:
        return _Silent()
    stream = file if file is not None else sys.stderr
    if not _is_terminal(stream):
        return LogProgress(total, desc, unit, stream)
    from tqdm import tqdm

    return tqdm(total=total, desc=desc, unit=unit, file=stream, mininterval=1.0 / REFRESH_PER_S)
