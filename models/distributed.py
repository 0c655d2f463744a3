"""Training beyond one process: the ranks ``torchrun`` starts, and the epoch state a restarted run resumes from.

``python -m models.train`` run by ``torchrun`` finds RANK, WORLD_SIZE and LOCAL_RANK in its
environment and trains one DistributedDataParallel replica per process (gloo on CPU,
NCCL on GPU). Run plainly, none of this is touched. docs/DISTRIBUTED.md says what is
sharded, what rank 0 alone does, and how a restart resumes.

The epoch state is one safetensors file per stage (weights, best weights, optimiser
moments, random states as tensors; counters, history and settings as JSON in its
metadata): written under a temporary name and renamed, like checkpoints, and, like
everything this project writes, a format that cannot run code when read.
"""

from __future__ import annotations

import datetime
import hashlib
import json
import logging
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from models.errors import UsageError

logger = logging.getLogger(__name__)

TORCHRUN_VARIABLES = ("RANK", "WORLD_SIZE", "LOCAL_RANK")
"""Set by torchrun (and torch.distributed.launch) in every process it starts."""
RESUME_DIR = "resume"
"""The folder inside --out that holds an interrupted run's epoch states and its settings."""
RUN_FILE = "run.json"


@dataclass(frozen=True)
class Ranks:
    """Where this process stands among the training processes."""

    rank: int = 0
    """0 to world_size - 1; rank 0 alone logs, validates, and writes checkpoints and epoch states."""
    world_size: int = 1
    local_rank: int = 0
    """Rank on this machine: which GPU this process uses."""
    restarts: int = 0
    """How often torchrun restarted the processes (TORCHELASTIC_RESTART_COUNT): above 0, resume."""
    launched: bool = False
    """Started by torchrun: train DDP replicas even with one process."""

    @property
    def main(self) -> bool:
        return self.rank == 0

    @property
    def shard(self) -> tuple[int, int] | None:
        """(rank, world_size) for models.loop.batches, or None in a plain run."""
        return (self.rank, self.world_size) if self.launched else None


SINGLE = Ranks()
"""A plain, single-process run."""


def ranks_from_env(env: dict[str, str] | None = None) -> Ranks:
    """The Ranks torchrun's variables describe, or SINGLE when they are absent."""
    env = os.environ if env is None else env
    present = [name for name in TORCHRUN_VARIABLES if name in env]
    if not present:
        return SINGLE
    if len(present) < len(TORCHRUN_VARIABLES):
        missing = sorted(set(TORCHRUN_VARIABLES) - set(present))
        raise UsageError(f"{', '.join(present)} set without {', '.join(missing)}: start distributed training "
                         "with torchrun (docs/DISTRIBUTED.md)")
    try:
        values = {name: int(env[name]) for name in (*TORCHRUN_VARIABLES, "TORCHELASTIC_RESTART_COUNT")
                  if name in env}
    except ValueError:
        raise UsageError(f"torchrun's variables must be integers, got "
                         f"{ {name: env[name] for name in TORCHRUN_VARIABLES} }") from None
    if not 0 <= values["RANK"] < values["WORLD_SIZE"] or values["LOCAL_RANK"] < 0:
        raise UsageError(f"RANK {values['RANK']} does not fit WORLD_SIZE {values['WORLD_SIZE']}")
    return Ranks(rank=values["RANK"], world_size=values["WORLD_SIZE"], local_rank=values["LOCAL_RANK"],
                 restarts=values.get("TORCHELASTIC_RESTART_COUNT", 0), launched=True)


def start(ranks: Ranks, device: torch.device, timeout_s: float) -> torch.device:
    """Join the process group (NCCL for GPUs, gloo otherwise); returns this rank's device.

    Every collective waits at most ``timeout_s``: a rank whose peer died (a machine lost
    while torchrun's agents still wait) fails with an error instead of waiting forever.
    """
    import torch.distributed as dist

    if device.type == "cuda":
        device = torch.device("cuda", ranks.local_rank)  # one GPU per process on each machine
        torch.cuda.set_device(device)
    backend = "nccl" if device.type == "cuda" else "gloo"
    timeout = datetime.timedelta(seconds=timeout_s)
    store = None
    if os.environ.get("TORCHELASTIC_USE_AGENT_STORE") == "True" and os.environ.get("GROUP_WORLD_SIZE") == "1":
        # torchrun's agent keeps one store across restarts, holding the previous attempt's
        # addresses: a restarted rank 0 can read its peer's old address and fail with
        # "connectFullMesh failed ... Connection refused" (2 of 3 restarts here, and the
        # third hung). Keys of this attempt only: with one agent (one machine) every rank
        # has the same restart count. Several machines: docs/DISTRIBUTED.md.
        store, _, _ = next(dist.rendezvous("env://", timeout=timeout))
        store = dist.PrefixStore(f"models.train/attempt-{ranks.restarts}", store)
    dist.init_process_group(backend, timeout=timeout, device_id=device if device.type == "cuda" else None,
                            store=store, rank=ranks.rank if store else -1,
                            world_size=ranks.world_size if store else -1)
    logger.info("rank %d of %d (%s on %s), restart %d", ranks.rank, ranks.world_size, backend, device,
                ranks.restarts)
    return device


def stop() -> None:
    """Leave the process group, if joined (every process must, or it may not exit)."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def broadcast(value: Any, ranks: Ranks) -> Any:
    """Rank 0's ``value`` on every rank (anything picklable; ranks trust each other)."""
    if not ranks.launched:
        return value
    import torch.distributed as dist

    box = [value]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def gather(value: Any, ranks: Ranks) -> list:
    """Every rank's ``value``, in rank order, on every rank."""
    if not ranks.launched:
        return [value]
    import torch.distributed as dist

    out: list = [None] * ranks.world_size
    dist.all_gather_object(out, value)
    return out


def mean_over_ranks(sums: dict[str, float], ranks: Ranks) -> dict[str, float]:
    """Each value averaged over the ranks (the same keys on every rank)."""
    if not ranks.launched or not sums:
        return sums
    import torch.distributed as dist

    keys = sorted(sums)
    values = torch.tensor([sums[k] for k in keys], dtype=torch.float64)
    dist.all_reduce(values)
    return dict(zip(keys, (values / ranks.world_size).tolist()))


def barrier(ranks: Ranks) -> None:
    if ranks.launched:
        import torch.distributed as dist

        dist.barrier()


def parameter_digest(net: torch.nn.Module) -> str:
    """A short SHA-256 of every parameter and buffer, bit for bit: equal on identical replicas."""
    h = hashlib.sha256()
    for name, value in net.state_dict().items():
        h.update(name.encode())
        h.update(value.detach().cpu().contiguous().view(torch.uint8).numpy().tobytes())
    return h.hexdigest()[:16]


def random_state(gen: torch.Generator, device: torch.device) -> dict[str, torch.Tensor]:
    """This process's random states: the global one (dropout), ``gen`` (missing data), CUDA's."""
    state = {"torch": torch.get_rng_state(), "gen": gen.get_state()}
    if device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(device)
    return state


def set_random_state(state: dict[str, torch.Tensor], gen: torch.Generator, device: torch.device) -> None:
    torch.set_rng_state(state["torch"])
    gen.set_state(state["gen"])
    if device.type == "cuda" and "cuda" in state:
        torch.cuda.set_rng_state(state["cuda"], device)


# ----- epoch states -----


@dataclass
class EpochState:
    """Everything a stage needs to go on after its last finished epoch, bit for bit."""

    epoch: int
    stopped: bool
    """Early stopping ended the stage at this epoch."""
    best_epoch: int
    best_score: float
    history: list[dict]
    seconds: float
    net: dict[str, torch.Tensor]
    best: dict[str, torch.Tensor]
    optimizer: dict
    scheduler: dict
    numpy_rng: dict
    """The batch order's generator (the same on every rank)."""
    random: list[dict[str, torch.Tensor]]
    """Each rank's random_state, in rank order."""


def _jsonable(value: Any) -> Any:
    """JSON-safe, reversibly: non-finite floats as {"float": "inf"} (ReduceLROnPlateau keeps inf)."""
    if isinstance(value, float) and not math.isfinite(value):
        return {"float": repr(value)}
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    return value


def _from_json(value: Any) -> Any:
    if isinstance(value, dict):
        if set(value) == {"float"}:
            return float(value["float"])
        return {k: _from_json(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_from_json(v) for v in value]
    return value


def save_epoch_state(path: Path, state: EpochState) -> None:
    """Write ``state`` to ``path`` atomically (a temporary name, then a rename)."""
    from safetensors.torch import save_file

    tensors: dict[str, torch.Tensor] = {}
    for prefix, weights in (("net", state.net), ("best", state.best)):
        tensors.update({f"{prefix}.{k}": v for k, v in weights.items()})
    moments: dict[str, dict] = {}
    for index, slots in state.optimizer["state"].items():
        for key, value in slots.items():
            if torch.is_tensor(value):
                tensors[f"optimizer.{index}.{key}"] = value
            else:
                moments.setdefault(str(index), {})[key] = value
    for rank, rand in enumerate(state.random):
        tensors.update({f"random.{rank}.{k}": v for k, v in rand.items()})
    tensors = {k: v.detach().to("cpu").contiguous().clone() for k, v in tensors.items()}
    meta = {"epoch": state.epoch, "stopped": state.stopped, "best_epoch": state.best_epoch,
            "best_score": state.best_score, "history": state.history, "seconds": state.seconds,
            "param_groups": state.optimizer["param_groups"], "optimizer_scalars": moments,
            "scheduler": state.scheduler, "numpy_rng": state.numpy_rng, "world_size": len(state.random)}
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    save_file(tensors, str(tmp), metadata={"state": json.dumps(_jsonable(meta), allow_nan=False)})
    os.replace(tmp, path)


def load_epoch_state(path: Path) -> EpochState:
    """Read what save_epoch_state wrote; UsageError with a one-line reason if unreadable."""
    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(str(path), framework="pt") as fh:
            meta = _from_json(json.loads(fh.metadata()["state"]))
            tensors = {k: fh.get_tensor(k) for k in fh.keys()}  # noqa: SIM118 (safe_open is not a dict)
    except (SafetensorError, OSError, KeyError, ValueError) as exc:
        raise UsageError(f"{path}: unreadable epoch state ({exc}); remove it to start the stage again") from None

    def part(prefix: str) -> dict[str, torch.Tensor]:
        return {k[len(prefix) + 1:]: v for k, v in tensors.items() if k.startswith(prefix + ".")}

    opt_state: dict[int, dict] = {}
    for key, value in part("optimizer").items():
        index, slot = key.split(".", 1)
        opt_state.setdefault(int(index), {})[slot] = value
    for index, slots in meta["optimizer_scalars"].items():
        opt_state.setdefault(int(index), {}).update(slots)
    random = [part(f"random.{rank}") for rank in range(meta["world_size"])]
    return EpochState(epoch=meta["epoch"], stopped=meta["stopped"], best_epoch=meta["best_epoch"],
                      best_score=meta["best_score"], history=meta["history"], seconds=meta["seconds"],
                      net=part("net"), best=part("best"),
                      optimizer={"state": opt_state, "param_groups": meta["param_groups"]},
                      scheduler=meta["scheduler"], numpy_rng=meta["numpy_rng"], random=random)


def numpy_state(rng: np.random.Generator) -> dict:
    return dict(rng.bit_generator.state)


def set_numpy_state(rng: np.random.Generator, state: dict) -> None:
    rng.bit_generator.state = state


def read_run_file(folder: Path) -> dict | None:
    """The settings and finished stages of the interrupted run in ``folder``, or None."""
    path = folder / RUN_FILE
    if not path.is_file():
        return None
    try:
        doc = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise UsageError(f"{path}: unreadable ({exc}); remove {folder} to start again") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("identity"), dict):
        raise UsageError(f"{path}: not a run description; remove {folder} to start again")
    return doc


def write_run_file(folder: Path, doc: dict) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    tmp = folder / f".{RUN_FILE}.tmp-{os.getpid()}"
    tmp.write_text(json.dumps(_jsonable(doc), allow_nan=False, indent=2, sort_keys=True) + "\n")
    os.replace(tmp, folder / RUN_FILE)


def comparable(value: Any) -> Any:
    """``value`` as it reads back from a run file (tuples as lists), for comparing settings."""
    return _from_json(json.loads(json.dumps(_jsonable(value), sort_keys=True)))
