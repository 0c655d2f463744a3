"""Build the emotion training corpus from unimodal labelled sources, with the live extractors.

    python -m realtime.corpus --out corpus.npz [--faces FER_DIR] [--voice EMODB_DIR]
        [--texts GOEMOTIONS_EKMAN_DIR] [--sentences VADER_DIR] [--subtitles XED_DIR] [--work DIR] [--seed 0]

No freely licensed corpus labels face, voice and words together, so each source supplies
the channel it has and the others are absent (masked), which the DMD student is built to
tolerate. Every feature comes from ``realtime``'s workers, the code the live pipeline runs:

* faces (FER2013 layout: ``train/ validation/ test/<class>/*.jpg``): each photograph,
  upscaled, goes through MediaPipe (``FaceExtractor``) and is held for the whole window, as
  a face holding an expression would be; images where MediaPipe finds no face are counted
  and left out. Augmented copies (``*.jpgN.jpg``) are skipped: only original images.
* voice (EmoDB file names ``SSaTTEv.wav``: speaker, text, emotion letter): each speaker's
  clips run as one audio stream through ``AcousticExtractor``, twice, so that its per-stream
  normalisation has seen the speaker (as a live stream has after a minute); each clip is one
  window centred on it. Split by speaker. The words are German: the text channel is absent.
* texts (GoEmotions' Ekman files ``train.tsv dev.tsv test.tsv``): single-label comments
  only, embedded by ``TextEmbedder`` as a window's words would be.
* sentences (VADER's ``*GroundTruth*.txt``): valence from about 20 human ratings each, no
  emotion class (-1): they teach the words' valence.
* subtitles (XED's ``en-annotated.tsv`` and ``neu_en.txt``): English movie subtitle lines,
  spoken dialogue as a conversation's words are, with one emotion each (Plutchik's
  anticipation and trust have no class here); split by a hash of the line's text.

Writes a NumPy archive without pickles (``models.data`` reads it) and a JSON sidecar
with the counts, sources and splits. Each source is extracted once into ``--work`` and
reused by the next run with the same options (folder, sampling, seed, exclusions). Bad
items (an unreadable image or clip, an unknown label) are reported with their path and
left out; a missing folder stops the run before any work.

``--exclude FILE`` (repeatable) names sentences that must never train the model: an
evaluation set drawn from the same source (SST's sentences are VADER's movie snippets).
Comments and rated sentences whose letters and digits match one of them are left out of
every split and counted.
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import html
import json
import logging
import re
import sys
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from models.data import DataError, save_arrays, save_dataset
from models.emotions import EMODB_LETTERS, EMOTIONS, FER_FOLDERS, GOEMOTIONS_EKMAN, VALENCE, XED_LABELS
from models.errors import Parser, UserError

logger = logging.getLogger(__name__)

RATING_TO_MOSI = 0.75
"""VADER's [-4, 4] mean ratings onto MOSI's [-3, 3]."""
FACE_SIZE = 192
"""FER's 48x48 photographs are upscaled to this before MediaPipe (it finds few faces at 48)."""
EMODB_SPLIT = {"03": "test", "08": "test", "09": "valid", "10": "valid"}
"""EmoDB speakers held out (03 and 10 male, 08 and 09 female); the other six train."""
SPLITS = ("train", "valid", "test")
WORDS = ("texts", "sentences", "subtitles")
"""The sources that train the words."""


@dataclass
class Part:
    """Extracted samples of one source and modality, all splits."""

    modality: str  # "V", "A" or "L"
    features: dict[str, list[np.ndarray]] = field(default_factory=lambda: {s: [] for s in SPLITS})
    masks: dict[str, list[np.ndarray]] = field(default_factory=lambda: {s: [] for s in SPLITS})
    classes: dict[str, list[int]] = field(default_factory=lambda: {s: [] for s in SPLITS})
    valence: dict[str, list[float]] = field(default_factory=lambda: {s: [] for s in SPLITS})
    ids: dict[str, list[str]] = field(default_factory=lambda: {s: [] for s in SPLITS})
    skipped: dict[str, int] = field(default_factory=dict)
    recipe: dict = field(default_factory=dict)
    """The options that made it; a cached part is reused only for the same recipe."""

    def add(self, split: str, features: np.ndarray, mask: np.ndarray, cls: int, valence: float, ident: str) -> None:
        self.features[split].append(features.astype(np.float32))
        self.masks[split].append(mask.astype(np.float32))
        self.classes[split].append(cls)
        self.valence[split].append(float(valence))
        self.ids[split].append(ident)

    def skip(self, reason: str) -> None:
        self.skipped[reason] = self.skipped.get(reason, 0) + 1

    def save(self, path: Path) -> None:
        arrays = {}
        for s in SPLITS:
            if not self.ids[s]:
                continue
            arrays[f"{s}.x"] = np.stack(self.features[s])
            arrays[f"{s}.mask"] = np.stack(self.masks[s])
            arrays[f"{s}.class"] = np.array(self.classes[s], dtype=np.int64)
            arrays[f"{s}.valence"] = np.array(self.valence[s], dtype=np.float32)
            arrays[f"{s}.id"] = np.array(self.ids[s], dtype=str)
        arrays["meta"] = np.array(json.dumps({"modality": self.modality, "skipped": self.skipped,
                                              "recipe": self.recipe}))
        save_arrays(path, arrays)

    @staticmethod
    def read_recipe(path: Path) -> dict:
        """The recipe a saved part was made with, without reading its arrays."""
        with np.load(path, allow_pickle=False) as z:
            return json.loads(str(z["meta"])).get("recipe", {})

    @classmethod
    def load(cls, path: Path) -> Part:
        with np.load(path, allow_pickle=False) as z:
            meta = json.loads(str(z["meta"]))
            part = cls(modality=meta["modality"], skipped=meta["skipped"], recipe=meta.get("recipe", {}))
            for s in SPLITS:
                if f"{s}.x" not in z:
                    continue
                part.features[s] = list(z[f"{s}.x"])
                part.masks[s] = list(z[f"{s}.mask"])
                part.classes[s] = z[f"{s}.class"].tolist()
                part.valence[s] = z[f"{s}.valence"].tolist()
                part.ids[s] = z[f"{s}.id"].tolist()
        return part

    def counts(self) -> dict[str, dict[str, int]]:
        out = {}
        for s in SPLITS:
            per = {}
            for c in self.classes[s]:
                name = EMOTIONS[c] if c >= 0 else "valence only"
                per[name] = per.get(name, 0) + 1
            out[s] = per
        return out


def _need_folder(path: Path, what: str) -> Path:
    if not path.is_dir():
        raise DataError(f"--{what} '{path}' is not a folder")
    return path


def _subsample(items: list, n: int | None, rng: np.random.Generator) -> list:
    if n is None or len(items) <= n:
        return items
    idx = np.sort(rng.choice(len(items), n, replace=False))
    return [items[i] for i in idx]


# ---- faces -------------------------------------------------------------------------
FER_SPLITS = {"train": "train", "validation": "valid", "valid": "valid", "test": "test"}
_AUGMENTED = re.compile(r"\.(jpe?g|png)\d+\.(jpe?g|png)$", re.IGNORECASE)


def face_images(folder: Path, per_class: int, rng: np.random.Generator) -> list[tuple[str, str, Path]]:
    """(split, emotion, path) for the original images of a FER2013-layout folder."""
    _need_folder(folder, "faces")
    out = []
    for split_dir in sorted(p for p in folder.iterdir() if p.is_dir()):
        split = FER_SPLITS.get(split_dir.name.lower())
        if split is None:
            logger.warning("faces: folder '%s' is not a split (train, validation, test); left out", split_dir)
            continue
        limit = per_class if split == "train" else max(1, per_class // 4)
        for class_dir in sorted(p for p in split_dir.iterdir() if p.is_dir()):
            emotion = FER_FOLDERS.get(class_dir.name.lower())
            if emotion is None:
                logger.warning("faces: unknown label folder '%s' (known: %s); left out", class_dir,
                               ", ".join(FER_FOLDERS))
                continue
            files = sorted(p for p in class_dir.iterdir()
                           if p.suffix.lower() in (".jpg", ".jpeg", ".png") and not _AUGMENTED.search(p.name))
            out.extend((split, emotion, p) for p in _subsample(files, limit, rng))
    if not out:
        raise DataError(f"--faces '{folder}': no images in <split>/<class>/ folders")
    return out


def extract_faces(folder: Path, per_class: int, seed: int, spec, face_model: str | None) -> Part:
    import cv2
    from tqdm import tqdm

    from realtime.features.face import FaceExtractor, FaceOptions
    from realtime.types import VideoFrame

    rng = np.random.default_rng(seed)
    part = Part("V")
    items = face_images(folder, per_class, rng)
    extractor = FaceExtractor(FaceOptions(model_path=face_model))
    try:
        for split, emotion, path in tqdm(items, desc="faces", unit="image", leave=False):
            image = cv2.imread(str(path), cv2.IMREAD_COLOR)
            if image is None:
                logger.warning("faces: '%s' is not a readable image; left out", path)
                part.skip("unreadable")
                continue
            image = cv2.resize(image, (FACE_SIZE, FACE_SIZE), interpolation=cv2.INTER_CUBIC)
            image = np.ascontiguousarray(image[:, :, ::-1])  # BGR -> RGB
            extractor.new_stream()
            found = extractor(VideoFrame(t=0.0, image=image))
            if found.features is None:
                part.skip("no face found")
                continue
            x = np.repeat(found.features[None], spec.face_steps, axis=0)
            cls = EMOTIONS.index(emotion)
            part.add(split, x, np.ones(spec.face_steps), cls, VALENCE[emotion], f"fer/{path.parent.parent.name}/"
                     f"{path.parent.name}/{path.name}")
    finally:
        extractor.close()
    return part


# ---- voice -------------------------------------------------------------------------
def voice_clips(folder: Path) -> dict[str, list[tuple[str, Path]]]:
    """speaker -> [(emotion, path)] from EmoDB file names; other letters are reported."""
    _need_folder(folder, "voice")
    speakers: dict[str, list[tuple[str, Path]]] = {}
    for path in sorted(folder.glob("*.wav")):
        name = path.stem
        if len(name) < 6 or not name[:2].isdigit():
            logger.warning("voice: '%s' is not an EmoDB file name (SSaTTEv.wav); left out", path)
            continue
        letter = name[5]
        if letter == "L":  # boredom: no category of ours
            continue
        emotion = EMODB_LETTERS.get(letter)
        if emotion is None:
            logger.warning("voice: '%s' has unknown emotion letter %r; left out", path, letter)
            continue
        speakers.setdefault(name[:2], []).append((emotion, path))
    if not speakers:
        raise DataError(f"--voice '{folder}': no EmoDB .wav files")
    return speakers


def _read_audio(path: Path) -> np.ndarray | None:
    from realtime.sources.file import FileSource
    from realtime.types import AudioChunk

    try:
        chunks = [item.samples for item in FileSource(path) if isinstance(item, AudioChunk)]
    except Exception as exc:  # PyAV raises many kinds of errors on damaged media
        logger.warning("voice: '%s' is not readable audio (%s); left out", path, exc)
        return None
    return np.concatenate(chunks) if chunks else None


@dataclass(frozen=True)
class VoiceLevels:
    """How loud each voice clip is made before extraction.

    The EmoDB copy this project trains on was peak-normalised clip by clip (every clip's
    peak is 0.93-1.00 of full scale), which inverts loudness: a shouted clip, with its high
    peaks, ends up quieter on average than a sad one (mean power: angry -20.2 dBFS, sad
    -16.5). A channel trained on that learns "loud means sad". So each clip is first set to
    one mean power (``level``, dBFS), then each training speaker's clips get a random gain
    of up to ``jitter`` dB either way, so that no clip's level says anything about its
    emotion; validation and test speakers are only levelled. ``level`` None keeps the
    recorded levels (a copy that was never normalised)."""

    level: float | None = -26.0
    jitter: float = 6.0

    def apply(self, y: np.ndarray, rng: np.random.Generator | None) -> np.ndarray:
        gain = 1.0
        if self.level is not None:
            power = float(np.sqrt(np.mean(np.square(y, dtype=np.float64))))
            if power > 1e-6:
                gain = 10 ** (self.level / 20) / power
        if rng is not None and self.jitter > 0:
            gain *= 10 ** (float(rng.uniform(-self.jitter, self.jitter)) / 20)
        return np.clip(y * gain, -1.0, 1.0).astype(np.float32) if gain != 1.0 else y


def extract_voice(folder: Path, spec, copies: int, seed: int, augment: int = 0,
                  levels: VoiceLevels = VoiceLevels()) -> Part:
    """Each speaker's clips as one stream, twice (the first pass fills the statistics).

    With ``augment`` > 0, each training speaker's stream is also replayed that many times
    speed-perturbed (resampled by a factor in 0.85..1.15, which moves pitch, formants and
    tempo together, as a different vocal tract would): new voices for the channel to learn
    from, each normalised as its own stream. Validation and test speakers stay as recorded
    (levelled only: ``VoiceLevels``).
    """
    from realtime.features.acoustic import AcousticExtractor

    rng = np.random.default_rng(seed)
    part = Part("A")
    with AcousticExtractor(spec.acoustic_options()) as extractor:
        _voice_streams(part, extractor, folder, spec, copies, rng, augment, levels)
    return part


def _voice_streams(part: Part, extractor, folder: Path, spec, copies: int, rng, augment: int,
                   levels: VoiceLevels) -> None:
    from tqdm import tqdm

    rate = extractor.options.rate
    for speaker, clips in tqdm(sorted(voice_clips(folder).items()), desc="voice", unit="speaker", leave=False):
        split = EMODB_SPLIT.get(speaker, "train")
        audio = [(emotion, path, _read_audio(path)) for emotion, path in clips]
        for _, _, y in audio:
            if y is None:
                part.skip("unreadable")
        audio = [a for a in audio if a[2] is not None and len(a[2]) > rate // 4]
        if not audio:
            continue
        gains = rng if split == "train" else None  # held-out speakers are levelled, not jittered
        levelled = [(emotion, path, levels.apply(y, gains)) for emotion, path, y in audio]
        _speaker_windows(part, extractor, levelled, split, copies if split == "train" else 1, spec, rng, "")
        for _ in range(augment if split == "train" else 0):
            factor = float(rng.uniform(0.85, 1.15))
            perturbed = [(emotion, path, levels.apply(_speed(y, factor), gains)) for emotion, path, y in audio]
            _speaker_windows(part, extractor, perturbed, split, 1, spec, rng, f"~speed{factor:.2f}")


def _speed(y: np.ndarray, factor: float) -> np.ndarray:
    """Speed perturbation: played ``factor`` times faster (higher and shorter when > 1)."""
    from scipy.signal import resample_poly

    up = 100
    return resample_poly(y, up, int(round(up * factor))).astype(np.float32)


def _speaker_windows(part: Part, extractor, audio: list, split: str, copies: int, spec, rng, tag: str) -> None:
    """One speaker's clips as one stream through the extractor; ``copies`` windows per clip."""
    from realtime.types import AudioChunk
    from realtime.windows import resample

    rate = extractor.options.rate
    gap = np.zeros(rate // 2, dtype=np.float32)
    order = rng.permutation(len(audio))
    stream = np.concatenate([x for i in order for x in (audio[i][2], gap)])
    spans, t = [], 0.0
    for i in order:
        spans.append((audio[i], t, t + len(audio[i][2]) / rate))
        t += (len(audio[i][2]) + len(gap)) / rate
    extractor.reset()
    frames = []
    for attempt in range(2):  # first pass: statistics only
        offset = attempt * (len(stream) / rate + 1.0)
        step = rate // 2
        out = []
        for start in range(0, len(stream), step):
            out.extend(extractor.push(AudioChunk(t=offset + start / rate, samples=stream[start:start + step],
                                                 rate=rate)))
        out.extend(extractor.flush())
        frames = [(f.t - offset, f) for f in out]
    for (emotion, path, _), t0, t1 in spans:
        inside = [(t, f) for t, f in frames if t0 <= t < t1]
        for k in range(copies):
            shift = 0.0 if k == 0 else float(rng.uniform(-0.5, 0.5)) * min(1.0, spec.window - (t1 - t0))
            centre = 0.5 * (t0 + t1) + shift
            a, mask = resample([t for t, _ in inside], [f.features if f.voiced else None for _, f in inside],
                               centre - spec.window / 2, centre + spec.window / 2, spec.audio_steps,
                               spec.dims["A"])
            if mask.sum() == 0:
                part.skip("silent")
                break
            part.add(split, a, mask, EMOTIONS.index(emotion), VALENCE[emotion], f"emodb/{path.name}{tag}#{k}")


# ---- texts -------------------------------------------------------------------------
GOEMOTIONS_FILES = {"train.tsv": "train", "dev.tsv": "valid", "test.tsv": "test"}


def goemotions_rows(folder: Path, per_class: int, rng: np.random.Generator) -> list[tuple[str, str, str, str]]:
    """(split, emotion, text, id) from GoEmotions' Ekman files; single-label rows only."""
    _need_folder(folder, "texts")
    labels_file = folder / "labels.txt"
    if not labels_file.is_file():
        raise DataError(f"--texts '{folder}': no labels.txt (expected GoEmotions' data/ekman folder)")
    names = [line.strip() for line in labels_file.read_text(encoding="utf-8").splitlines() if line.strip()]
    out = []
    for file_name, split in GOEMOTIONS_FILES.items():
        path = folder / file_name
        if not path.is_file():
            raise DataError(f"--texts '{folder}': no {file_name}")
        by_class: dict[str, list] = {}
        with path.open(encoding="utf-8", newline="") as fh:
            for row_no, row in enumerate(csv.reader(fh, delimiter="\t", quoting=csv.QUOTE_NONE), start=1):
                if len(row) < 2:
                    logger.warning("texts: %s row %d has no label column; left out", path, row_no)
                    continue
                ids = row[1].split(",")
                if len(ids) != 1:
                    continue  # several emotions: no single class
                try:
                    emotion = GOEMOTIONS_EKMAN[names[int(ids[0])]]
                except (ValueError, IndexError, KeyError):
                    logger.warning("texts: %s row %d has unknown label %r; left out", path, row_no, row[1])
                    continue
                text = row[0].strip()
                if text:
                    by_class.setdefault(emotion, []).append((split, emotion, text, row[2] if len(row) > 2 else
                                                             f"{file_name}:{row_no}"))
        limit = per_class if split == "train" else max(1, per_class // 4)
        for emotion in sorted(by_class):
            out.extend(_subsample(by_class[emotion], limit, rng))
    return out


XED_FILES = ("en-annotated.tsv", "neu_en.txt")


def subtitle_rows(folder: Path, per_class: int, rng: np.random.Generator) -> tuple[list[tuple[str, str, str, str]],
                                                                                  dict[str, int]]:
    """(split, emotion, text, id) from XED's English subtitle lines, and what was left out.

    ``en-annotated.tsv`` holds ``line<TAB>labels`` (Plutchik's eight, ``models.emotions.
    XED_LABELS``); ``neu_en.txt`` holds ``label<TAB>line``, every one neutral. Only lines
    with a single label that has an Ekman category are kept, each text once. XED has no
    split: a line's split comes from a hash of its text, so a line that recurs (subtitles
    repeat "Yes." and "Thank you.") never sits on both sides."""
    _need_folder(folder, "subtitles")
    for name in XED_FILES:
        if not (folder / name).is_file():
            raise DataError(f"--subtitles '{folder}': no {name} (expected XED's AnnotatedData folder)")
    left_out: Counter[str] = Counter()
    by_class: dict[tuple[str, str], list] = {}
    seen: set[str] = set()

    def keep(text: str, emotion: str, ident: str) -> None:
        key = text_key(text)
        if not key:  # nothing but placeholders and punctuation
            return
        if key in seen:
            left_out["repeated line"] += 1
            return
        seen.add(key)
        split = sentence_split(key)
        by_class.setdefault((split, emotion), []).append((split, emotion, text, ident))

    path = folder / "en-annotated.tsv"
    for line_no, line in enumerate(path.read_text(encoding="utf-8", errors="replace").splitlines(), start=1):
        text, _, labels = line.rpartition("\t")
        codes = [c.strip() for c in labels.split(",") if c.strip()]
        if not text.strip() or not codes or any(c not in XED_LABELS for c in codes):
            logger.warning("subtitles: %s line %d has no text or an unknown label %r; left out", path, line_no, labels)
            left_out["unknown label"] += 1
            continue
        if len(codes) > 1:
            left_out["several emotions"] += 1
            continue
        emotion = XED_LABELS[codes[0]]
        if emotion is None:
            left_out["anticipation or trust"] += 1
            continue
        keep(_subtitle_text(text), emotion, f"en:{line_no}")
    path = folder / "neu_en.txt"
    for line_no, line in enumerate(path.read_text(encoding="utf-8", errors="replace").splitlines(), start=1):
        _, tab, text = line.partition("\t")
        if not tab or not text.strip():
            logger.warning("subtitles: %s line %d is not 'label<TAB>line'; left out", path, line_no)
            left_out["unknown label"] += 1
            continue
        keep(_subtitle_text(text), "neutral", f"neu:{line_no}")
    out = []
    for (split, _), rows in sorted(by_class.items()):
        out.extend(_subsample(rows, per_class if split == "train" else max(1, per_class // 4), rng))
    return out, dict(left_out)


def _subtitle_text(text: str) -> str:
    """A subtitle line as speech recognition would write it: XED's anonymising placeholders
    ("[PERSON]") left out, its tokenised punctuation ("where 's the kid ?") joined again."""
    text = re.sub(r"\[[A-Z]+\]", " ", text)
    text = re.sub(r"\s+([?!.,;:])", r"\1", text)
    text = re.sub(r"\s+('(s|re|ve|ll|d|m|t)\b|n't\b)", r"\1", text)
    text = re.sub(r"[,;:]+([.?!])", r"\1", text)
    return re.sub(r"\s+", " ", text).strip(" ,*-")


def read_rated_sentences(folder: Path) -> list[tuple[str, float, str]]:
    """(id, rating in [-4, 4], sentence) from every *GroundTruth*.txt file (VADER's layout)."""
    _need_folder(folder, "sentences")
    rows = []
    files = sorted(folder.glob("*GroundTruth*.txt"))
    if not files:
        raise DataError(f"--sentences '{folder}': no *GroundTruth*.txt files")
    for path in files:
        for line_no, line in enumerate(path.read_text(encoding="utf-8", errors="replace").splitlines(), start=1):
            parts = line.strip().split("\t")
            if len(parts) < 3:
                continue
            text = re.sub(r"\s+", " ", html.unescape(parts[2]).encode("ascii", "ignore").decode()).strip()
            try:
                rating = float(parts[1])
            except ValueError:
                logger.warning("sentences: %s line %d has rating %r, not a number; left out", path, line_no, parts[1])
                continue
            if text and -4.0 <= rating <= 4.0:
                rows.append((f"{path.stem.split('_')[0]}_{parts[0]}", rating, text))
    return rows


def text_key(text: str) -> str:
    """What two copies of a sentence share despite punctuation, case and tokenisation."""
    return re.sub(r"[^a-z0-9]", "", html.unescape(text).lower())


def read_exclusions(paths: list[str]) -> set[str]:
    """Keys of the sentences in each file: a CSV with a 'sentence', 'Utterance' or 'text'
    column, or plain text with one sentence a line."""
    keys: set[str] = set()
    for name in paths:
        path = Path(name)
        if not path.is_file():
            raise DataError(f"--exclude '{path}': no such file")
        text = path.read_text(encoding="utf-8", errors="replace")
        rows = list(csv.reader(text.splitlines()))
        header = [h.strip().lower() for h in rows[0]] if rows else []
        column = next((header.index(c) for c in ("sentence", "utterance", "text") if c in header), None)
        if path.suffix.lower() == ".csv" and column is None:
            raise DataError(f"--exclude '{path}': a CSV needs a 'sentence', 'Utterance' or 'text' column")
        lines = [r[column] for r in rows[1:] if len(r) > column] if column is not None else text.splitlines()
        keys.update(k for k in map(text_key, lines) if k)
    return keys


def _without(rows: list[tuple], exclude: set[str]) -> tuple[list[tuple], int]:
    """The rows whose text (third field) is not excluded, and how many were."""
    kept = [r for r in rows if text_key(r[2]) not in exclude]
    return kept, len(rows) - len(kept)


def sentence_split(ident: str) -> str:
    """A fixed split by the sentence's id: 80 % train, 10 % valid, 10 % test."""
    h = int(hashlib.sha1(ident.encode()).hexdigest()[:8], 16) % 10
    return "test" if h == 0 else "valid" if h == 1 else "train"


def extract_texts(items: list[tuple[str, str | None, float, str, str]], spec, text_model: str | None,
                  source: str) -> Part:
    """items: (split, emotion or None, valence, text, id)."""
    from tqdm import tqdm

    from realtime.features.text import TextEmbedder

    part = Part("L")
    embedder = TextEmbedder(spec.text_options(text_model))
    x = np.zeros((len(items), spec.text_tokens, embedder.dim), np.float32)
    mask = np.zeros((len(items), spec.text_tokens), np.float32)
    # batches of texts of similar length: a batch is padded to its longest text
    order = sorted(range(len(items)), key=lambda i: len(items[i][3]))
    batch = 64
    for start in tqdm(range(0, len(items), batch), desc=source, unit="batch", leave=False):
        rows = order[start:start + batch]
        x[rows], mask[rows] = embedder.embed_many([items[i][3].split() for i in rows])
    for (split, emotion, valence, _, ident), xi, mi in zip(items, x, mask):
        if mi.sum() == 0:
            part.skip("empty")
            continue
        part.add(split, xi, mi, EMOTIONS.index(emotion) if emotion else -1, valence, f"{source}/{ident}")
    return part


# ---- assembling ----------------------------------------------------------------------
def assemble(parts: dict[str, Part], spec, voice_valence_scale: float = 1.0, neutral_below: float = 0.0,
             subtitles_valence_scale: float = 1.0) -> dict:
    """One MMSA-style dict (models.data) from parts: each sample has one modality present.

    The voice's valence targets (its emotion's typical valence) are multiplied by
    ``voice_valence_scale``: acted emotional speech tells arousal far better than valence.
    Subtitle lines' targets (also their emotion's typical valence, not a rating) are
    multiplied by ``subtitles_valence_scale``, so that they teach the words' emotions more
    than their valence, which the rated sentences measure. A scale of 0 (voice or subtitles)
    means no valence at all: those samples get ``valence_weights`` 0 and stay out of the
    valence losses and metrics.
    A rated sentence whose mean rating lies within ``neutral_below`` of 0 (VADER's [-4, 4]
    scale) also teaches the class "neutral": GoEmotions' neutral comments are Reddit talk,
    and a words head taught by them alone reads plain statements ("The train leaves at
    three.") as happy or surprised."""
    from realtime.featureset import FEATURE_SET_NAME

    dims, steps = spec.dims, spec.steps
    key = {"L": "text", "A": "audio", "V": "vision"}
    data: dict = {"meta": {"feature_set": FEATURE_SET_NAME, "extractor": spec.describe()["extractor"],
                           "class_names": list(EMOTIONS), "source": "realtime.corpus",
                           "sources": sorted(parts)}}
    for s in SPLITS:
        n = sum(len(p.ids[s]) for p in parts.values())
        if n == 0:
            raise DataError(f"split '{s}' has no samples from any source")
        split = {key[m] + suffix: np.zeros((n, steps[m]) + ((dims[m],) if suffix == "" else ()), np.float32)
                 for m in ("L", "A", "V") for suffix in ("", "_mask")}
        labels, classes, ids, source, rated = [], [], [], [], []
        row = 0
        neutral, calm = EMOTIONS.index("neutral"), neutral_below * RATING_TO_MOSI
        scale = {"voice": voice_valence_scale, "subtitles": subtitles_valence_scale}
        for name, part in sorted(parts.items()):
            m, k = part.modality, scale.get(name, 1.0)
            for x, mask, cls, val, ident in zip(part.features[s], part.masks[s], part.classes[s],
                                                part.valence[s], part.ids[s]):
                split[key[m]][row] = x
                split[key[m] + "_mask"][row] = mask
                labels.append(val * k)
                rated.append(0.0 if k == 0.0 else 1.0)
                classes.append(neutral if name == "sentences" and cls < 0 and abs(val) < calm else cls)
                ids.append(ident)
                source.append(name)
                row += 1
        split["regression_labels"] = np.array(labels, np.float32)
        split["class_labels"] = np.array(classes, np.int64)
        split["id"] = np.array(ids, dtype=str)
        split["source"] = np.array(source, dtype=str)
        if min(rated) == 0.0:
            split["valence_weights"] = np.array(rated, np.float32)
        data[s] = split
    return data


def describe(parts: dict[str, Part]) -> dict:
    return {name: {"modality": p.modality, "counts": p.counts(), "left_out": p.skipped} for name, p in parts.items()}


def recipe(name: str, path: Path, args: argparse.Namespace, exclude: set[str]) -> dict:
    """What decides a source's extracted part: its folder, sampling, feature set, exclusions."""
    from realtime.features.text import LEGACY_TEXT_ENCODER
    from realtime.featureset import FEATURE_SET_NAME, FeatureSpec

    out = {"folder": str(path.resolve()), "seed": args.seed, "feature_set": FEATURE_SET_NAME}
    out.update({"faces": {"per_class": args.faces_per_class}, "voice": {"copies": args.voice_copies},
                "texts": {"per_class": args.texts_per_class}, "sentences": {"count": args.sentences_count},
                "subtitles": {"per_class": args.subtitles_per_class}}[name])
    if name == "voice" and args.voice_augment:  # absent when 0: parts made before the option stay valid
        out["augment"] = args.voice_augment
    if name == "voice":
        out["levels"] = asdict(voice_levels(args))
        out["voicing"] = FeatureSpec().voicing  # parts made before the voice detector are extracted again
    if name in WORDS and args.text_encoder != LEGACY_TEXT_ENCODER:
        out["text_encoder"] = args.text_encoder  # absent for MiniLM: parts made before the option stay valid
    if name in WORDS and exclude:
        out["exclude_sha1"] = hashlib.sha1("\n".join(sorted(exclude)).encode()).hexdigest()
    return out


def voice_levels(args: argparse.Namespace) -> VoiceLevels:
    return VoiceLevels(level=None if args.voice_level == "recorded" else float(args.voice_level),
                       jitter=args.voice_gain_jitter)


def build(args: argparse.Namespace) -> dict:
    from realtime.featureset import FeatureSpec

    spec = FeatureSpec(text_encoder=args.text_encoder)
    work = Path(args.work) if args.work else Path(args.out).with_name(Path(args.out).stem + ".parts")
    sources = {"faces": args.faces, "voice": args.voice, "texts": args.texts, "sentences": args.sentences,
               "subtitles": args.subtitles}
    given = {k: Path(v) for k, v in sources.items() if v}
    if not given:
        raise DataError("give at least one source: --faces, --voice, --texts, --sentences or --subtitles")
    for name, path in given.items():
        _need_folder(path, name)  # every folder checked before any work
    exclude = read_exclusions(args.exclude)
    work.mkdir(parents=True, exist_ok=True)
    parts: dict[str, Part] = {}
    for name, path in given.items():
        cache = work / f"{name}.npz"
        want = recipe(name, path, args, exclude)
        if cache.is_file():
            if Part.read_recipe(cache) == want:
                parts[name] = Part.load(cache)
                logger.info("%s: reused %s", name, cache)
                continue
            logger.info("%s: %s was made with other options; extracting again", name, cache)
        started = time.perf_counter()
        rng = np.random.default_rng(args.seed)
        excluded = 0
        if name == "faces":
            part = extract_faces(path, args.faces_per_class, args.seed, spec, args.face_model)
        elif name == "voice":
            part = extract_voice(path, spec, args.voice_copies, args.seed, args.voice_augment, voice_levels(args))
        elif name == "texts":
            rows = goemotions_rows(path, args.texts_per_class, rng)
            rows, excluded = _without(rows, exclude)
            part = extract_texts([(s, e, VALENCE[e], t, i) for s, e, t, i in rows], spec, args.text_model,
                                 "goemotions")
        elif name == "subtitles":
            rows, left_out = subtitle_rows(path, args.subtitles_per_class, rng)
            rows, excluded = _without(rows, exclude)
            part = extract_texts([(s, e, VALENCE[e], t, i) for s, e, t, i in rows], spec, args.text_model, "xed")
            part.skipped.update(left_out)
        else:
            rows = read_rated_sentences(path)
            rows = [r for r in rows if 3 <= len(r[2].split()) <= 40]
            rows, excluded = _without(rows, exclude)
            rows = _subsample(rows, args.sentences_count, rng)
            part = extract_texts([(sentence_split(i), None, r * RATING_TO_MOSI, t, i) for i, r, t in rows], spec,
                                 args.text_model, "vader")
        if excluded:
            part.skipped["excluded (evaluation sentences)"] = excluded
            logger.info("%s: %d sentences left out by --exclude", name, excluded)
        part.recipe = want
        part.save(cache)
        parts[name] = part
        logger.info("%s: %s in %.0f s", name, part.counts(), time.perf_counter() - started)
    return (assemble(parts, spec, args.voice_valence_scale, args.neutral_below, args.subtitles_valence_scale),
            describe(parts))


def build_parser() -> argparse.ArgumentParser:
    from realtime.features.text import add_text_encoder_option

    parser = Parser(prog="python -m realtime.corpus", description=__doc__.split("\n")[0],
                    epilog="exit codes: 0 done (bad items are named and left out); 1 internal "
                           "failure (a bug); 2 bad input or usage (a missing folder, no source)")
    parser.add_argument("--out", required=True, help="corpus file to write (.npz; a .json summary beside it)")
    parser.add_argument("--faces", help="FER2013-layout folder: train/ validation/ test/ with one folder per class")
    parser.add_argument("--voice", help="folder of EmoDB .wav files (emotion from the file name)")
    parser.add_argument("--texts", help="GoEmotions' data/ekman folder (labels.txt, train/dev/test.tsv)")
    parser.add_argument("--sentences", help="folder of VADER *GroundTruth*.txt files (human valence ratings)")
    parser.add_argument("--subtitles", help="XED's AnnotatedData folder (en-annotated.tsv, neu_en.txt): English "
                                            "movie subtitle lines labelled with emotions")
    parser.add_argument("--work", help="folder for each source's extracted features (default: <out>.parts)")
    parser.add_argument("--faces-per-class", type=int, default=700,
                        help="training images per class (a quarter of that for validation and test"
                             "; default %(default)s)")
    parser.add_argument("--texts-per-class", type=int, default=1200,
                        help="training comments per class (a quarter of that for validation and test"
                             "; default %(default)s)")
    parser.add_argument("--sentences-count", type=int, default=4000,
                        help="rated sentences to use, all splits (default %(default)s)")
    parser.add_argument("--subtitles-per-class", type=int, default=1200,
                        help="training subtitle lines per class (a quarter of that for validation and test"
                             "; default %(default)s)")
    parser.add_argument("--subtitles-valence-scale", type=float, default=1.0,
                        help="multiply the subtitle lines' valence targets (their emotion's typical valence) by this, "
                             "0 to 1 (default 1; 0: the lines teach no valence, only their emotion)")
    parser.add_argument("--voice-copies", type=int, default=4,
                        help="windows per training clip, shifted in time (voice corpora are small"
                             "; default %(default)s)")
    parser.add_argument("--exclude", action="append", default=[], metavar="FILE",
                        help="sentences never to train on (an evaluation set: CSV with a sentence column, or one "
                             "a line); repeatable")
    parser.add_argument("--voice-valence-scale", type=float, default=1.0,
                        help="multiply the voice samples' valence targets (their emotion's typical valence) by "
                             "this, 0 to 1: a voice tells arousal far better than valence (default 1)")
    parser.add_argument("--neutral-below", type=float, default=0.0, metavar="RATING",
                        help="rated sentences whose mean rating is within this of 0 (VADER's -4..4 scale) also teach "
                             "the class neutral (default 0: none)")
    parser.add_argument("--voice-augment", type=int, default=0,
                        help="speed-perturbed replays of each training speaker (new voices; default 0)")
    parser.add_argument("--voice-level", default="-26", metavar="DBFS",
                        help="mean power every voice clip is set to before extraction, in dB of full scale, or "
                             "'recorded' to keep each clip's level (default -26: the EmoDB copy was peak-normalised "
                             "clip by clip, which makes shouting quieter than sadness)")
    parser.add_argument("--voice-gain-jitter", type=float, default=6.0, metavar="DB",
                        help="random gain of up to this many dB either way on each training speaker's clips, so "
                             "that a clip's level says nothing of its emotion (default 6; 0: none)")
    parser.add_argument("--face-model", help="face_landmarker.task (default: the installed one)")
    add_text_encoder_option(parser, "sentence-transformer for the words")
    parser.add_argument("--text-model", help="folder of the --text-encoder model (default: the installed one)")
    parser.add_argument("--seed", type=int, default=0, help="seed of every sampling choice (default %(default)s)")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    if not 0.0 <= args.subtitles_valence_scale <= 1.0:
        print("error: --subtitles-valence-scale must be within [0, 1]", file=sys.stderr)
        return 2
    if not 0.0 <= args.voice_valence_scale <= 1.0:
        print("error: --voice-valence-scale must be within [0, 1]", file=sys.stderr)
        return 2
    if args.voice_augment < 0:
        print("error: --voice-augment must be at least 0", file=sys.stderr)
        return 2
    if not 0.0 <= args.neutral_below <= 4.0:
        print("error: --neutral-below must be within [0, 4]", file=sys.stderr)
        return 2
    if args.voice_level != "recorded":
        try:
            level = float(args.voice_level)
        except ValueError:
            level = float("nan")
        if not -60.0 <= level <= 0.0:
            print(f"error: --voice-level must be 'recorded' or a level from -60 to 0 dBFS, got '{args.voice_level}'",
                  file=sys.stderr)
            return 2
    if not 0.0 <= args.voice_gain_jitter <= 20.0:
        print("error: --voice-gain-jitter must be within [0, 20] dB", file=sys.stderr)
        return 2
    for name in ("faces_per_class", "texts_per_class", "sentences_count", "voice_copies", "subtitles_per_class"):
        if getattr(args, name) < 1:
            print(f"error: --{name.replace('_', '-')} must be at least 1", file=sys.stderr)
            return 2
    out = Path(args.out)
    if out.suffix != ".npz":
        print(f"error: --out '{out}': use a .npz file name", file=sys.stderr)
        return 2
    try:
        data, summary = build(args)
        save_dataset(out, data)
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    out.with_suffix(".json").write_text(json.dumps(summary, indent=2) + "\n")
    total = {s: len(data[s]["id"]) for s in SPLITS}
    print(f"{out}: {total}; per source and class in {out.with_suffix('.json')}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
