"""Training under torchrun: identical DDP replicas, rank 0 alone speaks and writes, and a
run whose worker is killed restarts and resumes from its last epoch."""

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parent.parent
TORCHRUN_TIMEOUT = 240
"""Seconds the two-process run may take; about 50 s on 2 cores at load average 9."""


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> Path:
    """What `python -m models.synthetic --train 64 --valid 16 --test 16` writes: 2 global batches of 32."""
    from models.data import save_dataset
    from models.synthetic import SyntheticSpec, make_synthetic

    path = tmp_path_factory.mktemp("data") / "tiny.npz"
    save_dataset(path, make_synthetic(SyntheticSpec(train=64, valid=16, test=16)))
    return path


def _processes(mark: str) -> dict[int, list[bytes]]:
    """The live processes whose environment holds ``mark`` (torchrun's workers inherit it), with their environments."""
    found = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            if (entry / "stat").read_text().rsplit(")", 1)[1].split()[0] == "Z":
                continue
            env = (entry / "environ").read_bytes().split(b"\0")
        except OSError:
            continue
        if mark.encode() in env:
            found[int(entry.name)] = env
    return found


def _worker(mark: str, rank: int) -> int | None:
    """The pid of the first attempt's training process of ``rank``."""
    for pid, env in _processes(mark).items():
        if f"RANK={rank}".encode() in env and b"TORCHELASTIC_RESTART_COUNT=0" in env:
            return pid
    return None


@pytest.fixture(scope="module")
def killed_and_resumed(tiny, tmp_path_factory):
    """Both stages, 2 epochs, 2 processes; rank 1 SIGKILLed once the teacher's first epoch
    is saved; torchrun restarts both and the run resumes. Returns (exit code, log, --out)."""
    out = tmp_path_factory.mktemp("ddp") / "run"
    log = out.with_suffix(".log")
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", "--max-restarts=3",
           "-m", "models.train", "--data", tiny, "--out", out, "--config", "small", "--epochs", "2",
           "--device", "cpu", "--quiet"]
    mark = f"DDP_TEST_RUN={os.getpid()}-{time.time_ns()}"
    env = {**os.environ, "OMP_NUM_THREADS": "1", mark.split("=")[0]: mark.split("=")[1]}
    start = time.monotonic()
    with log.open("w") as fh:
        proc = subprocess.Popen([str(c) for c in cmd], cwd=ROOT, env=env, stdout=fh, stderr=subprocess.STDOUT,
                                start_new_session=True)
    try:
        state = out / "resume" / "teacher.safetensors"
        while not state.exists():
            assert proc.poll() is None, log.read_text()[-3000:]
            assert time.monotonic() - start < TORCHRUN_TIMEOUT, "no epoch state written"
            time.sleep(0.02)
        victim = _worker(mark, 1)
        assert victim is not None
        os.kill(victim, signal.SIGKILL)
        code = proc.wait(timeout=TORCHRUN_TIMEOUT - (time.monotonic() - start))
    finally:
        if proc.poll() is None:  # torchrun passes SIGTERM on to its workers; what stays is killed
            proc.terminate()
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            for pid in _processes(mark):
                os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + 10
    while _processes(mark) and time.monotonic() < deadline:  # every worker exits with torchrun
        time.sleep(0.1)
    assert not _processes(mark), "training processes left behind"
    return code, log.read_text(), out


@pytest.fixture(scope="module")
def one_process(tiny, tmp_path_factory):
    """The teacher trained in this process, plainly, for 2 epochs, keeping epoch states."""
    from models.data import load_dataset
    from models.train import fit

    dataset = load_dataset(tiny)
    model_cfg, train_cfg = _configs(dataset, epochs=2)
    return fit(dataset, model_cfg, train_cfg, _cpu(), progress=False,
               state_path=tmp_path_factory.mktemp("one") / "teacher.safetensors")


def _configs(dataset, epochs: int):
    from models.config import PRESETS, TrainConfig
    from models.train import model_config_for

    return (model_config_for(dataset, PRESETS["small"]["model"]),
            TrainConfig.from_dict({**PRESETS["small"]["train"], "epochs": epochs}))


def _cpu():
    import torch

    return torch.device("cpu")


@pytest.mark.slow
def test_two_processes_resume_after_a_worker_is_killed(killed_and_resumed):
    from models.checkpoint import load_checkpoint

    code, log, out = killed_and_resumed
    assert code == 0, log[-3000:]
    # one attempt was killed, the restart resumed after the teacher's first epoch
    assert "restart 1" in log and "teacher: resuming after epoch 1" in log, log[-3000:]
    # rank 0 alone logs: each epoch once (the teacher's first only before the kill)
    for line in ("teacher epoch 1:", "teacher epoch 2:", "student epoch 1:", "student epoch 2:"):
        assert log.count(line) == 1, (line, log[-3000:])
    assert "INFO models.train [rank 1]" not in log and "INFO __main__ [rank 1]" not in log
    # identical replicas: each rank's parameter digest, gathered by rank 0
    for role in ("teacher", "student"):
        digests = re.findall(rf"{role}: \d+ optimizer steps in this process; replicas (\w+) (\w+)", log)
        assert len(digests) == 1 and digests[0][0] == digests[0][1], (role, digests)
    # a global batch of 32 over 64 samples: 2 optimizer steps per epoch, as in one process
    assert "teacher: 2 optimizer steps" in log and "student: 4 optimizer steps" in log
    # rank 0 wrote one checkpoint per stage and removed the finished run's epoch states
    assert sorted(p.name for p in out.iterdir()) == ["student", "teacher"]
    for role in ("teacher", "student"):
        ckpt = load_checkpoint(out / role)
        assert ckpt.provenance["distributed"] == {"world_size": 2, "backend": "gloo", "restarts": 1}
        assert ckpt.provenance["best_epoch"] in (1, 2)


@pytest.mark.slow
def test_two_processes_train_like_one(killed_and_resumed, one_process):
    """Same initial weights and global batches; the shares differ only in dropout, missing
    data and the batch-wide losses (each rank sees 16 of 32): the epochs' mean training
    loss within 5 % of one process's (measured: 0.7 % and 1.0 %)."""
    log = killed_and_resumed[1]
    two = [float(x) for x in re.findall(r"teacher epoch \d: train loss ([\d.]+)", log)]
    one = [record["total"] for record in one_process.history]
    assert len(two) == len(one) == 2
    np.testing.assert_allclose(two, one, rtol=0.05)


@pytest.mark.slow
def test_a_resumed_stage_goes_on_as_if_never_stopped(tiny, one_process, tmp_path):
    """Weights, optimiser moments, scheduler and every random state come back bit for bit."""
    from models.data import load_dataset
    from models.distributed import parameter_digest
    from models.train import fit

    dataset = load_dataset(tiny)
    state = tmp_path / "teacher.safetensors"
    model_cfg, train_cfg = _configs(dataset, epochs=1)
    fit(dataset, model_cfg, train_cfg, _cpu(), progress=False, state_path=state)
    model_cfg, train_cfg = _configs(dataset, epochs=2)
    resumed = fit(dataset, model_cfg, train_cfg, _cpu(), progress=False, state_path=state)
    assert resumed.steps == 2  # one epoch of 2 batches, after the saved one
    assert resumed.history == one_process.history
    assert parameter_digest(resumed.net) == parameter_digest(one_process.net)


def test_each_rank_takes_its_share_of_every_global_batch(tiny):
    from models.data import load_dataset
    from models.loop import batches

    split = load_dataset(tiny).splits["train"].subset(np.arange(37))
    plain = [b.index for b in batches(split, 8, _cpu(), np.random.default_rng(5))]
    shares = [[b.index for b in batches(split, 8, _cpu(), np.random.default_rng(5), (rank, 3))] for rank in range(3)]
    assert all(len(s) == len(plain) for s in shares)  # every rank takes every step
    for step, whole in enumerate(plain[:-1]):
        assert sorted(np.concatenate([s[step] for s in shares])) == sorted(whole)
    last = [s[-1] for s in shares]  # 5 samples left: 2 + 2 + 1, none empty
    assert [len(x) for x in last] == [2, 2, 1] and set(np.concatenate(last)) == set(plain[-1])
    tail = [s[-1] for s in ([b.index for b in batches(split, 18, _cpu(), None, (r, 2))] for r in range(2))]
    assert [len(x) for x in tail] == [1, 1]  # 1 sample left for 2 ranks: topped up from the start
    assert tail[0][0] == 36 and tail[1][0] == 0


def test_torchrun_is_recognised_by_its_variables():
    from models.distributed import SINGLE, ranks_from_env
    from models.errors import UsageError

    assert ranks_from_env({}) is SINGLE and SINGLE.shard is None
    ranks = ranks_from_env({"RANK": "3", "WORLD_SIZE": "4", "LOCAL_RANK": "1", "TORCHELASTIC_RESTART_COUNT": "2"})
    assert (ranks.rank, ranks.world_size, ranks.local_rank, ranks.restarts, ranks.main) == (3, 4, 1, 2, False)
    assert ranks.shard == (3, 4)
    for env in ({"RANK": "0"}, {"RANK": "x", "WORLD_SIZE": "2", "LOCAL_RANK": "0"},
                {"RANK": "2", "WORLD_SIZE": "2", "LOCAL_RANK": "0"}):
        with pytest.raises(UsageError):
            ranks_from_env(env)
