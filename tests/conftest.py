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

import contextlib  # noqa: E402
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
    out["noise"] = folder / "noise.mp4"  # the smiling face over loud white noise: no voice in it
    noise = np.random.default_rng(0).standard_normal(len(audio)).astype(np.float32) * 0.1
    write_av(out["noise"], noise, moving_face(image, centre, n, 10, (320, 240)), fps=10, size=(320, 240))
    out["noise_only_wav"] = folder / "noise_only.wav"  # nothing to read: no face, no voice, no word
    write_wav(out["noise_only_wav"], noise)
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


@contextlib.contextmanager
def file_size_limit(size: int):
    """Writes past ``size`` bytes of any file fail (EFBIG), as on a full disk: the kernel's
    own limit (RLIMIT_FSIZE), with its signal ignored so that the write returns the error."""
    import resource

    before = resource.getrlimit(resource.RLIMIT_FSIZE)
    handler = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (size, before[1]))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, before)
        signal.signal(signal.SIGXFSZ, handler)


def limited_file_size(size: int):
    """For a subprocess (Popen's ``preexec_fn``): writes past ``size`` bytes of any file fail
    (EFBIG), as on a full disk, the limit's signal ignored."""
    def limit() -> None:
        import resource

        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (size, resource.RLIM_INFINITY))

    return limit


def start(args, module: str | None = "realtime", env: dict | None = None, stdout=subprocess.PIPE, **popen):
    """``python -m <module> args`` (or ``python args`` with module None) from the repository
    root, unbuffered, with a stack dump on SIGABRT and the exit audit on its path; ``popen``:
    more of Popen's arguments."""
    env = dict(os.environ if env is None else env, PYTHONUNBUFFERED="1", PYTHONFAULTHANDLER="1")
    env["PYTHONPATH"] = os.pathsep.join([str(AUDIT), str(ROOT), *filter(None, [env.get("PYTHONPATH")])])
    command = [sys.executable, *(["-m", module] if module else []), *map(str, args)]
    return subprocess.Popen(command, cwd=ROOT, env=env, stdout=stdout, stderr=subprocess.PIPE, text=True, **popen)


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


def in_file_steps(model, stream: list) -> list:
    """Every word a file-mode transcriber over ``model`` commits for ``stream``."""
    from realtime.features.speech import ASROptions, StreamingTranscriber

    with StreamingTranscriber(model, ASROptions.for_files()) as asr:
        words = []
        for chunk in stream:
            asr.insert_audio(chunk)
            if asr.ready():
                words += asr.process_iter()
        return words + asr.finish()


@pytest.fixture
def transcribers():
    """``make(model, options)``: a StreamingTranscriber, closed when the test ends."""
    from realtime.features.speech import StreamingTranscriber

    made = []

    def make(model, options):
        made.append(StreamingTranscriber(model, options))
        return made[-1]

    yield make
    for asr in made:
        asr.close()


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


def with_checkpoint(components, checkpoint: Path):
    """``components`` with an engine for another checkpoint of the same feature spec: what a
    fresh load of that checkpoint gives, without loading the extractors (face, voice, Whisper,
    the text model) again. Never close it: its extractors are ``components``'."""
    import dataclasses

    from realtime.engine import InferenceEngine, find_checkpoint

    engine = InferenceEngine(find_checkpoint(str(checkpoint)), components.engine.device, components.engine.text)
    assert engine.spec == components.engine.spec, (engine.spec, components.engine.spec)
    engine.warm_up()
    return dataclasses.replace(components, engine=engine)


@pytest.fixture(scope="session")
def components():
    """The default models on the CPU, loaded once per test session and closed after it. Their
    words' precision is a file run's default on this CPU (``--text-precision auto``), as the
    command-line runs the tests compare them with; tests/test_text_encoder.py holds
    bfloat16's words to float32's on any CPU."""
    from realtime.service import component_args, load_components

    with load_components(component_args(device="cpu")) as loaded:
        yield loaded


def run_live(components, camera, mic, duration: float):
    """A live-mode run of a camera and a microphone (either may be None) for ``duration`` s:
    (estimates, summary, pipeline threads still alive after it)."""
    from realtime.run import RunOptions, build_run
    from realtime.sources.live import LiveFeed

    estimates = []

    class Collect:
        def write(self, est):
            estimates.append(est)

        def close(self):
            pass

    with build_run(components, LiveFeed(camera, mic, duration, name="replay"), RunOptions(live=True)) as run:
        summary = run.run([Collect()])
        threads = list(run.status().threads)
    return estimates, summary, threads


class SecondLane:
    """Processes whose outputs tests only read, run one at a time in a thread of their own
    while the tests run in this process: on 2 cores their model loading and decoding
    overlap the tests' work (one at a time, so each still has a core to itself and its
    exit is timed fairly).

    Each run is a function of its own folder (see LANE below) that starts its process with
    ``launch`` and returns what the tests read. The runs the collected tests need are queued
    in the order the tests first need them; a test that needs one waits for it."""

    def __init__(self):
        self.folder = Path(tempfile.mkdtemp(prefix="dmd-test-runs-"))
        self.env = dict(os.environ)
        """The environment the session started with: a run launched while a test has patched
        one (REALTIME_CACHE pointed at its tmp_path) must not inherit the patch (the resumed
        extraction once joined the words' encoder into such a test's folder, failing it)."""
        self._queue: list[str] = []
        self._done: dict[str, threading.Event] = {}
        self._results: dict[str, object] = {}
        self._errors: dict[str, BaseException] = {}
        self._proc: subprocess.Popen | None = None
        self._stopping = False
        self._thread: threading.Thread | None = None
        self.seconds: dict[str, float] = {}
        """Wall seconds of each finished run."""
        self.waited = 0.0
        """Seconds tests spent waiting for runs."""

    def launch(self, args, module: str | None = "realtime", env: dict | None = None) -> subprocess.Popen:
        """``start``, remembered so that the session can end it if it ends first; ``env``:
        variables set on top of the session's."""
        return self.track(start(args, module, env={**self.env, **(env or {})}))

    def track(self, proc: subprocess.Popen) -> subprocess.Popen:
        self._proc = proc
        if self._stopping:  # the session ended while this run was getting ready
            proc.kill()
            proc.wait()
            raise RuntimeError("the test session has ended")
        return proc

    def queue(self, names: list[str]) -> None:
        for name in names:
            if name not in self._done:
                self._queue.append(name)
                self._done[name] = threading.Event()
        if self._thread is None and self._queue:
            self._thread = threading.Thread(target=self._work, name="second-lane", daemon=True)
            self._thread.start()

    def _work(self) -> None:
        for name in self._queue:
            if self._stopping:
                break
            self._run(name)

    def _run(self, name: str) -> None:
        folder = self.folder / name
        folder.mkdir()
        began = time.monotonic()
        try:
            self._results[name] = LANE[name](self, folder)
        except BaseException as exc:  # raised again in the test that waits for it
            self._errors[name] = exc
        finally:
            self.seconds[name] = time.monotonic() - began
            self._done[name].set()

    def wait(self, name: str):
        if name not in self._done:  # not queued at collection (a fixture asked for late)
            self._done[name] = threading.Event()
            self._run(name)
        began = time.monotonic()
        self._done[name].wait()
        self.waited += time.monotonic() - began
        if name in self._errors:
            raise self._errors[name]
        return self._results[name]

    def drain(self) -> None:
        """Wait until every queued run has finished."""
        began = time.monotonic()
        for event in list(self._done.values()):
            event.wait()
        self.waited += time.monotonic() - began

    def stop(self) -> None:
        """End the run under way if the session ends first (Ctrl-C, -x); start no other."""
        self._stopping = True
        if self._proc is not None and self._proc.poll() is None:
            self._proc.kill()
        if self._thread is not None:
            self._thread.join(30)
        shutil.rmtree(self.folder, ignore_errors=True)


def _example(lane: SecondLane, folder: Path):
    out = folder / "a.jsonl"
    proc = finish(lane.launch(["--source", EXAMPLE, "--out", out, "--summary", out.with_suffix(".summary.json")]),
                  done="real-time factor")
    return out, proc


def _bad_checkpoint(lane: SecondLane, folder: Path):
    # a folder without checkpoint.json: the run stops with one line before any model loads
    proc = finish(lane.launch(["--source", EXAMPLE, "--checkpoint", folder, "--out", folder / "x.jsonl"]),
                  done="error: ")
    return folder / "x.jsonl", proc


def _webcam(lane: SecondLane, folder: Path):
    # this machine has no camera and no microphone; the run loads every model before it finds none
    out = folder / "x.jsonl"
    return finish(lane.launch(["--source", "webcam", "--duration", "2", "--out", out]), done="error: ",
                  timeout=240), out


def _interrupted(sig: int, records: int):
    """The example at wall-clock pace (like a camera), sent ``sig`` once ``records`` windows are out."""

    def run(lane: SecondLane, folder: Path):
        out = folder / "live.jsonl"

        def enough(_lines) -> bool:
            return out.exists() and out.read_text().count("\n") >= records

        proc = lane.launch(["--source", EXAMPLE, "--pace", "realtime", "--out", out, "--quiet"])
        return out, finish(proc, timeout=120, interrupt_when=enough, sig=sig)

    return run


def _replayed_verbose(lane: SecondLane, folder: Path):
    out = folder / "live.jsonl"
    proc = lane.launch(["--source", TALKING_FACES / "face_5.mp4", "--pace", "realtime", "--out", out, "-v"])
    return out, finish(proc, done="real-time factor", timeout=240)


def _gui_screenshot(lane: SecondLane, folder: Path):
    # python -m realtime --gui: the flag hands the command line to python -m gui, which
    # plays the example, saves the window and exits
    png = folder / "shot.png"  # --out: the window's recording (beside the picture), appended to
    (folder / "recorded.jsonl").write_text(json.dumps({"t_start": 0.0, "t_end": 4.0, "source": "earlier"}) + "\n")
    proc = lane.launch(["--gui", "--source", EXAMPLE, "--pace", "asap", "--screenshot", png, "--after", 6, "--quiet",
                        "--out", folder / "recorded.jsonl", "--append"])
    return png, finish(proc, done="screenshot saved", timeout=300)


def _extraction(lane: SecondLane, folder: Path):
    """python -m realtime.extract on ten talking clips (espeak-ng speech over a real face),
    killed (SIGKILL) once 3 clips are cached, then run again to the end by a pool of two
    worker processes (the exit audit runs in each: a worker closes its models as it ends, and
    logs its exit, which a worker the pool terminated never reaches)."""
    from realtime.synth_media import astronaut_face, talking_clip
    from tests.test_extract import make_corpus

    face = astronaut_face()
    clips, labels = make_corpus(folder, lambda path, i, text: talking_clip(
        path, text, face, voice="en-us" if i % 2 else "en-gb", seed=i))
    out = folder / "features.npz"
    cache = folder / "features.npz.cache"
    args = ["--videos", clips, "--labels", labels, "--out", out, "--quiet"]
    proc = lane.track(subprocess.Popen([sys.executable, "-m", "realtime.extract", *map(str, args)], cwd=ROOT,
                                       env=lane.env, stderr=subprocess.DEVNULL))
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and len(list(cache.glob("*.npz"))) < 3:
        time.sleep(0.1)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    killed = {"cached": {p.name: p.stat().st_mtime_ns for p in cache.glob("*.npz")}, "out_existed": out.exists()}
    (cache / ".0123456789abcdef.npz.tmp-99999").write_bytes(b"half an entry")  # as a kill mid-write leaves
    exits = folder / "exit-audit.log"
    resumed = finish(lane.launch([*args, "--workers", "2"], module="realtime.extract",
                                 env={"EXIT_AUDIT_LOG": str(exits)}), done="clips extracted", timeout=600)
    return clips, labels, out, cache, killed, resumed, exits.read_text().splitlines() if exits.exists() else []


LANE = {
    "example_run": _example,
    "bad_checkpoint_run": _bad_checkpoint,
    "webcam_run": _webcam,
    "sigterm_run": _interrupted(signal.SIGTERM, 3),
    "sigint_run": _interrupted(signal.SIGINT, 2),
    "replayed_verbose_run": _replayed_verbose,
    "gui_screenshot_run": _gui_screenshot,
    "extraction_run": _extraction,
}
"""The second lane's runs, each served to the tests by the session fixture of its name."""

_lane: SecondLane | None = None


def _second_lane() -> SecondLane:
    global _lane
    if _lane is None:
        _lane = SecondLane()
    return _lane


def pytest_collection_modifyitems(session, config, items):
    """The tests that read a second-lane run go last, in their order: the lane then has the
    in-process tests' whole time to run beside them, and tests seldom wait for it."""
    readers = {id(item) for item in items if any(name in LANE for name in getattr(item, "fixturenames", ()))}
    items[:] = [item for item in items if id(item) not in readers] + [item for item in items if id(item) in readers]


def pytest_collection_finish(session):
    """Queue the second lane's runs the collected tests need, in the order they need them:
    each runs beside the tests that come before the first one that reads it."""
    needed: list[str] = []
    for item in session.items:
        needed += [name for name in getattr(item, "fixturenames", ()) if name in LANE and name not in needed]
    if needed:
        _second_lane().queue(needed)


def pytest_terminal_summary(terminalreporter):
    """How long the second lane's runs took beside the tests, and how long tests waited for them."""
    if _lane is not None and _lane.seconds:
        terminalreporter.write_line(f"second lane: {len(_lane.seconds)} runs in {sum(_lane.seconds.values()):.0f} s "
                                    f"beside the tests; tests waited {_lane.waited:.0f} s for them")
        if terminalreporter.config.option.verbose > 0:
            for name, seconds in _lane.seconds.items():
                terminalreporter.write_line(f"  {seconds:6.1f} s  {name}")


def pytest_sessionfinish(session, exitstatus):
    if _lane is not None:
        _lane.stop()


def _lane_run(name: str):
    """A second-lane run, checked for graphs left to their finalizers (see tests/exit_audit)."""
    result = _second_lane().wait(name)
    proc = next(part for part in result if isinstance(part, Finished))
    assert "exit-audit:" not in proc.stderr, proc.stderr[-3000:]
    return result


@pytest.fixture
def lane_drained():
    """For a test whose own process has a tight exit bound (5 s after SIGTERM): it starts
    once the second lane has run everything, so that its process has a core to itself."""
    if _lane is not None:
        _lane.drain()


@pytest.fixture(scope="session")
def example_run():
    """python -m realtime on the example video, once per session (started when the session
    starts): (records path, process)."""
    from realtime.engine import DEFAULT_CHECKPOINT

    assert (DEFAULT_CHECKPOINT / "checkpoint.json").is_file(), "the bundled default model is missing"
    out, proc = _lane_run("example_run")
    assert proc.returncode == 0, proc.stderr[-3000:]
    return out, proc


@pytest.fixture(scope="session")
def bad_checkpoint_run():
    """python -m realtime with a --checkpoint folder that holds none: (--out path, process)."""
    return _lane_run("bad_checkpoint_run")


@pytest.fixture(scope="session")
def webcam_run():
    """python -m realtime --source webcam on this machine, which has no camera and no
    microphone, once per session: (process, --out)."""
    return _lane_run("webcam_run")


@pytest.fixture(scope="session")
def sigterm_run():
    """The example at wall-clock pace, sent SIGTERM after 3 windows: (records path, process)."""
    return _lane_run("sigterm_run")


@pytest.fixture(scope="session")
def sigint_run():
    """The example at wall-clock pace, sent SIGINT (Ctrl-C) after 2 windows: (records path, process)."""
    return _lane_run("sigint_run")


@pytest.fixture(scope="session")
def replayed_verbose_run():
    """A real 5 s camera clip replayed at wall-clock pace, with -v: (records path, process)."""
    return _lane_run("replayed_verbose_run")


@pytest.fixture(scope="session")
def gui_screenshot_run():
    """python -m realtime --gui --screenshot on the example after 6 s, --quiet: (PNG path, process)."""
    return _lane_run("gui_screenshot_run")


@pytest.fixture(scope="session")
def extraction_run():
    """python -m realtime.extract on ten talking clips, killed once 3 are cached and run again:
    (clips folder, labels.csv, features, cache folder, what the kill left, the resumed process)."""
    return _lane_run("extraction_run")


def same_record(ours, theirs, where: str) -> None:
    """Equal records: every key, string and count the same, every number within one unit of
    the fourth decimal the records are written with. Float noise of about 1e-6 (another
    process, another torch thread count) can carry a number across a rounding boundary:
    byte equality failed so twice in fresh clones' full runs (a Ray worker against a local
    run, L_hetero -2.037 against -2.0371; a second run in the test process)."""
    if isinstance(theirs, dict):
        assert isinstance(ours, dict) and ours.keys() == theirs.keys(), where
        for key in theirs:
            same_record(ours[key], theirs[key], f"{where}.{key}")
    elif isinstance(theirs, list):
        assert isinstance(ours, list) and len(ours) == len(theirs), where
        for i, (a, b) in enumerate(zip(ours, theirs)):
            same_record(a, b, f"{where}[{i}]")
    elif isinstance(theirs, float) and not isinstance(theirs, bool):
        assert isinstance(ours, (int, float)) and abs(ours - theirs) <= 1.5e-4, (where, ours, theirs)
    else:
        assert ours == theirs, (where, ours, theirs)
