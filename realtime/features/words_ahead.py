"""The word lists of the windows about to close, as the text worker sees them coming.

In a live run the text worker commits words and, right after, embeds the word lists of
the windows that will close before its next step (``TextEmbedder.embed_ahead``), so that
the engine, in the run loop, finds them remembered instead of running the words' encoder
while the window waits (a window with a new word list took 0.77 s median to score on 2
loaded cores, 12 ms when its list was remembered). File runs do not use it: there the
model call's batch is the core's batch of windows, and the last bits of a list's tokens
depend on the other lists padded with it.

A plain single-threaded object: ``push`` the committed words, ask for the ``lists`` of
the windows ending in a span of the run clock. A window's list is what
``realtime.windows.WindowAssembler`` would give it from the words pushed so far (the
words whose middle it holds, after their sentence's context). A list that differs (a
word the core counted late, one that came after its window closed) is only a miss: the
engine embeds it itself.
"""

from __future__ import annotations

import bisect
import math

from realtime.types import Word
from realtime.windows import WindowSpec, utterance_context


class WordsAhead:
    """Committed words -> the word list of each window ending in a span of time."""

    def __init__(self, spec: WindowSpec):
        self.spec = spec
        self._words: list[Word] = []  # by (middle, start), as the assembler keeps them
        self._keys: set[tuple[float, str]] = set()
        self._said: list[Word] = []  # the last text_context words forgotten: later windows' context

    def push(self, words: list[Word]) -> None:
        """Words just committed (a repeat of one already pushed is ignored, as in the assembler)."""
        for word in words:
            key = (round(word.start, 3), word.text)
            if key not in self._keys:
                self._keys.add(key)
                bisect.insort(self._words, word, key=lambda w: (w.middle, w.start))

    def lists(self, since: float, until: float) -> list[list[str]]:
        """The non-empty word lists of the windows whose end lies in (``since``, ``until``],
        in window order; words that only earlier windows can hold are forgotten."""
        spec = self.spec
        if not (math.isfinite(since) and math.isfinite(until)):
            return []
        first = max(0, math.floor((since - spec.window) / spec.hop) - 1)  # one early: rounding never skips one
        self._forget(spec.window + first * spec.hop - spec.window)
        out = []
        index = first
        while (t_end := spec.window + index * spec.hop) <= until:
            index += 1
            if t_end <= since:
                continue
            t_start = t_end - spec.window  # the assembler's arithmetic, so both agree to the last bit
            lo = bisect.bisect_left(self._words, t_start, key=lambda w: w.middle)
            words = [w for w in self._words[lo:] if w.middle < t_end]
            if not words:
                continue
            context = []
            if spec.text_context:
                context = utterance_context(self._said + self._words[:lo], words[0], spec.text_context)
            out.append([w.text for w in context + words])
        return out

    def _forget(self, start: float) -> None:
        """Drop the words whose middle is before ``start`` (keeping the last few as context)."""
        cut = bisect.bisect_left(self._words, start, key=lambda w: w.middle)
        if cut:
            if self.spec.text_context:
                self._said = (self._said + self._words[:cut])[-self.spec.text_context:]
            for word in self._words[:cut]:
                self._keys.discard((round(word.start, 3), word.text))
            del self._words[:cut]
