"""The inference-only forward (models/fast.py) gives what the training forward gives.

Every output serving reads (realtime/engine.py: sentiment, class and channel logits, the
seven branch predictions, both edge sets, presence, DHMD's activations) must equal the
eager DMD/DHMD forward within TOLERANCE, for batch 1 and more, with steps and whole
modalities missing, on the bundled checkpoint and on networks that take each of the fast
path's code paths (stacked or one encoder at a time, one batched matmul or one per encoder).
"""

import pytest
import torch

from models import fast
from models.checkpoint import load_checkpoint
from models.config import MODALITIES, PRESETS, ModelConfig
from models.dhmd import network_for
from models.fast import FastDMD
from realtime.engine import DEFAULT_CHECKPOINT

TOLERANCE = {"rtol": 1e-4, "atol": 1e-4}
"""float32: |fast - eager| <= 1e-4 + 1e-4 |eager| on every served output (logits,
probabilities' inputs, edges, activations). Measured differences are 1e-7 to 1e-5."""


def make_net(arch="dmd", steps=(12, 20, 16), pooling="pool", classes=("a", "b", "c"), **over):
    torch.manual_seed(0)
    cfg = ModelConfig(dims={"L": 24, "A": 8, "V": 10}, steps=dict(zip(MODALITIES, steps)), class_names=classes,
                      homo_pooling=pooling, architecture=arch, **{**PRESETS["small"]["model"], **over})
    return network_for(cfg).eval()


def make_batch(cfg, batch, seed=0, missing=True):
    """Random inputs; with ``missing``, random steps dropped and, for batch > 1, whole
    modalities absent: sample 0 lacks L, sample 1 has only L (no edge), sample 2 has nothing."""
    gen = torch.Generator().manual_seed(seed)
    inputs = {m: torch.randn(batch, cfg.steps[m], cfg.dims[m], generator=gen) for m in MODALITIES}
    masks = {m: torch.ones(batch, cfg.steps[m]) for m in MODALITIES}
    if missing:
        masks = {m: (torch.rand(batch, cfg.steps[m], generator=gen) > 0.3).float() for m in MODALITIES}
        if batch > 1:
            masks["L"][0] = 0
            masks["A"][1] = masks["V"][1] = 0
        if batch > 2:
            for m in MODALITIES:
                masks[m][2] = 0
    return inputs, masks


def served(out) -> dict[str, torch.Tensor]:
    """Every tensor the engine reads from a forward's output, by name."""
    got = {"sentiment": out.sentiment, "edges_homo": out.edges_homo, "edges_hetero": out.edges_hetero,
           "present": out.present, **out.branch_predictions()}
    if out.class_logits is not None:
        got["class_logits"] = out.class_logits
        got.update({f"channel_{m}": v for m, v in out.channel_class_logits.items()})
    if getattr(out, "atoms_homo", None) is not None:
        got.update({f"atoms_homo_{m}": v for m, v in out.atoms_homo.items()})
        got.update({f"atoms_hetero_{m}": v for m, v in out.atoms_hetero.items()})
    return got


def assert_same(net, inputs, masks, runtime="torch", forward=None):
    forward = forward or FastDMD(net, runtime=runtime)
    if runtime == "onnxruntime":
        session = forward.onnx if inputs["L"].size(0) == 1 else forward.onnx_batches
        assert session.serves(inputs, masks), "this batch would not reach ONNX Runtime"
    with torch.inference_mode():
        eager = served(net(inputs, masks))
        quick = served(forward(inputs, masks))
    assert eager.keys() == quick.keys()
    for name in eager:
        torch.testing.assert_close(quick[name], eager[name], **TOLERANCE, msg=lambda m, n=name: f"{n}: {m}")


@pytest.mark.parametrize("batch", [1, 5])
@pytest.mark.parametrize("missing", [False, True], ids=["complete", "missing"])
def test_bundled_checkpoint(batch, missing):
    net = load_checkpoint(DEFAULT_CHECKPOINT).build()
    assert_same(net, *make_batch(net.cfg, batch, seed=batch, missing=missing))


@pytest.mark.parametrize("arch", ["dmd", "dhmd"])
@pytest.mark.parametrize("pooling", ["flatten", "pool"])
@pytest.mark.parametrize("steps", [(12, 20, 16), (10, 10, 10)], ids=["unaligned", "aligned"])
@pytest.mark.parametrize("batch", [1, 3, 4])  # 1 and 3 stacked, 4 each encoder alone (CPU)
def test_matches_eager(arch, pooling, steps, batch):
    net = make_net(arch, steps, pooling)
    assert_same(net, *make_batch(net.cfg, batch, seed=batch))


@pytest.fixture(scope="module")
def bundled_onnx():
    """The bundled student and its ONNX Runtime forward, exported once for the module."""
    net = load_checkpoint(DEFAULT_CHECKPOINT).build()
    return net, FastDMD(net, runtime="onnxruntime")


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
@pytest.mark.parametrize("missing", ["complete", "steps", "no_L", "only_L", "none"])
def test_onnxruntime_bundled_checkpoint(bundled_onnx, missing, seed):
    """One window in ONNX Runtime (what live serving runs) gives the eager forward's outputs,
    with all, some, or none of each modality's steps present (one export serves every mask)."""
    net, forward = bundled_onnx
    inputs, masks = make_batch(net.cfg, 1, seed=seed, missing=missing != "complete")
    drop = {"no_L": "L", "only_L": "AV", "none": "LAV"}.get(missing, "")
    for m in drop:
        masks[m].zero_()
    assert forward.onnx.serves(inputs, masks)
    with torch.inference_mode():
        eager, quick = served(net(inputs, masks)), served(forward(inputs, masks))
    assert eager.keys() == quick.keys()
    for name in eager:
        torch.testing.assert_close(quick[name], eager[name], **TOLERANCE, msg=lambda m, n=name: f"{n}: {m}")


@pytest.mark.parametrize("arch", ["dmd", "dhmd"])
@pytest.mark.parametrize("pooling", ["flatten", "pool"])
def test_onnxruntime_matches_eager(arch, pooling):
    """ONNX Runtime on the other code paths: DHMD's activations, flattened heads, unequal steps."""
    net = make_net(arch, (12, 20, 16), pooling)
    assert_same(net, *make_batch(net.cfg, 1, seed=1), runtime="onnxruntime")


@pytest.mark.parametrize("batch", [2, 7])
def test_onnxruntime_batches_bundled_checkpoint(bundled_onnx, batch):
    """Batches in ONNX Runtime (one graph, each encoder alone, any batch size) give the eager
    forward's outputs, with steps and whole modalities missing in some windows."""
    net, forward = bundled_onnx
    inputs, masks = make_batch(net.cfg, batch, seed=batch)
    assert forward.onnx_batches.serves(inputs, masks) and not forward.onnx.serves(inputs, masks)
    with torch.inference_mode():
        eager, quick = served(net(inputs, masks)), served(forward(inputs, masks))
    for name in eager:
        torch.testing.assert_close(quick[name], eager[name], **TOLERANCE, msg=lambda m, n=name: f"{n}: {m}")


def test_onnxruntime_threads():
    """One window runs on the calling thread alone; a batch on torch's thread count, whose
    helpers spin between operators (a batch is dense work: at batch 64 on 2 threads about 5 %
    faster than helpers that sleep, docs/PERFORMANCE.md)."""
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        forward = FastDMD(make_net("dmd"), runtime="onnxruntime")
    finally:
        torch.set_num_threads(before)
    one = forward.onnx.session.get_session_options()
    batches = forward.onnx_batches.session.get_session_options()
    assert one.intra_op_num_threads == 1
    assert batches.intra_op_num_threads == 2
    assert batches.get_session_config_entry("session.intra_op.allow_spinning") == "1"
    forward.close()


@pytest.mark.parametrize("arch", ["dmd", "dhmd"])
@pytest.mark.parametrize("steps", [(12, 20, 16), (4, 40, 6)], ids=["unaligned", "very-unequal"])
def test_onnxruntime_batches_match_eager(arch, steps):
    net = make_net(arch, steps, "flatten")
    assert_same(net, *make_batch(net.cfg, 5, seed=2), runtime="onnxruntime")


def test_onnxruntime_serves_one_window_only():
    """With "auto", batches of more than one window (and other dtypes) run in torch: same
    outputs either way; no batch graph is exported."""
    net = make_net("dmd")
    forward = FastDMD(net)  # auto: ONNX Runtime for batch 1 here (CPU, float32)
    assert forward.onnx is not None and forward.onnx_batches is None
    inputs, masks = make_batch(net.cfg, 3)
    assert not forward.onnx.serves(inputs, masks)
    empty = {m: v[:0] for m, v in inputs.items()}, {m: v[:0] for m, v in masks.items()}
    assert not forward.onnx.serves(*empty)  # an empty batch is torch's
    with torch.inference_mode():
        assert forward(*empty).sentiment.shape == (0,)
    assert forward.onnx.serves({m: v[:1] for m, v in inputs.items()}, {m: v[:1] for m, v in masks.items()})
    assert not forward.onnx.serves({m: v[:1].double() for m, v in inputs.items()}, masks)
    with torch.inference_mode():
        one = served(forward({m: v[1:2] for m, v in inputs.items()}, {m: v[1:2] for m, v in masks.items()}))
        batch = served(forward(inputs, masks))
    for name in one:
        torch.testing.assert_close(one[name][0], batch[name][1], **TOLERANCE, msg=lambda m, n=name: f"{n}: {m}")


@pytest.mark.parametrize("batch", [1, 3])
def test_inputs_of_other_dtypes_are_served_by_torch(bundled_onnx, batch):
    """A modality in bfloat16 beside float32 ones: ONNX Runtime takes float32 only, so torch
    serves it, as the eager forward would (it had reached ONNX Runtime and failed there)."""
    net, forward = bundled_onnx
    inputs, masks = make_batch(net.cfg, batch, seed=4)
    inputs["A"] = inputs["A"].bfloat16()
    assert not forward.onnx.serves(inputs, masks) and not forward.onnx_batches.serves(inputs, masks)
    with torch.inference_mode():
        eager, quick = served(net(inputs, masks)), served(forward(inputs, masks))
    for name in eager:
        torch.testing.assert_close(quick[name], eager[name], **TOLERANCE, msg=lambda m, n=name: f"{n}: {m}")


@pytest.mark.parametrize("case,message", [
    ("A", r"modality A: expected \(3, "),
    ("masks", r"mask L: expected \(3, 24\), got \(1, 24\)"),
    ("mask V", r"mask V: expected \(3, 32\), got \(3, 31\)"),
])
def test_inputs_that_disagree_get_one_clear_error(bundled_onnx, case, message):
    """Modalities of different batch sizes, or masks of another shape, are refused with the
    same one-line error whoever would serve them (torch and ONNX Runtime had each failed in
    its own words, and a batch of 1 with masks of 3 went through in torch)."""
    net, served_by_onnx = bundled_onnx
    assert (net.cfg.steps["L"], net.cfg.steps["V"]) == (24, 32)
    inputs, masks = make_batch(net.cfg, 3)
    if case == "A":
        inputs["A"] = inputs["A"][:2]
    elif case == "masks":
        masks = {m: v[:1] for m, v in masks.items()}
    else:
        masks["V"] = masks["V"][:, :-1]
    for forward in (served_by_onnx, FastDMD(net, runtime="torch")):
        with pytest.raises(ValueError, match=message):
            forward(inputs, masks)


@pytest.mark.parametrize("batch", [1, 5])
def test_the_values_of_missing_steps_are_never_read(bundled_onnx, batch):
    """NaN and inf in masked-out steps (features an extractor could not compute) change no
    output, eager or served in any runtime: they read as the zeros they are replaced by."""
    net, onnx = bundled_onnx
    inputs, masks = make_batch(net.cfg, batch, seed=7)
    poisoned = {m: x.clone() for m, x in inputs.items()}
    for m in MODALITIES:
        gone = masks[m] == 0
        assert gone.any()
        poisoned[m][gone] = float("nan")
        poisoned[m][gone.nonzero()[:1].unbind(1)] = float("inf")
        inputs[m][gone] = 0.0
    with torch.inference_mode():
        clean = served(net(inputs, masks))
        for forward in (net, FastDMD(net, runtime="torch"), onnx):
            got = served(forward(poisoned, masks))
            for name in clean:
                assert torch.isfinite(got[name]).all(), name
                torch.testing.assert_close(got[name], clean[name], **TOLERANCE, msg=lambda m, n=name: f"{n}: {m}")


def test_runtime_choice():
    net = make_net("dmd")
    in_torch = FastDMD(net, runtime="torch")
    assert in_torch.onnx is None and in_torch.onnx_batches is None
    with pytest.raises(ValueError, match="runtime"):
        FastDMD(net, runtime="tensorrt")


@pytest.mark.parametrize("arch", ["dmd", "dhmd"])
def test_one_encoder_at_a_time(arch):
    """Step counts too unequal to pad into one stack: every encoder runs alone."""
    net = make_net(arch, steps=(4, 40, 6))
    forward = FastDMD(net, runtime="torch")
    assert len(forward.stacked.groups_d) == 9 and len(forward.stacked.groups_mem) == 3
    assert_same(net, *make_batch(net.cfg, 3))


@pytest.mark.parametrize("arch", ["dmd", "dhmd"])
def test_one_matmul_per_encoder_at_large_batch(arch):
    """Past BATCHED_ROWS rows the stacked layers run one matmul per encoder (the stacked
    plan, which CPU batches this large no longer take by themselves, and GPUs do)."""
    net = make_net(arch)
    inputs, masks = make_batch(net.cfg, fast.BATCHED_ROWS // 12 + 1)
    forward = FastDMD(net, runtime="torch")
    with torch.inference_mode():
        eager, quick = served(net(inputs, masks)), served(forward._forward(inputs, masks, forward.stacked))
    for name in eager:
        torch.testing.assert_close(quick[name], eager[name], **TOLERANCE, msg=lambda m, n=name: f"{n}: {m}")


@pytest.mark.parametrize("arch", ["dmd", "dhmd"])
def test_cpu_batches_run_each_encoder_alone(arch):
    """From ALONE_FROM windows a CPU batch takes the plan with every encoder alone, below it
    the stacked one; both give the eager forward's outputs."""
    net = make_net(arch)
    forward = FastDMD(net, runtime="torch")
    assert len(forward.stacked.groups_d) == 1 and len(forward.alone.groups_d) == 9
    taken = []
    run = fast.FastDMD._run
    forward._run = lambda stacks, *rest: taken.append(len(stacks)) or run(forward, stacks, *rest)
    for batch in (fast.ALONE_FROM - 1, fast.ALONE_FROM):
        taken.clear()
        assert_same(net, *make_batch(net.cfg, batch, seed=batch), forward=forward)
        assert taken == ([9, 3] if batch >= fast.ALONE_FROM else [1, 1])


@pytest.mark.parametrize("batch", [3, 4])
def test_without_decoupling_and_classes(batch):
    net = make_net(decouple=False, classes=())
    assert_same(net, *make_batch(net.cfg, batch))


def test_fast_forward_is_sensitive():
    """The comparison would catch a divergence: a changed weight in one encoder (the V <- A
    crossmodal one, second layer) changes the served outputs beyond TOLERANCE."""
    net = make_net("dhmd")
    inputs, masks = make_batch(net.cfg, 4)
    quick = FastDMD(net, runtime="torch")
    with torch.no_grad():
        net.cross["VA"].layers[-1].ff[0].weight.mul_(1.5)
    with torch.inference_mode():
        eager, stale = served(net(inputs, masks)), served(quick(inputs, masks))
    assert any(not torch.allclose(stale[k], eager[k], **TOLERANCE) for k in eager)


def test_training_forward_unchanged_and_refused():
    """The fast path serves eval-mode networks only; the training forward still returns
    every training output (reconstructions included)."""
    net = make_net("dhmd").train()
    with pytest.raises(ValueError, match="eval"):
        FastDMD(net)
    out = net(*make_batch(net.cfg, 2))
    assert out.recon["L"].requires_grad and out.dict_error_homo["A"].shape == (2, 20)


def test_engine_records_match_the_eager_forward(components):
    """The engine serves the fast path; its records equal those of the eager forward (the
    network itself put in its place) within TOLERANCE, with a modality missing in one window."""
    import numpy as np

    from realtime.types import Window, Word

    engine = components.engine
    assert isinstance(engine.forward, FastDMD)
    spec, rng = engine.spec, np.random.default_rng(0)
    windows = [Window(index=i, t_start=float(i), t_end=float(i) + spec.window,
                      face=rng.standard_normal((spec.face_steps, spec.dims["V"])).astype(np.float32),
                      face_mask=np.full(spec.face_steps, float(i != 1), np.float32),
                      audio=rng.standard_normal((spec.audio_steps, spec.dims["A"])).astype(np.float32),
                      audio_mask=(rng.random(spec.audio_steps) > 0.2).astype(np.float32),
                      words=[Word(i + 0.5, i + 0.9, "this"), Word(i + 1.0, i + 1.4, "is"),
                             Word(i + 1.5, i + 1.9, "wonderful")])
               for i in range(3)]
    quick = [e.record() for e in engine(windows)]
    fast_forward = engine.forward
    try:
        engine.forward = engine.net  # the session's engine: put the fast path back whatever happens
        eager = [e.record() for e in engine(windows)]
    finally:
        engine.forward = fast_forward
    assert [r["edges_among"] for r in quick] == [["L", "A", "V"], ["L", "A"], ["L", "A", "V"]]
    for a, b in zip(quick, eager):
        assert a.keys() == b.keys()
        _assert_close_tree(a, b)


def test_windows_with_nothing_to_read_are_scored_once(components):
    """Windows with no face, voice or word (a capture gap) all read the model's reading of
    nothing: one of them is scored for all, and each record is what scoring it alone gives."""
    import numpy as np

    from realtime.types import Window, Word

    engine = components.engine
    spec, rng = engine.spec, np.random.default_rng(1)

    def window(i, content):
        on = float(content)
        return Window(index=i, t_start=float(i), t_end=float(i) + spec.window,
                      face=rng.standard_normal((spec.face_steps, spec.dims["V"])).astype(np.float32),
                      face_mask=np.full(spec.face_steps, on, np.float32),
                      audio=rng.standard_normal((spec.audio_steps, spec.dims["A"])).astype(np.float32),
                      audio_mask=np.full(spec.audio_steps, on, np.float32),
                      words=[Word(i + 0.5, i + 0.9, "fine")] if content else [])

    windows = [window(i, content) for i, content in enumerate([False, True, False, False, True, False])]
    forward, sizes = engine.forward, []

    def counted(inputs, masks):
        sizes.append(inputs["L"].size(0))
        return forward(inputs, masks)

    try:
        engine.forward = counted
        together = [e.record() for e in engine(windows)]
    finally:
        engine.forward = forward
    assert sizes == [3]  # the two with content and one with nothing
    alone = [engine([w])[0].record() for w in windows]
    for a, b in zip(together, alone):
        _assert_close_tree(a, b)
    blank = [r for r, w in zip(together, windows) if not w.words]
    assert [r["t_start"] for r in blank] == [0.0, 2.0, 3.0, 5.0]
    assert all({**r, "t_start": 0, "t_end": 0} == {**blank[0], "t_start": 0, "t_end": 0} for r in blank)


def _assert_close_tree(a, b):
    if isinstance(a, dict):
        assert a.keys() == b.keys()
        for k in a:
            _assert_close_tree(a[k], b[k])
    elif isinstance(a, list):
        assert len(a) == len(b)
        for x, y in zip(a, b):
            _assert_close_tree(x, y)
    elif isinstance(a, float):
        assert abs(a - b) <= TOLERANCE["atol"] + TOLERANCE["rtol"] * abs(b), (a, b)
    else:
        assert a == b


GPU_TOLERANCE = {"float32": 1e-3, "bfloat16": 0.05}
"""On a GPU, against the CPU's float32 (absolute): float32 with cuDNN's TF32 off, as the engine
serves, differed by 1e-5 on an H100; bfloat16 (autocast) by up to 0.007 in valence and 0.004
in a probability (docs/PERFORMANCE.md, GPU). bfloat16 moves the edge weights further (up to
0.16 on these random features): they are held to float32 only."""


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA GPU on this machine")
@pytest.mark.parametrize("precision", ["float32", "bfloat16"])
@pytest.mark.parametrize("batch", [3, 64])  # 64: more rows than BATCHED_ROWS per encoder
def test_bundled_checkpoint_served_on_the_gpu_like_the_cpu(precision, batch):
    """Serving's forward on CUDA, in each precision the engine offers, gives the CPU's
    valence and emotion probabilities (and in float32 its edges), modalities and steps missing."""
    from models.device import computing_in

    checkpoint = load_checkpoint(DEFAULT_CHECKPOINT)
    cpu = checkpoint.build()
    inputs, masks = make_batch(cpu.cfg, batch, seed=3)
    with torch.inference_mode():
        ref = FastDMD(cpu)(inputs, masks)
        with computing_in(precision):
            got = FastDMD(checkpoint.build("cuda"))({m: v.cuda() for m, v in inputs.items()},
                                                    {m: v.cuda() for m, v in masks.items()})
    tol = {"rtol": 0.0, "atol": GPU_TOLERANCE[precision]}
    torch.testing.assert_close(got.sentiment.float().cpu(), ref.sentiment, **tol)
    torch.testing.assert_close(torch.softmax(got.class_logits.float().cpu(), 1), torch.softmax(ref.class_logits, 1),
                               **tol)
    if precision == "float32":
        torch.testing.assert_close(got.edges_homo.cpu(), ref.edges_homo, **tol)
        torch.testing.assert_close(got.edges_hetero.cpu(), ref.edges_hetero, **tol)


def test_float32_convolutions_restores_the_flags():
    cudnn = torch.backends.cudnn
    before = (cudnn.enabled, cudnn.benchmark, cudnn.deterministic, cudnn.allow_tf32)
    from models.device import float32_convolutions

    with float32_convolutions():
        assert not cudnn.allow_tf32
        assert (cudnn.enabled, cudnn.benchmark, cudnn.deterministic) == before[:3]
    assert (cudnn.enabled, cudnn.benchmark, cudnn.deterministic, cudnn.allow_tf32) == before
