"""Batching and prediction over dataset splits (shared by train and evaluate)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import torch

from models.config import MODALITIES
from models.corrkd import drop_missing, keep_subset
from models.data import Split
from models.metrics import REGRESSION_KEYS, classification_metrics, regression_metrics


@dataclass
class Batch:
    inputs: dict[str, torch.Tensor]
    masks: dict[str, torch.Tensor]
    labels: torch.Tensor
    class_labels: torch.Tensor | None
    index: np.ndarray
    channel_weights: torch.Tensor | None = None
    valence_weights: torch.Tensor | None = None


def batches(split: Split, batch_size: int, device: torch.device,
            rng: np.random.Generator | None = None, shard: tuple[int, int] | None = None) -> Iterator[Batch]:
    """Mini-batches in order, or shuffled when a generator is given.

    shard=(rank, world_size): each batch is this rank's share of a global batch of
    ``batch_size`` (every rank draws the same order from an equally seeded generator, so
    the shares never overlap): the global batch's samples rank, rank + world_size, ... A
    last batch smaller than world_size is topped up from the epoch's first samples, as
    torch's DistributedSampler pads, so that every rank takes every step.
    """
    order = np.arange(len(split)) if rng is None else rng.permutation(len(split))
    for start in range(0, len(order), batch_size):
        idx = order[start : start + batch_size]
        if shard is not None:
            rank, world_size = shard
            if len(idx) < world_size:
                idx = np.concatenate([idx, np.resize(order, world_size - len(idx))])
            idx = idx[rank::world_size]
        yield batch_of(split, idx, device)


def batch_of(split: Split, idx: np.ndarray, device: torch.device) -> Batch:
    """The samples ``idx`` of a split as one batch on ``device``."""
    return Batch(
        inputs={m: torch.from_numpy(split.inputs[m][idx]).to(device) for m in MODALITIES},
        masks={m: torch.from_numpy(split.masks[m][idx]).to(device) for m in MODALITIES},
        labels=torch.from_numpy(split.labels[idx]).to(device),
        class_labels=None if split.class_labels is None else torch.from_numpy(split.class_labels[idx]).to(device),
        index=idx,
        channel_weights=None if split.channel_weights is None
        else torch.from_numpy(split.channel_weights[idx]).to(device),
        valence_weights=None if split.valence_weights is None
        else torch.from_numpy(split.valence_weights[idx]).to(device),
    )


@torch.no_grad()
def predict(net: torch.nn.Module, split: Split, device: torch.device, missing_rate: float = 0.0,
            available: tuple[str, ...] | None = None, seed: int = 0, batch_size: int = 64):
    """Sentiment predictions (N,) and class logits (N, C) or None, with data removed as asked.

    missing_rate: simulated missing data (models.corrkd.drop_missing) with a fixed seed;
    available: keep only these modalities.
    """
    net.eval()
    gen = torch.Generator().manual_seed(seed)
    preds, logits = [], []
    for batch in batches(split, batch_size, device):
        masks = batch.masks
        if available is not None:
            masks = keep_subset(masks, available)
        if missing_rate > 0:
            masks = drop_missing(masks, missing_rate, gen)
        out = net(batch.inputs, masks)
        preds.append(out.sentiment.float().cpu().numpy())
        if out.class_logits is not None:
            logits.append(out.class_logits.float().cpu().numpy())
    return np.concatenate(preds), (np.concatenate(logits) if logits else None)


def evaluate(net: torch.nn.Module, split: Split, device: torch.device, missing_rate: float = 0.0,
             available: tuple[str, ...] | None = None, seed: int = 0) -> dict[str, float]:
    """MMSA metrics (and class metrics when the model has classes) on one split."""
    pred, logits = predict(net, split, device, missing_rate, available, seed)
    rated = split.rated
    if rated.any():
        metrics = regression_metrics(pred[rated], split.labels[rated])
    else:  # every sample names an emotion and rates no valence: undefined (null in JSON), not an error
        metrics = dict.fromkeys(REGRESSION_KEYS, float("nan"))
    if logits is not None and split.class_labels is not None:
        metrics.update(classification_metrics(logits, split.class_labels))
    return metrics
