"""The inference engine: windows in, Estimates out, on the GPU when there is one."""

from __future__ import annotations

import logging
import time
from pathlib import Path

import numpy as np
import torch

from models.checkpoint import Checkpoint, CheckpointError, load_checkpoint
from models.config import MODALITIES
from models.graph_distill import EDGE_NAMES
from realtime.features.text import TextEmbedder
from realtime.featureset import FEATURE_SET_NAME, FeatureSpec
from realtime.types import CHANNELS, Estimate, Reading, Window

logger = logging.getLogger(__name__)

DEFAULT_CHECKPOINT = Path(__file__).resolve().parent / "assets" / "default"
_CHANNEL_OF = dict(zip(("V", "A", "L"), CHANNELS))
"""Record channel name of each model modality."""
_BRANCH_MODALITY = {"L_homo": "L", "A_homo": "A", "V_homo": "V", "L_hetero": "L", "A_hetero": "A", "V_hetero": "V"}


def find_checkpoint(path: str | None) -> Checkpoint:
    """The checkpoint asked for, else the bundled default; CheckpointError if neither."""
    if path:
        return load_checkpoint(path)
    if (DEFAULT_CHECKPOINT / "checkpoint.json").is_file():
        return load_checkpoint(DEFAULT_CHECKPOINT)
    raise CheckpointError("no checkpoint given and no bundled default: pass --checkpoint DIR "
                          "(train one with 'python -m models.train', see README)")


class InferenceEngine:
    """Runs the DMD checkpoint on windows and turns outputs into Estimates."""

    def __init__(self, checkpoint: Checkpoint, device: torch.device, text: TextEmbedder):
        self.spec = FeatureSpec.from_checkpoint(checkpoint.feature_set)
        checkpoint.check_features(FEATURE_SET_NAME, self.spec.dims, self.spec.steps)
        if text.options.max_tokens != self.spec.text_tokens:
            raise CheckpointError(f"{checkpoint.path}: expects {self.spec.text_tokens} text tokens, "
                                  f"the text embedder gives {text.options.max_tokens}")
        self.checkpoint = checkpoint
        self.device = device
        self.net = checkpoint.build(device)
        self.text = text
        self.class_names = tuple(checkpoint.model.class_names)

    def warm_up(self) -> None:
        started = time.perf_counter()
        dummy = Window(index=-1, t_start=0.0, t_end=self.spec.window,
                       face=np.zeros((self.spec.face_steps, self.spec.dims["V"]), np.float32),
                       face_mask=np.ones(self.spec.face_steps, np.float32),
                       audio=np.zeros((self.spec.audio_steps, self.spec.dims["A"]), np.float32),
                       audio_mask=np.ones(self.spec.audio_steps, np.float32),
                       words=[])
        self([dummy, dummy])
        logger.info("DMD warm-up on %s took %.2f s", self.device, time.perf_counter() - started)

    @torch.inference_mode()
    def __call__(self, windows: list[Window]) -> list[Estimate]:
        if not windows:
            return []
        text, text_mask = self.text.embed_many([[w.text for w in win.words] for win in windows])
        inputs = {
            "L": torch.from_numpy(text),
            "A": torch.from_numpy(np.stack([w.audio for w in windows])),
            "V": torch.from_numpy(np.stack([w.face for w in windows])),
        }
        masks = {
            "L": torch.from_numpy(text_mask),
            "A": torch.from_numpy(np.stack([w.audio_mask for w in windows])),
            "V": torch.from_numpy(np.stack([w.face_mask for w in windows])),
        }
        out = self.net({m: v.to(self.device) for m, v in inputs.items()},
                       {m: v.to(self.device) for m, v in masks.items()})
        sentiment = out.sentiment.float().clamp(-3, 3).cpu().numpy()
        edges_homo = out.edges_homo.float().cpu().numpy()
        edges_hetero = out.edges_hetero.float().cpu().numpy()
        branches = {k: v.float().cpu().numpy() for k, v in out.branch_predictions().items()}
        present = out.present.cpu().numpy() > 0
        probs = _softmax(out.class_logits)
        channel_probs = ({m: _softmax(v) for m, v in out.channel_class_logits.items()}
                         if out.channel_class_logits is not None else None)
        channel_sentiment = {m: v.float().clamp(-3, 3).cpu().numpy().reshape(-1) for m, v in out.logits_homo.items()}
        names = self.class_names
        estimates = []
        for i, win in enumerate(windows):
            has = dict(zip(MODALITIES, present[i]))
            channels = {
                _CHANNEL_OF[m]: Reading(float(channel_sentiment[m][i]),
                                        None if channel_probs is None else _named(names, channel_probs[m][i]))
                for m in MODALITIES if has[m]
            }
            estimates.append(Estimate(
                t_start=win.t_start, t_end=win.t_end, sentiment=float(sentiment[i]),
                emotions=None if probs is None else _named(names, probs[i]),
                channels=channels,
                edges={"homo": dict(zip(EDGE_NAMES, map(float, edges_homo[i]))),
                       "hetero": dict(zip(EDGE_NAMES, map(float, edges_hetero[i])))},
                branches={k: _branch(k, v[i], has) for k, v in branches.items()},
                modalities=win.coverage(),
                words=[w.text for w in win.words],
                checkpoint=self.checkpoint.id,
                landmarks=win.landmarks,
            ))
        return estimates


def _softmax(logits: torch.Tensor | None) -> np.ndarray | None:
    return None if logits is None else torch.softmax(logits.float(), dim=1).cpu().numpy()


def _named(names: tuple[str, ...], probs: np.ndarray) -> dict[str, float]:
    return dict(zip(names, map(float, probs)))


def _branch(name: str, value: float, has: dict[str, bool]) -> float | None:
    """A branch's prediction, or None when its modality was absent from the window."""
    modality = _BRANCH_MODALITY.get(name)
    if modality is not None and not has[modality]:
        return None
    return float(np.clip(value, -3, 3))
