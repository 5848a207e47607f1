"""Quiet output: a progress bar in a log file prints a handful of lines; native noise is held."""

import io
import os

from dlbook.core import logs


def test_progress_in_a_log_prints_a_handful_of_lines():
    stream = io.StringIO()  # not a terminal
    with logs.progress(1400, "predicting", "image", file=stream) as bar:
        for _ in range(1400):
            bar.update(1)
    lines = stream.getvalue().splitlines()
    assert 2 <= len(lines) <= logs.LOG_LINES
    assert "\r" not in stream.getvalue()
    assert lines[-1].startswith("predicting: 1400/1400 (") and "image/s" in lines[-1]


def test_progress_with_unknown_total_prints_start_and_end():
    stream = io.StringIO()
    bar = logs.progress(None, "walking", file=stream)
    for _ in range(500):
        bar.update()
    bar.close()
    bar.close()
    assert len(stream.getvalue().splitlines()) == 2


def test_disabled_progress_prints_nothing(capsys):
    with logs.progress(10, "quiet", enabled=False) as bar:
        bar.update(10)
    assert capsys.readouterr().err == ""


def test_native_noise_is_held_back_and_other_lines_pass(capfd):
    noise = (
        "WARNING: All log messages before absl::InitializeLog() is called are written to STDERR\n"
        "I0000 00:00:1795611253.979243   16381 port.cc:153] oneDNN custom operations are on.\n"
        "INFO: Created TensorFlow Lite XNNPACK delegate for CPU.\n"
        "[IPKernelApp] WARNING | Kernel is running over TCP without encryption. All ...\n"
    )
    with logs.quiet_native_stderr():
        os.write(2, (noise + "a real error\n").encode())
    err = capfd.readouterr().err
    assert "absl" not in err and "oneDNN" not in err and "XNNPACK" not in err
    assert "IPKernelApp" not in err
    assert "a real error" in err
