"""Our DMD beside the DMD authors' own code (mdswyz/DMD), in their MOSI configuration.

    python -m bench --only reference --reference-dmd /path/to/DMD

Both networks run inference on CPU in one process with the same thread count, batch 1
and batch 64, timed in alternation (A, B, A, B, ...) so a busy neighbour slows both
alike; each figure is the median over its rounds. The authors' code is read from a local
copy given on the command line; nothing is fetched. Without one the part is skipped
with a one-line reason.

Their MOSI configuration (config/config.json, trains/singleTask/model/dmd.py): d=50,
10 heads, nlevels 4 (their memory transformers take max(nlevels, 3) = 4 layers too),
Conv1d kernels 5/5/5 with no padding, aligned 50 steps, feature dims 768/5/20 (BERT's
output width, COVAREP, FACET), no BERT (inputs are the 768-d token features), future
attention masks on (their attn_mask=true). Ours: the same sizes (cross and memory
layers 4, "flatten" homogeneous heads), full presence masks, served by the
inference-only forward in ONNX Runtime (models/fast.py, runtime "onnxruntime": a graph for
one window, another for batches) and, for the record, by the same forward kept in torch
and by the eager training forward.
"""

from __future__ import annotations

import importlib.util
import statistics
import sys
import types
from pathlib import Path

MOSI = {"d": 50, "heads": 10, "layers": 4, "kernel": 5, "steps": 50, "dims": {"L": 768, "A": 5, "V": 20}}
_PACKAGE = "_dmd_reference"


_MODEL_FILE = Path("trains/singleTask/model/dmd.py")
_ENCODER_DIR = Path("trains/subNets/transformers_encoder")


def reference_problem(root: Path) -> str | None:
    """Why ``root`` cannot serve as the authors' code, or None: it is not there, lacks their
    model's files, or their DMD cannot be built from it in the MOSI configuration (another
    version or a fork, a broken file)."""
    problem = _files_problem(root)
    if problem:
        return problem
    try:
        load_reference(root)(reference_args())
    except Exception as e:  # their code, whatever it raises
        return f"'{root}': the DMD in {_MODEL_FILE} cannot be built ({type(e).__name__}: {e})"
    return None


def _files_problem(root: Path) -> str | None:
    if not root.exists():
        return f"'{root}' does not exist"
    for need in (_MODEL_FILE, _ENCODER_DIR / "transformer.py"):
        if not (root / need).is_file():
            return f"'{root}' is not a copy of mdswyz/DMD (no {need})"
    return None


def load_reference(root: Path):
    """The authors' DMD class from a local copy of mdswyz/DMD, without their package's
    other imports (trainers, metrics, BERT): only the model and its encoder are loaded."""
    problem = _files_problem(root)
    if problem:
        raise FileNotFoundError(problem)
    model_file, encoder_dir = root / _MODEL_FILE, root / _ENCODER_DIR
    # empty packages standing in for theirs: dmd.py imports '...subNets' (BERT) and
    # '...subNets.transformers_encoder.transformer' relatively
    for name, path in ((_PACKAGE, None), (f"{_PACKAGE}.subNets", None),
                       (f"{_PACKAGE}.subNets.transformers_encoder", encoder_dir),
                       (f"{_PACKAGE}.singleTask", None), (f"{_PACKAGE}.singleTask.model", None)):
        module = types.ModuleType(name)
        module.__path__ = [str(path)] if path else []
        sys.modules[name] = module
    sys.modules[f"{_PACKAGE}.subNets"].BertTextEncoder = None  # use_bert is off
    spec = importlib.util.spec_from_file_location(f"{_PACKAGE}.singleTask.model.dmd", model_file)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module.DMD


def reference_args() -> types.SimpleNamespace:
    """Their run-time arguments for MOSI, aligned, without BERT (config/config.json)."""
    k = MOSI["kernel"]
    return types.SimpleNamespace(
        use_bert=False, use_finetune=False, transformers="bert", pretrained="bert-base-uncased",
        dst_feature_dim_nheads=[MOSI["d"], MOSI["heads"]], dataset_name="mosi", need_data_aligned=True,
        feature_dims=[MOSI["dims"]["L"], MOSI["dims"]["A"], MOSI["dims"]["V"]], nlevels=MOSI["layers"],
        attn_dropout=0.3, attn_dropout_a=0.2, attn_dropout_v=0.0, relu_dropout=0.0, embed_dropout=0.2,
        res_dropout=0.0, output_dropout=0.5, text_dropout=0.5, attn_mask=True,
        conv1d_kernel_size_l=k, conv1d_kernel_size_a=k, conv1d_kernel_size_v=k,
    )


def our_config():
    from models.config import MODALITIES, ModelConfig

    return ModelConfig(dims=dict(MOSI["dims"]), steps={m: MOSI["steps"] for m in MODALITIES}, d=MOSI["d"],
                       heads=MOSI["heads"], kernels={m: MOSI["kernel"] for m in MODALITIES},
                       cross_layers=MOSI["layers"], memory_layers=MOSI["layers"], homo_pooling="flatten")


def compare(root: Path | None, threads: int = 2, rounds: int = 7, batches: tuple[int, ...] = (1, 64)) -> dict:
    """ms per forward of the authors' DMD and ours at each batch size, and their ratio."""
    if root is None:
        return {"skipped": "no local copy of mdswyz/DMD given (--reference-dmd PATH)"}
    import torch

    from bench.stages import alternated_ms
    from models.config import MODALITIES
    from models.dmd import DMD
    from models.fast import FastDMD

    torch.set_num_threads(threads)
    torch.manual_seed(0)
    theirs = load_reference(Path(root))(reference_args()).eval()
    ours = DMD(our_config()).eval()
    fast = FastDMD(ours, runtime="onnxruntime")  # one window and batches in ONNX Runtime
    fast_torch = FastDMD(ours, runtime="torch")
    out: dict = {"reference": str(root), "threads": torch.get_num_threads(), "rounds": rounds,
                 # what "ours" is (before 2026-11-28 batches ran in torch)
                 "ours": "FastDMD, runtime onnxruntime (one-window and batch graphs)",
                 "config": "MOSI: d=50, 10 heads, 4 levels, kernels 5, 50 aligned steps, dims 768/5/20, no BERT"}
    for n in batches:
        g = torch.Generator().manual_seed(n)
        x = {m: torch.randn(n, MOSI["steps"], MOSI["dims"][m], generator=g) for m in MODALITIES}
        masks = {m: torch.ones(n, MOSI["steps"]) for m in MODALITIES}
        calls = {
            "authors": lambda x=x: theirs(x["L"], x["A"], x["V"])["output_logit"],
            "ours_eager": lambda x=x, masks=masks: ours(x, masks).sentiment,
            "ours": lambda x=x, masks=masks: fast(x, masks).sentiment,
            "ours_torch": lambda x=x, masks=masks: fast_torch(x, masks).sentiment,
        }
        with torch.inference_mode():
            times = alternated_ms(calls, rounds, repeat=max(1, 30 // n), warmup=2)
        ms = {name: statistics.median(t) for name, t in times.items()}
        out[f"batch{n}"] = {
            **{f"{name}_ms": round(v, 2) for name, v in ms.items()},
            **{f"{name}_ms_range": [round(min(t), 2), round(max(t), 2)] for name, t in times.items()},
            "speedup": round(ms["authors"] / ms["ours"], 2),
            "speedup_eager": round(ms["authors"] / ms["ours_eager"], 2),
            "speedup_torch": round(ms["authors"] / ms["ours_torch"], 2),
        }
    return out
