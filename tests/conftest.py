"""Test environment: Qt offscreen, no hub access, small shared fixtures."""

import os

# Qt aborts the whole process with no display unless told to render offscreen.
os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
# Nothing may download: a hub name must fail at once.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
# One torch (OpenMP) thread here and in every process the tests start, set before torch
# loads. Its workers busy-wait between operations: on 2 cores shared with other work, one
# 25-step training test took 183 s with two threads and 8 s with one, and the training
# fixture passed 600 s. The tests' models are small; what they assert does not depend on it.
os.environ.setdefault("OMP_NUM_THREADS", "1")

import json  # noqa: E402
import pickle  # noqa: E402
import shutil  # noqa: E402
import signal  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import threading  # noqa: E402
import time  # noqa: E402
from dataclasses import dataclass, field  # noqa: E402
from pathlib import Path  # noqa: E402

import pytest  # noqa: E402

# A suite started in the background of a non-interactive shell (`pytest &`, `( ... & )`)
# inherits SIGINT ignored, and so would every process it starts: the Ctrl-C tests would
# then see a run that, rightly, ignores Ctrl-C. Handling it here gives each child the
# default disposition again (a handled signal is reset on exec; an ignored one is not).
if signal.getsignal(signal.SIGINT) == signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT / "tests" / "data"


@pytest.fixture(scope="session")
def synthetic_pickle(tmp_path_factory) -> Path:
    """A small synthetic MMSA-format pickle, written once per test session. Half the
    generator's default sequence lengths: a training step costs about half, and what the
    tests assert (a student that beats a constant, language teaching) does not need more."""
    from models.synthetic import SyntheticSpec, make_synthetic

    path = tmp_path_factory.mktemp("data") / "synthetic.pkl"
    with path.open("wb") as fh:
        pickle.dump(make_synthetic(SyntheticSpec(train=320, valid=96, test=128, seed=3, steps=(8, 12, 10))), fh)
    return path


EXAMPLE = ROOT / "examples" / "talking.mp4"
TALKING_FACES = DATA / "talking_faces"  # Apache-2.0, see its README.md


@pytest.fixture(scope="session")
def media(tmp_path_factory) -> dict[str, Path]:
    """Real media of every awkward kind, generated once: espeak-ng speech, a real face."""
    import numpy as np

    from realtime.synth_media import RATE, astronaut_face, moving_face, speak, write_av, write_wav

    folder = tmp_path_factory.mktemp("media")
    speech = speak("I really love this, it makes me very happy.", "en-us")
    audio = np.concatenate([np.zeros(4000, np.float32), speech * 0.8, np.zeros(4000, np.float32)])
    image, centre = astronaut_face()
    n = int(len(audio) / RATE * 10)
    out = {}
    out["video_no_audio"] = folder / "video_no_audio.mp4"
    write_av(out["video_no_audio"], None, moving_face(image, centre, n, 10, (320, 240)), fps=10, size=(320, 240))
    out["audio_only_m4a"] = folder / "audio_only.m4a"
    write_av(out["audio_only_m4a"], audio, None)
    out["audio_only_wav"] = folder / "audio_only.wav"
    write_wav(out["audio_only_wav"], audio)
    out["no_face"] = folder / "no_face.mp4"
    blank = (np.full((240, 320, 3), 90, np.uint8) for _ in range(n))
    write_av(out["no_face"], audio, blank, fps=10, size=(320, 240))
    out["silence"] = folder / "silence.mp4"
    write_av(out["silence"], np.zeros_like(audio), moving_face(image, centre, n, 10, (320, 240)), fps=10,
             size=(320, 240))
    out["not_media"] = folder / "notes.mp4"
    out["not_media"].write_text("this is not a video\n" * 50)
    out["empty"] = folder / "empty.mp4"
    out["empty"].write_bytes(b"")
    out["truncated"] = folder / "truncated.mp4"
    data = EXAMPLE.read_bytes()
    out["truncated"].write_bytes(data[: len(data) // 2])
    # an mp4 cut in half loses its index (moov at the end): nothing can be read. A
    # Matroska file cut in half still decodes its first half.
    whole = folder / "whole.mkv"
    write_av(whole, audio, moving_face(image, centre, n, 10, (320, 240)), fps=10, size=(320, 240))
    out["truncated_mkv"] = folder / "truncated.mkv"
    out["truncated_mkv"].write_bytes(whole.read_bytes()[: whole.stat().st_size // 2])
    return out


EXIT_BOUND = 10.0
"""Seconds a process under test may take to exit once its work is done."""
SIGNAL_EXIT_BOUND = 30.0
"""After Ctrl-C/SIGTERM a run still scores and writes the windows it has finished: on 2 cores
shared with other work that took over 10 s once (3.12 suite); a hang still fails."""
AUDIT = Path(__file__).resolve().parent / "exit_audit"
"""On PYTHONPATH of every process the tests start: reports graphs still open at exit."""


@dataclass
class Finished:
    """A finished subprocess (like CompletedProcess), with when its work ended and when it exited."""

    args: list[str]
    returncode: int
    stdout: str
    stderr: str
    done_at: float | None = None
    """Monotonic time its work ended: the ``done`` line appeared, or the signal was sent."""
    exited_at: float = 0.0
    lines: list[tuple[float, str]] = field(default_factory=list)
    """(monotonic time, line) of stderr."""

    @property
    def exit_lag(self) -> float | None:
        return None if self.done_at is None else self.exited_at - self.done_at


def start(args, module: str | None = "realtime", env: dict | None = None, stdout=subprocess.PIPE):
    """``python -m <module> args`` (or ``python args`` with module None) from the repository
    root, unbuffered, with a stack dump on SIGABRT and the exit audit on its path."""
    env = dict(os.environ if env is None else env, PYTHONUNBUFFERED="1", PYTHONFAULTHANDLER="1")
    env["PYTHONPATH"] = os.pathsep.join([str(AUDIT), str(ROOT), *filter(None, [env.get("PYTHONPATH")])])
    command = [sys.executable, *(["-m", module] if module else []), *map(str, args)]
    return subprocess.Popen(command, cwd=ROOT, env=env, stdout=stdout, stderr=subprocess.PIPE, text=True)


def finish(proc: subprocess.Popen, timeout: float = 300, done: str | None = None, interrupt_when=None,
           sig: int = signal.SIGINT, bound: float | None = None) -> Finished:
    """Wait for a process from ``start`` and time its exit.

    ``done``: a stderr fragment that says its work has ended. ``interrupt_when(lines)``: send
    ``sig`` once it returns True (its work ends with the signal). Once the work has ended the
    process gets ``bound`` seconds to exit; after that it is sent SIGABRT (its Python stacks go
    to stderr) and the test fails with them. ``timeout`` bounds the whole run the same way.
    """
    if bound is None:
        bound = EXIT_BOUND if interrupt_when is None else SIGNAL_EXIT_BOUND
    lines: list[tuple[float, str]] = []
    out: list[str] = []

    def read_stderr() -> None:
        for line in proc.stderr:
            lines.append((time.monotonic(), line))

    readers = [threading.Thread(target=read_stderr, daemon=True)]
    if proc.stdout is not None:
        readers.append(threading.Thread(target=lambda: out.append(proc.stdout.read()), daemon=True))
    for reader in readers:
        reader.start()
    started = time.monotonic()
    done_at = None
    late = False
    try:
        while proc.poll() is None:
            now = time.monotonic()
            if done_at is None and done is not None:
                done_at = next((t for t, line in list(lines) if done in line), None)
            if done_at is None and interrupt_when is not None and interrupt_when([line for _, line in list(lines)]):
                proc.send_signal(sig)
                done_at = now
            late = (done_at is not None and now - done_at > bound) or now - started > timeout
            if late:
                proc.send_signal(signal.SIGABRT)  # PYTHONFAULTHANDLER: every thread's stack to stderr
                break
            time.sleep(0.02)
        exited_at = time.monotonic()
        proc.wait(30)
        for reader in readers:
            reader.join(10)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        for pipe in (proc.stdout, proc.stderr):
            if pipe is not None:
                pipe.close()
    stderr = "".join(line for _, line in lines)
    if late:
        what = f"{bound:.0f} s after its work ended" if done_at is not None else f"{timeout:.0f} s"
        raise AssertionError(f"{' '.join(map(str, proc.args))} did not exit within {what}:\n{stderr[-6000:]}")
    if done is not None and done_at is None:
        done_at = next((t for t, line in lines if done in line), None)
    return Finished(args=proc.args, returncode=proc.returncode, stdout="".join(out), stderr=stderr,
                    done_at=done_at, exited_at=exited_at, lines=lines)


def cli(*args, module: str = "realtime", timeout: float = 300, done: str | None = None) -> Finished:
    """Run ``python -m <module>`` from the repository root and capture its output; every
    run must end within ``timeout`` and, once its ``done`` line is out, within EXIT_BOUND.
    Its stderr must not hold a graph that was left to a finalizer (see tests/exit_audit)."""
    proc = finish(start(args, module), timeout=timeout, done=done)
    assert "exit-audit:" not in proc.stderr, proc.stderr[-3000:]
    return proc


@dataclass
class Ran:
    """``realtime.cli.main`` run in this process: its exit code, stdout, and stderr with its log lines."""

    returncode: int
    stdout: str
    stderr: str


def run_main(components, capsys, caplog, *args) -> Ran:
    """``python -m realtime args`` in this process, on models loaded once per session: for
    tests of what the command does, where the process boundary is not what is under test."""
    from realtime.cli import main

    previous = signal.getsignal(signal.SIGTERM)  # main() makes SIGTERM a Ctrl-C
    caplog.clear()
    capsys.readouterr()
    try:
        code = main([str(a) for a in args], components=components)
    finally:
        signal.signal(signal.SIGTERM, previous)
    captured = capsys.readouterr()
    logged = "".join(f"{r.levelname}: {r.getMessage()}\n" for r in caplog.records)
    return Ran(returncode=code, stdout=captured.out, stderr=captured.err + logged)


def read_records(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


@pytest.fixture(scope="session")
def whisper():
    """Whisper tiny.en, loaded once per test session (the model options do not matter to a
    StreamingTranscriber's own options)."""
    from realtime.features.speech import ASROptions, load_whisper

    model = load_whisper(ASROptions())
    yield model
    model.model.unload_model()


@pytest.fixture(scope="session")
def components():
    """The default models on the CPU, loaded once per test session and closed after it."""
    from realtime.cli import component_args, load_components

    with load_components(component_args(device="cpu")) as loaded:
        yield loaded


@pytest.fixture(scope="session")
def webcam_run(tmp_path_factory):
    """python -m realtime --source webcam on this machine, which has no camera and no
    microphone, once per session (it loads every model before it finds none): (process, --out)."""
    out = tmp_path_factory.mktemp("webcam") / "x.jsonl"
    proc = cli("--source", "webcam", "--duration", "2", "--out", out, done="error: ", timeout=240)
    return proc, out


def run_live(components, camera, mic, duration: float):
    """A live-mode run of a camera and a microphone (either may be None) for ``duration`` s:
    (estimates, summary, pipeline threads still alive after it)."""
    from realtime.features.speech import ASROptions, StreamingTranscriber
    from realtime.pipeline import Pipeline, PipelineOptions
    from realtime.sinks import Summary
    from realtime.sources.live import make_live_feed

    estimates = []

    class Collect:
        def write(self, est):
            estimates.append(est)

        def close(self):
            pass

    summary = Summary(source="replay")
    components.acoustic.reset()
    components.face.new_stream()
    transcriber = StreamingTranscriber(components.whisper, ASROptions())
    with Pipeline(PipelineOptions(live=True), components.engine, components.face, components.acoustic,
                  transcriber) as pipeline:
        pipeline.run(make_live_feed(camera, mic, duration), has_video=camera is not None,
                     has_audio=mic is not None, sinks=[Collect()], summary=summary)
        threads = list(pipeline._threads)
    return estimates, summary, threads


class BackgroundRun:
    """``python -m realtime`` started in a thread of its own, timed by ``finish``, while other
    tests run in this process: on 2 cores its model loading and decoding overlap theirs."""

    def __init__(self, args: list, done: str):
        self.proc: subprocess.Popen | None = None
        self.result: Finished | None = None
        self.error: BaseException | None = None
        self._args, self._done = args, done
        self._thread = threading.Thread(target=self._run, name="example-run", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            self.proc = start(self._args)
            self.result = finish(self.proc, done=self._done)
        except BaseException as exc:  # raised again in the test that waits for it
            self.error = exc

    def wait(self) -> Finished:
        self._thread.join()
        if self.error is not None:
            raise self.error
        return self.result

    def stop(self) -> None:
        """End the process if the session ends first (Ctrl-C, -x)."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
        self._thread.join(30)


_example: BackgroundRun | None = None
_example_out: Path | None = None


def _start_example_run() -> BackgroundRun:
    global _example, _example_out
    if _example is None:
        _example_out = Path(tempfile.mkdtemp(prefix="dmd-example-run-")) / "a.jsonl"
        _example = BackgroundRun(["--source", EXAMPLE, "--out", _example_out, "--summary",
                                  _example_out.with_suffix(".summary.json")], done="real-time factor")
    return _example


def pytest_collection_finish(session):
    """Start the README example's run as soon as the tests are known, if any needs it: it
    runs beside the tests that come before the first one that reads it."""
    if any("example_run" in getattr(item, "fixturenames", ()) for item in session.items):
        _start_example_run()


def pytest_sessionfinish(session, exitstatus):
    if _example is not None:
        _example.stop()
        shutil.rmtree(_example_out.parent, ignore_errors=True)


@pytest.fixture(scope="session")
def example_run():
    """python -m realtime on the example video, once per session (started when the session
    starts): (records path, process)."""
    from realtime.engine import DEFAULT_CHECKPOINT

    assert (DEFAULT_CHECKPOINT / "checkpoint.json").is_file(), "the bundled default model is missing"
    proc = _start_example_run().wait()
    assert "exit-audit:" not in proc.stderr, proc.stderr[-3000:]
    assert proc.returncode == 0, proc.stderr[-3000:]
    return _example_out, proc
