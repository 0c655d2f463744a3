"""One run of the streaming pipeline behind the window, and what the window reads from it.

The pipeline runs in its own thread (started here); it never touches a widget. Estimates
reach Qt through a signal; frames, landmarks and the transcript, which come far more
often than the window redraws, are left in a ``LiveView`` that the window's redraw timer
reads (the newest frame wins).
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
from PyQt6 import sip
from PyQt6.QtCore import QObject, pyqtSignal

from realtime.sources.live import camera_index
from realtime.types import FACE_FPS, Estimate, FaceFrame, VideoFrame, Word

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class SessionOptions:
    """What to run: a source and the models (built by ``gui.__main__`` or the controls)."""

    source: str
    """'webcam', a camera index ('0', '1', ...) or a media file."""
    microphone: str | None = ""
    """Live: input device name or index; '' the system default; None no microphone."""
    window: float | None = None
    """Window seconds; None: the checkpoint's."""
    hop: float = 0.5
    pace: str = "realtime"
    """Files: 'realtime' plays at media speed, 'asap' as fast as the machine goes."""
    checkpoint: str | None = None
    device: str = "auto"
    face_model: str | None = None
    face_fps: float = FACE_FPS
    """Frames per second whose face is analysed."""
    whisper_model: str | None = None
    text_model: str | None = None

    @property
    def live(self) -> bool:
        return camera_index(self.source) is not None

    def models_key(self) -> tuple:
        return self.checkpoint, self.device, self.face_model, self.whisper_model, self.text_model


@dataclass
class LiveView:
    """Written by pipeline threads, read by the window's redraw timer (under ``lock``)."""

    lock: threading.Lock = field(default_factory=threading.Lock)
    image: np.ndarray | None = None
    landmarks: np.ndarray | None = None
    frame_t: float = 0.0
    frame_serial: int = 0
    face_times: deque = field(default_factory=lambda: deque(maxlen=50))
    committed: list[Word] = field(default_factory=list)
    tentative: list[Word] = field(default_factory=list)
    transcript_serial: int = 0
    note: str | None = None
    """What the video pane says while there is no picture (an input without video)."""
    words_note: str | None = None
    """What the transcript says while it has no words (an input without audio)."""

    def no_video(self, note: str) -> None:
        """The input has no picture: the pane says ``note`` instead of waiting for one."""
        with self.lock:
            self.note = note
            self.frame_serial += 1

    def no_audio(self, note: str) -> None:
        """The input has no sound: the transcript says ``note`` instead of 'no words yet'."""
        with self.lock:
            self.words_note = note
            self.transcript_serial += 1

    def on_face(self, frame: VideoFrame, face: FaceFrame) -> None:
        with self.lock:
            self.image = frame.image
            self.landmarks = face.landmarks
            self.frame_t = frame.t
            self.frame_serial += 1
            self.face_times.append(time.monotonic())

    def on_transcript(self, words: list[Word], tentative: list[Word]) -> None:
        with self.lock:
            self.committed.extend(words)
            del self.committed[:-400]  # the view shows the last few hundred words
            self.tentative = list(tentative)
            self.transcript_serial += 1

    def face_fps(self) -> float:
        with self.lock:
            times = list(self.face_times)
        if len(times) < 2 or time.monotonic() - times[-1] > 2.0:
            return 0.0
        return (len(times) - 1) / max(times[-1] - times[0], 1e-6)


@dataclass(frozen=True)
class Health:
    """A snapshot of the run for the health strip."""

    running: bool
    paused: bool
    failed: dict[str, str]
    dropped: dict[str, int]
    face_fps: float
    speech_lag: float | None
    """Median seconds from a word's end to its commit (live runs), None before any."""
    latency_ms: float | None
    devices: dict[str, str]
    """'camera' / 'microphone' -> what was found (live runs) or 'file'."""


class Session(QObject):
    """Starts, pauses and stops pipeline runs; loads the models once and keeps them."""

    estimate = pyqtSignal(object, object)
    """An Estimate, in the order the windows end, and the name of the input it came from
    (``realtime.sources.live.source_name``: what a record's ``source`` says): a receiver
    reading the session's options instead would name the next run's input for estimates still
    queued when a run was stopped and another started."""
    message = pyqtSignal(str)
    """A one-line status for the status bar."""
    warned = pyqtSignal(str)
    """A warning the run gave (realtime's, the models' or the session's own log), as it came."""
    failed = pyqtSignal(str)
    """A one-line error: the run did not start or could not go on."""
    finished = pyqtSignal(object)
    """The run's Summary (also after stop or failure, with what was done)."""

    def __init__(self, parent: QObject | None = None, open_devices=None):
        """``open_devices(camera_index, microphone)`` -> (camera, microphone), either None
        when absent; default: realtime.sources.live.open_devices (OpenCV, sounddevice)."""
        super().__init__(parent)
        self._open_devices = open_devices
        self.view = LiveView()
        self.options: SessionOptions | None = None
        self._components = None
        self._components_key: tuple | None = None
        self._current = None  # the realtime.run.Run in progress
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._ended = threading.Event()  # the run's: set as its ``finished`` is emitted
        self._paused = False
        self._devices: dict[str, str] = {}
        self._latencies: deque = deque(maxlen=50)
        self._closed = False

    # ---- control (GUI thread) ---------------------------------------------------------
    @property
    def running(self) -> bool:
        """Whether a run is in progress: its ``finished`` not yet emitted."""
        return self.alive and not self._ended.is_set()

    @property
    def alive(self) -> bool:
        """Whether the run's thread is alive: ``running``, or in its last instant, emitting
        ``finished``."""
        return self._thread is not None and self._thread.is_alive()

    def start(self, options: SessionOptions) -> None:
        """Start a run; also in reply to the last run's ``finished`` (emitted from its thread
        a moment before that thread ends: a start then had been refused as 'in progress')."""
        if self.running:
            raise RuntimeError("a run is in progress; stop it first")
        if self.alive and self._thread is not threading.current_thread():
            self._thread.join(5.0)  # it has emitted ``finished``: nothing of the run is left
        self.options = options
        self.view = LiveView()
        self._stop.clear()
        self._paused = False
        self._devices = {}
        self._latencies.clear()
        self._ended = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(options, self._ended), name="gui-session",
                                        daemon=True)
        self._thread.start()

    def pause(self) -> None:
        self._paused = True
        if self._current is not None:
            self._current.pause()

    def resume(self) -> None:
        self._paused = False
        if self._current is not None:
            self._current.resume()

    @property
    def paused(self) -> bool:
        return self._paused

    @property
    def engine(self):
        """The loaded InferenceEngine, None before the first run has loaded it."""
        return self._components.engine if self._components is not None else None

    def close(self) -> None:
        """Stop the run and close the models now (never left to finalizers at exit); models a
        run was still loading are closed by that run as the load ends."""
        self._closed = True
        self.stop()
        if self._components is not None:
            self._components.close()
            self._components = None
            self._components_key = None

    def stop(self, timeout: float = 10.0, wait: bool = True) -> None:
        """End the run and wait for its threads (finished windows are still delivered).
        ``wait`` False: ask, and return at once (``finished`` says when it has ended; a run
        still loading its models ends once they are loaded)."""
        self._stop.set()
        self._paused = False
        run = self._current
        if run is not None:
            run.stop()
        if wait and self._thread is not None:
            self._thread.join(timeout)
            if self._thread.is_alive():
                logger.warning("the pipeline did not stop within %.0f s", timeout)

    def health(self) -> Health:
        run = self._current
        status = run.status() if run is not None else None
        failed = status.failed if status is not None else {}
        dropped = status.dropped if status is not None else {}
        lags = status.speech_lags if status is not None else ()
        latencies = list(self._latencies)
        return Health(running=self.running, paused=self._paused, failed=failed, dropped=dropped,
                      face_fps=self.view.face_fps(), speech_lag=float(np.median(lags)) if lags else None,
                      latency_ms=float(np.median(latencies)) if latencies else None, devices=dict(self._devices))

    # ---- the run (its own thread) -----------------------------------------------------
    def _run(self, options: SessionOptions, ended: threading.Event) -> None:
        from models.errors import UserError
        from realtime import logs
        from realtime.sinks import Summary

        summary = Summary(source=options.source)
        try:
            with logs.warnings_to(self._warn, ("realtime", "models", "gui")):  # the window shows them
                if not options.live:
                    from realtime.sources.file import probe

                    probe(options.source)  # a bad file is reported before any model loads
                if self._stop.is_set():  # stopped before the models began to load
                    return
                comps = self._load(options)
                if comps is None or self._stop.is_set():
                    return
                summary = self._run_pipeline(options, comps, summary)
        except UserError as exc:
            self.failed.emit(str(exc))
        except Exception as exc:  # the window stays usable whatever a run does
            logger.exception("run failed")
            self.failed.emit(f"internal error: {type(exc).__name__}: {exc}")
        finally:
            self._current = None
            ended.set()
            if not sip.isdeleted(self):
                self.finished.emit(summary)

    def _warn(self, text: str) -> None:
        """A warning of the run for the window, unless the window (and this object with it) is
        gone: a run stopped while its models load can outlive it, and its next warning would
        reach freed memory (SIGSEGV)."""
        if not sip.isdeleted(self):
            self.warned.emit(text)

    def _load(self, options: SessionOptions):
        from realtime.service import component_args, load_components

        if self._components is None or self._components_key != options.models_key():
            if self._components is not None:  # other models asked for: close the old ones now
                self._components.close()
                self._components = None
            self.message.emit("loading models...")
            started = time.perf_counter()
            args = component_args(device=options.device, checkpoint=options.checkpoint, face_model=options.face_model,
                                  whisper_model=options.whisper_model, text_model=options.text_model)
            comps = load_components(args, live=True)
            if self._closed:  # the session closed while they loaded: nobody else will close them
                comps.close()
                return None
            self._components = comps
            self._components_key = options.models_key()
            logger.info("models loaded in %.1f s", time.perf_counter() - started)
        comps = self._components
        # this run's window, on the loaded models: an engine of its own, nothing rewritten
        return replace(comps, engine=comps.engine.with_window(options.window))

    def _run_pipeline(self, options: SessionOptions, comps, summary):
        from realtime.run import RunOptions, build_run
        from realtime.sources.live import source_name

        feed = self._live_feed(options) if options.live else self._file_feed(options)

        name = source_name(options.source)

        def on_estimate(est: Estimate) -> None:
            if est.latency_ms is not None:
                self._latencies.append(est.latency_ms)
            self.estimate.emit(est, name)

        # a file played at media speed runs like a camera: windows close on the run clock
        run_options = RunOptions(live=options.live or options.pace == "realtime", hop=options.hop)
        run = build_run(comps, feed, run_options, on_estimate=on_estimate, on_face=self.view.on_face,
                        on_transcript=self.view.on_transcript)
        self._current = run
        if self._paused:
            run.pause()
        if self._stop.is_set():
            return summary
        self.message.emit(f"running {options.source if options.live else Path(options.source).name}")
        with run:
            run.run(summary=summary)
        return summary

    def _live_feed(self, options: SessionOptions):
        from realtime.service import UsageError
        from realtime.sources.live import LiveFeed, open_devices

        index = camera_index(options.source)
        camera, mic = (self._open_devices or open_devices)(index, options.microphone)
        if options.microphone is None:
            mic_state = "microphone off"
        elif mic is None:
            mic_state = "no microphone"
        else:
            mic_state = f"microphone {options.microphone or '(default)'}"
        self._devices = {"camera": f"camera {index}" if camera else f"camera {index} cannot be opened",
                         "microphone": mic_state}
        if camera is None and mic is None:
            raise UsageError(f"camera {index} cannot be opened and no microphone is available")
        if camera is None:
            self.view.no_video(f"camera {index} cannot be opened: voice and words only")
        if mic is None:
            self.view.no_audio("no microphone: no words")
        return LiveFeed(camera, mic, video_fps=options.face_fps, name=options.source)

    def _file_feed(self, options: SessionOptions):
        from realtime.sources.file import FileFeed, FileOptions

        feed = FileFeed(Path(options.source), FileOptions(pace=options.pace, video_fps=options.face_fps))
        info = feed.info
        self._devices = {"camera": f"file {info.path.name}", "microphone": f"file {info.path.name}"}
        if not info.has_video:  # build_run warns of it; the panes say it too
            self.view.no_video(f"no video in '{info.path.name}': voice and words only")
        if not info.has_audio:
            self.view.no_audio(f"no audio in '{info.path.name}': no words")
        return feed
