"""The streaming core of a run: worker results in, Estimates out, on one thread, with no clock.

whisper_streaming keeps its online processor (``insert_audio_chunk``, ``process_iter``,
``finish``) apart from what owns the microphone, the clock and the threads; this is the
same cut for a run. ``realtime.pipeline.Pipeline`` owns threads, queues and the run
clock: it hands each worker result to ``take``, calls ``step`` with the clock's reading
and ``finish`` at the end. The core owns the rest:

- routing: a ``FaceFrame``, a list of ``AcousticFrame`` or of ``Word``, a ``Mark``, each to
  its stream in the window assembler;
- when a window closes. File mode: once every open stream has passed its end (two runs
  give the same windows). Live mode: once the clock passes its end + ``close_grace``,
  with whatever has arrived; a frame or a word that comes after its windows closed is
  counted as late, not added;
- batching and inference. Live: every closed window is scored at once, in batches of up
  to ``batch``. File: once ``batch`` windows wait, every window waiting is scored.

Times are seconds on the run clock and are passed in: nothing here sleeps, reads a clock,
takes a lock or starts a thread, so tests drive it with a fake clock.

    core = StreamCore(spec, engine, RunOptions(live=True), streams={"face", "audio", "text"})
    core.take(face_frame)
    while estimates := core.step(now):   # one batch per call
        write(estimates)
    core.finish(end_time)
    while estimates := core.step():
        write(estimates)
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING

from realtime.types import AcousticFrame, Estimate, FaceFrame, Mark, Window, Word
from realtime.windows import STREAMS, WindowAssembler, WindowSpec

if TYPE_CHECKING:
    from realtime.run import RunOptions

Message = FaceFrame | list[AcousticFrame] | list[Word] | Mark
"""What the workers and the feed send to the core (``realtime.pipeline``'s out queue)."""

WAITING_MOST = 256
"""Closed windows the core holds at most (each holds its face and voice steps): the rest
close as these are scored. A stretch with nothing in it (an hour's gap in a file's audio)
had closed every window over it at once: about 100 MB more per hour of gap."""


class StreamCore:
    """Routes worker results into windows, closes them by the mode's rule, scores them.

    ``score`` turns a batch of windows into their estimates, in order (the
    ``InferenceEngine``). ``streams`` are the streams the input has ('face', 'audio',
    'text'); the others are closed at once: they never hold a window back. Of ``options``
    the core reads ``live``, ``batch`` and ``close_grace``; the geometry is ``spec``'s.
    """

    def __init__(self, spec: WindowSpec, score: Callable[[list[Window]], list[Estimate]], options: RunOptions,
                 streams: Iterable[str]):
        self.options = options
        self.score = score
        self.assembler = WindowAssembler(spec)
        self.streams = frozenset(streams)
        unknown = self.streams - set(STREAMS)
        if unknown:
            raise ValueError(f"unknown streams {sorted(unknown)} (known: {', '.join(STREAMS)})")
        for stream in STREAMS:
            if stream not in self.streams:
                self.assembler.close(stream)
        self.finished: set[str] = set()
        """Streams whose final Mark has come (they are over, or failed, or stopped)."""
        self.source_ended = False
        self.end_time = 0.0
        """Where the media ends, as the source's final Mark says."""
        self.speech_lags: list[float] = []
        """Live: seconds from each word's end to its arrival here."""
        self.face_frames = 0
        """Frames the face worker analysed (a face found in them or not)."""
        self._waiting: list[Window] = []  # closed, not yet scored
        self._due = 0  # how many of them are scored before anything else is decided
        self._stopped = False
        self._failed: set[str] = set()
        self._finished = False
        self._closing: str | None = None  # after ``finish``: how the last windows close ("flush", "complete")
        self._end = 0.0  # after ``finish``: where the media ends
        self._until: float | None = None  # live: the time windows last closed up to (files: None, progress)

    @property
    def done(self) -> bool:
        """The source has ended and every stream of the input has sent its final Mark."""
        return self.source_ended and self.finished >= self.streams

    @property
    def waiting(self) -> int:
        """Complete windows not scored yet (closed, or complete and still to close)."""
        return len(self._waiting) + (self.assembler.complete(self._until) if self._closing == "complete" else 0)

    def next_due(self) -> float | None:
        """Live: the run-clock time at which the next window closes (its end +
        ``close_grace``), for the caller to wake then rather than poll; None in file mode
        (windows close on the streams' progress) and after ``finish``."""
        if not self.options.live or self._finished:
            return None
        return self.assembler.next_end + self.options.close_grace

    def stop(self) -> None:
        """The run was asked to stop before its input ended (idempotent).

        In file mode the workers then stop where they are: a stream that ends from now on
        keeps its progress instead of being closed (windows past it would read it as
        missing), and ``finish`` closes only the windows every stream has passed. Live
        mode is unchanged: its windows close on time anyway."""
        self._stopped = True

    def fail(self, stream: str) -> None:
        """``stream`` was given up (its worker or device failed): its final Mark closes it,
        even after ``stop``. Idempotent."""
        self._failed.add(stream)

    def take(self, message: Message, now: float | None = None) -> None:
        """Route one message; ``now`` (the run clock, seconds) dates words' arrival in live mode.

        A ``Mark`` advances its stream (``final``: ends it; stream 'source': the input
        ended at ``t``). Anything else is a bug in the sender: TypeError."""
        assembler = self.assembler
        if isinstance(message, FaceFrame):
            self.face_frames += 1
            assembler.push_face(message)
        elif isinstance(message, Mark):
            self._take_mark(message)
        elif isinstance(message, list):
            if not message:
                return
            if all(isinstance(item, AcousticFrame) for item in message):
                for frame in message:
                    assembler.push_audio(frame)
            elif all(isinstance(item, Word) for item in message):
                assembler.push_words(message)
                if self.options.live and now is not None:
                    self.speech_lags.extend(now - word.end for word in message)
            else:
                raise TypeError(f"a list of {type(message[0]).__name__} is not a core message")
        else:
            raise TypeError(f"{type(message).__name__} is not a core message")

    def _take_mark(self, mark: Mark) -> None:
        if mark.stream == "source":
            self.end_time = max(self.end_time, mark.t)
            self.source_ended = True
        elif mark.final:
            self.finished.add(mark.stream)
            # stopped early, a stream that did not fail keeps its progress: it is not over
            if not self._stopped_early or mark.stream in self._failed:
                self.assembler.close(mark.stream)
        else:
            self.assembler.advance(mark.stream, mark.t)

    @property
    def _stopped_early(self) -> bool:
        return self._stopped and not self.options.live

    def step(self, now: float | None = None) -> list[Estimate]:
        """Close the windows due at ``now`` and score the next batch of those waiting.

        Returns that batch's estimates, in window order, or [] when no batch is due; call
        again (with the same ``now``) until it returns []. Live mode needs ``now``: windows
        ending at or before ``now - close_grace`` close. File mode ignores it. After
        ``finish``, nothing more closes and every waiting window is due."""
        options = self.options
        # windows leave the assembler WAITING_MOST at a time at most
        room = max(options.batch, WAITING_MOST) - len(self._waiting)
        if not self._finished:
            if options.live:
                if now is None:
                    raise ValueError("a live core steps at a time: step(now)")
                until = now - options.close_grace
                if self.source_ended:
                    # the clock runs on while the workers finish; windows past the media's end
                    # are not the clock's to close: ``finish`` closes the one that covers it
                    until = min(until, self.end_time)
                self._until = until
            self._waiting += self.assembler.step(until=self._until, most=room)
        elif self._closing == "flush":
            self._waiting += self.assembler.flush(self._end, most=room)
        else:  # stopped early, or interrupted: the windows complete when it came
            self._waiting += self.assembler.step(until=self._until, most=room)
        if options.live or self._finished or len(self._waiting) >= options.batch:
            self._due = len(self._waiting)
        if not self._due:
            return []
        batch = self._waiting[: options.batch]
        del self._waiting[: len(batch)]
        self._due -= len(batch)
        return self.score(batch)

    def finish(self, end_time: float | None = None, interrupted: bool = False) -> None:
        """No more input: close the last windows; ``step`` then scores every waiting window.

        Normally the windows still needed to cover the media's end (``end_time``, or where
        the source's final Mark said it ends, whichever is later) close, even those no
        stream reached. After ``stop`` in file mode, only the windows every stream has
        passed (they are complete). ``interrupted``: only those complete when it came (what
        every stream had passed; live, what the clock had closed). They close in ``step``,
        ``WAITING_MOST`` at a time. Idempotent."""
        if self._finished:
            return
        self._finished = True
        self._end = self.end_time if end_time is None else max(self.end_time, end_time)
        self._closing = "complete" if interrupted or self._stopped_early else "flush"
