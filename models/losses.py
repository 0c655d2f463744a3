"""DMD's training objective, term by term (paper Eq. 9 and the authors' train loop).

total = task + w_gd_homo (homo logit + homo repr + reg) + w_gd_hetero (hetero logit +
hetero repr + reg) + w_decouple (self-regression + reconstruction + w_margin_ortho
(margin + orthogonality)); for DHMD (models/dhmd.py) also + w_dict_match (matching in the
irrelevant + the exclusive space) + w_dict_fit (both dictionaries' rebuilding error).

Fixed here, kept in the authors' code: the homogeneous representation term is added (it
was computed and dropped); the heterogeneous representation term pulls student to teacher
(1 - cos, not target -1); orthogonality is a cosine per sample over the flattened (T, d)
features (CosineEmbeddingLoss on 3-D tensors fails on current PyTorch); the margin loss
groups labels by their rounded sentiment class rather than exact float equality.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

import torch
import torch.nn.functional as F

from models.config import MODALITIES, TrainConfig
from models.dhmd import DHMDOutput, dictionary_fit, matching_loss
from models.dmd import SENTIMENT_RANGE, DMDOutput
from models.graph_distill import GDLosses, distillation_losses


@dataclass
class DMDLosses:
    """Every term, unweighted except where the GD-Unit weighs its own, and the total."""

    task: torch.Tensor
    classes: torch.Tensor
    gd_homo_logit: torch.Tensor
    gd_homo_repr: torch.Tensor
    gd_homo_reg: torch.Tensor
    gd_hetero_logit: torch.Tensor
    gd_hetero_repr: torch.Tensor
    gd_hetero_reg: torch.Tensor
    self_regression: torch.Tensor
    reconstruction: torch.Tensor
    margin: torch.Tensor
    orthogonality: torch.Tensor
    dict_match: torch.Tensor
    """DHMD's cross-modal dictionary matching, both spaces (0 for DMD)."""
    dict_fit: torch.Tensor
    """DHMD's dictionary rebuilding error, both spaces (0 for DMD)."""
    total: torch.Tensor

    def as_floats(self) -> dict[str, float]:
        return {f.name: float(getattr(self, f.name).detach()) for f in fields(self)}


def masked_mse(a: torch.Tensor, b: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean squared error over present steps of (B, T, d) tensors."""
    weights = mask.unsqueeze(-1).expand_as(a)
    return ((a - b).pow(2) * weights).sum() / weights.sum().clamp_min(1.0)


def sentiment_classes(labels: torch.Tensor) -> torch.Tensor:
    """Labels in [-3, 3] rounded to the seven integer classes -3..3."""
    return labels.clamp(-SENTIMENT_RANGE, SENTIMENT_RANGE).round()


def margin_loss(feats: torch.Tensor, classes: torch.Tensor, margin_scale: float = 0.15) -> torch.Tensor:
    """The authors' HingeLoss, vectorised: for each anchor, a same-class pair must be more
    cosine-similar than a different-class pair by 0.15 x the class distance.

    feats: (N, d); classes: (N,).
    """
    n = feats.size(0)
    normed = F.normalize(feats, dim=1, eps=1e-8)
    cos = normed @ normed.t()  # (N, N)
    off_diag = ~torch.eye(n, dtype=torch.bool, device=feats.device)
    same = (classes.unsqueeze(0) == classes.unsqueeze(1)) & off_diag
    diff = (classes.unsqueeze(0) != classes.unsqueeze(1))
    margins = margin_scale * (classes.unsqueeze(0) - classes.unsqueeze(1)).abs()  # (N, N)
    # hinge[i, p, q] = relu(margin[i, q] - cos[i, p] + cos[i, q]) for p same, q different
    hinge = F.relu(margins.unsqueeze(1) - cos.unsqueeze(2) + cos.unsqueeze(1))
    pair_mask = same.unsqueeze(2) & diff.unsqueeze(1)
    counts = pair_mask.sum((1, 2))
    valid = counts > 0
    if not valid.any():
        return feats.new_zeros(())
    per_anchor = (hinge * pair_mask).sum((1, 2)) / counts.clamp_min(1)
    return per_anchor[valid].mean()


def orthogonality_loss(s: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
    """Mean of max(0, cos(s, c)) per sample over the flattened (T, d) features."""
    return F.relu(F.cosine_similarity(s.flatten(1), c.flatten(1), dim=1, eps=1e-8)).mean()


def dmd_losses(out: DMDOutput, labels: torch.Tensor, cfg: TrainConfig,
               class_labels: torch.Tensor | None = None,
               channel_weights: torch.Tensor | None = None,
               valence_weights: torch.Tensor | None = None) -> DMDLosses:
    """All DMD loss terms for one batch. labels: (B,) sentiment in [-3, 3]; channel_weights:
    (B, 3) or None, how much each channel's own branches learn the labels (0: a bystander);
    valence_weights: (B,) or None, 0 for a sample without a valence rating (no valence loss)."""
    target = labels.unsqueeze(1)
    present = out.present  # (B, 3)
    own = present if channel_weights is None else present * channel_weights.to(present.dtype)
    if valence_weights is None:
        task = (out.sentiment - labels).abs().mean() + (out.logit_c - target).abs().mean()
        rated = own
    else:
        vw = valence_weights.to(labels.dtype)
        denom = vw.sum().clamp_min(1.0)
        task = ((out.sentiment - labels).abs() * vw).sum() / denom
        task = task + ((out.logit_c - target).abs().squeeze(1) * vw).sum() / denom
        rated = own * vw.unsqueeze(1)
    for i, m in enumerate(MODALITIES):
        # a branch whose modality is absent (or a bystander) has nothing to predict: no task loss
        weight = rated[:, i : i + 1]
        denom = weight.sum().clamp_min(1.0)
        task = task + ((out.logits_homo[m] - target).abs() * weight).sum() / denom
        task = task + ((out.logits_hetero[m] - target).abs() * weight).sum() / denom

    zero = labels.new_zeros(())
    classes = zero
    if out.class_logits is not None and class_labels is not None:
        known = class_labels >= 0  # -1 marks a sample without a class label
        if known.any():
            classes = F.cross_entropy(out.class_logits[known], class_labels[known])
        if out.channel_class_logits is not None:
            # each channel's own head learns from the samples where that channel is present
            for i, m in enumerate(MODALITIES):
                seen = known & (own[:, i] > 0)
                if seen.any():
                    classes = classes + F.cross_entropy(out.channel_class_logits[m][seen], class_labels[seen])

    gd_homo = _gd(out, "homo", cfg)
    gd_hetero = _gd(out, "hetero", cfg)

    self_regression = sum(masked_mse(out.s_r[m], out.s[m], out.masks[m]) for m in MODALITIES)
    reconstruction = sum(masked_mse(out.recon[m], out.proj[m], out.masks[m]) for m in MODALITIES)
    sent_class = sentiment_classes(labels)
    keep = [present[:, i] > 0 for i in range(len(MODALITIES))]
    if valence_weights is not None:  # the margin orders samples by valence: only rated ones
        keep = [k & (valence_weights > 0) for k in keep]
    feats = torch.cat([out.c_sim[m][keep[i]] for i, m in enumerate(MODALITIES)], dim=0)
    ids = torch.cat([sent_class[keep[i]] for i in range(len(MODALITIES))], dim=0)
    margin = margin_loss(feats, ids) if feats.size(0) > 2 else zero
    # without decoupling (an ablation) s_m is c_m: their cosine is 1 by construction, not a loss
    orthogonality = sum(orthogonality_loss(out.s[m], out.c[m]) for m in MODALITIES) if out.decoupled else zero

    dict_match, dict_fit = zero, zero
    if isinstance(out, DHMDOutput):
        dict_match = (matching_loss("homo", out.atoms_homo, out.edges_homo, present)
                      + matching_loss("hetero", out.atoms_hetero, out.edges_hetero, present))
        dict_fit = dictionary_fit(out.dict_error_homo, out.masks) + dictionary_fit(out.dict_error_hetero, out.masks)

    total = (
        task + classes
        + cfg.w_gd_homo * (gd_homo.logit + gd_homo.repr + gd_homo.reg)
        + cfg.w_gd_hetero * (gd_hetero.logit + gd_hetero.repr + gd_hetero.reg)
        + cfg.w_decouple * (self_regression + reconstruction + cfg.w_margin_ortho * (margin + orthogonality))
        + cfg.w_dict_match * dict_match + cfg.w_dict_fit * dict_fit
    )
    return DMDLosses(
        task=task, classes=classes,
        gd_homo_logit=gd_homo.logit, gd_homo_repr=gd_homo.repr, gd_homo_reg=gd_homo.reg,
        gd_hetero_logit=gd_hetero.logit, gd_hetero_repr=gd_hetero.repr, gd_hetero_reg=gd_hetero.reg,
        self_regression=self_regression, reconstruction=reconstruction,
        margin=margin, orthogonality=orthogonality, dict_match=dict_match, dict_fit=dict_fit, total=total,
    )


def _gd(out: DMDOutput, kind: str, cfg: TrainConfig) -> GDLosses:
    if kind == "homo":
        logits, reprs, edges = out.logits_homo, out.repr_homo, out.edges_homo
    else:
        logits, reprs, edges = out.logits_hetero, out.repr_hetero, out.edges_hetero
    return distillation_losses(kind, logits, reprs, edges, cfg.gd_reg, cfg.gd_loss_weights, out.present)
