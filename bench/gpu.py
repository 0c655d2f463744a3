"""The DMD student on a GPU: latency and throughput from batch 1 to 1024, float32 and
bfloat16 (autocast), timed with CUDA events. Skipped, saying so, without CUDA."""

from __future__ import annotations

BATCHES = (1, 8, 64, 256, 1024)


def dmd_sweep(device: str = "cuda", batches: tuple[int, ...] = BATCHES, repeat: int = 50) -> dict:
    import torch

    from models.checkpoint import load_checkpoint
    from realtime.engine import DEFAULT_CHECKPOINT
    from realtime.featureset import FeatureSpec

    if not torch.cuda.is_available():
        return {"skipped": "no CUDA device on this machine"}
    checkpoint = load_checkpoint(DEFAULT_CHECKPOINT)
    spec = FeatureSpec.from_checkpoint(checkpoint.feature_set)
    net = checkpoint.build(device)
    out = {"gpu": torch.cuda.get_device_name(0), "rows": []}
    for dtype in (torch.float32, torch.bfloat16):
        for n in batches:
            inputs = {m: torch.randn(n, spec.steps[m], spec.dims[m], device=device) for m in ("L", "A", "V")}
            masks = {m: torch.ones(n, spec.steps[m], device=device) for m in ("L", "A", "V")}

            def call(inputs=inputs, masks=masks, dtype=dtype):
                with torch.inference_mode(), torch.autocast("cuda", dtype=dtype, enabled=dtype != torch.float32):
                    return net(inputs, masks).sentiment

            for _ in range(5):
                call()
            torch.cuda.synchronize()
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            for _ in range(repeat):
                call()
            end.record()
            torch.cuda.synchronize()
            ms = start.elapsed_time(end) / repeat
            out["rows"].append({"dtype": str(dtype).removeprefix("torch."), "batch": n, "ms": round(ms, 3),
                                "windows_per_s": round(1000.0 * n / ms)})
    return out
