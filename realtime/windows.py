"""The window assembler: timestamped streams in, aligned sliding windows with masks out.

A plain single-threaded object (push, step, flush, reset), testable with synthetic
timestamps and no sleeps. Windows cover [t_end - window, t_end) and end at window,
window + hop, window + 2 hop, ... Each stream is resampled to a fixed number of steps:
a step holds the mean of the samples that fall in it, and its mask is 1 when it has one.
Words belong to the windows that contain their middle. A window also carries, as
``context``, up to ``text_context`` words of the same sentence said before it (no sentence
end, no pause longer than ``UTTERANCE_PAUSE``, between them): the words' encoder reads the
window's words in their sentence, as the corpora's whole sentences were read in training.

File mode calls ``step()``: a window is closed only once every open stream has passed
its end (deterministic output). Live mode calls ``step(until=now)``: windows close on
time with whatever has arrived.
"""

from __future__ import annotations

import bisect
import logging
import math
from dataclasses import dataclass, field

import numpy as np

from realtime.features.acoustic import ACOUSTIC_DIM
from realtime.features.face import FACE_DIM
from realtime.types import AcousticFrame, FaceFrame, Window, Word

logger = logging.getLogger(__name__)

STREAMS = ("face", "audio", "text")
SECONDS_RANGE = (1e-3, 1e6)
"""Window and hop lengths the assembler takes: beyond these, window ends computed as
window + index x hop lose their precision (or all coincide)."""
UTTERANCE_PAUSE = 1.5
"""Seconds of silence between two words that end an utterance: words before such a pause
are not a later window's context."""
SHORT_TAIL = 0.05
"""Seconds: media that ends less than this past the last window's end gets no window of its
own (the last video frame's duration past the audio's end, 0.04 s at 25 fps, would
otherwise add a window holding nothing new)."""
MAX_FLUSH_WINDOWS = 20_000
"""At most this many windows close at the end of the media (at the smallest --hop, 0.05 s,
1,000 s of media past the last step: far more than any real tail)."""


@dataclass(frozen=True)
class WindowSpec:
    """Window geometry and the step count of each stream."""

    window: float = 4.0
    """Window length in seconds."""
    hop: float = 0.5
    """Seconds between consecutive window ends."""
    face_steps: int = 32
    audio_steps: int = 40
    face_dim: int = FACE_DIM
    audio_dim: int = ACOUSTIC_DIM
    text_context: int = 0
    """Words of the same sentence before a window that it carries as context (0: none)."""

    def __post_init__(self) -> None:
        # inf and nan pass "> 0" checks one way or the other: an infinite hop made flush()
        # loop for ever (issue 17), an infinite window gave records with infinite times
        low, high = SECONDS_RANGE
        if not (math.isfinite(self.window) and math.isfinite(self.hop) and low <= self.window <= high
                and low <= self.hop <= high):
            raise ValueError(f"window ({self.window}) and hop ({self.hop}) must be finite, from {low:g} to {high:g} s")
        if self.face_steps < 1 or self.audio_steps < 1:
            raise ValueError("step counts must be at least 1")
        if self.text_context < 0:
            raise ValueError(f"text_context must be 0 or more words, got {self.text_context}")


SENTENCE_END = (".", "!", "?", "…")
"""A word ending so (as the recogniser punctuates) ends its sentence: the next sentence's
windows do not read it as their context."""


def utterance_context(earlier: list[Word], first: Word, limit: int) -> list[Word]:
    """The last ``limit`` words of ``earlier`` (sorted by time) that lead up to ``first``
    within its sentence: no sentence end and no pause longer than ``UTTERANCE_PAUSE``
    between them."""
    out: list[Word] = []
    following = first
    for word in reversed(earlier):
        if (len(out) >= limit or following.start - word.end > UTTERANCE_PAUSE
                or word.text.rstrip("\"')»”").endswith(SENTENCE_END)):
            break
        out.append(word)
        following = word
    return out[::-1]


@dataclass
class _Stream:
    times: list[float] = field(default_factory=list)
    values: list[np.ndarray | None] = field(default_factory=list)
    progress: float = -math.inf
    closed: bool = False


@dataclass
class AssemblerStats:
    duplicates: int = 0
    late: int = 0


class WindowAssembler:
    """Cuts the face, audio and word streams into aligned windows."""

    def __init__(self, spec: WindowSpec):
        self.spec = spec
        self.reset()

    def reset(self) -> None:
        # the text stream's samples are words (kept in self._words); its _Stream carries
        # only progress and closed, like the others
        self._streams = {name: _Stream() for name in STREAMS}
        self._words: list[Word] = []
        self._said: list[Word] = []  # the last text_context words pruned: later windows' context
        self._word_keys: set[tuple[float, str]] = set()
        self._next_index = 0
        self._flushed = 0  # windows ``flush`` has closed (MAX_FLUSH_WINDOWS)
        self._landmarks: list[tuple[float, np.ndarray]] = []
        self.stats = AssemblerStats()

    # ---- input -------------------------------------------------------------------
    def _next_start(self) -> float:
        return self._end_of(self._next_index) - self.spec.window

    @property
    def next_end(self) -> float:
        """The end of the next window to close."""
        return self._end_of(self._next_index)

    def _end_of(self, index: int) -> float:
        return self.spec.window + index * self.spec.hop

    def _skip(self, t: float) -> bool:
        """Whether time ``t`` is before every window still to close (its item is dropped):
        counted as late, unless it falls between two windows (a hop longer than the window),
        where no window ever looks."""
        if t >= self._next_start():
            return False
        if not (self._next_index and t >= self._end_of(self._next_index - 1)):
            self.stats.late += 1  # every window that could hold it is already out
        return True

    def _insert(self, name: str, t: float, value: np.ndarray | None) -> None:
        stream = self._streams[name]
        if self._skip(t):
            return
        pos = bisect.bisect_left(stream.times, t)
        if pos < len(stream.times) and stream.times[pos] == t:
            self.stats.duplicates += 1
            return
        stream.times.insert(pos, t)
        stream.values.insert(pos, value)

    def push_face(self, frame: FaceFrame) -> None:
        """A face frame; one without a face counts for progress but holds no data."""
        self._insert("face", frame.t, frame.features)
        if frame.landmarks is not None:
            self._landmarks.append((frame.t, frame.landmarks))
        self.advance("face", frame.t)

    def push_audio(self, frame: AcousticFrame) -> None:
        """An acoustic frame; a silent one is masked."""
        self._insert("audio", frame.t, frame.features if frame.voiced else None)
        self.advance("audio", frame.t)

    def push_words(self, words: list[Word]) -> None:
        for word in words:
            if self._skip(word.middle):
                continue
            key = (round(word.start, 3), word.text)
            if key in self._word_keys:
                self.stats.duplicates += 1
                continue
            self._word_keys.add(key)
            bisect.insort(self._words, word, key=lambda w: (w.middle, w.start))

    def advance(self, stream: str, t: float) -> None:
        """Declare that ``stream`` has delivered every sample before ``t``."""
        if not math.isfinite(t):
            return
        s = self._streams[stream]
        s.progress = max(s.progress, t)

    def close(self, stream: str) -> None:
        """The stream is over (or absent): it no longer holds windows back."""
        self._streams[stream].closed = True

    # ---- output ------------------------------------------------------------------
    def progress(self) -> float:
        """The time up to which every open stream has delivered.

        Never beyond the latest mark any stream gave: windows past the data come only
        from ``flush``, which knows where the media ends.
        """
        streams = self._streams.values()
        latest = max(s.progress for s in streams)
        return min([s.progress for s in streams if not s.closed] + [latest])

    def step(self, until: float | None = None, most: int | None = None) -> list[Window]:
        """Windows now complete: up to every stream's progress, or up to ``until`` (live);
        at most ``most`` of them (the rest at the next call)."""
        limit = self.progress() if until is None else until
        if not math.isfinite(limit):  # no data yet (-inf), or a time that is never reached
            return []
        out = []
        while self._end_of(self._next_index) <= limit and (most is None or len(out) < most):
            out.append(self._emit())
        return out

    def complete(self, until: float | None = None) -> int:
        """How many windows ``step`` would close now (without closing them)."""
        limit = self.progress() if until is None else until
        if not math.isfinite(limit):
            return 0
        return max(0, math.floor((limit - self._end_of(self._next_index)) / self.spec.hop + 1e-9) + 1)

    def flush(self, end_time: float, most: int | None = None) -> list[Window]:
        """At the end of the media: the windows still needed to cover ``end_time``; at most
        ``most`` of them (call again for the rest: [] once they are all closed).

        Media shorter than one window still gets one window (the rest masked); an end
        less than SHORT_TAIL past the last window's gets none. An end that is not a finite
        number gives nothing (it would never be reached).
        """
        out = []
        if not math.isfinite(end_time):
            logger.warning("media end %s is not a finite time; no closing windows", end_time)
            return out
        while end_time > 0 and (most is None or len(out) < most):
            if self._flushed >= MAX_FLUSH_WINDOWS:  # a bogus end time must not mean unbounded work
                if self._flushed == MAX_FLUSH_WINDOWS:
                    logger.warning("media end %.1f s is far past the data: closing windows stop at %.1f s",
                                   end_time, self._end_of(self._next_index - 1))
                    self._flushed += 1  # said once
                break
            previous_end = self._end_of(self._next_index) - self.spec.hop
            start = self._end_of(self._next_index) - self.spec.window
            # the media is covered, or (a hop longer than the window) the next window starts
            # at or past its end: it would read nothing of it
            if self._next_index > 0 and max(previous_end, start) >= end_time - SHORT_TAIL:
                break
            out.append(self._emit())
            self._flushed += 1
        return out

    def _emit(self) -> Window:
        spec = self.spec
        t_end = self._end_of(self._next_index)
        t_start = t_end - spec.window
        face, face_mask = self._resample("face", t_start, t_end, spec.face_steps, spec.face_dim)
        audio, audio_mask = self._resample("audio", t_start, t_end, spec.audio_steps, spec.audio_dim)
        words = [w for w in self._words if t_start <= w.middle < t_end]
        context = []
        if words and spec.text_context:
            earlier = self._said + [w for w in self._words if w.middle < t_start]
            context = utterance_context(earlier, words[0], spec.text_context)
        marks = [lm for t, lm in self._landmarks if t_start <= t < t_end]
        window = Window(index=self._next_index, t_start=t_start, t_end=t_end, face=face, face_mask=face_mask,
                        audio=audio, audio_mask=audio_mask, words=words, context=context,
                        landmarks=marks[-1] if marks else None)
        self._next_index += 1
        self._prune()
        return window

    def _resample(self, name: str, t_start: float, t_end: float, steps: int, dim: int):
        stream = self._streams[name]
        lo = bisect.bisect_left(stream.times, t_start)
        hi = bisect.bisect_left(stream.times, t_end)
        return resample(stream.times[lo:hi], stream.values[lo:hi], t_start, t_end, steps, dim)

    def _prune(self) -> None:
        start = self._next_start()
        for stream in self._streams.values():
            cut = bisect.bisect_left(stream.times, start)
            del stream.times[:cut]
            del stream.values[:cut]
        if self._words and self._words[0].middle < start:
            if self.spec.text_context:
                self._said = (self._said + [w for w in self._words if w.middle < start])[-self.spec.text_context:]
            self._words = [w for w in self._words if w.middle >= start]
            self._word_keys = {(round(w.start, 3), w.text) for w in self._words}
        self._landmarks = [(t, lm) for t, lm in self._landmarks if t >= start]


def resample(times, values, t_start: float, t_end: float, steps: int, dim: int) -> tuple[np.ndarray, np.ndarray]:
    """Mean of the present samples (value not None) in each of ``steps`` equal bins of
    [t_start, t_end); returns (steps, dim) values and a (steps,) mask."""
    sums = np.zeros((steps, dim), dtype=np.float64)
    counts = np.zeros(steps, dtype=np.int64)
    width = (t_end - t_start) / steps
    for t, value in zip(times, values):
        if value is None or not (t_start <= t < t_end):
            continue
        i = min(int((t - t_start) / width), steps - 1)
        sums[i] += value
        counts[i] += 1
    mask = (counts > 0).astype(np.float32)
    return (sums / np.maximum(counts, 1)[:, None]).astype(np.float32), mask
