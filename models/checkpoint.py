"""Self-describing checkpoints: ``model.safetensors`` + ``checkpoint.json`` in one folder.

The JSON holds the model config (enough to rebuild the network), the feature set the
model was trained on (name, dims, steps, and what the extractor needs to reproduce it),
and provenance (dataset, metrics, date, code version). Loading refuses, in one line, a
checkpoint whose feature set differs from what the caller will feed it.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

import torch

from models.config import MODALITIES, ModelConfig

FORMAT_VERSION = 1
WEIGHTS = "model.safetensors"
CONFIG = "checkpoint.json"


class CheckpointError(ValueError):
    """A checkpoint that cannot be used; the message is one line naming the problem."""


@dataclass
class Checkpoint:
    """A loaded checkpoint: the rebuilt-ready config, the weights and the description."""

    model: ModelConfig
    feature_set: dict
    provenance: dict
    state_dict: dict[str, torch.Tensor] = field(repr=False)
    path: Path

    @property
    def id(self) -> str:
        return str(self.provenance.get("id", "unknown"))

    def build(self, device: str | torch.device = "cpu") -> torch.nn.Module:
        """The DMD network with these weights, in eval mode on ``device``."""
        from models.dmd import DMD

        net = DMD(self.model)
        missing, unexpected = net.load_state_dict(self.state_dict, strict=False)
        if missing or unexpected:
            raise CheckpointError(
                f"{self.path}: weights do not fit the config (missing {len(missing)}, unexpected {len(unexpected)})"
            )
        return net.to(device).eval()

    def check_features(self, name: str, dims: dict[str, int], steps: dict[str, int] | None = None) -> None:
        """Raise CheckpointError unless the feature set matches what will be fed."""
        have = self.feature_set
        if have.get("name") != name:
            raise CheckpointError(
                f"{self.path}: trained on feature set {have.get('name')!r}, the input is {name!r}"
            )
        if {m: int(v) for m, v in have.get("dims", {}).items()} != {m: int(dims[m]) for m in MODALITIES}:
            raise CheckpointError(f"{self.path}: feature dims {have.get('dims')} differ from the input's {dims}")
        if steps is not None and {m: int(v) for m, v in have.get("steps", {}).items()} != {
            m: int(steps[m]) for m in MODALITIES
        }:
            raise CheckpointError(f"{self.path}: steps {have.get('steps')} differ from the input's {steps}")


def code_version() -> str:
    """The git commit of this code when run from a checkout, else the package version."""
    root = Path(__file__).resolve().parent.parent
    try:
        out = subprocess.run(["git", "-C", str(root), "rev-parse", "--short", "HEAD"],
                             capture_output=True, text=True, timeout=5, check=True)
        return out.stdout.strip()
    except (OSError, subprocess.SubprocessError):
        from importlib.metadata import PackageNotFoundError, version

        try:
            return version("dmd-emotion")
        except PackageNotFoundError:
            return "unknown"


def save_checkpoint(directory: str | Path, net: torch.nn.Module, model_cfg: ModelConfig,
                    feature_set: dict, provenance: dict) -> Path:
    """Write weights and description; returns the folder. Provenance gains id, date, code."""
    from safetensors.torch import save_file

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().to("cpu").contiguous() for k, v in net.state_dict().items()}
    tmp = directory / (WEIGHTS + ".tmp")
    save_file(state, str(tmp))
    digest = hashlib.sha256(tmp.read_bytes()).hexdigest()
    tmp.replace(directory / WEIGHTS)
    provenance = dict(provenance)
    provenance.setdefault("date", _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"))
    provenance.setdefault("code_version", code_version())
    provenance["weights_sha256"] = digest
    provenance["id"] = f"{provenance.get('name', 'dmd')}-{digest[:12]}"
    doc = {"format": FORMAT_VERSION, "model": model_cfg.to_dict(), "feature_set": feature_set,
           "provenance": provenance}
    (directory / CONFIG).write_text(json.dumps(doc, indent=2, sort_keys=True) + "\n")
    return directory


def resolve_checkpoint_dir(path: str | Path) -> Path:
    """The checkpoint folder for a path: the folder itself, the folder of a file in it,
    or a training output folder's ``student`` (else ``teacher``) checkpoint."""
    path = Path(path)
    if not path.exists():
        raise CheckpointError(f"{path}: no such checkpoint folder")
    if path.is_file():
        path = path.parent
    if not (path / CONFIG).exists():
        for role in ("student", "teacher"):
            if (path / role / CONFIG).exists():
                return path / role
    return path


def load_checkpoint(directory: str | Path) -> Checkpoint:
    """Read a checkpoint folder; CheckpointError with a one-line reason on any problem."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    directory = resolve_checkpoint_dir(directory)
    cfg_path, weights_path = directory / CONFIG, directory / WEIGHTS
    for path in (cfg_path, weights_path):
        if not path.is_file():
            raise CheckpointError(f"{directory}: missing {path.name}")
    try:
        doc = json.loads(cfg_path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise CheckpointError(f"{cfg_path}: not valid JSON ({exc})") from None
    if not isinstance(doc, dict) or doc.get("format") != FORMAT_VERSION:
        raise CheckpointError(f"{cfg_path}: not a checkpoint of format {FORMAT_VERSION}")
    try:
        model_cfg = ModelConfig.from_dict(doc["model"])
    except (KeyError, TypeError, ValueError) as exc:
        raise CheckpointError(f"{cfg_path}: bad model config ({exc})") from None
    try:
        state = load_file(str(weights_path))
    except (SafetensorError, OSError, ValueError, RuntimeError) as exc:
        raise CheckpointError(f"{weights_path}: unreadable weights ({exc})") from None
    return Checkpoint(model=model_cfg, feature_set=dict(doc.get("feature_set", {})),
                      provenance=dict(doc.get("provenance", {})), state_dict=state, path=directory)
