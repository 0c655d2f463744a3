"""The CorrKD student stage's cost (issue 15): the frozen teacher sees each training sample
once per stage, with the responses the per-batch forward gave; missing data is drawn as
before; progress bars show on a terminal only. Timings live in the report, not here."""

import dataclasses
import io
import os

import numpy as np
import pytest
import torch

from models.config import MODALITIES, PRESETS, TrainConfig
from models.corrkd import SUBSET_WEIGHTS, SUBSETS, drop_missing
from models.data import load_dataset, save_dataset
from models.dmd import DMD
from models.loop import batches
from models.synthetic import SyntheticSpec, make_synthetic
from models.teacher_cache import TeacherCache
from models.train import fit, input_statistics, main, model_config_for

CPU = torch.device("cpu")
RESPONSE_TOLERANCE = 1e-6
"""A response computed in a block of the split vs in a training batch: float rounding only
(measured 6e-8 at most)."""


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """64 training samples (2 batches of 32 with the small preset), 16 valid, 16 test."""
    path = tmp_path_factory.mktemp("data") / "tiny.npz"
    save_dataset(path, make_synthetic(SyntheticSpec(train=64, valid=16, test=16)))
    return path


def _configs(dataset, **train):
    return (model_config_for(dataset, PRESETS["small"]["model"]),
            TrainConfig.from_dict({**PRESETS["small"]["train"], **train}))


def _teacher(dataset, model_cfg, seed=3):
    torch.manual_seed(seed)
    teacher = DMD(model_cfg)
    teacher.set_input_statistics(*input_statistics(dataset.splits["train"]))
    return teacher.eval()


class Counter:
    """Counts a module's forwards and the samples they took."""

    def __init__(self, module: torch.nn.Module):
        self.calls, self.samples = 0, 0
        module.register_forward_hook(self)

    def __call__(self, module, args, output):
        self.calls += 1
        self.samples += len(output.sentiment)


def _old_drop_missing(masks, rate, generator):
    """drop_missing as it was before issue 15: a Python loop over the samples."""
    if rate <= 0:
        return {m: v.clone() for m, v in masks.items()}
    batch = masks[MODALITIES[0]].size(0)
    drop_whole = torch.rand(batch, generator=generator) < rate
    choice = torch.multinomial(torch.tensor(SUBSET_WEIGHTS), batch, replacement=True, generator=generator)
    out = {}
    for m in MODALITIES:
        keep_modality = torch.tensor([not drop_whole[i] or m in SUBSETS[choice[i]] for i in range(batch)])
        keep_steps = torch.rand(masks[m].shape, generator=generator) >= rate
        out[m] = masks[m] * (keep_steps & keep_modality.unsqueeze(1)).to(masks[m].dtype)
    return out


@pytest.mark.parametrize("rate", [0.0, 0.2, 0.7, 1.0])
def test_missing_data_is_drawn_as_before(rate):
    """The vectorised draw takes the same random numbers in the same order: the same masks."""
    masks = {m: (torch.rand(33, t) > 0.2).float() for m, t in zip(MODALITIES, (16, 24, 20))}
    for seed in range(5):
        new = drop_missing(masks, rate, torch.Generator().manual_seed(seed))
        old = _old_drop_missing(masks, rate, torch.Generator().manual_seed(seed))
        for m in MODALITIES:
            assert torch.equal(new[m], old[m]), (rate, seed, m)


@pytest.mark.parametrize("classes", [(), ("neutral", "happy", "sad")])
def test_kept_responses_are_the_batch_forward_s(tiny, classes):
    dataset = load_dataset(tiny)
    split = dataset.splits["train"]
    if classes:
        split = dataclasses.replace(split, class_labels=np.arange(len(split)) % len(classes))
    model_cfg, _ = _configs(dataset)
    teacher = _teacher(dataset, dataclasses.replace(model_cfg, class_names=classes))
    cache = TeacherCache(teacher, split, CPU, block=32)
    for batch in batches(split, 24, CPU, np.random.default_rng(0)):  # batches cut across the blocks
        got = cache(batch, batch.index)
        with torch.no_grad():
            want = teacher(batch.inputs, batch.masks)
        torch.testing.assert_close(got.fused, want.fused, atol=RESPONSE_TOLERANCE, rtol=0)
        torch.testing.assert_close(got.sentiment, want.sentiment, atol=RESPONSE_TOLERANCE, rtol=0)
        if classes:
            torch.testing.assert_close(got.class_logits, want.class_logits, atol=RESPONSE_TOLERANCE, rtol=0)
        else:
            assert got.class_logits is None
    assert cache.forwards == 2 and cache.samples_forwarded == len(split)


def test_responses_too_large_to_keep_are_forwarded_per_batch(tiny):
    dataset = load_dataset(tiny)
    split = dataset.splits["train"]
    teacher = _teacher(dataset, _configs(dataset)[0])
    cache = TeacherCache(teacher, split, CPU, block=32, max_bytes=1000)
    for _ in range(2):
        for batch in batches(split, 32, CPU, np.random.default_rng(1)):
            got = cache(batch, batch.index)
            with torch.no_grad():
                assert torch.equal(got.fused, teacher(batch.inputs, batch.masks).fused)
    assert cache.forwards == 1 + 4  # the block that measured the size, then every batch


@pytest.mark.parametrize("epoch_samples", [None, 40])
def test_the_teacher_sees_each_training_sample_once_per_stage(tiny, epoch_samples):
    """Before issue 15 the student stage forwarded the teacher on every batch of every epoch
    (3 epochs: 6 forwards, 192 samples); now each block of the split once, whatever the epochs."""
    dataset = load_dataset(tiny)
    model_cfg, train_cfg = _configs(dataset, epochs=3, early_stop=10, epoch_samples=epoch_samples)
    teacher = _teacher(dataset, model_cfg)
    counter = Counter(teacher)
    result = fit(dataset, model_cfg, train_cfg, CPU, teacher=teacher, progress=False)
    assert len(result.history) == 3 and result.steps == 6  # 2 batches an epoch
    assert counter.calls <= 2 and counter.samples <= len(dataset.splits["train"])
    if epoch_samples is None:
        assert (counter.calls, counter.samples) == (2, 64)


def test_a_student_learns_as_with_a_teacher_forward_per_batch(tiny, monkeypatch):
    """The same student, within float rounding, whether the responses are kept or the teacher
    runs on every batch as before (the kept path's first epoch reads responses computed in
    other batches than the training batch)."""
    import models.teacher_cache

    dataset = load_dataset(tiny)
    model_cfg, train_cfg = _configs(dataset, epochs=2, early_stop=10)
    kept = fit(dataset, model_cfg, train_cfg, CPU, teacher=_teacher(dataset, model_cfg), progress=False)
    monkeypatch.setattr(models.teacher_cache, "MAX_BYTES", 0)
    per_batch = fit(dataset, model_cfg, train_cfg, CPU, teacher=_teacher(dataset, model_cfg), progress=False)
    for a, b in zip(kept.history, per_batch.history):
        assert a.keys() == b.keys()
        for key in a:
            assert a[key] == pytest.approx(b[key], abs=2e-4), key
    for name, value in kept.net.state_dict().items():
        torch.testing.assert_close(value, per_batch.net.state_dict()[name], atol=1e-5, rtol=1e-4, msg=name)


def test_a_resumed_student_goes_on_as_if_never_stopped(tiny, tmp_path):
    """The kept responses come from fixed blocks of the split, not from whichever batch came
    first: a stage resumed after its first epoch (nothing kept) trains bit for bit as one
    that kept its responses from the first epoch."""
    from models.distributed import parameter_digest

    dataset = load_dataset(tiny)
    model_cfg, train_cfg = _configs(dataset, epochs=2, early_stop=10)
    whole = fit(dataset, model_cfg, train_cfg, CPU, teacher=_teacher(dataset, model_cfg), progress=False)
    state = tmp_path / "student.safetensors"
    fit(dataset, model_cfg, dataclasses.replace(train_cfg, epochs=1), CPU, teacher=_teacher(dataset, model_cfg),
        progress=False, state_path=state)
    resumed = fit(dataset, model_cfg, train_cfg, CPU, teacher=_teacher(dataset, model_cfg), progress=False,
                  state_path=state)
    assert resumed.steps == 2 and resumed.history == whole.history
    assert parameter_digest(resumed.net) == parameter_digest(whole.net)


def test_progress_bars_only_on_a_terminal():
    from models.progress import on_terminal

    assert not on_terminal(io.StringIO())
    leader, follower = os.openpty()
    try:
        with os.fdopen(follower, "w", closefd=False) as tty:
            assert on_terminal(tty)
    finally:
        os.close(leader)
        os.close(follower)


def test_a_training_run_shows_its_time_left_on_a_terminal(tiny, tmp_path, capsys, monkeypatch):
    import models.train

    args = ["--data", str(tiny), "--out", str(tmp_path / "run"), "--config", "small", "--epochs", "1",
            "--device", "cpu"]
    assert main(args) == 0
    captured = capsys.readouterr()  # not a terminal: no bar
    assert "left" not in captured.err and "\r" not in captured.err
    monkeypatch.setattr(models.train, "on_terminal", lambda: True)
    assert main([*args, "--overwrite"]) == 0
    err = capsys.readouterr().err
    for bar in ("teacher: epoch 0/1", "teacher epoch 1: 0/2", "student: epoch 0/1", "student epoch 1: 0/2"):
        assert bar in err, (bar, err[-2000:])
    assert " left" in err
    monkeypatch.setattr(models.train, "on_terminal", lambda: True)
    assert main([*args, "--overwrite", "--quiet"]) == 0
    assert "left" not in capsys.readouterr().err
