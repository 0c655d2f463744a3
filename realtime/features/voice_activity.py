"""Speech, not just sound: which stretches of a stream hold a voice.

A level alone cannot tell a voice from a fan, traffic or music: white noise over a silent,
smiling face filled every acoustic frame and the voice channel called the face fearful.
``SpeechDetector`` runs Silero VAD (MIT; the copy faster-whisper ships and runs for its own
``vad_filter``, so nothing more is installed or downloaded) over the stream in 32 ms chunks,
its recurrent state carried from chunk to chunk, and turns its speech probabilities into
regions with a hysteresis and a hangover (as Silero's own ``get_speech_timestamps`` does):
a region opens on a chunk at ``threshold`` or more and closes ``hangover`` seconds after the
probability first fell under ``threshold - 0.15`` unless it reached ``threshold`` again in
between, so the pauses between words and a word's quiet ending stay inside it.

Streaming: ``push`` takes samples in pieces of any size; each chunk's decision depends only
on the samples up to its end, so how a stream is cut into pieces never changes a result.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from models.errors import ModelNotFoundError
from realtime.types import AUDIO_RATE

MODEL = "silero_vad_v6.onnx"
"""The voice detector's weights, from faster-whisper's assets (MIT; shipped since 1.2.1)."""

CHUNK = 512
"""Samples per decision (32 ms at 16 kHz): the chunk Silero VAD v5/v6 reads at 16 kHz."""
CONTEXT = 64
"""Samples of the chunk before that Silero reads with each chunk."""


class SpeechDetector:
    """Speech regions of one 16 kHz stream, chunk by chunk. ``close`` lets the ONNX Runtime
    session go; ``reset`` starts a new stream."""

    def __init__(self, threshold: float = 0.5, hangover: float = 0.3):
        import onnxruntime
        from faster_whisper.utils import get_assets_path

        path = Path(get_assets_path()) / MODEL
        if not path.is_file():
            raise ModelNotFoundError(f"no voice detector: faster-whisper has no {MODEL} (it ships from 1.2.1); "
                                     "upgrade it with 'pip install -U faster-whisper'")
        options = onnxruntime.SessionOptions()
        options.inter_op_num_threads = 1
        options.intra_op_num_threads = 1
        options.enable_cpu_mem_arena = False
        options.log_severity_level = 4
        self._session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"],
                                                     sess_options=options)
        self.threshold = threshold
        self.release = threshold - 0.15
        self.hangover_chunks = max(1, round(hangover * AUDIO_RATE / CHUNK))
        self.reset()

    def reset(self) -> None:
        """A new stream: no samples, a fresh recurrent state, no speech."""
        self._pending = np.zeros(0, dtype=np.float32)
        self._context = np.zeros(CONTEXT, dtype=np.float32)
        self._h = np.zeros((1, 1, 128), dtype=np.float32)
        self._c = np.zeros((1, 1, 128), dtype=np.float32)
        self._speaking = False
        self._quiet_since: int | None = None  # chunk where the probability fell under the release level
        self.chunks = 0
        """Chunks decided so far (the stream's first ``chunks * CHUNK`` samples)."""
        self._regions = np.zeros(0, dtype=bool)
        self._first = 0  # chunk index of self._regions[0]

    def close(self) -> None:
        """Let the session go now rather than at interpreter exit. Idempotent."""
        self._session = None

    @property
    def closed(self) -> bool:
        return self._session is None

    def flush(self) -> None:
        """The stream has ended: judge its last samples too (less than a chunk, padded with
        silence to a whole one)."""
        self.push(np.zeros(-len(self._pending) % CHUNK, np.float32))

    def push(self, samples: np.ndarray) -> None:
        """Decide every chunk these samples complete."""
        if self._session is None:
            raise RuntimeError("the speech detector is closed")
        self._pending = np.concatenate([self._pending, np.asarray(samples, dtype=np.float32).reshape(-1)])
        n = len(self._pending) // CHUNK
        if n == 0:
            return
        chunks = self._pending[: n * CHUNK].reshape(n, CHUNK)
        self._pending = self._pending[n * CHUNK:]
        before = np.concatenate([self._context[None], chunks[:-1, -CONTEXT:]])
        self._context = chunks[-1, -CONTEXT:].copy()
        # the model reads the rows in order, carrying its state from one to the next
        out, self._h, self._c = self._session.run(
            None, {"input": np.concatenate([before, chunks], axis=1), "h": self._h, "c": self._c})
        decided = np.empty(n, dtype=bool)
        for i, p in enumerate(np.asarray(out, dtype=np.float32).reshape(-1)):
            chunk = self.chunks + i
            if p >= self.threshold:
                self._speaking, self._quiet_since = True, None
            elif self._speaking:
                if p < self.release and self._quiet_since is None:
                    self._quiet_since = chunk
                if self._quiet_since is not None and chunk - self._quiet_since + 1 >= self.hangover_chunks:
                    self._speaking, self._quiet_since = False, None
            decided[i] = self._speaking
        self._regions = np.concatenate([self._regions, decided])
        self.chunks += n

    def speech_at(self, samples: np.ndarray) -> np.ndarray:
        """Whether each sample position (counted from the stream's start) lies in speech.
        Every position must be in a decided chunk, and not before one ``forget`` let go."""
        index = np.asarray(samples, dtype=np.int64) // CHUNK - self._first
        if len(index) and (index.min() < 0 or index.max() >= len(self._regions)):
            raise ValueError("sample position outside the decided chunks")
        return self._regions[index]

    def speech_between(self, first: int, last: int, unknown: bool = False) -> bool:
        """Whether any decided chunk from sample position ``first`` to ``last`` holds speech;
        ``unknown``: the answer where the span reaches past the decided chunks (the last
        samples of a stream, less than a chunk) and none of its decided chunks is speech."""
        lo = max(first // CHUNK, self._first) - self._first
        hi = min(-(-last // CHUNK), self._first + len(self._regions)) - self._first
        if hi > lo and self._regions[lo:hi].any():
            return True
        return unknown and last > (self._first + len(self._regions)) * CHUNK

    def forget(self, before: int) -> None:
        """Let the decisions of chunks wholly before sample position ``before`` go."""
        drop = min(before // CHUNK - self._first, len(self._regions))
        if drop > 0:
            self._regions = self._regions[drop:]
            self._first += drop
