"""Datasets in the MMSA pickle format (CMU-MOSI, CMU-MOSEI, CH-SIMS and our own features).

An MMSA pickle is a dict with the splits ``train``, ``valid`` and ``test``; each split is
a dict of arrays over N samples:

* ``text`` (N, T_l, d_l) features (or only ``text_bert`` (N, 3, T_l) token ids, which
  need a BERT we do not ship: refused with a message), ``audio`` (N, T_a, d_a),
  ``vision`` (N, T_v, d_v), ``regression_labels`` (N,), ``id`` (N,);
* unaligned sets also carry ``audio_lengths`` and ``vision_lengths`` (N,).

Files written by ``realtime.extract`` add ``text_mask``, ``audio_mask``, ``vision_mask``
(N, T) per split, optionally ``class_labels`` (N,) with -1 for unknown and
``valence_weights`` (N,) in [0, 1] with 0 for a sample whose ``regression_labels`` entry is a
placeholder (its corpus names emotions but rates no valence), and a top-level ``meta``
dict (``feature_set``, ``class_names``, ...).

A pickle runs code when it is loaded: a crafted ``.pkl`` can do anything the user can.
MMSA's pickles stay readable because researchers have them, with a warning naming the
file before it is opened; the project's own tools (realtime.extract, realtime.corpus,
models.synthetic) write only the pickle-free ``.npz`` below.

The same content can live in a NumPy archive without pickles (``.npz``, written by
``save_dataset``): one array per ``<split>.<key>``, text as unicode arrays, and ``meta``
as a JSON string. Loading it runs no code; the project's own tools write this format.
"""

from __future__ import annotations

import json
import logging
import os
import pickle
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from models.config import MODALITIES
from models.errors import UserError

logger = logging.getLogger(__name__)

PICKLE_NOTE = ("A pickle runs any code it holds when loaded: only pass .pkl files from a source you trust "
               "(the loader names the file it is about to trust).")
"""For --help of the commands that read datasets."""

SPLITS = ("train", "valid", "test")
KEYS = {"L": "text", "A": "audio", "V": "vision"}
LENGTH_KEYS = {"A": "audio_lengths", "V": "vision_lengths"}


class DataError(UserError, ValueError):
    """A dataset file that cannot be used; the message is one line naming the problem."""


@dataclass
class Split:
    """One split as arrays: inputs and masks per modality, labels, ids."""

    inputs: dict[str, np.ndarray]  # m -> (N, T_m, d_m) float32
    masks: dict[str, np.ndarray]  # m -> (N, T_m) float32, 1 present
    labels: np.ndarray  # (N,) float32 sentiment
    class_labels: np.ndarray | None  # (N,) int64, -1 unknown
    ids: list[str]
    channel_weights: np.ndarray | None = None
    """(N, 3) in MODALITIES order, or None (all 1): how much each present channel's own
    branch learns the sample's labels. 0 marks a bystander: a neutral voice paired with
    surprised words teaches the fused reading, not the voice's own."""
    valence_weights: np.ndarray | None = None
    """(N,) or None (all 1): 0 marks a sample whose corpus names an emotion but rates no
    valence (its ``labels`` entry is a placeholder): it stays out of the valence losses and
    the valence metrics, and still teaches its emotion."""

    def __len__(self) -> int:
        return len(self.labels)

    @property
    def rated(self) -> np.ndarray:
        """(N,) bool: the samples that rate a valence (weight above 0), those its valence
        losses and metrics cover; a class-only sample rates none."""
        if self.valence_weights is None:
            return np.ones(len(self), dtype=bool)
        return self.valence_weights > 0

    def subset(self, index: np.ndarray) -> Split:
        return Split(
            inputs={m: v[index] for m, v in self.inputs.items()},
            masks={m: v[index] for m, v in self.masks.items()},
            labels=self.labels[index],
            class_labels=None if self.class_labels is None else self.class_labels[index],
            ids=[self.ids[i] for i in index],
            channel_weights=None if self.channel_weights is None else self.channel_weights[index],
            valence_weights=None if self.valence_weights is None else self.valence_weights[index],
        )


@dataclass
class Dataset:
    """All splits of a file plus what describes its features."""

    splits: dict[str, Split]
    feature_set: str
    class_names: tuple[str, ...] = ()
    meta: dict = field(default_factory=dict)
    source: str = ""

    @property
    def dims(self) -> dict[str, int]:
        any_split = next(iter(self.splits.values()))
        return {m: int(any_split.inputs[m].shape[2]) for m in MODALITIES}

    @property
    def steps(self) -> dict[str, int]:
        any_split = next(iter(self.splits.values()))
        return {m: int(any_split.inputs[m].shape[1]) for m in MODALITIES}

    def classes_not_in(self, split: str = "train") -> list[str]:
        """The class names no sample of ``split`` holds (none where it has no class labels)."""
        labels = self.splits[split].class_labels if split in self.splits else None
        return missing_classes(self.class_names, labels)


def missing_classes(names, labels: np.ndarray | None) -> list[str]:
    """The ``names`` that no label (an index into them; -1: none) points to."""
    if not names or labels is None:
        return []
    seen = set(np.asarray(labels).tolist())
    return [name for k, name in enumerate(names) if k not in seen]


PICKLE_SUFFIXES = (".pkl", ".pickle")
"""The names of MMSA's feature files (aligned_50.pkl, unaligned_39.pkl): the only files read as pickles."""


def load_dataset(path: str | Path, splits: tuple[str, ...] = SPLITS) -> Dataset:
    """Read and validate a dataset (a pickle-free ``.npz``, or an MMSA pickle, which runs
    code when loaded: a warning names it first); raise DataError with a one-line reason."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: no such file")
    if path.suffix.lower() == ".npz":
        return dataset_from_dict(read_npz(path), splits=splits, source=str(path))
    if path.suffix.lower() not in PICKLE_SUFFIXES:  # never unpickle a file that does not say it is one
        raise DataError(f"{path}: a dataset is a .npz (python -m realtime.extract writes one) or an MMSA "
                        "feature pickle (.pkl or .pickle)")
    # MMSA's feature files are pickles and researchers have them; loading one runs any
    # code it holds, so say which file is trusted, before it is opened (issue 17)
    logger.warning("'%s' is a pickle: loading it runs any code it holds; trusting it as an MMSA dataset "
                   "(only load pickles from a source you trust; this project's own tools write .npz)", path)
    try:
        with path.open("rb") as fh:
            raw = pickle.load(fh)
    except Exception as exc:  # unpickling can raise nearly anything on a bad file
        raise DataError(f"{path}: not a readable pickle ({type(exc).__name__}: {exc})") from None
    return dataset_from_dict(raw, splits=splits, source=str(path))


def save_dataset(path: str | Path, data: dict) -> Path:
    """Write an MMSA-style dict (splits of arrays, optional ``meta``) as a pickle-free .npz,
    atomically (a temporary name, then a rename)."""
    path = Path(path)
    arrays = {"meta": np.array(json.dumps(data.get("meta", {})))}
    for name, split in data.items():
        if name == "meta":
            continue
        for key, value in split.items():
            arr = np.asarray(value)
            if arr.dtype == object:
                arr = arr.astype(str)
            arrays[f"{name}.{key}"] = arr
    path.parent.mkdir(parents=True, exist_ok=True)
    return save_arrays(path, arrays)


def save_arrays(path: Path, arrays: dict[str, np.ndarray]) -> Path:
    """A NumPy archive written whole: under a temporary name, then renamed (a killed run
    leaves the old file or the new one, never half of one)."""
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as fh:  # a file object: np.savez would add .npz to a name
        np.savez(fh, **arrays)
    os.replace(tmp, path)
    return path


def read_npz(path: Path) -> dict:
    """The MMSA-style dict of a .npz written by save_dataset; no pickles are loaded. The file
    is opened here and closed whatever happens (np.load left a damaged archive's open)."""
    try:
        fh = open(path, "rb")
    except OSError as exc:
        raise DataError(f"{path}: cannot read it ({exc.strerror})") from None
    with fh:
        if fh.read(4) not in (b"PK\x03\x04", b"PK\x05\x06"):  # np.load would take it for a pickle, and say so
            raise DataError(f"{path}: not a NumPy archive (a .npz is a zip of arrays)")
        fh.seek(0)
        try:
            with np.load(fh, allow_pickle=False) as z:
                raw: dict = {}
                for key in z.files:
                    if key == "meta":
                        raw["meta"] = json.loads(str(z[key]))
                        continue
                    split, _, field_name = key.partition(".")
                    raw.setdefault(split, {})[field_name] = z[key]
        except (OSError, zipfile.BadZipFile, json.JSONDecodeError) as exc:  # (the last is a ValueError too)
            raise DataError(f"{path}: not a readable dataset archive ({exc})") from None
        except ValueError:  # object arrays need pickles: refused (numpy's message offers to load them anyway)
            raise DataError(f"{path}: not a pickle-free dataset archive: it holds object arrays, which only a "
                            "pickle can load, and this project never loads them (realtime.extract writes "
                            "none)") from None
    return raw


def dataset_from_dict(raw: object, splits: tuple[str, ...] = SPLITS, source: str = "<memory>") -> Dataset:
    """Validate an MMSA-format dict (as unpickled) and build a Dataset."""
    if not isinstance(raw, dict):
        raise DataError(f"{source}: expected a dict of splits, got {type(raw).__name__}")
    meta = raw.get("meta", {}) or {}
    if not isinstance(meta, dict):
        raise DataError(f"{source}: 'meta' must be a dict")
    out: dict[str, Split] = {}
    for name in splits:
        if name not in raw:
            raise DataError(f"{source}: missing split '{name}' (has {sorted(k for k in raw if k != 'meta')})")
        out[name] = _split(raw[name], f"{source}: split '{name}'")
    dims = {name: {m: s.inputs[m].shape[2] for m in MODALITIES} for name, s in out.items()}
    steps = {name: {m: s.inputs[m].shape[1] for m in MODALITIES} for name, s in out.items()}
    first = next(iter(out))
    for name in out:
        if dims[name] != dims[first] or steps[name] != steps[first]:
            raise DataError(
                f"{source}: split '{name}' has shapes {steps[name]}x{dims[name]}, "
                f"split '{first}' has {steps[first]}x{dims[first]}"
            )
    class_names = tuple(meta.get("class_names", ()))
    if class_names:  # an index past the names would fail mid-training, or be scored as another class
        for name, split in out.items():
            if split.class_labels is not None and len(split.class_labels) and \
                    split.class_labels.max() >= len(class_names):
                raise DataError(f"{source}: split '{name}' has class {int(split.class_labels.max())}, but "
                                f"meta's class_names name {len(class_names)}: {list(class_names)}")
    feature_set = str(meta.get("feature_set", "mmsa"))
    return Dataset(splits=out, feature_set=feature_set, class_names=class_names, meta=meta, source=source)


def _array(split: dict, key: str, where: str, ndim: int) -> np.ndarray:
    if key not in split:
        raise DataError(f"{where} lacks key '{key}'")
    try:
        arr = np.asarray(split[key], dtype=np.float32)
    except (TypeError, ValueError):
        raise DataError(f"{where}: '{key}' is not numeric") from None
    if arr.ndim != ndim:
        raise DataError(f"{where}: '{key}' should have {ndim} dimensions, has shape {arr.shape}")
    return arr


def _split(split: object, where: str) -> Split:
    if not isinstance(split, dict):
        raise DataError(f"{where} is not a dict")
    if "text" not in split and "text_bert" in split:
        raise DataError(f"{where} has only 'text_bert' token ids; a BERT is needed to embed them: "
                        "use a pickle with 'text' features")
    labels = _array(split, "regression_labels", where, 1) if "regression_labels" in split else None
    if labels is None:
        raise DataError(f"{where} lacks key 'regression_labels'")
    n = len(labels)
    if n == 0:
        raise DataError(f"{where} is empty")
    inputs, masks = {}, {}
    for m in MODALITIES:
        key = KEYS[m]
        arr = _array(split, key, where, 3)
        if arr.shape[0] != n:
            raise DataError(f"{where}: '{key}' has {arr.shape[0]} samples, labels have {n}")
        if arr.shape[1] == 0 or arr.shape[2] == 0:
            raise DataError(f"{where}: '{key}' has an empty shape {arr.shape}")
        if np.isnan(arr).any():
            bad = int(np.isnan(arr).any(axis=(1, 2)).sum())
            raise DataError(f"{where}: '{key}' has NaN values in {bad} samples")
        if np.isinf(arr).any():
            # MMSA's own loader sets COVAREP's -inf to 0; do the same, and say so
            logger.warning("%s: '%s' has infinite values; set to 0 as MMSA does", where, key)
            arr[np.isinf(arr)] = 0.0
        inputs[m] = arr
    if np.isnan(labels).any():
        raise DataError(f"{where}: 'regression_labels' has NaN values")
    if np.isinf(labels).any():  # a loss of inf every epoch, and a model that learned nothing
        raise DataError(f"{where}: 'regression_labels' has infinite values in {int(np.isinf(labels).sum())} samples")
    for m in MODALITIES:
        masks[m] = _mask(split, m, inputs, where)
    class_labels = None
    if "class_labels" in split:
        class_labels = np.asarray(split["class_labels"], dtype=np.int64)
        if class_labels.shape != (n,):
            raise DataError(f"{where}: 'class_labels' has shape {class_labels.shape}, expected ({n},)")
        if len(class_labels) and class_labels.min() < -1:
            raise DataError(f"{where}: 'class_labels' holds {int(class_labels.min())}; a class is 0 or more "
                            "(-1: none)")
    ids = [str(i) for i in split.get("id", range(n))]
    if len(ids) != n:
        raise DataError(f"{where}: 'id' has {len(ids)} entries, labels have {n}")
    valence_weights = None
    if "valence_weights" in split:
        valence_weights = _array(split, "valence_weights", where, 1)
        if valence_weights.shape != (n,) or not (np.all(valence_weights >= 0) and np.all(valence_weights <= 1)):
            raise DataError(f"{where}: 'valence_weights' must be {n} numbers within [0, 1]")
    return Split(inputs=inputs, masks=masks, labels=labels.astype(np.float32), class_labels=class_labels, ids=ids,
                 valence_weights=valence_weights)


def _mask(split: dict, m: str, inputs: dict[str, np.ndarray], where: str) -> np.ndarray:
    n, steps = inputs[m].shape[:2]
    key = f"{KEYS[m]}_mask"
    if key in split:
        mask = np.asarray(split[key], dtype=np.float32)
        if mask.shape != (n, steps):
            raise DataError(f"{where}: '{key}' has shape {mask.shape}, expected {(n, steps)}")
        return (mask > 0).astype(np.float32)
    if m == "L":
        bert = split.get("text_bert")
        if bert is not None and np.asarray(bert).shape == (n, 3, steps):
            return (np.asarray(bert)[:, 1, :] > 0).astype(np.float32)  # BERT attention mask
        return (np.abs(inputs["L"]).sum(2) > 0).astype(np.float32)
    if m in LENGTH_KEYS and LENGTH_KEYS[m] in split:
        lengths = np.asarray(split[LENGTH_KEYS[m]]).astype(np.int64).reshape(-1)
        if lengths.shape != (n,):
            raise DataError(f"{where}: '{LENGTH_KEYS[m]}' has shape {lengths.shape}, expected ({n},)")
        return (np.arange(steps)[None, :] < lengths[:, None]).astype(np.float32)
    if steps == inputs["L"].shape[1]:
        # aligned data without lengths: steps follow the words
        return _mask(split, "L", inputs, where)
    return np.ones((n, steps), dtype=np.float32)
