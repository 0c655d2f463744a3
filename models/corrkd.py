"""Missing-modality training in the manner of CorrKD (Li et al., CVPR 2024).

A teacher DMD trained on complete data distils into a student DMD that sees the same
batch with data removed: whole modalities dropped and random time steps dropped inside
the others, at a rate drawn per batch. Three losses carry the teacher's knowledge:

* sample-level contrastive distillation: the student's sample-to-sample similarity
  distribution within the batch matches the teacher's;
* category-guided prototype distillation: class prototypes from the teacher's features;
  the student's feature-to-prototype similarity distribution matches the teacher's;
* response-disentangled consistency distillation: the responses are compared as class
  distributions, split into the target-class part and the non-target part (as in
  decoupled KD). For the sentiment score, the response distribution is a soft binning of
  the score over the seven classes -3..3; with an emotion head, its softmax too.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from models.config import MODALITIES
from models.dmd import SENTIMENT_RANGE, DMDOutput
from models.losses import sentiment_classes

# Available-modality subsets drawn when whole modalities are dropped: the CMAD recipe,
# (L, A, V, LA, LV, AV) with weights (2, 3, 3, 1, 1, 3); LAV (weight 1) is "no drop".
SUBSETS: tuple[tuple[str, ...], ...] = (("L",), ("A",), ("V",), ("L", "A"), ("L", "V"), ("A", "V"))
SUBSET_WEIGHTS = (2.0, 3.0, 3.0, 1.0, 1.0, 3.0)
SENTIMENT_BINS = torch.arange(-3, 4, dtype=torch.float32)
_SUBSET_KEEPS = torch.tensor([[m in subset for m in MODALITIES] for subset in SUBSETS])  # (6, 3) bool


def drop_missing(masks: dict[str, torch.Tensor], rate: float, generator: torch.Generator) -> dict[str, torch.Tensor]:
    """Simulate missing data at ``rate`` in [0, 1] on presence masks (B, T).

    Each sample loses whole modalities with probability ``rate`` (keeping a subset drawn
    as above), and every remaining step is dropped with probability ``rate``.
    """
    if rate <= 0:
        return {m: v.clone() for m, v in masks.items()}
    any_mask = masks[MODALITIES[0]]
    batch = any_mask.size(0)
    device = any_mask.device
    drop_whole = torch.rand(batch, generator=generator) < rate
    choice = torch.multinomial(torch.tensor(SUBSET_WEIGHTS), batch, replacement=True, generator=generator)
    keep_modalities = ~drop_whole.unsqueeze(1) | _SUBSET_KEEPS[choice]  # (B, 3)
    out = {}
    for j, m in enumerate(MODALITIES):
        keep_modality = keep_modalities[:, j]
        keep_steps = torch.rand(masks[m].shape, generator=generator) >= rate
        keep = (keep_steps & keep_modality.unsqueeze(1)).to(device)
        out[m] = masks[m] * keep.to(masks[m].dtype)
    return out


def keep_subset(masks: dict[str, torch.Tensor], available: tuple[str, ...]) -> dict[str, torch.Tensor]:
    """Masks with every modality outside ``available`` wholly missing."""
    return {m: (v if m in available else torch.zeros_like(v)) for m, v in masks.items()}


def _similarity_kl(student: torch.Tensor, teacher: torch.Tensor, tau: float) -> torch.Tensor:
    """KL(teacher || student) between row-wise softmax distributions of similarity logits."""
    return F.kl_div(F.log_softmax(student / tau, dim=1), F.softmax(teacher / tau, dim=1),
                    reduction="batchmean")


def sample_contrastive_loss(student: torch.Tensor, teacher: torch.Tensor, tau: float) -> torch.Tensor:
    """Match the batch's sample-to-sample cosine similarity structure (diagonal excluded)."""
    n = student.size(0)
    if n < 3:
        return student.new_zeros(())
    s, t = F.normalize(student, dim=1), F.normalize(teacher.detach(), dim=1)
    off = ~torch.eye(n, dtype=torch.bool, device=student.device)
    sim_s = (s @ s.t())[off].view(n, n - 1)
    sim_t = (t @ t.t())[off].view(n, n - 1)
    return _similarity_kl(sim_s, sim_t, tau)


def prototype_loss(student: torch.Tensor, teacher: torch.Tensor, classes: torch.Tensor, tau: float) -> torch.Tensor:
    """Align the student's feature-to-prototype similarities with the teacher's.

    Prototypes are the teacher's mean feature per class present in the batch.
    """
    labels = classes.unique()
    if labels.numel() < 2:
        return student.new_zeros(())
    teacher = teacher.detach()
    protos = torch.stack([teacher[classes == c].mean(0) for c in labels])  # (K, D)
    protos = F.normalize(protos, dim=1)
    sim_s = F.normalize(student, dim=1) @ protos.t()
    sim_t = F.normalize(teacher, dim=1) @ protos.t()
    return _similarity_kl(sim_s, sim_t, tau)


def sentiment_distribution(score: torch.Tensor, sharpness: float = 2.0) -> torch.Tensor:
    """Soft binning of scores (B,) into the seven classes -3..3, (B, 7)."""
    bins = SENTIMENT_BINS.to(score.device, score.dtype)
    return F.softmax(-sharpness * (score.unsqueeze(1) - bins).pow(2), dim=1)


def decoupled_kl(p_student: torch.Tensor, p_teacher: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Target-class KL (binary: target vs rest) plus non-target KL (renormalised rest)."""
    eps = 1e-7
    onehot = F.one_hot(target, p_student.size(1)).to(torch.bool)
    pt_s = p_student[onehot].clamp(eps, 1 - eps)
    pt_t = p_teacher[onehot].clamp(eps, 1 - eps)
    binary_s = torch.stack([pt_s, 1 - pt_s], dim=1)
    binary_t = torch.stack([pt_t, 1 - pt_t], dim=1)
    tckd = (binary_t * (binary_t.log() - binary_s.log())).sum(1).mean()
    rest_s = p_student.masked_fill(onehot, 0)
    rest_t = p_teacher.masked_fill(onehot, 0)
    rest_s = rest_s / rest_s.sum(1, keepdim=True).clamp_min(eps)
    rest_t = rest_t / rest_t.sum(1, keepdim=True).clamp_min(eps)
    nckd = (rest_t * ((rest_t + eps).log() - (rest_s + eps).log())).sum(1).mean()
    return tckd + nckd


def response_consistency_loss(student: DMDOutput, teacher: DMDOutput | TeacherResponse, labels: torch.Tensor,
                              class_labels: torch.Tensor | None,
                              valence_weights: torch.Tensor | None = None) -> torch.Tensor:
    """Decoupled KD on the sentiment response (and the emotion head's, when present); the
    sentiment response only on samples with a valence rating (``valence_weights`` > 0)."""
    target = (sentiment_classes(labels) + SENTIMENT_RANGE).long()
    rated = slice(None) if valence_weights is None else valence_weights > 0
    loss = labels.new_zeros(())
    if valence_weights is None or bool(rated.any()):
        loss = decoupled_kl(sentiment_distribution(student.sentiment[rated]),
                            sentiment_distribution(teacher.sentiment.detach()[rated]), target[rated])
    if student.class_logits is not None and class_labels is not None:
        known = class_labels >= 0
        if known.any():
            loss = loss + decoupled_kl(F.softmax(student.class_logits[known], dim=1),
                                       F.softmax(teacher.class_logits[known].detach(), dim=1),
                                       class_labels[known])
    return loss


def _prototype_classes(labels: torch.Tensor, class_labels: torch.Tensor | None) -> torch.Tensor:
    """Emotion classes where every sample has one; else the seven rounded sentiment classes
    (offset past the emotion indices so that the two kinds never share a prototype)."""
    sentiment = sentiment_classes(labels).long() + SENTIMENT_RANGE_INT
    if class_labels is None:
        return sentiment
    return torch.where(class_labels >= 0, class_labels, sentiment + 1000)


SENTIMENT_RANGE_INT = int(SENTIMENT_RANGE)


@dataclass
class TeacherResponse:
    """What the CorrKD losses read of the teacher's forward on the complete batch."""

    fused: torch.Tensor  # (B, 9d) the representation before the output layer
    sentiment: torch.Tensor  # (B,)
    class_logits: torch.Tensor | None  # (B, n_classes) or None


@dataclass
class CorrKDLosses:
    sample: torch.Tensor
    prototype: torch.Tensor
    response: torch.Tensor

    def total(self, weights: tuple[float, float, float]) -> torch.Tensor:
        return weights[0] * self.sample + weights[1] * self.prototype + weights[2] * self.response


def corrkd_losses(student: DMDOutput, teacher: DMDOutput | TeacherResponse, labels: torch.Tensor,
                  class_labels: torch.Tensor | None, tau: float,
                  valence_weights: torch.Tensor | None = None) -> CorrKDLosses:
    """The three CorrKD terms for a student on missing data and a teacher on complete data."""
    return CorrKDLosses(
        sample=sample_contrastive_loss(student.fused, teacher.fused, tau),
        prototype=prototype_loss(student.fused, teacher.fused, _prototype_classes(labels, class_labels), tau),
        response=response_consistency_loss(student, teacher, labels, class_labels, valence_weights),
    )
