"""Self-describing checkpoints: ``model.safetensors`` + ``checkpoint.json`` in one folder.

The JSON holds the model config (enough to rebuild the network), the feature set the
model was trained on (name, dims, steps, and what the extractor needs to reproduce it),
and provenance (dataset, metrics, date, code version). Loading refuses, in one line, a
checkpoint whose feature set differs from what the caller will feed it.
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import hashlib
import json
import logging
import math
import os
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from models import safejson
from models.config import ARCHITECTURES, MODALITIES, VOICINGS, ModelConfig, voicing_of
from models.errors import UserError

logger = logging.getLogger(__name__)

FORMAT_VERSION = 1
WEIGHTS = "model.safetensors"
CONFIG = "checkpoint.json"


class CheckpointError(UserError, ValueError):
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
        """The network the config names (DMD, or DHMD) with these weights, in eval mode on ``device``."""
        from models.dhmd import network_for

        net = network_for(self.model)
        try:
            missing, unexpected = net.load_state_dict(self.state_dict, strict=False)
        except RuntimeError as exc:  # tensor shapes that differ from the config's
            first = next((line.strip() for line in str(exc).splitlines() if "size mismatch" in line), str(exc))
            raise CheckpointError(f"{self.path}: weights do not fit the config ({first})") from None
        if missing or unexpected:
            raise CheckpointError(
                f"{self.path}: weights do not fit the config (missing {len(missing)}, unexpected {len(unexpected)})"
            )
        return net.to(device).eval()

    def check_features(self, name: str, dims: dict[str, int], steps: dict[str, int] | None = None,
                       extractor: dict | None = None) -> None:
        """Raise CheckpointError unless the feature set matches what will be fed (``extractor``:
        the data's extractor settings, where it names them, e.g. a dataset's meta)."""
        have = self.feature_set
        if isinstance(extractor, dict) and isinstance(have.get("extractor"), dict):
            ours, theirs = voicing_of(have["extractor"]), voicing_of(extractor)
            if ours != theirs:
                raise CheckpointError(f"{self.path}: trained on acoustic frames voiced by {ours!r}, the data's are "
                                      f"voiced by {theirs!r}; extract the data again with this code, or train a "
                                      "checkpoint on it")
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

    def class_labels_for(self, names, labels):
        """The data's class labels (indices into ``names``, its ``Dataset.class_names``; -1:
        none) as indices into this checkpoint's classes, matched by name; unchanged where
        either names no classes. CheckpointError where a label names a class the checkpoint
        does not predict: it would be scored as whatever class shares its index."""
        ours, theirs = tuple(self.model.class_names), tuple(names)
        if not ours or not theirs or labels is None:
            return labels
        index = np.array([ours.index(name) if name in ours else -2 for name in theirs])
        mapped = np.where(labels >= 0, index[labels.clip(0)], -1)
        if (mapped == -2).any():
            unknown = sorted({theirs[k] for k in labels[mapped == -2]})
            raise CheckpointError(f"{self.path}: predicts the classes {list(ours)}; the data's {unknown} "
                                  f"{'is' if len(unknown) == 1 else 'are'} not among them")
        return mapped


POSITIVE_FIELDS = ("d", "heads", "cross_layers", "memory_layers", "gd_size_homo", "gd_size_hetero", "dict_atoms")
"""Model sizes that must be at least 1 (other integer fields may be 0)."""
MAX_WINDOW = 600.0
"""Seconds: a longer feature window is not a setting anyone trained with."""


def _positive_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value > 0


def _finite_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def config_problem(doc: dict) -> str | None:
    """What is wrong with a checkpoint description as a whole, as one phrase naming the
    field (``model.heads must be a positive integer, got 0``), or None when it is usable.

    Checked before anything is built: a hand-edited ``checkpoint.json`` must give this
    line, never a ZeroDivisionError or a tensor size mismatch from deep inside.
    """
    model = doc.get("model")
    if not isinstance(model, dict):
        return "'model' must be an object"
    defaults = {f.name: f.default for f in dataclasses.fields(ModelConfig)}
    for name in ("dims", "steps", "kernels"):
        if name not in model and name in ("dims", "steps"):
            return f"model.{name} is missing"
        value = model.get(name, {m: 1 for m in MODALITIES})
        if not isinstance(value, dict):
            return f"model.{name} must be an object with keys {', '.join(MODALITIES)}"
        for m in MODALITIES:
            if not _positive_int(value.get(m)):
                return f"model.{name}.{m} must be a positive integer, got {value.get(m)!r}"
    for m, k in model.get("kernels", {}).items():
        if k % 2 == 0:
            return f"model.kernels.{m} must be odd, got {k}"
    for name, default in defaults.items():
        if name not in model or name in ("dims", "steps", "kernels"):
            continue
        value = model[name]
        if isinstance(default, bool):
            continue
        if isinstance(default, int) and name in POSITIVE_FIELDS and not _positive_int(value):
            return f"model.{name} must be a positive integer, got {value!r}"
        if isinstance(default, int) and not (_positive_int(value) or value == 0):
            return f"model.{name} must be an integer >= 0, got {value!r}"
        if isinstance(default, float):
            if not _finite_number(value) or value < 0:
                return f"model.{name} must be a finite number >= 0, got {value!r}"
            if name.endswith("dropout") and value >= 1:
                return f"model.{name} must be below 1, got {value!r}"
    architecture = model.get("architecture", defaults["architecture"])
    if architecture not in ARCHITECTURES:
        return f"model.architecture must be one of {', '.join(ARCHITECTURES)}, got {architecture!r}"
    if not isinstance(model.get("decouple", True), bool):
        return f"model.decouple must be true or false, got {model['decouple']!r}"
    if "dict_tau" in model and not model["dict_tau"] > 0:
        return f"model.dict_tau must be above 0, got {model['dict_tau']!r}"
    d, heads = model.get("d", defaults["d"]), model.get("heads", defaults["heads"])
    if d % heads:
        return f"model.heads ({heads}) must divide model.d ({d})"
    names = model.get("class_names", ())
    if not isinstance(names, (list, tuple)) or not all(isinstance(n, str) and n for n in names):
        return f"model.class_names must be a list of names, got {names!r}"
    if len(set(names)) != len(names):
        return f"model.class_names has a name twice: {list(names)}"
    feature_set = doc.get("feature_set", {})
    if not isinstance(feature_set, dict):
        return "'feature_set' must be an object"
    if "name" in feature_set and not isinstance(feature_set["name"], str):
        return f"feature_set.name must be a string, got {feature_set['name']!r}"
    for name in ("dims", "steps"):
        if name not in feature_set:
            continue
        have = feature_set[name]
        if not isinstance(have, dict) or any(not _positive_int(have.get(m)) for m in MODALITIES):
            return f"feature_set.{name} must give a positive integer for each of {', '.join(MODALITIES)}, got {have!r}"
        if {m: have[m] for m in MODALITIES} != {m: model[name][m] for m in MODALITIES}:
            return f"feature_set.{name} {have} differ from model.{name} {model[name]}"
    extractor = feature_set.get("extractor", {})
    if not isinstance(extractor, dict):
        return "feature_set.extractor must be an object"
    if "window" in extractor:
        window = extractor["window"]
        if not _finite_number(window) or not 0 < window <= MAX_WINDOW:
            return f"feature_set.extractor.window must be a number of seconds in (0, {MAX_WINDOW:g}], got {window!r}"
    for name in ("face_steps", "audio_steps", "text_tokens"):
        if name in extractor and not _positive_int(extractor[name]):
            return f"feature_set.extractor.{name} must be a positive integer, got {extractor[name]!r}"
    context = extractor.get("text_context", 0)
    if not (isinstance(context, int) and not isinstance(context, bool) and context >= 0):
        return f"feature_set.extractor.text_context must be a whole number of words, 0 or more, got {context!r}"
    if voicing_of(extractor) not in VOICINGS:
        return f"feature_set.extractor.voicing must be one of {', '.join(VOICINGS)}, got {extractor['voicing']!r}"
    if not isinstance(doc.get("provenance", {}), dict):
        return "'provenance' must be an object"
    return None


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
    # both files are written under temporary names and renamed at the end: a run killed
    # while saving leaves the previous checkpoint (or none), never half a file
    tmp = directory / f".{WEIGHTS}.tmp-{os.getpid()}"
    save_file(state, str(tmp))
    digest = hashlib.sha256(tmp.read_bytes()).hexdigest()
    provenance = dict(provenance)
    provenance.setdefault("date", _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"))
    provenance.setdefault("code_version", code_version())
    provenance["weights_sha256"] = digest
    provenance["id"] = f"{provenance.get('name', 'dmd')}-{digest[:12]}"
    doc = {"format": FORMAT_VERSION, "model": model_cfg.to_dict(), "feature_set": feature_set,
           "provenance": provenance}
    tmp_cfg = directory / f".{CONFIG}.tmp-{os.getpid()}"
    # metrics can be NaN (Non0 scores with no non-zero label): written as null, never as NaN
    tmp_cfg.write_text(safejson.dumps(doc, indent=2, sort_keys=True) + "\n")
    os.replace(tmp, directory / WEIGHTS)
    os.replace(tmp_cfg, directory / CONFIG)
    return directory


def resolve_checkpoint_dir(path: str | Path) -> Path:
    """The checkpoint folder for a path: the folder itself, the folder of a file in it,
    or a training output folder's ``student`` (else ``teacher``) checkpoint."""
    path = Path(path)
    if not path.exists():
        raise CheckpointError(f"{path}: no such checkpoint folder")
    if path.is_file():
        if path.name not in (CONFIG, WEIGHTS):
            raise CheckpointError(f"{path}: a file; a checkpoint is a folder holding {CONFIG} and {WEIGHTS}")
        path = path.parent
    if not (path / CONFIG).exists():
        if (path / "student" / CONFIG).exists():
            return path / "student"
        if (path / "teacher" / CONFIG).exists():
            logger.warning("'%s' holds no student/: using its teacher", path)
            return path / "teacher"
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
    problem = config_problem(doc)
    if problem:
        raise CheckpointError(f"{cfg_path}: {problem}")
    try:
        model_cfg = ModelConfig.from_dict(doc["model"])
    except (KeyError, TypeError, ValueError, ArithmeticError) as exc:
        raise CheckpointError(f"{cfg_path}: bad model config ({exc})") from None
    try:
        state = load_file(str(weights_path))
    except (SafetensorError, OSError, ValueError, RuntimeError) as exc:
        raise CheckpointError(f"{weights_path}: unreadable weights ({exc})") from None
    return Checkpoint(model=model_cfg, feature_set=dict(doc.get("feature_set", {})),
                      provenance=dict(doc.get("provenance", {})), state_dict=state, path=directory)
