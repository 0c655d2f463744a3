"""DHMD: Decoupled Hierarchical Multimodal Distillation (Li et al., TPAMI 2026).

DHMD is DMD (models/dmd.py) with a second, fine-grained distillation stage:

* coarse stage, DMD unchanged: each modality decoupled into a modality-irrelevant part
  c_m and a modality-exclusive part s_m; a GD-Unit in each space learns per-sample edges
  teacher -> student and distils the branch outputs along them;
* fine stage, cross-modal dictionary matching: one learnable dictionary of K atoms in
  the irrelevant space and one in the exclusive space, both shared by the three
  modalities. Every present step of c_m (s_m) is expressed as activations over the
  atoms; the modality's activations a_m (B, K) are their mean over its present steps.
  The matching loss distils along the same edges as the coarse stage, at the level of
  the activations: for each edge t -> s, KL(a_t || a_s) with the teacher side detached,
  weighted by (edge + prior) like the GD-Unit's terms. What the face, the voice and the
  words express is then matched atom by atom, not only as whole vectors;
* a rebuilding term keeps the atoms meaningful: each step's unit feature should be close
  to its activation-weighted mix of unit atoms (soft dictionary learning, as a codebook).

What is ours: no code or full text of the paper was public when this was written; the
design notes and the issue summarise it (shared dictionaries in both spaces, activations
matched across modalities, graph edges and activations both interpretable). The exact
activation function, pooling, loss form and weights here are our reading: cosine
similarity to unit atoms at temperature ``dict_tau`` (softmax over atoms), mean pooling
over present steps, KL matching weighted by the coarse edges. The edges are detached in
the matching loss: the coarse stage decides who teaches whom, the fine stage follows and
does not reshape the graph. Predictions do not read the activations; the fine stage
shapes c_m and s_m through its losses, and the activations are shown beside the edges.

Missing modalities: an absent modality has no activations to match or to teach with;
every matching term on an edge that touches it is dropped (models.graph_distill.edge_mask).
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

from models.config import MODALITIES, ModelConfig
from models.dmd import DMD, DMDOutput
from models.graph_distill import EDGES, edge_mask, edge_prior
from models.layers import masked_mean


@dataclass
class DHMDOutput(DMDOutput):
    """DMD's outputs plus the fine stage's. Per-modality fields map "L"/"A"/"V" to tensors."""

    atoms_homo: dict[str, torch.Tensor]  # (B, K) activations over the irrelevant-space atoms
    atoms_hetero: dict[str, torch.Tensor]  # (B, K) activations over the exclusive-space atoms
    dict_error_homo: dict[str, torch.Tensor]  # (B, T) per-step rebuilding error of c_m
    dict_error_hetero: dict[str, torch.Tensor]  # (B, T) per-step rebuilding error of s_m


class Dictionary(nn.Module):
    """K learnable atoms in one space, shared by every modality."""

    def __init__(self, atoms: int, dim: int, tau: float):
        super().__init__()
        self.atoms = nn.Parameter(torch.randn(atoms, dim) / math.sqrt(dim))
        self.tau = tau

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """x (B, T, d), mask (B, T) -> activations (B, K) pooled over present steps, and
        the per-step rebuilding error (B, T): |unit(x_t) - a_t @ unit(atoms)|^2."""
        unit = F.normalize(x, dim=-1, eps=1e-6)
        atoms = F.normalize(self.atoms, dim=-1, eps=1e-6)  # (K, d)
        act = F.softmax(unit @ atoms.t() / self.tau, dim=-1)  # (B, T, K)
        error = (act @ atoms - unit).pow(2).sum(-1)  # (B, T)
        return masked_mean(act, mask), error


class DHMD(DMD):
    """DMD's network plus one dictionary in each decoupled space."""

    def __init__(self, cfg: ModelConfig):
        super().__init__(cfg)
        # 8. the fine stage: a dictionary in the irrelevant (homo) and the exclusive (hetero) space
        self.dict_homo = Dictionary(cfg.dict_atoms, cfg.d, cfg.dict_tau)
        self.dict_hetero = Dictionary(cfg.dict_atoms, cfg.d, cfg.dict_tau)

    def forward(self, inputs: dict[str, torch.Tensor], masks: dict[str, torch.Tensor]) -> DHMDOutput:
        out = super().forward(inputs, masks)
        atoms_homo, atoms_hetero, error_homo, error_hetero = {}, {}, {}, {}
        for m in MODALITIES:
            atoms_homo[m], error_homo[m] = self.dict_homo(out.c[m], out.masks[m])
            atoms_hetero[m], error_hetero[m] = self.dict_hetero(out.s[m], out.masks[m])
        coarse = {f.name: getattr(out, f.name) for f in dataclasses.fields(out)}
        return DHMDOutput(**coarse, atoms_homo=atoms_homo, atoms_hetero=atoms_hetero,
                          dict_error_homo=error_homo, dict_error_hetero=error_hetero)


def network_for(cfg: ModelConfig) -> DMD:
    """The network a config names: DMD, or DHMD when ``cfg.architecture == "dhmd"``."""
    return DHMD(cfg) if cfg.architecture == "dhmd" else DMD(cfg)


def matching_loss(kind: str, atoms: dict[str, torch.Tensor], edges: torch.Tensor,
                  present: torch.Tensor) -> torch.Tensor:
    """Cross-modal dictionary matching in one space: sum over edges t -> s of the batch mean
    of (edge + prior) x KL(a_t || a_s), teacher and edges detached; 0 on edges that touch
    an absent modality. atoms: (B, K) per modality; edges: (B, 6); present: (B, 3)."""
    prior = edge_prior(kind).to(edges.device, edges.dtype)
    valid = edge_mask(present).to(edges.dtype)
    eps = 1e-6
    loss = edges.new_zeros(())
    for x, (t, s) in enumerate(EDGES):
        teacher = atoms[t].detach().clamp_min(eps)
        kl = (teacher * (teacher.log() - atoms[s].clamp_min(eps).log())).sum(1)  # (B,)
        weight = (edges[:, x].detach() + prior[x]) * valid[:, x]
        loss = loss + (weight * kl).mean()
    return loss


def dictionary_fit(errors: dict[str, torch.Tensor], masks: dict[str, torch.Tensor]) -> torch.Tensor:
    """The rebuilding error averaged over each modality's present steps, summed over modalities."""
    total = next(iter(errors.values())).new_zeros(())
    for m in MODALITIES:
        weights = masks[m].to(errors[m].dtype)
        total = total + (errors[m] * weights).sum() / weights.sum().clamp_min(1.0)
    return total
