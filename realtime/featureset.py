"""The live feature set: what the extractors produce and what a checkpoint must match.

One definition serves the live pipeline and dataset extraction (realtime.extract), so a
model sees the same features in training and in use.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace

from models.config import voicing_of
from realtime.features.acoustic import ACOUSTIC_DIM, AcousticOptions
from realtime.features.face import FACE_DIM
from realtime.features.text import DEFAULT_TEXT_ENCODER, ENCODERS, LEGACY_TEXT_ENCODER, TextOptions, text_dim
from realtime.windows import WindowSpec

FEATURE_SET_NAME = "live-v2"
"""live-v2: acoustic features standardised per stream (live-v1 used raw levels)."""
DEFAULT_TEXT_CONTEXT = 32
"""Context words for new feature sets. Measured on the bench's never-seen spoken sentences
(docs/MODEL_CARD.md): the words' valence reads better with the sentence so far than with
the 4 s window's words alone."""


@dataclass(frozen=True)
class FeatureSpec:
    """Window geometry and step counts of the live feature set."""

    window: float = 4.0
    face_steps: int = 32
    audio_steps: int = 40
    text_tokens: int = 24
    text_encoder: str = DEFAULT_TEXT_ENCODER
    """Which sentence-transformer embeds the words (realtime.features.text.ENCODERS)."""
    text_context: int = DEFAULT_TEXT_CONTEXT
    """Words of the same sentence before a window that the encoder reads with the window's
    words (realtime.windows.utterance_context). Feature sets that name none read 0: only
    the window's words, as before."""
    voicing: str = "speech"
    """Which acoustic frames count as voice (``AcousticOptions.voicing``): 'speech' (loud
    enough and inside speech that Silero VAD found), or 'level' (loud enough: noise and music
    counted as voice), which feature sets that name none used."""

    @property
    def dims(self) -> dict[str, int]:
        return {"L": text_dim(self.text_encoder), "A": ACOUSTIC_DIM, "V": FACE_DIM}

    @property
    def steps(self) -> dict[str, int]:
        return {"L": self.text_tokens, "A": self.audio_steps, "V": self.face_steps}

    def text_options(self, model_path: str | None = None) -> TextOptions:
        """The text embedder's options for this feature set (its encoder and token count)."""
        return TextOptions(model_path=model_path, max_tokens=self.text_tokens, encoder=self.text_encoder)

    def acoustic_options(self) -> AcousticOptions:
        """The acoustic extractor's options for this feature set (its voicing)."""
        return AcousticOptions(voicing=self.voicing)

    def with_window(self, window: float) -> FeatureSpec:
        return replace(self, window=window)

    def window_spec(self, hop: float) -> WindowSpec:
        return WindowSpec(window=self.window, hop=hop, face_steps=self.face_steps, audio_steps=self.audio_steps,
                          face_dim=FACE_DIM, audio_dim=ACOUSTIC_DIM, text_context=self.text_context)

    def describe(self) -> dict:
        """What a checkpoint stores as its feature set."""
        return {"name": FEATURE_SET_NAME, "dims": self.dims, "steps": self.steps,
                "extractor": {"window": self.window, **asdict(self), "acoustic_normalization": "per-stream running"}}

    @classmethod
    def from_checkpoint(cls, feature_set: dict) -> FeatureSpec:
        ex = feature_set.get("extractor", {})
        steps = feature_set.get("steps", {})
        return cls(window=float(ex.get("window", cls.window)), face_steps=int(steps.get("V", cls.face_steps)),
                   audio_steps=int(steps.get("A", cls.audio_steps)), text_tokens=int(steps.get("L", cls.text_tokens)),
                   text_encoder=str(ex.get("text_encoder") or _encoder_of_width(feature_set)),
                   text_context=int(ex.get("text_context", 0)),  # checked by models.checkpoint
                   voicing=str(voicing_of(ex)))


def _encoder_of_width(feature_set: dict) -> str:
    """The encoder of a feature set that names none: the one whose width its L dims give."""
    width = feature_set.get("dims", {}).get("L")
    return next((name for name, dim in ENCODERS.items() if dim == width), LEGACY_TEXT_ENCODER)
