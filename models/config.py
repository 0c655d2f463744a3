"""Configuration dataclasses for the DMD model and its training.

Sizes follow the DMD paper and the authors' public configuration (mdswyz/DMD,
``config/config.json``); input dimensions and step counts come from the data, never
from a dataset name.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path

from models.errors import UsageError

VOICINGS = ("speech", "level")
"""Which acoustic frames a feature set counts as voice (``feature_set.extractor.voicing``):
'speech', loud enough and inside speech that a voice detector found; 'level', loud enough
alone (``LEGACY_VOICING``: feature sets that name none)."""
LEGACY_VOICING = "level"
"""The voicing of a feature set whose extractor settings name none (made before the voice detector)."""


def voicing_of(extractor: dict) -> str:
    """The voicing an extractor's settings (a feature set's or a dataset's) name, or ``LEGACY_VOICING``."""
    return extractor.get("voicing", LEGACY_VOICING)

MODALITIES: tuple[str, ...] = ("L", "A", "V")
"""Modality names in a fixed order: language (text), acoustic, visual."""
HOMO_POOLING: tuple[str, ...] = ("flatten", "pool")
ARCHITECTURES: tuple[str, ...] = ("dmd", "dhmd")
"""The networks a config can build: DMD (models/dmd.py) or DHMD (models/dhmd.py)."""


@dataclass(frozen=True)
class ModelConfig:
    """Architecture of one DMD (or DHMD) network."""

    dims: dict[str, int]
    """Input feature size per modality, e.g. ``{"L": 768, "A": 5, "V": 20}``."""
    steps: dict[str, int]
    """Time steps per modality; the homogeneous heads flatten (steps x d) as the paper does."""
    d: int = 50
    """Width of the projected features (the paper's ``dst_feature_dim``)."""
    heads: int = 10
    """Attention heads; must divide ``d``."""
    kernels: dict[str, int] = field(default_factory=lambda: {"L": 5, "A": 5, "V": 5})
    """Temporal Conv1d kernel of each modality's projection (odd; 'same' padding)."""
    cross_layers: int = 4
    """Layers of each crossmodal transformer."""
    memory_layers: int = 3
    """Layers of each self-attention memory after the crossmodal transformers."""
    attn_dropout: float = 0.1
    relu_dropout: float = 0.1
    res_dropout: float = 0.1
    embed_dropout: float = 0.2
    output_dropout: float = 0.1
    text_dropout: float = 0.2
    gd_size_homo: int = 64
    gd_size_hetero: int = 32
    gd_alpha: float = 1.0
    """Scale of the edge scores before the softmax over edges. The authors' 1/8 leaves the
    learned edges within 0.15-0.19 of 1/6 (models/graph_distill.py says why); checkpoints
    saved with 1/8 keep it (their config records it)."""
    class_names: tuple[str, ...] = ()
    """Emotion class names for an optional classification head; empty: regression only."""
    homo_pooling: str = "flatten"
    """How a homogeneous head reads c_m: "flatten" (the paper: every step has its own
    weights) or "pool" (masked mean and max over present steps: the same weights
    wherever in the window a smile or a word falls)."""
    architecture: str = "dmd"
    """"dmd", or "dhmd": DMD plus the fine-grained stage, dictionaries in both spaces."""
    decouple: bool = True
    """False: no decoupling (an ablation): s_m = c_m = the projected input, so both branches
    and both GD-Units read the same undecoupled features; train it with w_decouple 0."""
    dict_atoms: int = 16
    """DHMD: atoms in each of the two dictionaries (irrelevant and exclusive space)."""
    dict_tau: float = 0.1
    """DHMD: temperature of the activations, softmax(cos(feature, atom) / dict_tau)."""

    def __post_init__(self) -> None:
        for name in ("dims", "steps", "kernels"):
            value = getattr(self, name)
            missing = [m for m in MODALITIES if m not in value]
            if missing:
                raise ValueError(f"model config: {name} lacks modality {', '.join(missing)}")
        if self.d % self.heads:
            raise ValueError(f"model config: d={self.d} is not divisible by heads={self.heads}")
        if any(k % 2 == 0 for k in self.kernels.values()):
            raise ValueError(f"model config: kernels must be odd, got {self.kernels}")
        object.__setattr__(self, "class_names", tuple(self.class_names))
        if self.homo_pooling not in HOMO_POOLING:
            raise ValueError(f"model config: homo_pooling must be one of {HOMO_POOLING}, got {self.homo_pooling!r}")
        if self.architecture not in ARCHITECTURES:
            raise ValueError(f"model config: architecture must be one of {ARCHITECTURES}, got {self.architecture!r}")
        if self.dict_atoms < 1 or not self.dict_tau > 0:
            raise ValueError(f"model config: dict_atoms must be >= 1 and dict_tau > 0, got {self.dict_atoms}, "
                             f"{self.dict_tau}")

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> ModelConfig:
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"model config: unknown keys {unknown}")
        return cls(**data)


@dataclass(frozen=True)
class TrainConfig:
    """Optimisation and loss weights. Defaults are the paper's unless noted."""

    lr: float = 1e-4
    weight_decay: float = 1e-4
    """Passed to Adam (the authors' code configures it and never passes it)."""
    batch_size: int = 16
    grad_clip: float = 0.6
    """Gradient value clip, as in the authors' code."""
    epochs: int = 30
    patience: int = 5
    """ReduceLROnPlateau patience (epochs)."""
    early_stop: int = 10
    """Stop after this many epochs without a better validation score."""
    w_gd_homo: float = 0.05
    w_gd_hetero: float = 0.05
    w_decouple: float = 0.1
    w_margin_ortho: float = 0.1
    w_dict_match: float = 0.05
    """DHMD: weight of the dictionary matching loss (as the GD-Units' 0.05: both distil)."""
    w_dict_fit: float = 0.1
    """DHMD: weight of the dictionaries' rebuilding error (as the decoupling's 0.1)."""
    gd_reg: float = 10.0
    gd_loss_weights: tuple[float, float] = (1.0, 10.0)
    """Weights of the logit and representation distillation terms."""
    missing_rate_max: float = 0.7
    """Student training draws a missing rate per batch from [0, missing_rate_max]."""
    w_corrkd: tuple[float, float, float] = (1.0, 1.0, 1.0)
    """Weights of the sample contrastive, prototype and response consistency losses."""
    corrkd_tau: float = 0.5
    """Temperature of the CorrKD similarity distributions."""
    epoch_samples: int | None = None
    """Training samples drawn (without replacement) per epoch; None: the whole split. Large
    corpora on small machines validate more often this way."""
    balance_sources: bool = False
    """With epoch_samples: draw each source (the sample id up to its first '/', e.g. one
    corpus) in proportion to the square root of its size rather than its size, so a
    small corpus (a few actors' voices) is not drowned by a large one (thousands of
    sentences). Ids without '/' form one source: the draw stays uniform."""
    source_groups: dict[str, str] = field(default_factory=dict)
    """With balance_sources: sources counted as one, e.g. {"xed": "goemotions"}: two corpora
    teaching the same thing (the words' emotions) share one square-root share, within which
    each sample is drawn alike, instead of each taking a share from every other source."""

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> TrainConfig:
        data = dict(data)
        for key in ("gd_loss_weights", "w_corrkd"):
            if key in data:
                data[key] = tuple(data[key])
        return cls(**data)


# Presets: the paper's per-dataset sizes (mdswyz/DMD config.json), and a small one for
# quick CPU runs (synthetic data, tests, CI) and for the live model.
PRESETS: dict[str, dict] = {
    "mosi": {
        "model": {"d": 50, "heads": 10, "kernels": {"L": 5, "A": 5, "V": 5}},
        "train": {"lr": 1e-4, "batch_size": 16},
    },
    "mosei": {
        "model": {"d": 30, "heads": 6, "kernels": {"L": 5, "A": 1, "V": 3}},
        "train": {"lr": 1e-4, "batch_size": 16},
    },
    "small": {
        "model": {
            "d": 32,
            "heads": 4,
            "kernels": {"L": 3, "A": 3, "V": 3},
            "cross_layers": 2,
            "memory_layers": 1,
            "gd_size_homo": 32,
            "gd_size_hetero": 16,
        },
        "train": {"lr": 1e-3, "batch_size": 32, "epochs": 20, "early_stop": 6, "patience": 3},
    },
}


def load_preset(name_or_path: str) -> tuple[dict, dict]:
    """Return (model overrides, train overrides) for a preset name or a JSON file (UsageError if neither)."""
    if name_or_path in PRESETS:
        preset = PRESETS[name_or_path]
        return dict(preset["model"]), dict(preset["train"])
    path = Path(name_or_path)
    if not path.is_file():
        raise UsageError(
            f"config {name_or_path!r} is neither a preset ({', '.join(PRESETS)}) nor a file"
        )
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise UsageError(f"config {path}: not valid JSON ({exc.msg} at line {exc.lineno})") from None
    if not isinstance(data, dict) or not set(data) <= {"model", "train"}:
        raise UsageError(f"config {path}: expected an object with 'model' and/or 'train' keys")
    return dict(data.get("model", {})), dict(data.get("train", {}))
