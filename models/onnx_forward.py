"""Serving's forward on the CPU in ONNX Runtime (issue 15): one window, and batches.

At batch 1 the forward's arithmetic is tiny (the bundled student: about 0.1 GFLOP) and its
time is per-operator cost: ~1,900 aten calls, each paying Python and the dispatcher.
ONNX Runtime runs the same graph (models/fast.py's forward, traced once at batch 1) as a
flat list of kernels with constant-folded shapes: about half the time.

A batch's time is in its matmuls, softmaxes and norms. Traced with each encoder alone
(plain Gemm and LayerNormalization nodes, no stacking copies) and a batch axis of any size,
ONNX Runtime runs the DMD authors' MOSI configuration at batch 64 in about 0.55-0.6 of
torch's time (each encoder alone in both) on this project's 2-core machine: its softmax
alone is several times faster than torch's over rows of 50. That graph serves batches of
two windows or more.

Export needs ``onnx`` (torch's TorchScript exporter writes through it) and serving needs
``onnxruntime`` (MIT; faster-whisper already depends on it). Without either, or if the
export fails, ``build_session`` returns None with the reason and serving stays on torch.
"""

from __future__ import annotations

import dataclasses
import io
import logging
import warnings
from collections.abc import Callable

import torch

from models.config import MODALITIES

logger = logging.getLogger(__name__)

_INPUTS = [f"x_{m}" for m in MODALITIES] + [f"mask_{m}" for m in MODALITIES]


def flatten(out) -> tuple[list[torch.Tensor], list[tuple[str, str | None]]]:
    """A ServingOutput's tensors in field order, and where each came from: (field, None) for
    a tensor field, (field, modality) for a per-modality one; None fields are left out."""
    tensors, layout = [], []
    for field in dataclasses.fields(out):
        value = getattr(out, field.name)
        if isinstance(value, torch.Tensor):
            tensors.append(value)
            layout.append((field.name, None))
        elif isinstance(value, dict):
            for m in MODALITIES:
                tensors.append(value[m])
                layout.append((field.name, m))
    return tensors, layout


def unflatten(cls, tensors: list[torch.Tensor], layout: list[tuple[str, str | None]]):
    """flatten's inverse: the ServingOutput ``cls`` with None where the layout has nothing."""
    fields: dict = {f.name: None for f in dataclasses.fields(cls)}
    for tensor, (name, m) in zip(tensors, layout):
        if m is None:
            fields[name] = tensor
        else:
            fields[name] = fields[name] or {}
            fields[name][m] = tensor
    return cls(**fields)


class _Traced(torch.nn.Module):
    """The forward with flat tensor arguments and results, as the exporter wants it; the
    network is a submodule so that its parameters become the graph's weights."""

    def __init__(self, forward: Callable, net: torch.nn.Module):
        super().__init__()
        self.forward_fn = forward
        self.net = net

    def forward(self, *args: torch.Tensor) -> tuple[torch.Tensor, ...]:
        inputs = dict(zip(MODALITIES, args[:3]))
        masks = dict(zip(MODALITIES, args[3:]))
        return tuple(flatten(self.forward_fn(inputs, masks))[0])


class OnnxForward:
    """One ONNX Runtime session that serves a FastDMD forward (float32, CPU): one window, or
    (``batched``) batches of two or more."""

    def __init__(self, session, layout: list[tuple[str, str | None]], output_cls, batched: bool = False):
        self.session = session
        self.layout = layout
        self.output_cls = output_cls
        self.batched = batched

    def serves(self, inputs: dict[str, torch.Tensor], masks: dict[str, torch.Tensor]) -> bool:
        """Whether this session takes these tensors: its batch size, every input float32 on
        the CPU (masks of any dtype are given to it as float32)."""
        n = inputs["L"].size(0)
        size = n > 1 if self.batched else n == 1  # (an empty batch: torch's)
        return size and all(x.dtype == torch.float32 and x.device.type == "cpu" for x in inputs.values())

    def __call__(self, inputs: dict[str, torch.Tensor], masks: dict[str, torch.Tensor]):
        feed = {f"x_{m}": inputs[m].contiguous().numpy() for m in MODALITIES}
        feed.update({f"mask_{m}": masks[m].to(torch.float32).contiguous().numpy() for m in MODALITIES})
        outs = self.session.run(None, feed)
        return unflatten(self.output_cls, [torch.from_numpy(o) for o in outs], self.layout)


def cpu_session(graph: bytes | str, threads: int = 1, spin: bool = False):
    """An ONNX Runtime CPU session over ``graph`` (the model's bytes or a file's path) with
    ``threads`` threads for an operator, the caller's among them (1: the calling thread alone,
    no pool to wake), whose helpers sleep between operators (a pipeline's other workers share
    the cores) unless ``spin``; every graph optimisation, quiet."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.log_severity_level = 3
    if threads > 1:
        options.add_session_config_entry("session.intra_op.allow_spinning", "1" if spin else "0")
    return ort.InferenceSession(graph, options, providers=["CPUExecutionProvider"])


def build_session(forward: Callable, net: torch.nn.Module, output_cls,
                  batched: bool = False) -> tuple[OnnxForward | None, str]:
    """Trace ``forward`` (inputs, masks) -> ``output_cls`` on ``net``'s config and open it in
    ONNX Runtime: at batch 1 on one thread, or (``batched``) with a batch axis of any size on
    torch's thread count, helpers spinning between operators (a batch is dense work: at batch
    64 on 2 threads about 5 % faster than sleeping helpers). Returns (the session, "") or
    (None, why not)."""
    try:
        import onnx  # noqa: F401  (torch's exporter writes through it)
        import onnxruntime  # noqa: F401
    except ImportError as e:
        return None, f"{e.name} is not installed"
    cfg = net.cfg
    gen = torch.Generator().manual_seed(0)
    batch = 4 if batched else 1
    # an example with some steps missing, so that every mask path is in the graph
    example = [torch.randn(batch, cfg.steps[m], cfg.dims[m], generator=gen) for m in MODALITIES]
    example += [(torch.rand(batch, cfg.steps[m], generator=gen) > 0.3).float() for m in MODALITIES]
    buffer = io.BytesIO()
    try:
        with torch.no_grad():
            out, layout = flatten(forward(dict(zip(MODALITIES, example[:3])), dict(zip(MODALITIES, example[3:]))))
        # a batch graph: dimension 0 of every input and output is the batch, of any size
        axes = {name: {0: "batch"} for name in _INPUTS + [f"out_{i}" for i in range(len(out))]} if batched else None
        with warnings.catch_warnings():
            # the exporter warns that traced shapes become constants (they are: batch 1, the
            # config's steps) and that its TorchScript path is deprecated
            warnings.simplefilter("ignore")
            torch.onnx.export(_Traced(forward, net).eval(), tuple(example), buffer, dynamo=False,
                              input_names=_INPUTS, output_names=[f"out_{i}" for i in range(len(out))],
                              dynamic_axes=axes, opset_version=17)
        # batch 1's kernels are too small to split: one thread, no pool to wake
        session = cpu_session(buffer.getvalue(), threads=torch.get_num_threads() if batched else 1, spin=batched)
    except Exception as e:  # an exporter or runtime that cannot take this graph: serve with torch
        return None, f"{type(e).__name__}: {e}"
    return OnnxForward(session, layout, output_cls, batched=batched), ""
