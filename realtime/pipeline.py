"""The streaming pipeline: sources -> feature workers -> window assembler -> engine -> sinks.

Threads live only here, at the edges: one per source, one per feature worker (face,
acoustics, speech), joined by bounded queues; the thread that calls ``run`` (the CLI's
main thread, the GUI's session thread) drives the run's ``StreamCore`` (realtime/core.py:
routing, when windows close, batching and inference) with the run clock, and writes
records. File mode never drops and closes a window only when every stream has passed its
end (deterministic). Live mode drops the oldest frames under load
(counted), closes windows on time, and keeps going when a device or worker fails: that
modality becomes missing, with one warning. In live mode the text worker also embeds the
word lists of the windows about to close (realtime/features/words_ahead.py), so that the
engine finds them ready; in file mode the engine embeds each batch's lists itself (the
batch decides their last bits, and two runs must give the same records).
"""

from __future__ import annotations

import logging
import math
import os
import queue
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace

from realtime import interrupts, logs
from realtime.core import StreamCore
from realtime.engine import InferenceEngine
from realtime.features.acoustic import AcousticExtractor
from realtime.features.face import FaceExtractor
from realtime.features.speech import StreamingTranscriber
from realtime.features.text import EmbedCounts
from realtime.features.words_ahead import WordsAhead
from realtime.run import RunOptions, RunStatus
from realtime.sinks import Sink, Summary
from realtime.types import AudioChunk, Estimate, FaceFrame, Mark, VideoFrame, Word

logger = logging.getLogger(__name__)

END = object()  # end of a queue's input
_EMPTY = object()
POLL = 0.05
"""Seconds the run loop waits at most for a worker result before it looks at the clock."""
WORKERS = ("face", "audio", "text")
INTERRUPT_GRACE = 0.5
"""Seconds an interrupted run spends scoring the windows already complete."""
SPEECH_LAGS_SHOWN = 30
"""Words whose lag ``status`` reports (the latest)."""


@dataclass(frozen=True)
class PipelineOptions(RunOptions):
    """A run's options (``RunOptions``: live, hop, batch, close_grace) and how its threads
    hold what passes between them (the engine and the extractors are built by the caller)."""

    queue_size: int = 256
    """File mode queue bound (the source waits when a worker lags)."""
    live_face_queue: int = 2
    """Live: frames waiting for the face worker before the oldest is dropped."""
    join_timeout: float = 5.0
    embed_ahead: bool = True
    """Live: the text worker embeds the word lists of the windows about to close (see
    ``realtime.features.words_ahead``); off, the engine embeds every list as its window
    is scored (for measuring what it saves)."""


class BoundedQueue:
    """A bounded queue that blocks (file) or drops its oldest item (live), counting drops.

    Once ``closed`` (its consumer died), puts are discarded so producers never block.
    """

    def __init__(self, maxsize: int, drop_oldest: bool):
        self._q: queue.Queue = queue.Queue(maxsize=maxsize)
        self.maxsize = maxsize
        self.drop_oldest = drop_oldest
        self.dropped = 0
        self.closed = False

    def put(self, item, stop: threading.Event) -> None:
        while not self.closed:
            if self.drop_oldest and item is not END:
                try:
                    self._q.put_nowait(item)
                    return
                except queue.Full:
                    try:
                        self._q.get_nowait()
                        self.dropped += 1
                    except queue.Empty:
                        pass
                    continue
            try:
                self._q.put(item, timeout=0.1)
                return
            except queue.Full:
                if stop.is_set() and item is not END:
                    return

    def qsize(self) -> int:
        """Items waiting now (approximate while other threads put and get)."""
        return self._q.qsize()

    def get(self, timeout: float = 0.1):
        try:
            return self._q.get(timeout=timeout)
        except queue.Empty:
            return _EMPTY

    def take_waiting(self) -> tuple[list, bool]:
        """Every item waiting now, without blocking, and whether END was among them."""
        items = []
        while True:
            try:
                item = self._q.get_nowait()
            except queue.Empty:
                return items, False
            if item is END:
                return items, True
            items.append(item)


@dataclass
class RunState:
    """Shared between threads: the stop event, failures, the run clock."""

    stop: threading.Event = field(default_factory=threading.Event)
    failed: dict[str, str] = field(default_factory=dict)
    clock_start: float = field(default_factory=time.monotonic)
    end_time: float = 0.0
    paused_since: float | None = None
    """Monotonic time of the pause in progress; the run clock stands still meanwhile."""

    def clock(self) -> float:
        now = self.paused_since if self.paused_since is not None else time.monotonic()
        return now - self.clock_start

    def start_clock(self) -> None:
        """The run clock reads 0 now (or, in a pause, until the pause ends)."""
        self.clock_start = self.paused_since if self.paused_since is not None else time.monotonic()

    @property
    def paused(self) -> bool:
        return self.paused_since is not None

    def pause(self) -> None:
        if self.paused_since is None:
            self.paused_since = time.monotonic()

    def resume(self) -> None:
        """Restart the clock where it stopped: the pause leaves no gap in the timeline."""
        if self.paused_since is not None:
            self.clock_start += time.monotonic() - self.paused_since
            self.paused_since = None


class Inlet:
    """What a feed may do to the run it feeds, and all it sees of it (a feed never holds
    the pipeline): hand over what it captured, end its streams, give one up, read the run
    clock, see a stop or a pause, and say how far its media reached."""

    def __init__(self, queues: dict[str, BoundedQueue], state: RunState, fail: Callable[[str, str], None]):
        self._queues = queues
        self._state = state
        self._fail = fail

    def route(self, item: VideoFrame | AudioChunk) -> None:
        """Hand a captured item to the workers that need it (file runs: waits while they are busy)."""
        stop = self._state.stop
        if isinstance(item, VideoFrame):
            self._queues["face"].put(item, stop)
        else:
            self._queues["audio"].put(item, stop)
            self._queues["text"].put(item, stop)
            self._state.end_time = max(self._state.end_time, item.t_end)

    def end(self, streams: Iterable[str]) -> None:
        """No more input for ``streams`` ('face', 'audio', 'text'); the run ends them all
        itself when the feed returns."""
        for stream in streams:
            self._queues[stream].put(END, self._state.stop)

    def fail(self, stream: str, message: str) -> None:
        """Give up ``stream`` (a device that cannot go on): one warning, kept in the summary.
        The feed still ends that stream's input with ``end``."""
        self._fail(stream, message)

    def clock(self) -> float:
        """Seconds on the run clock (it started when the feed did; it stands still in a pause)."""
        return self._state.clock()

    def reached(self, t: float) -> None:
        """The input has covered media up to ``t`` seconds (where the last windows end)."""
        self._state.end_time = max(self._state.end_time, t)

    @property
    def stopped(self) -> bool:
        """The run was asked to stop: the feed should return."""
        return self._state.stop.is_set()

    @property
    def paused(self) -> bool:
        return self._state.paused


class Pipeline:
    """Runs one source through the workers into sinks. A context manager: leaving it stops
    every thread (idempotent, timed joins)."""

    def __init__(self, options: PipelineOptions, engine: InferenceEngine, face: FaceExtractor | None,
                 acoustic: AcousticExtractor, transcriber: StreamingTranscriber | None,
                 on_estimate: Callable[[Estimate], None] | None = None,
                 on_face: Callable[[VideoFrame, FaceFrame], None] | None = None,
                 on_transcript: Callable[[list[Word], list[Word]], None] | None = None):
        """``on_estimate`` runs in the thread that called ``run``; ``on_face`` (each analysed
        frame with its face) and ``on_transcript`` (new committed words, the current
        uncommitted ones) run in worker threads and must only hand data over."""
        self.options = options
        self.engine = engine
        self.face = face
        self.acoustic = acoustic
        self.transcriber = transcriber
        self.on_estimate = on_estimate
        self.on_face = on_face
        self.on_transcript = on_transcript
        self.state = RunState()
        self._ended: set[str] = set()
        self._threads: list[threading.Thread] = []
        live = options.live
        self.queues = {
            "face": BoundedQueue(options.live_face_queue if live else options.queue_size, drop_oldest=live),
            "audio": BoundedQueue(options.queue_size, drop_oldest=live),
            "text": BoundedQueue(options.queue_size, drop_oldest=live),
        }
        self.out = BoundedQueue(max(options.queue_size, 1024), drop_oldest=False)
        self.inlet = Inlet(self.queues, self.state, self._fail)
        """The feed's side of the run (see ``run``)."""
        self.spec = engine.spec.window_spec(options.hop)
        """The windows' geometry (the engine's feature spec at this hop)."""
        self.core: StreamCore | None = None
        """The run's routing, window closing and inference (built when ``run`` starts)."""
        self._reached = 0.0
        """How far the records delivered so far reach (media seconds)."""
        self._ahead = WordsAhead(self.spec) if live and options.embed_ahead and transcriber is not None else None
        self._last_step: float | None = None  # run clock at the text worker's last step

    # ---- lifecycle -----------------------------------------------------------------
    def __enter__(self) -> Pipeline:
        return self

    def __exit__(self, *exc) -> None:
        self.shutdown()

    def stop(self) -> None:
        """Ask the run to end (from any thread): input stops, finished windows are kept."""
        self.state.resume()
        self.state.stop.set()

    def shutdown(self) -> None:
        """Set the stop event, end every queue, join threads in order, log stragglers."""
        self.state.stop.set()
        for q in self.queues.values():
            q.closed = True
        for thread in self._threads:
            thread.join(timeout=self.options.join_timeout)
            if thread.is_alive():
                logger.warning("thread %s did not stop within %.0f s", thread.name, self.options.join_timeout)
        self._threads = [t for t in self._threads if t.is_alive()]
        if self.transcriber is not None and not any(t.name == "realtime-text" for t in self._threads):
            self.transcriber.close()  # its voice detector; a straggling text worker keeps it

    def _start(self, name: str, target: Callable[[], None]) -> None:
        thread = threading.Thread(target=logs.carried(target), name=f"realtime-{name}", daemon=True)
        self._threads.append(thread)
        thread.start()

    def _fail(self, stream: str, message: str) -> None:
        if stream not in self.state.failed:
            self.state.failed[stream] = message
            logger.warning("%s", message)

    def status(self) -> RunStatus:
        """What the run shows whoever watches it (from any thread)."""
        core = self.core
        return RunStatus(
            paused=self.state.paused, failed=dict(self.state.failed),
            dropped={name: q.dropped for name, q in self.queues.items()},
            queued={name: q.qsize() for name, q in self.queues.items()},
            bounds={name: q.maxsize for name, q in self.queues.items()},
            speech_lags=tuple(core.speech_lags[-SPEECH_LAGS_SHOWN:]) if core is not None else (),
            threads=tuple(t.name for t in self._threads if t.is_alive()))

    # ---- workers -----------------------------------------------------------------
    def _worker(self, stream: str, process: Callable[[object], Iterable], finish: Callable[[], Iterable]) -> None:
        q, stop = self.queues[stream], self.state.stop
        if self.options.live and stream == "text":
            # speech may lag by seconds; face, audio and the model may not: on a small
            # machine, let the scheduler favour them over the Whisper thread (Linux: per thread)
            try:
                os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), 10)
            except (AttributeError, OSError):
                pass
        try:
            while not stop.is_set():
                item = q.get()
                if item is _EMPTY:
                    continue
                if item is END:
                    for result in finish():
                        self.out.put(result, stop)
                    break
                for result in process(item):
                    self.out.put(result, stop)
                if stream in self._ended:  # the process step met the end of input
                    for result in finish():
                        self.out.put(result, stop)
                    break
        except Exception as exc:  # a failing worker costs its modality, not the run
            q.closed = True
            self._fail(stream, f"{stream} worker failed ({type(exc).__name__}: {exc}); running without {stream}")
        finally:
            self.out.put(Mark(stream, math.inf, final=True), stop)

    def _face_process(self, frame: VideoFrame):
        face = self.face(frame)
        if self.on_face is not None:
            self.on_face(frame, face)
        yield face

    def _audio_process(self, chunk: AudioChunk):
        frames = self.acoustic.push(chunk)
        if frames:
            yield frames

    def _audio_finish(self):
        frames = self.acoustic.flush()
        if frames:
            yield frames

    def _asr_process(self, chunk: AudioChunk):
        asr = self.transcriber
        asr.insert_audio(chunk)
        if self.options.live:
            # take everything already waiting before paying for a transcription step. Not
            # in file mode: there each step must see the same audio on every run
            waiting, ended = self.queues["text"].take_waiting()
            for more in waiting:
                asr.insert_audio(more)
            if ended:
                self._ended.add("text")
        if asr.ready():
            words = asr.process_iter()
            if self.on_transcript is not None:
                self.on_transcript(words, asr.tentative)
            if words:
                yield words
            yield Mark("text", asr.progress)
            if self._ahead is not None:  # the words are on their way to the core; now their lists
                self._embed_ahead(words)

    def _embed_ahead(self, words: list[Word]) -> None:
        """Live: embed the word lists of the windows that close before the next step.

        The next step is expected as far ahead as this one came after the last (at least a
        hop); a window closes ``close_grace`` after its end. Lists already remembered cost
        nothing, so a step that brought no words usually embeds nothing. If the engine asks
        for a list while it is being embedded, it waits for it (the embedder's lock) and
        finds it remembered."""
        now = self.state.clock()
        ahead = max(self.spec.hop, now - self._last_step) if self._last_step is not None else 2 * self.spec.hop
        self._last_step = now
        self._ahead.push(words)
        grace = self.options.close_grace
        lists = self._ahead.lists(since=now - grace, until=now + ahead - grace)
        if lists:
            self.engine.text.embed_ahead(lists)

    def _asr_finish(self):
        words = self.transcriber.finish()
        if self.on_transcript is not None:
            self.on_transcript(words, [])
        if words:
            yield words

    def _start_workers(self, has_video: bool, has_audio: bool) -> set[str]:
        """Start the workers the input allows; returns the streams that will run (the
        others are closed in the core from the start)."""
        running = set()
        if has_video and self.face is not None:
            self._start("face", lambda: self._worker("face", self._face_process, lambda: ()))
            running.add("face")
        if has_audio:
            self._start("audio", lambda: self._worker("audio", self._audio_process, self._audio_finish))
            running.add("audio")
            if self.transcriber is not None:
                self._start("text", lambda: self._worker("text", self._asr_process, self._asr_finish))
                running.add("text")
        for stream in WORKERS:
            if stream not in running:
                self.queues[stream].closed = True
        return running

    # ---- the run -----------------------------------------------------------------
    def run(self, feed: Callable[[Inlet], None], has_video: bool, has_audio: bool, sinks: list[Sink],
            summary: Summary) -> Summary:
        """Run until the feed ends (or a stop); ``feed(inlet)`` pushes items with ``inlet.route``.

        ``feed`` runs in its own thread; the run clock starts as it does. When it returns,
        every stream's input ends. (Runs are built by ``realtime.run.build_run``.)
        """
        state = self.state
        running = self._start_workers(has_video, has_audio)
        core = self.core = StreamCore(self.spec, self.engine, self.options, running)
        self._reached = 0.0

        def feeder() -> None:
            try:
                feed(self.inlet)
            except Exception as exc:
                self._fail("source", f"source failed ({type(exc).__name__}: {exc}); stopping input")
            finally:
                self.inlet.end(running)
                self.out.put(Mark("source", state.end_time, final=True), state.stop)

        words_before = replace(self.engine.text.counts)
        started = time.perf_counter()
        state.start_clock()  # media time 0 is now, for a camera and a file at realtime pace alike
        self._start("source", feeder)
        try:
            while not core.done or (state.paused and not state.stop.is_set()):
                item = self.out.get(timeout=self._wait(core))
                if item is not _EMPTY:
                    self._tell(core)
                    core.take(item, state.clock())
                if state.paused:  # results wait; the workers finish what they hold
                    continue
                now = state.clock()
                while estimates := core.step(now):
                    self._deliver(estimates, sinks, summary)
            self._tell(core)
            core.finish(state.end_time)
            while estimates := core.step():
                self._deliver(estimates, sinks, summary)
        except KeyboardInterrupt:
            summary.interrupted = True
            # windows already complete are kept, as many as fit in INTERRUPT_GRACE: a stop
            # must be honoured within a second whatever is queued (issue 17)
            core.finish(interrupted=True)
            deadline = time.perf_counter() + INTERRUPT_GRACE
            while time.perf_counter() < deadline and (estimates := core.step()):
                self._deliver(estimates, sinks, summary)
            if core.waiting:
                summary.warnings.append(f"{core.waiting} complete windows not scored: interrupted")
        finally:
            self.shutdown()
            summary.wall_seconds += time.perf_counter() - started
            # an interrupted file run analysed the media its records reach, not what was decoded
            # ahead of them (its decoder runs up to a queue ahead of the windows); live input
            # comes at its own pace, and all of it was heard
            read_ahead = summary.interrupted and not self.options.live
            summary.media_seconds += min(state.end_time, self._reached) if read_ahead else state.end_time
            summary.face_frames += core.face_frames
            for name, q in self.queues.items():
                summary.dropped[name] = summary.dropped.get(name, 0) + q.dropped
            # samples the window assembler refused: too late for any window still to come, or repeats
            stats = core.assembler.stats
            for name, count in (("late", stats.late), ("duplicate", stats.duplicates)):
                summary.dropped[name] = summary.dropped.get(name, 0) + count
            for message in state.failed.values():  # logged as each stream was given up
                summary.said_warning(message)
            summary.speech_lags_ms.extend(1000.0 * lag for lag in core.speech_lags)
            self._log_words(words_before)
        return summary

    def _wait(self, core: StreamCore) -> float:
        """How long the run loop may wait for a worker result: POLL, or (live) until the next
        window is due, so that it is scored when it closes and not up to a poll later
        (window-to-record p50 about 85 ms -> 60 ms on the example: docs/PERFORMANCE.md)."""
        due = core.next_due()
        if due is None or self.state.paused:
            return POLL
        return min(POLL, max(0.001, due - self.state.clock()))

    def _log_words(self, before: EmbedCounts) -> None:
        now = self.engine.text.counts
        asked, computed = now.asked - before.asked, now.computed - before.computed
        if self._ahead is not None:
            logger.info("words: the text worker embedded %d lists ahead; of the %d lists windows asked for, "
                        "%d were ready from it and the engine embedded %d itself", now.ahead - before.ahead,
                        asked, now.found_ahead - before.found_ahead, computed)
        else:
            logger.info("words: the engine embedded %d of the %d lists windows asked for", computed, asked)

    def _tell(self, core: StreamCore) -> None:
        """Hand the core what other threads decided: a stop, the streams given up."""
        if self.state.stop.is_set():
            core.stop()
        for stream in list(self.state.failed):
            core.fail(stream)

    def _deliver(self, estimates: list[Estimate], sinks: list[Sink], summary: Summary) -> None:
        for est in estimates:
            if self.options.live:
                # a window closed early by the end of input is ready before its end: 0
                est.latency_ms = max(0.0, 1000.0 * (self.state.clock() - est.t_end))
            with interrupts.held():  # a stop between a record's write and its count waits for both
                for sink in sinks:
                    sink.write(est)
                summary.add(est)
                self._reached = max(self._reached, est.t_end)
            if self.on_estimate is not None:
                self.on_estimate(est)
