"""DMD: Decoupled Multimodal Distilling (Li, Wang, Cui, CVPR 2023).

Reads top to bottom like the paper: project each modality, decouple it into a
modality-exclusive part s_m and a modality-irrelevant part c_m (one shared encoder),
rebuild the projection from both (self-regression), then

* homogeneous branch: c_m -> per-modality head, and self-attention over each c_m fused;
* heterogeneous branch: crossmodal transformers between the s_m, a memory per target;
* a GD-Unit on each branch, whose edges say which modality teaches which;
* gated fusion of everything into one sentiment score (and optional emotion classes);
* with classes, each modality's homogeneous representation also gets its own class head:
  the channel's own reading (what the face, the voice, the words say on their own).

Differences from the authors' code, on purpose: inputs carry a (B, T) presence mask per
modality (a wholly missing modality is all zeros); masked steps are zeroed before the
projection, so their content never matters; projections use 'same' padding so steps
and masks stay aligned; the heterogeneous and attention summaries pool over present
steps (masked mean) instead of taking the last step, which may be missing.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

from models.config import MODALITIES, ModelConfig
from models.graph_distill import GDUnit
from models.layers import AttentionEncoder, ResidualHead, masked_max, masked_mean

SENTIMENT_RANGE = 3.0


@dataclass
class DMDOutput:
    """What one forward pass gives. Per-modality fields map "L"/"A"/"V" to tensors."""

    sentiment: torch.Tensor  # (B,) fused prediction, unclipped
    class_logits: torch.Tensor | None  # (B, n_classes) or None
    channel_class_logits: dict[str, torch.Tensor] | None  # (B, n_classes) per modality, or None
    logits_homo: dict[str, torch.Tensor]  # (B, 1) each
    logits_hetero: dict[str, torch.Tensor]  # (B, 1) each
    logit_c: torch.Tensor  # (B, 1) fused homogeneous prediction
    repr_homo: dict[str, torch.Tensor]  # (B, d)
    repr_hetero: dict[str, torch.Tensor]  # (B, 2d)
    edges_homo: torch.Tensor  # (B, 6) in graph_distill.EDGES order
    edges_hetero: torch.Tensor  # (B, 6)
    fused: torch.Tensor  # (B, 9d) the representation before the output layer
    proj: dict[str, torch.Tensor]  # (B, T, d) projected inputs (reconstruction targets)
    recon: dict[str, torch.Tensor]  # (B, T, d)
    s: dict[str, torch.Tensor]  # (B, T, d) modality-exclusive
    s_r: dict[str, torch.Tensor]  # (B, T, d) s re-encoded from the reconstruction
    c: dict[str, torch.Tensor]  # (B, T, d) modality-irrelevant
    c_sim: dict[str, torch.Tensor]  # (B, d) c flattened and aligned, for the margin loss
    masks: dict[str, torch.Tensor]  # (B, T) the presence masks used
    present: torch.Tensor  # (B, 3) 1 where the modality has any present step
    decoupled: bool  # False for the no-decoupling ablation (s_m = c_m = proj_m)

    def branch_predictions(self) -> dict[str, torch.Tensor]:
        """The seven branch predictions, (B,) each, named for records and the GUI."""
        out = {f"{m}_homo": self.logits_homo[m].squeeze(1) for m in MODALITIES}
        out.update({f"{m}_hetero": self.logits_hetero[m].squeeze(1) for m in MODALITIES})
        out["c_fusion"] = self.logit_c.squeeze(1)
        return out


def _encoder(cfg: ModelConfig, dim: int, layers: int) -> AttentionEncoder:
    return AttentionEncoder(dim, cfg.heads, layers, cfg.attn_dropout, cfg.relu_dropout,
                            cfg.res_dropout, cfg.embed_dropout)


class DMD(nn.Module):
    """The DMD network for any input dims and step counts given by its config."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.cfg = cfg
        d = cfg.d
        # 0. input standardisation, fitted on the training split and saved with the weights
        for m in MODALITIES:
            self.register_buffer(f"input_mean_{m}", torch.zeros(cfg.dims[m]))
            self.register_buffer(f"input_std_{m}", torch.ones(cfg.dims[m]))
        # 1. temporal projection, no bias (as the paper)
        self.proj = nn.ModuleDict({
            m: nn.Conv1d(cfg.dims[m], d, cfg.kernels[m], padding=cfg.kernels[m] // 2, bias=False)
            for m in MODALITIES
        })
        # 2. decoupling: exclusive encoders s_m, ONE shared encoder c, decoders
        self.encoder_s = nn.ModuleDict({m: nn.Conv1d(d, d, 1, bias=False) for m in MODALITIES})
        self.encoder_c = nn.Conv1d(d, d, 1, bias=False)
        self.decoder = nn.ModuleDict({m: nn.Conv1d(2 * d, d, 1, bias=False) for m in MODALITIES})
        self.align_c = nn.ModuleDict({m: nn.Linear(cfg.steps[m] * d, d) for m in MODALITIES})
        # 3. homogeneous branch: flattened c_m heads, self-attention over c_m, fusion
        homo_in = {m: cfg.steps[m] * d if cfg.homo_pooling == "flatten" else 2 * d for m in MODALITIES}
        self.head_homo = nn.ModuleDict({
            m: ResidualHead(homo_in[m], d, 1, cfg.output_dropout) for m in MODALITIES
        })
        self.self_attn_c = nn.ModuleDict({m: _encoder(cfg, d, cfg.cross_layers) for m in MODALITIES})
        self.head_c = ResidualHead(3 * d, 3 * d, 1, cfg.output_dropout)
        # 4. heterogeneous branch: crossmodal transformers target <- source, then memory
        self.cross = nn.ModuleDict({
            f"{t}{s}": _encoder(cfg, d, cfg.cross_layers)
            for t in MODALITIES for s in MODALITIES if s != t
        })
        self.memory = nn.ModuleDict({m: _encoder(cfg, 2 * d, cfg.memory_layers) for m in MODALITIES})
        self.head_hetero = nn.ModuleDict({
            m: ResidualHead(2 * d, 2 * d, 1, cfg.output_dropout) for m in MODALITIES
        })
        # 5. the two graph distillation units
        self.gd_homo = GDUnit("homo", 1, d, cfg.gd_size_homo, cfg.gd_alpha)
        self.gd_hetero = GDUnit("hetero", 1, 2 * d, cfg.gd_size_hetero, cfg.gd_alpha)
        # 6. gated fusion
        self.gate = nn.ModuleDict({m: nn.Linear(2 * d, 2 * d) for m in MODALITIES})
        self.gate_c = nn.Linear(3 * d, 3 * d)
        fused_dim = 2 * d * 3 + 3 * d
        self.head_fused = ResidualHead(fused_dim, fused_dim, 1, cfg.output_dropout)
        self.head_classes = nn.Linear(fused_dim, len(cfg.class_names)) if cfg.class_names else None
        # 7. each channel's own reading of the classes, from its homogeneous representation
        self.head_classes_channel = nn.ModuleDict({
            m: nn.Linear(d, len(cfg.class_names)) for m in MODALITIES
        }) if cfg.class_names else None

    def set_input_statistics(self, mean: dict[str, torch.Tensor], std: dict[str, torch.Tensor]) -> None:
        """Standardise inputs with these per-feature statistics (from present training steps)."""
        for m in MODALITIES:
            getattr(self, f"input_mean_{m}").copy_(mean[m])
            getattr(self, f"input_std_{m}").copy_(std[m].clamp_min(1e-3))

    def forward(self, inputs: dict[str, torch.Tensor], masks: dict[str, torch.Tensor]) -> DMDOutput:
        """inputs[m]: (B, T_m, dims[m]); masks[m]: (B, T_m), 1 present, 0 missing."""
        cfg = self.cfg
        for m in MODALITIES:
            x = inputs[m]
            if x.dim() != 3 or x.size(1) != cfg.steps[m] or x.size(2) != cfg.dims[m]:
                raise ValueError(
                    f"modality {m}: expected (batch, {cfg.steps[m]}, {cfg.dims[m]}), got {tuple(x.shape)}"
                )
        masks = {m: masks[m].to(inputs[m].dtype) for m in MODALITIES}
        present = torch.stack([(masks[m].sum(1) > 0).to(inputs["L"].dtype) for m in MODALITIES], dim=1)
        keep = {m: masks[m].unsqueeze(-1) for m in MODALITIES}  # (B, T, 1)

        # 1. projection of the standardised, zeroed inputs, (B, T, d)
        proj = {}
        for m in MODALITIES:
            x = (inputs[m] - getattr(self, f"input_mean_{m}")) / getattr(self, f"input_std_{m}")
            # a missing step's values are never read: NaN or inf there (features a camera or
            # an extractor could not compute) must not reach the output through 0 * NaN
            x = torch.where(keep[m] > 0, x, 0.0) * keep[m]
            if m == "L":
                x = F.dropout(x, p=cfg.text_dropout, training=self.training)
            proj[m] = self.proj[m](x.transpose(1, 2)).transpose(1, 2) * keep[m]

        # 2. decoupling and self-regression
        def conv(layer: nn.Module, x: torch.Tensor) -> torch.Tensor:
            return layer(x.transpose(1, 2)).transpose(1, 2)

        if cfg.decouple:
            s = {m: conv(self.encoder_s[m], proj[m]) for m in MODALITIES}
            c = {m: conv(self.encoder_c, proj[m]) for m in MODALITIES}
            recon = {m: conv(self.decoder[m], torch.cat([s[m], c[m]], dim=2)) for m in MODALITIES}
            s_r = {m: conv(self.encoder_s[m], recon[m]) for m in MODALITIES}
        else:  # the ablation: one undecoupled feature feeds both branches; nothing to rebuild
            s = c = recon = s_r = proj
        c_sim = {m: self.align_c[m](c[m].flatten(1)) for m in MODALITIES}

        # 3. homogeneous branch
        logits_homo, repr_homo, c_att = {}, {}, {}
        for m in MODALITIES:
            if cfg.homo_pooling == "flatten":
                read = c[m].flatten(1)  # (B, T*d)
            else:
                read = torch.cat([masked_mean(c[m], masks[m]), masked_max(c[m], masks[m])], dim=1)  # (B, 2d)
            logits_homo[m], repr_homo[m], _ = self.head_homo[m](read)
            c_att[m] = masked_mean(self.self_attn_c[m](c[m], masks[m]), masks[m])  # (B, d)
        c_fusion = torch.cat([c_att[m] for m in MODALITIES], dim=1)  # (B, 3d)
        logit_c, _, _ = self.head_c(c_fusion)

        # 4. heterogeneous branch: each target attends to the two other modalities
        logits_hetero, repr_hetero, last_h = {}, {}, {}
        for t in MODALITIES:
            h = torch.cat([
                self.cross[f"{t}{src}"](s[t], masks[t], s[src], masks[src])
                for src in MODALITIES if src != t
            ], dim=2)  # (B, T_t, 2d)
            last_h[t] = masked_mean(self.memory[t](h, masks[t]), masks[t])  # (B, 2d)
            logits_hetero[t], _, repr_hetero[t] = self.head_hetero[t](last_h[t])

        # 5. graph distillation edges
        edges_homo = self.gd_homo(logits_homo, repr_homo, present)
        edges_hetero = self.gd_hetero(logits_hetero, repr_hetero, present)

        # 6. gated fusion
        gated = [torch.sigmoid(self.gate[m](last_h[m])) for m in MODALITIES]
        gated.append(torch.sigmoid(self.gate_c(c_fusion)))
        sentiment, _, fused = self.head_fused(torch.cat(gated, dim=1))
        class_logits = self.head_classes(fused) if self.head_classes is not None else None
        channel_class_logits = None
        if self.head_classes_channel is not None:
            channel_class_logits = {m: self.head_classes_channel[m](F.relu(repr_homo[m])) for m in MODALITIES}

        return DMDOutput(
            sentiment=sentiment.squeeze(1), class_logits=class_logits, channel_class_logits=channel_class_logits,
            logits_homo=logits_homo, logits_hetero=logits_hetero, logit_c=logit_c,
            repr_homo=repr_homo, repr_hetero=repr_hetero,
            edges_homo=edges_homo, edges_hetero=edges_hetero, fused=fused,
            proj=proj, recon=recon, s=s, s_r=s_r, c=c, c_sim=c_sim, masks=masks, present=present,
            decoupled=cfg.decouple,
        )
