"""An inference-only forward of a DMD or DHMD network: what serving reads, nothing else.

The training forward (models/dmd.py) computes everything the losses need: the decoders'
reconstructions, the self-regression re-encoding, the aligned c_m for the margin loss,
the dictionaries' rebuilding errors. Serving reads none of them. ``FastDMD`` wraps a
built network (same weights, no copies of the big ones) and computes only the fused
sentiment, the class probabilities, the seven branch predictions, each channel's
reading, the two GD-Units' edges and, for DHMD, the dictionary activations.

It is also cheaper per layer, which is what matters at batch 1 (Python overhead, not
arithmetic, dominates a forward of a few ms):

* the twelve encoders that share a width (the three self-attentions over c_m and the six
  crossmodal transformers) run as ONE stack of batched layers, the three memories as
  another: each layer is a handful of batched matmuls (``torch.baddbmm`` over stacked
  weights) and one fused ``scaled_dot_product_attention``, instead of nine or three
  ``nn.MultiheadAttention`` calls. Sequences of different lengths are padded to the
  longest; padded keys are masked and padded queries dropped afterwards, so the answer
  is the same (up to float rounding). Where padding would more than double the work
  (very unequal step counts), and for CPU batches of ALONE_FROM windows or more (where
  arithmetic, not calls, is the cost), each encoder runs alone through the same code;
* s_m and c_m come from one matmul per modality (the two 1x1 convolutions side by side);
* each GD-Unit's six edge scores come from two small matmuls over the stacked modalities
  (W_edge([z_s, z_t]) = W_s z_s + W_t z_t + b) instead of six concatenations;
* positions, packed weights and masks are built once per shape, not per call.

A window alone on the CPU (batch 1, live serving) goes further: the wrapper traces this
forward once and runs it in ONNX Runtime (models/onnx_forward.py), about 2x faster again;
with runtime "onnxruntime" batches go there too (a second graph, each encoder alone: the
MOSI reference configuration at batch 64 in 0.55-0.6 of torch's time, the bundled student
at batch 16-64 in 0.7-0.75 of it with 1 thread and about the same with 2); see RUNTIMES.

Weights are packed (and exported) when the wrapper is built: build it again after changing
the network's weights (serving never does). Training never goes through here.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from models.config import MODALITIES
from models.dmd import DMD
from models.graph_distill import EDGES, GDUnit, edge_weights
from models.layers import (
    AttentionEncoder,
    ResidualHead,
    key_padding,
    masked_max,
    masked_mean,
    sinusoidal_positions,
)

logger = logging.getLogger(__name__)

ALONE_FROM = 4
"""On the CPU, batches of this many windows or more run each encoder alone: stacking saves
calls, which is what batch 1 costs, but pads and copies, which is what a batch costs (the
bundled student at batch 4 / 16 / 64, 1 thread: 5.7 / 14.8 / 53 ms alone against 7.1 / 21 /
94 ms stacked; at batch 1 and 2 stacked wins, 2.1 and 3.5 ms against 2.9 and 4.4 ms). A
GPU forward always stacks (fewer kernel launches)."""

PAD_LIMIT = 2.0
"""Group encoders of different lengths only while the padded work stays under this many
times the real work (sum of the padded lengths over the sum of the real ones)."""

_TEACHER = torch.tensor([MODALITIES.index(t) for t, _ in EDGES])
_STUDENT = torch.tensor([MODALITIES.index(s) for _, s in EDGES])


@dataclass
class ServingOutput:
    """What serving reads from a forward pass. Per-modality fields map "L"/"A"/"V" to tensors;
    each equals the field of the same name in models.dmd.DMDOutput (and DHMDOutput)."""

    sentiment: torch.Tensor  # (B,) fused prediction, unclipped
    class_logits: torch.Tensor | None  # (B, n_classes) or None
    channel_class_logits: dict[str, torch.Tensor] | None  # (B, n_classes) per modality, or None
    logits_homo: dict[str, torch.Tensor]  # (B, 1) each
    logits_hetero: dict[str, torch.Tensor]  # (B, 1) each
    logit_c: torch.Tensor  # (B, 1)
    edges_homo: torch.Tensor  # (B, 6) in graph_distill.EDGES order
    edges_hetero: torch.Tensor  # (B, 6)
    present: torch.Tensor  # (B, 3) 1 where the modality has any present step
    atoms_homo: dict[str, torch.Tensor] | None = None  # DHMD: (B, K) activations, else None
    atoms_hetero: dict[str, torch.Tensor] | None = None

    def branch_predictions(self) -> dict[str, torch.Tensor]:
        """The seven branch predictions, (B,) each (as DMDOutput.branch_predictions)."""
        out = {f"{m}_homo": self.logits_homo[m].squeeze(1) for m in MODALITIES}
        out.update({f"{m}_hetero": self.logits_hetero[m].squeeze(1) for m in MODALITIES})
        out["c_fusion"] = self.logit_c.squeeze(1)
        return out


class _Stack:
    """The attention encoders of one width, their layers' weights stacked along a group
    axis G so that layer l of every encoder runs as one batched step.

    A member is (encoder, is_cross): self-attention reads keys from its own stream (normed
    by norm_q), crossmodal attention from a fixed source (normed by norm_kv).
    """

    def __init__(self, encoders: list[AttentionEncoder], cross: list[bool]):
        first = encoders[0]
        self.dim = first.norm.normalized_shape[0]
        self.heads = first.layers[0].attn.num_heads
        self.eps = first.norm.eps
        self.cross = cross
        self.n_cross = sum(cross)
        if any(cross[self.n_cross:]) or len({len(e.layers) for e in encoders}) != 1:
            raise ValueError("a stack holds its crossmodal encoders first, all with the same depth")
        d = self.dim

        def stack(get) -> torch.Tensor:
            return torch.stack([get(e) for e in encoders]).detach()

        self.layers = []
        for i in range(len(first.layers)):
            def attn(e, i=i):
                return e.layers[i].attn

            def layer(e, i=i):
                return e.layers[i]

            w_in = stack(lambda e: attn(e).in_proj_weight)  # (G, 3d, d)
            b_in = stack(lambda e: attn(e).in_proj_bias)  # (G, 3d)
            self.layers.append({
                "ln_q": (stack(lambda e: layer(e).norm_q.weight).unsqueeze(1),
                         stack(lambda e: layer(e).norm_q.bias).unsqueeze(1)),
                "ln_kv": (stack(lambda e: layer(e).norm_kv.weight)[: self.n_cross].unsqueeze(1),
                          stack(lambda e: layer(e).norm_kv.bias)[: self.n_cross].unsqueeze(1)),
                "w_q": w_in[:, :d].transpose(1, 2).contiguous(), "b_q": b_in[:, None, :d].contiguous(),
                "w_kv": w_in[:, d:].transpose(1, 2).contiguous(), "b_kv": b_in[:, None, d:].contiguous(),
                "w_o": stack(lambda e: attn(e).out_proj.weight).transpose(1, 2).contiguous(),
                "b_o": stack(lambda e: attn(e).out_proj.bias).unsqueeze(1),
                "ln_ff": (stack(lambda e: layer(e).norm_ff.weight).unsqueeze(1),
                          stack(lambda e: layer(e).norm_ff.bias).unsqueeze(1)),
                "w_1": stack(lambda e: layer(e).ff[0].weight).transpose(1, 2).contiguous(),
                "b_1": stack(lambda e: layer(e).ff[0].bias).unsqueeze(1),
                "w_2": stack(lambda e: layer(e).ff[3].weight).transpose(1, 2).contiguous(),
                "b_2": stack(lambda e: layer(e).ff[3].bias).unsqueeze(1),
            })
        self.ln_out = (stack(lambda e: e.norm.weight).unsqueeze(1), stack(lambda e: e.norm.bias).unsqueeze(1))

    def _norm(self, x: torch.Tensor, affine: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
        """LayerNorm with per-group weights: x (G, N, d), weights (G, 1, d)."""
        if x.size(0) == 1:  # one encoder: a plain LayerNorm (one fused node in ONNX Runtime)
            return F.layer_norm(x, (self.dim,), affine[0][0, 0], affine[1][0, 0], self.eps)
        return torch.addcmul(affine[1], F.layer_norm(x, (self.dim,), eps=self.eps), affine[0])

    def __call__(self, x: torch.Tensor, source: torch.Tensor | None, allowed: torch.Tensor | None,
                 keep: torch.Tensor) -> torch.Tensor:
        """x: (G, B, T, d) embedded queries, zero-padded to a common T; source: (n_cross, B, S, d)
        embedded sources of the crossmodal members (S = T), or None; allowed: (G*B, 1, 1, S)
        bool, the keys each query may attend to (None: all); keep: (G, B, T, 1) the steps to keep.
        Returns (G, B, T, d), zero where keep is 0."""
        G, B, T, d = x.shape
        h, hd = self.heads, d // self.heads
        x = x.reshape(G, B * T, d)
        src = None if source is None else source.reshape(self.n_cross, B * T, d)
        for p in self.layers:
            q_in = self._norm(x, p["ln_q"])
            if src is None:
                kv_in = q_in
            elif self.n_cross == G:
                kv_in = self._norm(src, p["ln_kv"])
            else:
                kv_in = torch.cat([self._norm(src, p["ln_kv"]), q_in[self.n_cross:]])
            q = _linear(q_in, p["w_q"], p["b_q"])  # (G, B*T, d)
            kv = _linear(kv_in, p["w_kv"], p["b_kv"])  # (G, B*T, 2d)
            q = q.view(G * B, T, h, hd).transpose(1, 2)
            k, v = kv.view(G * B, T, 2, h, hd).permute(2, 0, 3, 1, 4)
            if torch.jit.is_tracing():
                att = _explicit_attention(q, k, v, allowed)
            else:
                att = F.scaled_dot_product_attention(q, k, v, attn_mask=allowed)  # (G*B, h, T, hd)
            att = att.transpose(1, 2).reshape(G, B * T, d)
            x = x + _linear(att, p["w_o"], p["b_o"])
            ff = _linear(self._norm(x, p["ln_ff"]), p["w_1"], p["b_1"]).relu_()
            x = x + _linear(ff, p["w_2"], p["b_2"])
        return self._norm(x, self.ln_out).view(G, B, T, d) * keep


@dataclass
class _Plan:
    """Which encoders run together: stacks of width d (the crossmodal and self-attention
    encoders) and of width 2d (the memories), each with the indices of its members."""

    stacks_d: list[_Stack]
    groups_d: list[list[int]]
    stacks_mem: list[_Stack]
    groups_mem: list[list[int]]


RUNTIMES = ("auto", "torch", "onnxruntime")
"""Who runs the forward on the CPU in float32: "onnxruntime" (models/onnx_forward.py: the
same graph without torch's per-operator cost, exported once for one window and once for
batches of any size, each encoder alone), "torch", or "auto": a window alone in ONNX Runtime
where the export works (else torch, with a warning), batches in torch (serving's file runs,
which would pay the batch graph's export for a few dozen windows). Every GPU forward runs
in torch."""


class FastDMD:
    """The inference-only forward of a built DMD or DHMD network (in eval mode)."""

    def __init__(self, net: DMD, runtime: str = "auto"):
        if net.training:
            raise ValueError("FastDMD serves a network in eval mode: call net.eval() first")
        if runtime not in RUNTIMES:
            raise ValueError(f"runtime {runtime!r}: use one of {', '.join(RUNTIMES)}")
        self.net = net
        cfg = net.cfg
        self.cfg = cfg
        self.is_dhmd = hasattr(net, "dict_homo")
        steps = [cfg.steps[m] for m in MODALITIES]
        # 0. the input standardisation (buffers, read live)
        self.mean = {m: getattr(net, f"input_mean_{m}") for m in MODALITIES}
        self.std = {m: getattr(net, f"input_std_{m}") for m in MODALITIES}
        # 2. [s_m, c_m] = proj_m @ [W_s_m; W_c]^T, one matmul per modality
        if cfg.decouple:
            self.w_sc = {m: torch.cat([net.encoder_s[m].weight[:, :, 0], net.encoder_c.weight[:, :, 0]])
                         .t().contiguous().detach() for m in MODALITIES}  # (d, 2d)
        # 3-4. encoders: the six crossmodal ones (target t <- source s) and the three
        # self-attentions over c_m share width d; the memories have width 2d
        self.cross_pairs = [(t, s) for t in MODALITIES for s in MODALITIES if s != t]
        self.targets_d = [t for t, _ in self.cross_pairs] + list(MODALITIES)
        stacked = _padding_ratio([cfg.steps[m] for m in self.targets_d]) <= PAD_LIMIT
        self.stacked = self._plan(stacked, _padding_ratio(steps) <= PAD_LIMIT)
        # each encoder alone: what CPU batches of ALONE_FROM windows or more run (below); its
        # packed weights are a second copy, not made for a network on a GPU (which stacks)
        weight = net.proj["L"].weight
        already = len(self.stacked.groups_d) > 1 and len(self.stacked.groups_mem) > 1
        self.alone = self.stacked if weight.device.type != "cpu" or already else self._plan(False, False)
        self._positions: dict[tuple, torch.Tensor] = {}
        # who serves on the CPU in float32 (None: torch): one window, and batches of more
        self.onnx = self.onnx_batches = None  # models.onnx_forward.OnnxForward
        on_cpu = weight.device.type == "cpu" and weight.dtype == torch.float32
        if runtime == "onnxruntime" or (runtime == "auto" and on_cpu):
            self.onnx = self._export(self._forward, batched=False, required=runtime == "onnxruntime")
        if runtime == "onnxruntime":
            # a batch's time is in its matmuls, softmaxes and norms, which ONNX Runtime
            # runs faster one encoder at a time (plain Gemm and LayerNormalization nodes,
            # no stacking copies) than stacked: the batch graph is traced with that plan
            self.onnx_batches = self._export(lambda i, m: self._forward(i, m, self.alone), batched=True,
                                             required=True)

    def _plan(self, stack_d: bool, stack_mem: bool) -> _Plan:
        """The encoders' stacks: every encoder of a width in one stack, or each alone."""
        net = self.net
        width_d = [net.cross[f"{t}{s}"] for t, s in self.cross_pairs] + [net.self_attn_c[m] for m in MODALITIES]
        is_cross = [True] * len(self.cross_pairs) + [False] * len(MODALITIES)
        groups_d = [list(range(len(width_d)))] if stack_d else [[i] for i in range(len(width_d))]
        memories = [net.memory[m] for m in MODALITIES]
        groups_mem = [[0, 1, 2]] if stack_mem else [[0], [1], [2]]
        return _Plan(
            stacks_d=[_Stack([width_d[i] for i in g], [is_cross[i] for i in g]) for g in groups_d],
            groups_d=groups_d,
            stacks_mem=[_Stack([memories[i] for i in g], [False] * len(g)) for g in groups_mem],
            groups_mem=groups_mem,
        )

    def _export(self, forward, batched: bool, required: bool):
        """``forward`` in an ONNX Runtime session (models/onnx_forward.py), or None with a
        warning where it cannot be (an error where ``required``)."""
        from models.onnx_forward import build_session

        started = time.perf_counter()
        what = "batch" if batched else "one-window"
        session, why = build_session(forward, self.net, ServingOutput, batched=batched)
        if session is None:
            if required:
                raise RuntimeError(f"cannot serve in ONNX Runtime: {why}")
            logger.warning("%s forward stays in torch (about 2x slower): %s", what, why)
        else:
            logger.info("%s forward exported to ONNX Runtime in %.1f s", what, time.perf_counter() - started)
        return session

    def close(self) -> None:
        """Let the ONNX Runtime sessions go now (idempotent); later forwards are served by the
        torch path."""
        self.onnx = self.onnx_batches = None

    # -- helpers -------------------------------------------------------------------------
    def _embed(self, x: torch.Tensor) -> torch.Tensor:
        """AttentionEncoder._embed at inference: sqrt(width) x + positions (cached per shape)."""
        key = (x.size(1), x.size(2), x.device, x.dtype)
        pos = self._positions.get(key)
        if pos is None:
            pos = sinusoidal_positions(x.size(1), x.size(2), x.device).to(x.dtype)
            self._positions[key] = pos
        return torch.add(pos, x, alpha=math.sqrt(x.size(2)))

    def _run(self, stacks: list[_Stack], groups: list[list[int]], x: list[torch.Tensor],
             source: list[torch.Tensor | None], x_mask: list[torch.Tensor],
             key_mask: list[torch.Tensor]) -> list[torch.Tensor]:
        """Run every encoder: x[i] (B, T_i, w) embedded input, source[i] its embedded source
        (None for self-attention), x_mask[i] (B, T_i), key_mask[i] (B, S_i) presence of its
        keys. Returns each encoder's output, (B, T_i, w), zero on absent steps."""
        out: list[torch.Tensor] = [None] * len(x)  # type: ignore[list-item]
        for stack, group in zip(stacks, groups):
            lengths = [x[i].size(1) for i in group] + [source[i].size(1) for i in group if source[i] is not None]
            T = max(lengths)
            xs = torch.stack([_pad(x[i], T) for i in group])  # (G, B, T, w)
            srcs = [source[i] for i in group if source[i] is not None]
            src = torch.stack([_pad(s, T) for s in srcs]) if srcs else None
            allowed = torch.stack([_allowed(key_mask[i], T) for i in group])  # (G, B, T)
            keep = torch.stack([_pad(x_mask[i].unsqueeze(-1), T) for i in group]) > 0
            G, B = xs.shape[:2]
            # every key allowed (all steps present, nothing padded): no mask, SDPA's fastest path;
            # a traced graph keeps the mask (the trace would freeze this data-dependent choice)
            tracing = torch.jit.is_tracing()
            mask = None if not tracing and bool(allowed.all()) else allowed.view(G * B, 1, 1, T)
            y = stack(xs, src, mask, keep.to(xs.dtype))
            for j, i in enumerate(group):
                out[i] = y[j, :, : x[i].size(1)]
        return out

    # -- the forward -----------------------------------------------------------------------
    @torch.inference_mode()
    def __call__(self, inputs: dict[str, torch.Tensor], masks: dict[str, torch.Tensor]) -> ServingOutput:
        """inputs[m]: (B, T_m, dims[m]); masks[m]: (B, T_m), 1 present, 0 missing."""
        cfg = self.cfg
        batch = inputs["L"].size(0) if inputs["L"].dim() else 0
        for m in MODALITIES:
            x, mask = inputs[m], masks[m]
            if x.dim() != 3 or x.size(0) != batch or x.size(1) != cfg.steps[m] or x.size(2) != cfg.dims[m]:
                raise ValueError(
                    f"modality {m}: expected ({batch}, {cfg.steps[m]}, {cfg.dims[m]}), got {tuple(x.shape)}"
                )
            if tuple(mask.shape) != (batch, cfg.steps[m]):
                raise ValueError(f"mask {m}: expected ({batch}, {cfg.steps[m]}), got {tuple(mask.shape)}")
        for session in (self.onnx, self.onnx_batches):
            if session is not None and session.serves(inputs, masks):
                return session(inputs, masks)
        return self._forward(inputs, masks)

    def _forward(self, inputs: dict[str, torch.Tensor], masks: dict[str, torch.Tensor],
                 plan: _Plan | None = None) -> ServingOutput:
        """The forward in torch (also what models.onnx_forward traces); ``plan``: the
        encoders' stacks (None: ``alone`` for a CPU batch of ALONE_FROM windows or more,
        else ``stacked``)."""
        net, cfg = self.net, self.cfg
        if plan is None:
            x = inputs["L"]
            plan = self.alone if x.device.type == "cpu" and x.size(0) >= ALONE_FROM else self.stacked
        dtype = inputs["L"].dtype
        masks = {m: masks[m].to(dtype) for m in MODALITIES}
        present = torch.stack([(masks[m].sum(1) > 0).to(dtype) for m in MODALITIES], dim=1)  # (B, 3)

        # 1-2. projection of the standardised, zeroed inputs; s_m and c_m
        s, c = {}, {}
        for m in MODALITIES:
            keep = masks[m].unsqueeze(-1)
            # a missing step's values are never read (NaN there must not reach the output)
            x = torch.where(keep > 0, (inputs[m] - self.mean[m]) / self.std[m], 0.0) * keep
            proj = F.conv1d(x.transpose(1, 2), net.proj[m].weight, padding=cfg.kernels[m] // 2)
            proj = proj.transpose(1, 2) * keep  # (B, T, d)
            if cfg.decouple:
                s[m], c[m] = torch.matmul(proj, self.w_sc[m]).split(cfg.d, dim=2)
            else:
                s[m] = c[m] = proj

        # 3. homogeneous heads
        logits_homo, repr_homo = {}, {}
        for m in MODALITIES:
            if cfg.homo_pooling == "flatten":
                read = c[m].flatten(1)
            else:
                read = torch.cat([masked_mean(c[m], masks[m]), masked_max(c[m], masks[m])], dim=1)
            logits_homo[m], repr_homo[m], _ = _head(net.head_homo[m], read)

        # 3-4. the self-attentions over c_m and the crossmodal transformers, in one stack
        emb_s = {m: self._embed(s[m]) for m in MODALITIES}
        xs = [emb_s[t] for t, _ in self.cross_pairs] + [self._embed(c[m]) for m in MODALITIES]
        sources = [emb_s[src] for _, src in self.cross_pairs] + [None] * len(MODALITIES)
        x_masks = [masks[t] for t in self.targets_d]
        key_masks = [masks[src] for _, src in self.cross_pairs] + [masks[m] for m in MODALITIES]
        y = self._run(plan.stacks_d, plan.groups_d, xs, sources, x_masks, key_masks)
        n = len(self.cross_pairs)
        c_att = [masked_mean(y[n + i], masks[m]) for i, m in enumerate(MODALITIES)]
        c_fusion = torch.cat(c_att, dim=1)  # (B, 3d)
        logit_c, _, _ = _head(net.head_c, c_fusion)
        crossed = {t: torch.cat([y[i] for i, (tt, _) in enumerate(self.cross_pairs) if tt == t], dim=2)
                   for t in MODALITIES}  # (B, T_t, 2d)
        mem = self._run(plan.stacks_mem, plan.groups_mem, [self._embed(crossed[m]) for m in MODALITIES],
                        [None] * 3, [masks[m] for m in MODALITIES], [masks[m] for m in MODALITIES])
        logits_hetero, repr_hetero, last_h = {}, {}, {}
        for i, m in enumerate(MODALITIES):
            last_h[m] = masked_mean(mem[i], masks[m])  # (B, 2d)
            logits_hetero[m], _, repr_hetero[m] = _head(net.head_hetero[m], last_h[m])

        # 5. edges
        edges_homo = _edges(net.gd_homo, logits_homo, repr_homo, present)
        edges_hetero = _edges(net.gd_hetero, logits_hetero, repr_hetero, present)

        # 6. gated fusion
        gated = [torch.sigmoid(net.gate[m](last_h[m])) for m in MODALITIES]
        gated.append(torch.sigmoid(net.gate_c(c_fusion)))
        sentiment, _, fused = _head(net.head_fused, torch.cat(gated, dim=1))
        class_logits = net.head_classes(fused) if net.head_classes is not None else None
        channel_class_logits = None
        if net.head_classes_channel is not None:
            channel_class_logits = {m: net.head_classes_channel[m](F.relu(repr_homo[m])) for m in MODALITIES}

        atoms_homo = atoms_hetero = None
        if self.is_dhmd:  # the activations only; the rebuilding error is a training term
            atoms_homo = {m: _activations(net.dict_homo, c[m], masks[m]) for m in MODALITIES}
            atoms_hetero = {m: _activations(net.dict_hetero, s[m], masks[m]) for m in MODALITIES}
        return ServingOutput(
            sentiment=sentiment.squeeze(1), class_logits=class_logits, channel_class_logits=channel_class_logits,
            logits_homo=logits_homo, logits_hetero=logits_hetero, logit_c=logit_c,
            edges_homo=edges_homo, edges_hetero=edges_hetero, present=present,
            atoms_homo=atoms_homo, atoms_hetero=atoms_hetero,
        )


BATCHED_ROWS = 1024
"""Below this many rows per encoder one batched matmul serves every encoder of a stack (few
calls: batch 1 is bound by Python overhead); above it one matmul each (MKL's batched
matmul with a broadcast bias was about 1.5x slower than separate ones at batch 64)."""


def _linear(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
    """x (G, N, i) @ weight (G, i, o) + bias (G, 1, o), per group (on a GPU always one batched
    matmul: one kernel, and autocast applies to it, not to out= variants)."""
    if x.size(0) == 1:  # one encoder: a plain matmul with its bias (one Gemm in ONNX Runtime)
        return torch.addmm(bias[0], x[0], weight[0]).unsqueeze(0)
    if x.size(1) < BATCHED_ROWS or x.is_cuda or torch.jit.is_tracing():
        return torch.baddbmm(bias, x, weight)
    out = x.new_empty(x.size(0), x.size(1), weight.size(2))
    for g in range(x.size(0)):
        torch.addmm(bias[g], x[g], weight[g], out=out[g])
    return out


def _explicit_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
                        allowed: torch.Tensor | None) -> torch.Tensor:
    """scaled_dot_product_attention written out, for a traced graph: the exporter's own
    rendering of it broadcasts the mask to every score and guards against rows with no key
    (three full-size Where nodes per layer); here the mask is a (N, 1, 1, S) additive bias,
    and no row lacks a key (models.layers.key_padding)."""
    scores = torch.matmul(q, k.transpose(-2, -1)) * (1.0 / math.sqrt(q.size(-1)))
    if allowed is not None:
        scores = scores + torch.zeros_like(allowed, dtype=q.dtype).masked_fill(~allowed, float("-inf"))
    return torch.matmul(scores.softmax(-1), v)


def _padding_ratio(lengths: list[int]) -> float:
    return max(lengths) * len(lengths) / sum(lengths)


def _pad(x: torch.Tensor, steps: int) -> torch.Tensor:
    """Zero-pad (B, T, ...) along T to ``steps``."""
    extra = steps - x.size(1)
    if extra == 0:
        return x
    return torch.cat([x, x.new_zeros((x.size(0), extra) + tuple(x.shape[2:]))], dim=1)


def _allowed(mask: torch.Tensor, steps: int) -> torch.Tensor:
    """(B, steps) bool: the keys a query may attend to (models.layers.key_padding, inverted:
    the present steps, or every real step of a row with none present; never padding)."""
    return _pad(~key_padding(mask), steps)


def _head(head: ResidualHead, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """ResidualHead.forward at inference."""
    bottleneck = F.linear(x, head.proj1.weight, head.proj1.bias)
    h = torch.addmm(x, F.relu(bottleneck), head.proj2.weight.t(), beta=1).add_(head.proj2.bias)
    return F.linear(h, head.out.weight, head.out.bias), bottleneck, h


def _edges(gd: GDUnit, logits: dict[str, torch.Tensor], reprs: dict[str, torch.Tensor],
           present: torch.Tensor) -> torch.Tensor:
    """GDUnit.forward with the six edge scores from stacked modalities:
    W_edge([z_s, z_t]) = W_student z_s + W_teacher z_t + b."""
    logit = torch.stack([logits[m] for m in MODALITIES], dim=1)  # (B, 3, 1)
    rep = torch.stack([reprs[m] for m in MODALITIES], dim=1)  # (B, 3, r)
    z = torch.cat([gd.W_logit(logit), gd.W_repr(rep)], dim=2)  # (B, 3, 2g)
    half = z.size(2)
    w = gd.W_edge.weight  # (1, 4g): [student half, teacher half]
    as_student = torch.matmul(z, w[0, :half])  # (B, 3)
    as_teacher = torch.matmul(z, w[0, half:])
    scores = as_student[:, _STUDENT] + as_teacher[:, _TEACHER] + gd.W_edge.bias  # (B, 6)
    return edge_weights(scores, present, gd.alpha)


def _activations(dictionary, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Dictionary.forward's pooled activations (B, K), without the rebuilding error."""
    unit = F.normalize(x, dim=-1, eps=1e-6)
    atoms = F.normalize(dictionary.atoms, dim=-1, eps=1e-6)
    return masked_mean(F.softmax(unit @ atoms.t() / dictionary.tau, dim=-1), mask)
