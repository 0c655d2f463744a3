"""The inference engine: windows in, Estimates out, on the GPU when there is one."""

from __future__ import annotations

import copy
import logging
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from models.checkpoint import Checkpoint, CheckpointError, load_checkpoint
from models.config import MODALITIES
from models.device import check_precision, computing_in
from models.fast import FastDMD
from models.graph_distill import EDGE_NAMES, EDGES
from realtime.features.text import TextEmbedder
from realtime.featureset import FEATURE_SET_NAME, FeatureSpec
from realtime.types import CHANNELS, Estimate, Reading, Window

logger = logging.getLogger(__name__)

DEFAULT_CHECKPOINT = Path(__file__).resolve().parent / "assets" / "default"
_CHANNEL_OF = dict(zip(("V", "A", "L"), CHANNELS))
"""Record channel name of each model modality."""
_BRANCH_MODALITY = {"L_homo": "L", "A_homo": "A", "V_homo": "V", "L_hetero": "L", "A_hetero": "A", "V_hetero": "V"}


@dataclass
class ModelEstimate(Estimate):
    """An Estimate that also says which modalities its edges cover and, for a DHMD
    checkpoint, each present modality's dictionary activations (docs/RECORDS.md)."""

    edges_among: tuple[str, ...] = ()
    """The modalities (L, A, V) the edges connect: those present in the window. With fewer
    than two there is no edge, and ``edges`` holds empty sets."""
    atoms: dict[str, dict[str, list[float]]] | None = None
    """DHMD only: {"homo"|"hetero": {modality: activations over that space's atoms}} for
    each present modality; None for a checkpoint without dictionaries."""

    def record(self, all_channels: bool = False) -> dict:
        """The record with ``edges_among`` after ``edges`` (and ``atoms`` when the checkpoint
        has them). ``all_channels``: every edge and modality, null where absent, as a table needs."""
        rec = super().record(all_channels)
        edges = rec.pop("edges")
        if all_channels:
            edges = {kind: {name: e.get(name) for name in EDGE_NAMES} for kind, e in edges.items()}
        out = {}
        for key, value in rec.items():
            out[key] = value
            if key == "channels":
                out["edges"] = edges
                out["edges_among"] = list(self.edges_among)
                if self.atoms is not None:
                    out["atoms"] = {space: {m: (None if m not in acts else [round(a, 4) for a in acts[m]])
                                            for m in MODALITIES if all_channels or m in acts}
                                    for space, acts in self.atoms.items()}
        return out


def find_checkpoint(path: str | None) -> Checkpoint:
    """The checkpoint asked for, else the bundled default; CheckpointError if neither. A
    checkpoint that learned no valence (trained on classes alone) is warned of."""
    if path:
        checkpoint = load_checkpoint(path)
    elif (DEFAULT_CHECKPOINT / "checkpoint.json").is_file():
        checkpoint = load_checkpoint(DEFAULT_CHECKPOINT)
    else:
        raise CheckpointError("no checkpoint given and no bundled default: pass --checkpoint DIR "
                              "(train one with 'python -m models.train', see README)")
    if checkpoint.provenance.get("rated_samples") == 0:
        logger.warning("'%s' learned no valence (no training sample rated one): the sentiment in its records means "
                       "nothing", checkpoint.path)
    return checkpoint


class InferenceEngine:
    """Runs the checkpoint (DMD or DHMD) on windows and turns outputs into Estimates.

    ``window``: seconds per window (the same step counts; None: the checkpoint's), warned
    about when it is not the checkpoint's; ``with_window`` gives an engine on the same
    models with another. ``spec`` is fixed once built: runs read their geometry from it."""

    def __init__(self, checkpoint: Checkpoint, device: torch.device, text: TextEmbedder,
                 precision: str = "float32", window: float | None = None, runtime: str = "auto"):
        check_precision(precision, device)
        trained = FeatureSpec.from_checkpoint(checkpoint.feature_set)
        checkpoint.check_features(FEATURE_SET_NAME, trained.dims, trained.steps)
        if text.options.max_tokens != trained.text_tokens:
            raise CheckpointError(f"{checkpoint.path}: expects {trained.text_tokens} text tokens, "
                                  f"the text embedder gives {text.options.max_tokens}")
        self.spec = _with_window(trained, window)
        self.checkpoint = checkpoint
        self.device = device
        self.precision = precision
        self.net = checkpoint.build(device)
        # serving reads a few of the forward's outputs: the inference-only forward computes
        # only those (no decoders, no reconstruction), several times faster at batch 1;
        # ``runtime`` says who runs a window alone (models.fast.RUNTIMES)
        self.forward = FastDMD(self.net, runtime=runtime)
        self.text = text
        self.class_names = tuple(checkpoint.model.class_names)

    def close(self) -> None:
        """Let the model's ONNX Runtime session (live runs) and the words' encoder go now, not
        at interpreter exit (idempotent; engines of other windows share them)."""
        self.forward.close()
        self.text.close()

    def with_window(self, window: float | None) -> InferenceEngine:
        """This engine (the same network, text embedder and device) cutting windows of
        ``window`` seconds (None: the checkpoint's); itself when that is its window already."""
        spec = _with_window(FeatureSpec.from_checkpoint(self.checkpoint.feature_set), window)
        if spec == self.spec:
            return self
        other = copy.copy(self)
        other.spec = spec
        return other

    def warm_up(self) -> None:
        started = time.perf_counter()
        dummy = Window(index=-1, t_start=0.0, t_end=self.spec.window,
                       face=np.zeros((self.spec.face_steps, self.spec.dims["V"]), np.float32),
                       face_mask=np.ones(self.spec.face_steps, np.float32),
                       audio=np.zeros((self.spec.audio_steps, self.spec.dims["A"]), np.float32),
                       audio_mask=np.ones(self.spec.audio_steps, np.float32),
                       words=[])
        self([dummy])  # one window: serving's ONNX Runtime session runs its first (slow) call here
        self([dummy, dummy])  # and a batch: the torch path
        logger.info("DMD warm-up on %s took %.2f s", self.device, time.perf_counter() - started)

    def _to_device(self, tensors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """On a GPU the host tensors are pinned first, so the copies run asynchronously
        (the forward waits for them on the same stream); on the CPU they are used as they are."""
        if self.device.type != "cuda":
            return tensors
        return {m: v.pin_memory().to(self.device, non_blocking=True) for m, v in tensors.items()}

    @torch.inference_mode()
    def __call__(self, windows: list[Window]) -> list[Estimate]:
        if not windows:
            return []
        # windows with nothing to read (no face, voice or word: a capture gap, an empty room)
        # all read the same, the model's reading of nothing: one of them is scored for all (a
        # 10-hour gap's 72,000 windows had spent 1.7 ms each in the forward)
        rows, scored, blank = [], [], None
        for win in windows:
            if not (win.words or win.face_mask.any() or win.audio_mask.any()):
                if blank is None:
                    blank = len(scored)
                    scored.append(win)
                rows.append(blank)
            else:
                rows.append(len(scored))
                scored.append(win)
        text, text_mask = self.text.embed_many([win.text() for win in scored])
        inputs = {
            "L": torch.from_numpy(text),
            "A": torch.from_numpy(np.stack([w.audio for w in scored])),
            "V": torch.from_numpy(np.stack([w.face for w in scored])),
        }
        masks = {
            "L": torch.from_numpy(text_mask),
            "A": torch.from_numpy(np.stack([w.audio_mask for w in scored])),
            "V": torch.from_numpy(np.stack([w.face_mask for w in scored])),
        }
        with computing_in(self.precision):
            out = self.forward(self._to_device(inputs), self._to_device(masks))
        sentiment = out.sentiment.float().clamp(-3, 3).cpu().numpy()
        edges_homo = out.edges_homo.float().cpu().numpy()
        edges_hetero = out.edges_hetero.float().cpu().numpy()
        branches = {k: v.float().cpu().numpy() for k, v in out.branch_predictions().items()}
        present = out.present.cpu().numpy() > 0
        probs = _softmax(out.class_logits)
        channel_probs = ({m: _softmax(v) for m, v in out.channel_class_logits.items()}
                         if out.channel_class_logits is not None else None)
        channel_sentiment = {m: v.float().clamp(-3, 3).cpu().numpy().reshape(-1) for m, v in out.logits_homo.items()}
        atoms = None
        if getattr(out, "atoms_homo", None) is not None:  # a DHMD checkpoint: its dictionary activations
            atoms = {"homo": {m: v.float().cpu().numpy() for m, v in out.atoms_homo.items()},
                     "hetero": {m: v.float().cpu().numpy() for m, v in out.atoms_hetero.items()}}
        names = self.class_names
        estimates = []
        for i, win in zip(rows, windows):  # i: the row of the batch this window reads
            has = dict(zip(MODALITIES, present[i]))
            among = tuple(m for m in MODALITIES if has[m]) if sum(has.values()) >= 2 else ()
            channels = {
                _CHANNEL_OF[m]: Reading(float(channel_sentiment[m][i]),
                                        None if channel_probs is None else _named(names, channel_probs[m][i]))
                for m in MODALITIES if has[m]
            }
            estimates.append(ModelEstimate(
                t_start=win.t_start, t_end=win.t_end, sentiment=float(sentiment[i]),
                emotions=None if probs is None else _named(names, probs[i]),
                channels=channels,
                edges={"homo": _present_edges(edges_homo[i], among),
                       "hetero": _present_edges(edges_hetero[i], among)},
                edges_among=among,
                atoms=None if atoms is None else {
                    space: {m: acts[m][i].tolist() for m in MODALITIES if has[m]} for space, acts in atoms.items()},
                branches={k: _branch(k, v[i], has) for k, v in branches.items()},
                modalities=win.coverage(),
                words=[w.text for w in win.words],
                checkpoint=self.checkpoint.id,
                landmarks=win.landmarks,
            ))
        return estimates


def _with_window(trained: FeatureSpec, window: float | None) -> FeatureSpec:
    if window is None or abs(window - trained.window) <= 1e-9:
        return trained
    logger.warning("--window %.2f differs from the checkpoint's %.2f s: the model sees a different time scale",
                   window, trained.window)
    return trained.with_window(window)


def _present_edges(weights: np.ndarray, among: tuple[str, ...]) -> dict[str, float]:
    """The edges whose teacher and student are both present, renormalised to sum to 1 (the
    GD-Unit already gives the others 0; the sum guards against float drift)."""
    kept = {name: float(w) for name, (t, s), w in zip(EDGE_NAMES, EDGES, weights) if t in among and s in among}
    total = sum(kept.values())
    return {k: v / total for k, v in kept.items()} if total > 0 else {k: 0.0 for k in kept}


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
