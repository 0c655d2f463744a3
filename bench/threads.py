"""How the bundled student's serving forward scales with CPU threads: windows per second at
batch 1 and 64 for 1, 2, 4, ... threads, up to the machine's cores. Each thread count is
timed in its own child process (torch's thread pool is fixed once it has run), medians
over rounds; beside it, in alternation, the same forward kept in torch (``torch_ms``) and
run in ONNX Runtime for batches too (``onnx_ms``, runtime "onnxruntime"). One window is
served by ONNX Runtime on one thread whatever the count (models/onnx_forward.py)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def thread_counts(cores: int | None = None) -> list[int]:
    """1, 2, 4, ... up to the machine's cores, and the core count itself."""
    cores = cores or os.cpu_count() or 1
    counts, n = [], 1
    while n < cores:
        counts.append(n)
        n *= 2
    return counts + [cores]


def scaling(batches: tuple[int, ...] = (1, 64), rounds: int = 5) -> dict:
    rows = []
    for threads in thread_counts():
        cmd = [sys.executable, "-m", "bench.threads", str(threads), *map(str, batches), "--rounds", str(rounds)]
        proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, check=False)
        if proc.returncode != 0:
            raise RuntimeError(f"bench.threads {threads}: {proc.stderr.strip()[-300:]}")
        rows += json.loads(proc.stdout)
    return {"cores": os.cpu_count(), "rows": rows}


def _measure(threads: int, batches: list[int], rounds: int) -> list[dict]:
    import statistics

    import torch

    from bench.stages import alternated_ms
    from models.checkpoint import load_checkpoint
    from models.fast import FastDMD
    from realtime.engine import DEFAULT_CHECKPOINT
    from realtime.featureset import FeatureSpec

    torch.set_num_threads(threads)
    checkpoint = load_checkpoint(DEFAULT_CHECKPOINT)
    spec = FeatureSpec.from_checkpoint(checkpoint.feature_set)
    net = checkpoint.build()
    # serving's forward as the engine builds it (one CPU window in ONNX Runtime), the same
    # forward kept in torch, and with batches in ONNX Runtime too, timed in alternation
    forwards = {"ms": FastDMD(net), "torch_ms": FastDMD(net, runtime="torch"),
                "onnx_ms": FastDMD(net, runtime="onnxruntime")}
    out = []
    for n in batches:
        g = torch.Generator().manual_seed(n)
        inputs = {m: torch.randn(n, spec.steps[m], spec.dims[m], generator=g) for m in ("L", "A", "V")}
        masks = {m: torch.ones(n, spec.steps[m]) for m in ("L", "A", "V")}
        calls = {name: (lambda forward=forward, inputs=inputs, masks=masks: forward(inputs, masks))
                 for name, forward in forwards.items()}
        with torch.inference_mode():
            times = alternated_ms(calls, rounds, repeat=max(2, 64 // n), warmup=1)
        row = {"threads": torch.get_num_threads(), "batch": n}
        for name, t in times.items():
            row[name] = round(statistics.median(t), 2)
            row[f"{name}_range"] = [round(min(t), 2), round(max(t), 2)]
        row["windows_per_s"] = round(1000.0 * n / row["ms"])
        out.append(row)
    return out


if __name__ == "__main__":
    import argparse

    p = argparse.ArgumentParser(description="one thread count of bench.threads.scaling (a child process)")
    p.add_argument("threads", type=int)
    p.add_argument("batches", type=int, nargs="+")
    p.add_argument("--rounds", type=int, default=5)
    a = p.parse_args()
    print(json.dumps(_measure(a.threads, a.batches, a.rounds)))
