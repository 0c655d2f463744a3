"""The words' encoder in ONNX Runtime, for live runs on a CPU (issue 15).

Live, a window whose words were just committed waits for them to be embedded: all-mpnet-
base-v2 in torch on one thread takes 55-110 ms for one list of 4 to 30 words on the 2-core
machine, the same graph in ONNX Runtime 23-75 ms (docs/PERFORMANCE.md). The text worker
also runs the encoder after each recognition step, so the same saving reaches the next
step and the words' lag.

The graph is exported once per model (torch's TorchScript exporter, dynamic batch and
length) into the model cache (``realtime.features.text.model_cache``), under a name that
changes with the model's files and the torch, transformers and ONNX Runtime versions, and
written to a temporary name first so that no process opens half a file. Every session is
checked against torch on a probe sentence before it serves: a graph that does not give
torch's numbers within ``TOLERANCE`` is not used (the encoder stays in torch, and says
why once).
"""

from __future__ import annotations

import hashlib
import io
import logging
import warnings
from pathlib import Path

import numpy as np

from realtime.outputs import write_atomic

logger = logging.getLogger(__name__)

TOLERANCE = 1e-4
"""Largest difference allowed between the session's token embeddings and torch's (measured:
about 1e-6 for all-mpnet-base-v2)."""
EXPORT_VERSION = 1
"""Part of the cached graph's name: raise it when the export below changes."""
PROBE = ["the words of a window, checked once", "and a second, longer list of words to pad beside it"]


class OnnxTextEncoder:
    """Token ids and attention mask (int64 arrays) -> last hidden states (float32), in ONNX
    Runtime with one thread."""

    def __init__(self, session, path: Path):
        self.session = session
        self.path = path

    def __call__(self, input_ids: np.ndarray, attention_mask: np.ndarray) -> np.ndarray:
        return self.session.run(None, {"input_ids": input_ids.astype(np.int64),
                                       "attention_mask": attention_mask.astype(np.int64)})[0]


def graph_name(folder: Path) -> str:
    """The cached graph's file name for the model in ``folder``: its files' names, sizes and
    modification times, and the versions that shape the export."""
    import onnxruntime
    import torch
    import transformers

    digest = hashlib.sha256(f"export {EXPORT_VERSION}".encode())
    for module in (torch, transformers, onnxruntime):
        digest.update(f"{module.__name__} {module.__version__}".encode())
    for file in sorted(folder.iterdir()):
        if file.is_file():
            stat = file.stat()
            digest.update(f"{file.name} {stat.st_size} {stat.st_mtime_ns}".encode())
    return f"{folder.name}-{digest.hexdigest()[:16]}.onnx"


def _hidden(model):
    """The model with positional arguments and one output, as the exporter wants it."""
    import torch

    class Hidden(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.model = model

        def forward(self, input_ids, attention_mask):
            return self.model(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state

    return Hidden()


def _export(model, tokenizer, target: Path) -> None:
    import torch

    example = tokenizer(PROBE, padding=True, return_tensors="pt")
    buffer = io.BytesIO()
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")  # the TorchScript exporter's deprecation and tracer notes
        torch.onnx.export(_hidden(model).eval(), (example["input_ids"], example["attention_mask"]), buffer,
                          dynamo=False, input_names=["input_ids", "attention_mask"], output_names=["hidden"],
                          dynamic_axes={"input_ids": {0: "batch", 1: "tokens"},
                                        "attention_mask": {0: "batch", 1: "tokens"},
                                        "hidden": {0: "batch", 1: "tokens"}},
                          opset_version=17)
    model.eval()  # the exporter puts the module tree back in its own (training) mode
    target.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(target, buffer.getvalue())
    model_name = target.name.rsplit("-", 1)[0]
    for older in target.parent.glob(f"{model_name}-*.onnx"):  # the same model under older versions
        if older != target and older.name.rsplit("-", 1)[0] == model_name:
            older.unlink(missing_ok=True)


def build(model, tokenizer, folder: Path, cache: Path) -> tuple[OnnxTextEncoder | None, str]:
    """An ONNX Runtime encoder for ``model`` (loaded from ``folder``), from the graph cached
    under ``cache`` (exported there first if missing), checked against torch; or (None, why not)."""
    try:
        import onnx  # noqa: F401  (torch's exporter writes through it)
        import onnxruntime  # noqa: F401
        import torch

        from models.onnx_forward import cpu_session
    except ImportError as e:
        return None, f"{e.name} is not installed"
    path = None
    try:
        path = cache / graph_name(folder)
        if not path.is_file():
            _export(model, tokenizer, path)
            logger.info("text encoder exported to ONNX: %s", path)
        # one thread, the caller's: live, the other cores are MediaPipe's and Whisper's
        encoder = OnnxTextEncoder(cpu_session(str(path)), path)
        probe = tokenizer(PROBE, padding=True, return_tensors="pt")
        with torch.inference_mode():
            expected = model(**probe).last_hidden_state.float().numpy()
        got = encoder(probe["input_ids"].numpy(), probe["attention_mask"].numpy())
        keep = probe["attention_mask"].numpy().astype(bool)
        error = float(np.abs(got[keep] - expected[keep]).max())
    except Exception as e:  # an exporter, a file or a runtime that cannot take this model: stay in torch
        if path is not None:
            path.unlink(missing_ok=True)  # a damaged graph is exported afresh by the next run
        return None, f"{type(e).__name__}: {e}"
    if not error <= TOLERANCE:
        path.unlink(missing_ok=True)
        return None, f"its graph differs from torch by {error:.2g} (> {TOLERANCE:g})"
    return encoder, ""
