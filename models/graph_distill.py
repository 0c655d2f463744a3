"""The graph distillation unit (GD-Unit) of DMD.

Each of the six ordered modality pairs is an edge teacher -> student. Its weight is
learned per sample from both ends: z = [W_logit(logit), W_repr(repr)], score =
W_edge([z_student, z_teacher]), and a softmax over the six scores (times alpha). The
distillation loss weighs each edge's student-to-teacher distance by (edge + prior); a
regulariser keeps the batch-mean edges near the prior, which says language teaches most.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

from models.config import MODALITIES

EDGES: tuple[tuple[str, str], ...] = (
    ("V", "L"), ("A", "L"), ("L", "V"), ("A", "V"), ("L", "A"), ("V", "A"),
)
"""(teacher, student) pairs in the paper's edge order (L<-V, L<-A, V<-L, V<-A, A<-L, A<-V)."""

EDGE_NAMES: tuple[str, ...] = tuple(f"{t}->{s}" for t, s in EDGES)
"""Printable edge names, teacher first: ``"L->A"`` means language teaches acoustics."""

PRIOR_LOGITS = {
    "homo": (0.0, 0.0, 1.0, 0.0, 1.0, 0.0),
    "hetero": (0.0, 0.0, 1.0, 0.0, 1.0, 1.0),
}
PRIOR_TEMPERATURE = 0.25


def edge_prior(kind: str) -> torch.Tensor:
    """The paper's prior over the six edges: softmax(logits / 0.25)."""
    return F.softmax(torch.tensor(PRIOR_LOGITS[kind]) / PRIOR_TEMPERATURE, dim=0)


@dataclass
class GDLosses:
    """The GD-Unit's three loss terms (already weighted)."""

    logit: torch.Tensor
    repr: torch.Tensor
    reg: torch.Tensor


class GDUnit(nn.Module):
    """Learns per-sample edge weights between modalities and distils along them."""

    def __init__(self, kind: str, logit_dim: int, repr_dim: int, gd_size: int, alpha: float):
        super().__init__()
        if kind not in PRIOR_LOGITS:
            raise ValueError(f"GD-Unit kind must be one of {sorted(PRIOR_LOGITS)}, got {kind!r}")
        self.kind = kind
        self.alpha = alpha
        self.W_logit = nn.Linear(logit_dim, gd_size)
        self.W_repr = nn.Linear(repr_dim, gd_size)
        self.W_edge = nn.Linear(4 * gd_size, 1)

    def forward(self, logits: dict[str, torch.Tensor], reprs: dict[str, torch.Tensor],
                present: torch.Tensor) -> torch.Tensor:
        """Edge weights (B, 6) in EDGES order; each row is non-negative and sums to 1.

        present: (B, 3) in MODALITIES order. An absent modality teaches nothing: its
        outgoing edges are masked before the softmax (the authors' code has no missing
        modalities; a sample with none present keeps all six).
        """
        z = {m: torch.cat([self.W_logit(logits[m]), self.W_repr(reprs[m])], dim=1) for m in MODALITIES}
        scores = torch.cat([self.W_edge(torch.cat([z[s], z[t]], dim=1)) for t, s in EDGES], dim=1)
        teacher_present = torch.stack([present[:, MODALITIES.index(t)] > 0 for t, _ in EDGES], dim=1)
        teacher_present = teacher_present | ~teacher_present.any(dim=1, keepdim=True)
        scores = (scores * self.alpha).masked_fill(~teacher_present, float("-inf"))
        return F.softmax(scores, dim=1)


def distillation_losses(kind: str, logits: dict[str, torch.Tensor], reprs: dict[str, torch.Tensor],
                        edges: torch.Tensor, reg_weight: float, loss_weights: tuple[float, float]) -> GDLosses:
    """Weighted distillation along every edge; the teacher side is detached.

    Logits: L1 summed over outputs (as the authors' ``distance_metric``). Representations:
    homogeneous L1 averaged over features (the sum would dwarf every other term at weight
    10); heterogeneous 1 - cos (the authors' target -1 pushes student and teacher apart).
    """
    prior = edge_prior(kind).to(edges.device, edges.dtype)
    reg = reg_weight * (edges.mean(0) - prior).pow(2).sum()
    loss_logit = edges.new_zeros(())
    loss_repr = edges.new_zeros(())
    for x, (t, s) in enumerate(EDGES):
        weight = edges[:, x] + prior[x]
        d_logit = (logits[s] - logits[t].detach()).abs().sum(1)
        if kind == "homo":
            d_repr = (reprs[s] - reprs[t].detach()).abs().mean(1)
        else:
            d_repr = 1 - F.cosine_similarity(reprs[s], reprs[t].detach(), dim=1)
        loss_logit = loss_logit + loss_weights[0] * (d_logit * weight).mean()
        loss_repr = loss_repr + loss_weights[1] * (d_repr * weight).mean()
    return GDLosses(logit=loss_logit, repr=loss_repr, reg=reg)
