"""Acoustic features with librosa: 34 numbers every 20 ms.

13 MFCCs (32 ms window), their first differences, log energy, log F0 (YIN, 65-400 Hz),
spectral centroid, bandwidth, flatness and roll-off, zero-crossing rate, and a voicing
flag. A frame is voiced when it is louder than ``silence_db`` and, with ``voicing='speech'``
(the default), lies in speech that Silero VAD found (``realtime.features.voice_activity``):
the window assembler masks every other frame, so silence, and noise or music without a
voice, are a missing acoustic modality, as a muted microphone is. ``voicing='level'`` (the
level alone) is what feature sets made before the voice detector used.

Per-stream normalisation (on by default): every feature but the voicing flag is
standardised with running statistics of the stream's voiced frames (``StreamNormalizer``).
Emotion lives in how a voice departs from its own habits (louder, higher, faster than
usual); absolute levels depend on the microphone, the room and the speaker, and do not
travel from one recording to another. ``reset`` starts a new stream and new statistics.

Streaming: ``push`` takes chunks of any size and returns the frames that are complete;
frames depend only on sample positions, so chunking never changes the result.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

import numpy as np

from models.config import VOICINGS
from realtime.types import AUDIO_RATE, AcousticFrame, AudioChunk

if TYPE_CHECKING:
    from realtime.features.voice_activity import SpeechDetector

logger = logging.getLogger(__name__)

N_MFCC = 13
ACOUSTIC_DIM = 2 * N_MFCC + 8


LIVE_BLOCK = 5
"""Frames per librosa call in live runs (0.1 s): a window closes live 0.05 s after its end, and
1 s blocks left up to its last second of voice out of it (masked as missing); with 0.1 s
blocks it lacks at most its last step or two. They cost 9.7 ms of CPU per second of audio
against 5.5 ms (the voice detector included)."""
FILE_BLOCK = 50
"""Frames per librosa call in file runs (1 s): their windows wait for every frame."""


@dataclass(frozen=True)
class AcousticOptions:
    rate: int = AUDIO_RATE
    hop: int = 320
    """Samples between frames (20 ms at 16 kHz)."""
    n_fft: int = 512
    pitch_frame: int = 1024
    """YIN needs about two periods of the lowest pitch: 64 ms."""
    fmin: float = 65.0
    fmax: float = 400.0
    silence_db: float = -50.0
    """Frames with RMS below this (dB re full scale) are silent."""
    block: int = FILE_BLOCK
    """Frames computed per librosa call (1 s): larger blocks amortise call overhead. Live runs
    take ``LIVE_BLOCK`` (``realtime.run.build_run``); the frames are the same either way."""
    normalize: bool = True
    """Standardise each frame with running statistics of the stream's voiced frames."""
    horizon: int = 3000
    """Voiced frames the running statistics remember (3000 = 60 s of speech)."""
    voicing: str = "speech"
    """'speech': voiced = louder than ``silence_db`` and inside speech (Silero VAD); 'level':
    louder than ``silence_db`` alone, so a fan or music counts as a voice (feature sets made
    before 2026-11-27)."""

    def __post_init__(self):
        if self.voicing not in VOICINGS:
            raise ValueError(f"voicing must be one of {', '.join(VOICINGS)}, got {self.voicing!r}")
        if self.voicing == "speech" and self.rate != AUDIO_RATE:
            raise ValueError(f"the voice detector reads {AUDIO_RATE} Hz audio, got rate {self.rate}")


class StreamNormalizer:
    """Running per-feature mean and variance of voiced frames; standardises every frame.

    The statistics are an exponentially weighted average whose weight is 1/n for the
    first ``horizon`` voiced frames (an exact mean) and 1/horizon afterwards, so a long
    stream follows a change of microphone or speaker. A frame is standardised with the
    statistics that include it: the first voiced frame of a stream reads as all zeros.
    The last feature (the voicing flag) is left as it is.
    """

    def __init__(self, dim: int, horizon: int):
        self.dim = dim
        self.horizon = horizon
        self.reset()

    def reset(self) -> None:
        self.count = 0
        self.mean = np.zeros(self.dim, dtype=np.float64)
        self.var = np.zeros(self.dim, dtype=np.float64)

    def __call__(self, features: np.ndarray, voiced: np.ndarray) -> np.ndarray:
        """features (dim, n), voiced (n,) -> standardised (dim, n) float32."""
        out = np.empty_like(features, dtype=np.float32)
        for i in range(features.shape[1]):
            x = features[:, i].astype(np.float64)
            if voiced[i]:
                self.count += 1
                w = 1.0 / min(self.count, self.horizon)
                delta = x - self.mean
                self.mean += w * delta
                self.var = (1.0 - w) * (self.var + w * delta * delta)
            if self.count == 0:
                out[:, i] = 0.0
            else:
                out[:, i] = (x - self.mean) / np.sqrt(self.var + 1e-6)
        out[-1] = features[-1]
        return out


class AcousticExtractor:
    """Turns audio chunks into AcousticFrames; keeps the samples a next frame still needs."""

    def __init__(self, options: AcousticOptions = AcousticOptions()):
        import librosa

        self._librosa = librosa
        self.options = options
        self._mel = librosa.filters.mel(sr=options.rate, n_fft=options.n_fft, n_mels=40)
        self.normalizer = StreamNormalizer(ACOUSTIC_DIM, options.horizon) if options.normalize else None
        self.speech = self._detector(options.voicing)
        self.reset()

    @staticmethod
    def _detector(voicing: str) -> SpeechDetector | None:
        if voicing != "speech":
            return None
        from realtime.features.voice_activity import SpeechDetector

        return SpeechDetector()

    def close(self) -> None:
        """Let the voice detector's ONNX Runtime session go now, not at interpreter exit.
        Idempotent; pushing audio afterwards is a RuntimeError."""
        if self.speech is not None:
            self.speech.close()

    def __enter__(self) -> AcousticExtractor:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def reset(self, voicing: str | None = None, block: int | None = None) -> None:
        """Start a new stream: no samples kept, and new normalisation statistics; with
        ``voicing``, that voicing from now on (a run of a checkpoint whose feature set names
        another one than the extractor was made with); with ``block``, that many frames per
        librosa call (``LIVE_BLOCK``, ``FILE_BLOCK``)."""
        if block is not None:
            if block < 1:
                raise ValueError(f"block must be at least one frame, got {block}")
            self.options = replace(self.options, block=block)
        if voicing is not None and voicing != self.options.voicing:
            self.options = replace(self.options, voicing=voicing)  # refuses an unknown one
            self.close()
            self.speech = self._detector(voicing)
        if self.normalizer is not None:
            self.normalizer.reset()
        self._start_segment()

    def _start_segment(self) -> None:
        self._buffer = np.zeros(0, dtype=np.float32)
        self._t0: float | None = None  # time of self._buffer[0]
        self._consumed = 0  # samples of this segment before self._buffer[0]
        self._prev_mfcc: np.ndarray | None = None
        if self.speech is not None:
            self.speech.reset()

    def warm_up(self) -> None:
        """Pay librosa's and numba's first-call costs before the clock starts."""
        self.push(AudioChunk(t=0.0, samples=np.zeros(self.options.rate, dtype=np.float32), rate=self.options.rate))
        self.flush()
        self.reset()

    def push(self, chunk: AudioChunk, final: bool = False) -> list[AcousticFrame]:
        """Frames completed by this chunk (``final``: compute every frame the buffer allows)."""
        opts = self.options
        if chunk.rate != opts.rate:
            raise ValueError(f"acoustic features need {opts.rate} Hz audio, got {chunk.rate} Hz")
        if self._t0 is None:
            self._t0 = chunk.t
        expected = self._t0 + len(self._buffer) / opts.rate
        if chunk.t > expected + 0.05:
            # a gap in capture: start afresh at the new time rather than invent samples
            self._start_segment()
            self._t0 = chunk.t
        samples = np.asarray(chunk.samples, dtype=np.float32)
        if self.speech is not None:
            self.speech.push(samples)
        self._buffer = np.concatenate([self._buffer, samples])
        return self._drain(final)

    def flush(self) -> list[AcousticFrame]:
        """Frames for what is left at the end of the stream (the tail padded with zeros)."""
        if self._t0 is None or len(self._buffer) == 0:
            return []
        real_end = self._t0 + len(self._buffer) / self.options.rate
        tail = np.zeros(self.options.pitch_frame, dtype=np.float32)
        if self.speech is not None:
            self.speech.push(tail)
        self._buffer = np.concatenate([self._buffer, tail])
        frames = self._drain(final=True)
        self._start_segment()  # the stream's statistics stay until reset()
        return [f for f in frames if f.t < real_end]

    def _drain(self, final: bool) -> list[AcousticFrame]:
        opts = self.options
        frames = []
        while len(self._buffer) >= opts.pitch_frame:
            available = (len(self._buffer) - opts.pitch_frame) // opts.hop + 1
            if available < opts.block and not final:
                break
            frames.extend(self._compute(min(available, opts.block)))
        return frames

    def _compute(self, n: int) -> list[AcousticFrame]:
        librosa = self._librosa
        opts = self.options
        span = (n - 1) * opts.hop + opts.pitch_frame
        y = self._buffer[:span]
        frames = librosa.util.frame(y[: (n - 1) * opts.hop + opts.n_fft], frame_length=opts.n_fft,
                                    hop_length=opts.hop)  # (n_fft, n)
        window = np.hanning(opts.n_fft).astype(np.float32)
        spectrum = np.abs(np.fft.rfft(frames * window[:, None], axis=0)) ** 2  # (bins, n)
        mel = np.log(np.maximum(self._mel @ spectrum, 1e-10))
        mfcc = librosa.feature.mfcc(S=mel, n_mfcc=N_MFCC)  # (13, n)
        prev = self._prev_mfcc if self._prev_mfcc is not None else mfcc[:, :1]
        delta = np.diff(np.concatenate([prev, mfcc], axis=1), axis=1)
        self._prev_mfcc = mfcc[:, -1:]
        rms = np.sqrt(np.mean(frames**2, axis=0) + 1e-12)
        db = 20 * np.log10(rms + 1e-12)
        f0 = librosa.yin(y, fmin=opts.fmin, fmax=opts.fmax, sr=opts.rate, frame_length=opts.pitch_frame,
                         hop_length=opts.hop, center=False)[:n]
        power = spectrum + 1e-12
        freqs = np.linspace(0, opts.rate / 2, power.shape[0])[:, None]
        total = power.sum(0)
        centroid = (freqs * power).sum(0) / total
        bandwidth = np.sqrt(((freqs - centroid) ** 2 * power).sum(0) / total)
        flatness = np.exp(np.mean(np.log(power), axis=0)) / np.mean(power, axis=0)
        cumulative = np.cumsum(power, axis=0)
        rolloff = freqs[np.argmax(cumulative >= 0.85 * total, axis=0), 0]
        zcr = np.mean(np.abs(np.diff(np.signbit(frames), axis=0)), axis=0)
        voiced = db > opts.silence_db
        if self.speech is not None:
            # a frame's chunk is always decided: the frame reads 1024 samples past its start
            voiced &= self.speech.speech_at(self._consumed + np.arange(n) * opts.hop + opts.n_fft // 2)
        nyquist = opts.rate / 2
        features = np.concatenate([
            mfcc / 10.0, delta / 10.0,
            ((db + 60) / 30.0)[None],
            (np.log2(np.maximum(f0, 1.0) / 150.0) * voiced)[None],
            (centroid / nyquist)[None], (bandwidth / nyquist)[None], flatness[None], (rolloff / nyquist)[None],
            zcr[None], voiced[None].astype(np.float32),
        ]).astype(np.float32)  # (34, n)
        if self.normalizer is not None:
            features = self.normalizer(features, voiced)
        t0 = self._t0
        out = [AcousticFrame(t=t0 + (i * opts.hop + opts.n_fft / 2) / opts.rate, features=features[:, i],
                             voiced=bool(voiced[i])) for i in range(n)]
        consumed = n * opts.hop
        self._buffer = self._buffer[consumed:]
        self._t0 = t0 + consumed / opts.rate
        self._consumed += consumed
        if self.speech is not None:
            self.speech.forget(self._consumed)
        return out
