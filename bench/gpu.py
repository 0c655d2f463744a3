"""The bundled DMD student on a GPU: what serving's forward (models.fast.FastDMD) and the
eager training forward cost from batch 1 to 1024, in float32 and bfloat16 (autocast),
timed with CUDA events as the engine serves (cuDNN without TF32); what the pinned
host-to-GPU copy of a batch costs; and how far the GPU's outputs stray from the CPU's on
the same windows. Skipped, saying so, without CUDA."""

from __future__ import annotations

BATCHES = (1, 8, 64, 256, 1024)
DTYPES = ("float32", "bfloat16")


def _inputs(spec, n: int, device, generator, missing: bool = False):
    """n windows of random features; with ``missing``, each window loses each modality with
    probability 0.3 (whole) and its face a random run of steps, as live input does."""
    import torch

    inputs = {m: torch.randn(n, spec.steps[m], spec.dims[m], generator=generator) for m in ("L", "A", "V")}
    masks = {m: torch.ones(n, spec.steps[m]) for m in ("L", "A", "V")}
    if missing:
        for m in masks:
            gone = torch.rand(n, generator=generator) < 0.3
            masks[m][gone] = 0.0
            inputs[m][gone] = 0.0
        cut = torch.randint(0, spec.steps["V"], (n,), generator=generator)
        masks["V"][torch.arange(spec.steps["V"])[None, :] >= cut[:, None]] = 0.0
    return ({m: v.to(device) for m, v in inputs.items()}, {m: v.to(device) for m, v in masks.items()})


def _timed_ms(call, repeat: int) -> float:
    import torch

    for _ in range(5):
        call()
    torch.cuda.synchronize()
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    start.record()
    for _ in range(repeat):
        call()
    end.record()
    torch.cuda.synchronize()
    return start.elapsed_time(end) / repeat


def dmd_sweep(device: str = "cuda", batches: tuple[int, ...] = BATCHES, repeat: int = 50) -> dict:
    import torch

    from models.checkpoint import load_checkpoint
    from models.device import computing_in
    from models.fast import FastDMD
    from realtime.engine import DEFAULT_CHECKPOINT
    from realtime.featureset import FeatureSpec

    if not torch.cuda.is_available():
        return {"skipped": "no CUDA device on this machine"}
    checkpoint = load_checkpoint(DEFAULT_CHECKPOINT)
    spec = FeatureSpec.from_checkpoint(checkpoint.feature_set)
    net = checkpoint.build(device)
    forwards = {"serving": FastDMD(net), "eager": net}
    out = {"gpu": torch.cuda.get_device_name(0), "checkpoint": checkpoint.path.name, "repeat": repeat,
           "rows": [], "transfer": [], "agreement": agreement(checkpoint, device)}
    g = torch.Generator().manual_seed(0)
    for n in batches:
        inputs, masks = _inputs(spec, n, device, g)
        for name, forward in forwards.items():
            for dtype in DTYPES:
                def call(forward=forward, inputs=inputs, masks=masks, dtype=dtype):
                    with torch.inference_mode(), computing_in(dtype):
                        return forward(inputs, masks).sentiment

                ms = _timed_ms(call, repeat)
                out["rows"].append({"forward": name, "dtype": dtype, "batch": n, "ms": round(ms, 3),
                                    "windows_per_s": round(1000.0 * n / ms)})
        # the engine's copy of one batch: pinned host tensors, asynchronous copies
        host = {m: v.cpu() for m, v in (inputs | {f"{m}_mask": v for m, v in masks.items()}).items()}

        def copy(host=host):
            return {m: v.pin_memory().to(device, non_blocking=True) for m, v in host.items()}

        ms = _timed_ms(copy, repeat)
        out["transfer"].append({"batch": n, "ms": round(ms, 3),
                                "mb": round(sum(v.numel() * v.element_size() for v in host.values()) / 2**20, 2)})
    return out


def agreement(checkpoint, device: str = "cuda", n: int = 512) -> dict:
    """The same windows (random features, modalities and face steps missing at random) served
    on the CPU in float32 and on ``device`` in each precision: the largest differences in
    valence and emotion probabilities, and how often the leading emotion is the same."""
    import torch

    from models.device import computing_in
    from models.fast import FastDMD
    from realtime.featureset import FeatureSpec

    spec = FeatureSpec.from_checkpoint(checkpoint.feature_set)
    inputs, masks = _inputs(spec, n, "cpu", torch.Generator().manual_seed(1), missing=True)
    results = {}
    with torch.inference_mode():
        ref = FastDMD(checkpoint.build("cpu"))(inputs, masks)
        gpu = FastDMD(checkpoint.build(device))
        on = ({m: v.to(device) for m, v in inputs.items()}, {m: v.to(device) for m, v in masks.items()})
        for dtype in DTYPES:
            with computing_in(dtype):
                got = gpu(*on)
            row = {"valence_max_abs": float((got.sentiment.float().cpu() - ref.sentiment).abs().max()),
                   "edges_max_abs": float((got.edges_homo.float().cpu() - ref.edges_homo).abs().max())}
            if ref.class_logits is not None:
                p_ref = torch.softmax(ref.class_logits, 1)
                p_got = torch.softmax(got.class_logits.float().cpu(), 1)
                row["probs_max_abs"] = float((p_got - p_ref).abs().max())
                row["same_leading"] = float((p_got.argmax(1) == p_ref.argmax(1)).float().mean())
            results[dtype] = {k: round(v, 6) for k, v in row.items()}
    return {"windows": n, **results}
