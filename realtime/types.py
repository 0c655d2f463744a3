"""What crosses module boundaries in the pipeline: small dataclasses with timestamps.

Every timestamp is seconds on the source's clock: presentation time for files,
monotonic capture time (from the start of the run) for live devices.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

AUDIO_RATE = 16000
"""Hz of every audio chunk in the pipeline: what Whisper and the acoustic features take;
file and device sources resample to it."""
FACE_FPS = 10.0
"""Frames per second whose face is analysed unless the user says otherwise (``--face-fps``):
files, live devices and dataset extraction alike (extraction always, so training features
are sampled as the default run samples them)."""


@dataclass(frozen=True)
class VideoFrame:
    """One decoded picture, RGB uint8 (H, W, 3), C-contiguous."""

    t: float
    image: np.ndarray


@dataclass(frozen=True)
class AudioChunk:
    """Mono float32 samples at ``rate`` Hz; ``t`` is the time of the first sample."""

    t: float
    samples: np.ndarray
    rate: int

    @property
    def t_end(self) -> float:
        return self.t + len(self.samples) / self.rate


@dataclass(frozen=True)
class FaceFrame:
    """Face features of one video frame; ``features`` is None when no face was found."""

    t: float
    features: np.ndarray | None
    landmarks: np.ndarray | None = None
    """(478, 2) normalised x, y of the chosen face, for drawing."""


@dataclass(frozen=True)
class AcousticFrame:
    """Acoustic features of one short frame; ``voiced`` False marks silence (masked)."""

    t: float
    features: np.ndarray
    voiced: bool


@dataclass(frozen=True)
class Word:
    """A committed transcript word with its time span."""

    start: float
    end: float
    text: str
    probability: float = 1.0

    @property
    def middle(self) -> float:
        return 0.5 * (self.start + self.end)


@dataclass(frozen=True)
class Mark:
    """A stream has delivered everything before ``t``; ``final``: it is over (or failed)."""

    stream: str
    t: float
    final: bool = False


@dataclass
class Window:
    """One aligned window: each stream resampled to fixed steps with a presence mask."""

    index: int
    t_start: float
    t_end: float
    face: np.ndarray  # (S_V, d_V) float32
    face_mask: np.ndarray  # (S_V,) float32
    audio: np.ndarray  # (S_A, d_A)
    audio_mask: np.ndarray  # (S_A,)
    words: list[Word] = field(default_factory=list)
    context: list[Word] = field(default_factory=list)
    """Words of the same sentence just before the window, read with its words (not in it)."""
    landmarks: np.ndarray | None = None
    """The latest face landmarks inside the window, for the GUI."""

    def text(self) -> list[str]:
        """What the words' encoder reads: the context, then the window's words."""
        return [w.text for w in self.context + self.words] if self.words else []

    def coverage(self) -> dict[str, float]:
        """Fraction of the window each modality covers (text: 1 if any word, else 0)."""
        return {
            "face": float(self.face_mask.mean()) if self.face_mask.size else 0.0,
            "audio": float(self.audio_mask.mean()) if self.audio_mask.size else 0.0,
            "text": 1.0 if self.words else 0.0,
        }


CHANNELS: tuple[str, ...] = ("face", "audio", "text")
"""Channel names in records, in the model's modality order (V, A, L map to face, audio, text)."""


@dataclass
class Reading:
    """What one channel, or all of them fused, says about a window."""

    sentiment: float
    """Valence on CMU-MOSI's [-3, 3] scale."""
    emotions: dict[str, float] | None = None
    """Class probabilities (summing to 1) when the checkpoint has classes, else None."""

    @property
    def emotion(self) -> str | None:
        """The leading class, or None without classes."""
        return max(self.emotions, key=self.emotions.get) if self.emotions else None

    def record(self) -> dict:
        return {
            "sentiment": round(self.sentiment, 4),
            "emotion": self.emotion,
            "emotions": None if self.emotions is None else {k: round(v, 4) for k, v in self.emotions.items()},
        }


@dataclass
class Estimate:
    """The model's reading of one window: what a sink writes."""

    t_start: float
    t_end: float
    sentiment: float
    emotions: dict[str, float] | None
    """Fused class probabilities (the checkpoint's classes, summing to 1), or None."""
    channels: dict[str, Reading]
    """Each present channel's own reading (keys from CHANNELS); absent channels are left out."""
    edges: dict[str, dict[str, float]]
    branches: dict[str, float | None]
    modalities: dict[str, float]
    words: list[str]
    checkpoint: str
    latency_ms: float | None = None
    """Live mode: wall time from the window's end to this estimate."""
    landmarks: np.ndarray | None = None

    @property
    def emotion(self) -> str | None:
        """The leading emotion, or None when the checkpoint has no classes."""
        return Reading(self.sentiment, self.emotions).emotion

    def record(self, all_channels: bool = False) -> dict:
        """The JSON-ready record (see docs/RECORDS.md for the schema). ``all_channels``: also
        list absent channels, as null (a table needs the same columns in every row)."""
        fused = Reading(self.sentiment, self.emotions).record()
        channels = {name: self.channels[name].record() for name in CHANNELS if name in self.channels}
        if all_channels:
            names = tuple(self.emotions) if self.emotions else ()
            empty = {"sentiment": None, "emotion": None,
                     "emotions": {k: None for k in names} if self.emotions is not None else None}
            channels = {name: channels.get(name, empty) for name in CHANNELS}
        rec = {
            "t_start": round(self.t_start, 3),
            "t_end": round(self.t_end, 3),
            **fused,
            "channels": channels,
            "edges": {kind: {k: round(v, 4) for k, v in e.items()} for kind, e in self.edges.items()},
            "branches": {k: (None if v is None else round(v, 4)) for k, v in self.branches.items()},
            "modalities": {k: round(v, 3) for k, v in self.modalities.items()},
            "words": list(self.words),
            "checkpoint": self.checkpoint,
        }
        if self.latency_ms is not None:
            rec["latency_ms"] = round(self.latency_ms, 1)
        return rec
