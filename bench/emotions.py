"""Does the shipped model name emotions on labelled media it never saw, one channel at a time?

    python -m bench.emotions --faces CK+48/ --voice RAVDESS_ACTORS/ --dialogue MELD_test.csv \
        --valence SSTB_test.csv [--checkpoint DIR] [--work runs/emotion-eval] [--seed 0]

Each corpus becomes media on disk and runs through ``python -m realtime`` (the real CLI, a
folder per corpus), then each clip's windows are averaged and compared with its label:

* faces: posed expression photographs (CK+48 layout, ``<class>/S###_###_*.png``) held still
  for 3 s in a silent video; one photograph per sequence, six expressions (contempt left out);
* voice: acted English speech whose words are emotionally neutral (RAVDESS layout,
  ``Actor_NN/03-01-EE-II-SS-RR-AA.wav``), neutral/happy/sad/angry; each actor's clips are
  joined into one recording with a second of silence between them, so that the voice's
  per-stream normalisation knows the speaker as it would live; a clip's reading is the mean
  of the windows whose middle falls inside it;
* dialogue: lines of a labelled dialogue corpus (MELD's CSV: ``Utterance, Emotion``) spoken
  by espeak-ng in one flat voice, five emotions (neutral, joy, sadness, anger, surprise);
* valence: opinion sentences with human ratings (SST's ``sentence, values`` in [0, 1];
  negative below 0.4, positive above 0.6) spoken by espeak-ng; the sign of valence is scored.

Accuracy is reported over the classes each corpus has (the argmax among them) and over all
seven; confusion matrices, per-class counts and the commands go to the JSON. These corpora
have non-commercial or unclear terms: they evaluate the model and never train it.
"""

from __future__ import annotations

import argparse
import csv
import json
import re
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from models.emotions import EMOTIONS
from models.errors import Parser, UserError
from realtime.synth_media import write_wav as _write_wav
from realtime.types import AUDIO_RATE as RATE

ROOT = Path(__file__).resolve().parent.parent
CK_CLASSES = {"happy": "happy", "sadness": "sad", "anger": "angry", "fear": "fearful", "disgust": "disgusted",
              "surprise": "surprised"}
RAVDESS_CLASSES = {"01": "neutral", "03": "happy", "04": "sad", "05": "angry"}
MELD_CLASSES = {"neutral": "neutral", "joy": "happy", "sadness": "sad", "anger": "angry", "surprise": "surprised"}


def _read_wav(path: Path) -> np.ndarray:
    import librosa

    y, _ = librosa.load(str(path), sr=RATE, mono=True)
    return y.astype(np.float32)


@dataclass(frozen=True)
class Runner:
    """How a corpus's media become records: ``python -m realtime`` on the folder, or, with
    ``score_only``, the records an earlier run of the same checkpoint left in the work folder."""

    checkpoint: str | None
    score_only: bool = False

    def __call__(self, folder: Path, out: Path) -> float | None:
        """Records of ``folder`` in ``out``; the CLI's wall time (None when only scoring)."""
        if self.score_only:
            self._check_records(out)
            return None
        cmd = [sys.executable, "-m", "realtime", "--source", str(folder), "--out", str(out), "--overwrite", "--quiet"]
        if self.checkpoint:
            cmd += ["--checkpoint", self.checkpoint]
        started = time.perf_counter()
        subprocess.run(cmd, check=True, cwd=ROOT)
        return time.perf_counter() - started

    def _check_records(self, out: Path) -> None:
        from realtime.engine import find_checkpoint

        want = find_checkpoint(self.checkpoint).id
        found = {r.get("checkpoint") for path in sorted(out.glob("*.jsonl")) for r in read_records(path)[:1]}
        if not found:
            raise UserError(f"--score-only: no records in '{out}'; run without --score-only first")
        if found != {want}:
            raise UserError(f"--score-only: the records in '{out}' come from {', '.join(sorted(map(str, found)))}, "
                            f"not from {want}")


def _seconds(value: float | None) -> float | None:
    return None if value is None else round(value, 1)


def read_records(path: Path) -> list[dict]:
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def mean_reading(records: list[dict], channel: str | None = None) -> tuple[dict[str, float] | None, float | None]:
    """Mean emotion probabilities and valence over windows (of one channel, when given)."""
    probs, vals = [], []
    for r in records:
        reading = r if channel is None else (r.get("channels") or {}).get(channel)
        if not reading or reading.get("emotions") is None and reading.get("sentiment") is None:
            continue
        if reading.get("emotions"):
            probs.append([reading["emotions"][k] for k in EMOTIONS])
        if reading.get("sentiment") is not None:
            vals.append(reading["sentiment"])
    p = dict(zip(EMOTIONS, np.mean(probs, axis=0).tolist())) if probs else None
    return p, (float(np.mean(vals)) if vals else None)


def score(truth: list[str], readings: list[dict[str, float] | None], classes: list[str]) -> dict:
    """Accuracy among the corpus's classes and among all seven, confusion matrix (rows truth)."""
    pairs = [(t, r) for t, r in zip(truth, readings) if r is not None]
    restricted = [max(classes, key=r.get) for _, r in pairs]
    full = [max(EMOTIONS, key=r.get) for _, r in pairs]
    matrix = {t: {p: 0 for p in classes} for t in classes}
    for (t, _), p in zip(pairs, restricted):
        matrix[t][p] += 1
    n = len(pairs)
    return {
        "n": n, "missing_reading": len(truth) - n,
        "accuracy": round(sum(t == p for (t, _), p in zip(pairs, restricted)) / max(n, 1), 4),
        "accuracy_all7": round(sum(t == p for (t, _), p in zip(pairs, full)) / max(n, 1), 4),
        "chance": round(1 / len(classes), 4),
        "per_class_recall": {c: round(matrix[c][c] / max(sum(matrix[c].values()), 1), 3) for c in classes},
        "confusion": matrix,
    }


# ---- faces ---------------------------------------------------------------------------
def faces(folder: Path, work: Path, run: Runner) -> dict:
    import cv2

    from realtime.synth_media import write_av

    clips = work / "faces"
    clips.mkdir(parents=True, exist_ok=True)
    labels = {}
    for class_dir in sorted(p for p in folder.iterdir() if p.is_dir()):
        emotion = CK_CLASSES.get(class_dir.name)
        if emotion is None:
            continue
        sequences: dict[str, list[Path]] = {}
        for path in sorted(class_dir.glob("*.png")):
            sequences.setdefault("_".join(path.stem.split("_")[:2]), []).append(path)
        for seq, paths in sequences.items():
            image = cv2.imread(str(paths[-1]), cv2.IMREAD_COLOR)  # the sequence's last (peak) frame
            if image is None:
                continue
            image = np.ascontiguousarray(cv2.resize(image, (240, 240), interpolation=cv2.INTER_CUBIC)[:, :, ::-1])
            out = clips / f"{seq}.mp4"
            if not out.exists():
                write_av(out, None, (image for _ in range(30)), fps=10, size=(240, 240))
            labels[out.stem] = emotion
    results = work / "faces-out"
    seconds = run(clips, results)
    truth, fused, face_only, valence = [], [], [], {}
    for stem, emotion in sorted(labels.items()):
        records = read_records(results / f"{stem}.jsonl")
        p, v = mean_reading(records)
        pf, _ = mean_reading(records, "face")
        truth.append(emotion)
        fused.append(p)
        face_only.append(pf)
        if v is not None:
            valence.setdefault(emotion, []).append(v)
    classes = sorted(set(labels.values()), key=EMOTIONS.index)
    return {"corpus": str(folder), "clips": len(labels), "seconds": _seconds(seconds),
            "fused": score(truth, fused, classes), "face_channel": score(truth, face_only, classes),
            "mean_valence": {k: round(float(np.mean(v)), 3) for k, v in valence.items()}}


# ---- voice ---------------------------------------------------------------------------
def voice(folder: Path, work: Path, run: Runner, actors: int, seed: int) -> dict:
    clips = work / "voice"
    clips.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    actor_dirs = sorted(p for p in folder.iterdir() if p.is_dir() and p.name.startswith("Actor_"))
    males = [a for a in actor_dirs if int(a.name.split("_")[1]) % 2 == 1]
    females = [a for a in actor_dirs if int(a.name.split("_")[1]) % 2 == 0]
    chosen = males[: (actors + 1) // 2] + females[: actors // 2]
    spans: dict[str, list[tuple[float, float, str]]] = {}
    for actor in chosen:
        files = [p for p in sorted(actor.glob("*.wav")) if p.stem.split("-")[2] in RAVDESS_CLASSES]
        order = rng.permutation(len(files))
        parts, t, rows = [], 0.0, []
        for i in order:
            y = _read_wav(files[i])
            parts += [y, np.zeros(RATE, np.float32)]
            rows.append((t, t + len(y) / RATE, RAVDESS_CLASSES[files[i].stem.split("-")[2]]))
            t += len(y) / RATE + 1.0
        out = clips / f"{actor.name}.wav"
        if not out.exists():
            _write_wav(out, np.concatenate(parts))
        spans[actor.name] = rows
    results = work / "voice-out"
    seconds = run(clips, results)
    truth, fused, audio_only = [], [], []
    for actor, rows in spans.items():
        records = read_records(results / f"{actor}.jsonl")
        for t0, t1, emotion in rows:
            inside = [r for r in records if t0 <= 0.5 * (r["t_start"] + r["t_end"]) < t1]
            truth.append(emotion)
            fused.append(mean_reading(inside)[0])
            audio_only.append(mean_reading(inside, "audio")[0])
    classes = list(dict.fromkeys(RAVDESS_CLASSES.values()))
    return {"corpus": str(folder), "actors": [a.name for a in chosen], "clips": len(truth),
            "seconds": _seconds(seconds), "fused": score(truth, fused, classes),
            "audio_channel": score(truth, audio_only, classes)}


# ---- spoken lines (dialogue emotions, opinion valence) ---------------------------------
def _speak_lines(lines: list[tuple[str, str]], folder: Path) -> None:
    from realtime.synth_media import speak

    folder.mkdir(parents=True, exist_ok=True)
    for name, text in lines:
        out = folder / f"{name}.wav"
        if not out.exists():
            y = speak(text, "en-us", speed=160, pitch=50)
            pad = np.zeros(RATE // 2, np.float32)
            _write_wav(out, np.concatenate([pad, y * 0.8, pad]))


def _clean(text: str) -> str:
    text = text.replace("\u2019", "'").replace("\u2018", "'").replace("\u201c", '"').replace("\u201d", '"')
    text = text.replace("\u2026", "...").replace("\u0092", "'").replace("\u0097", "-")
    return re.sub(r"\s+", " ", text.encode("ascii", "ignore").decode()).strip()


def dialogue(path: Path, work: Path, run: Runner, per_class: int, seed: int) -> dict:
    rng = np.random.default_rng(seed)
    by_class: dict[str, list[str]] = {}
    with path.open(encoding="utf-8", newline="") as fh:
        for row in csv.DictReader(fh):
            emotion = MELD_CLASSES.get(row.get("Emotion", "").strip().lower())
            text = _clean(row.get("Utterance", ""))
            if emotion and 3 <= len(text.split()) <= 25:
                by_class.setdefault(emotion, []).append(text)
    lines, labels = [], {}
    for emotion, texts in sorted(by_class.items()):
        for k in rng.permutation(len(texts))[:per_class]:
            name = f"{emotion}_{int(k):04d}"
            lines.append((name, texts[k]))
            labels[name] = emotion
    clips = work / "dialogue"
    _speak_lines(lines, clips)
    results = work / "dialogue-out"
    seconds = run(clips, results)
    truth, fused, text_only = [], [], []
    for name, emotion in sorted(labels.items()):
        records = read_records(results / f"{name}.jsonl")
        truth.append(emotion)
        fused.append(mean_reading(records)[0])
        text_only.append(mean_reading(records, "text")[0])
    classes = [c for c in EMOTIONS if c in by_class]
    return {"corpus": str(path), "lines": len(labels), "seconds": _seconds(seconds),
            "fused": score(truth, fused, classes), "text_channel": score(truth, text_only, classes)}


def valence(path: Path, work: Path, run: Runner, per_sign: int, seed: int) -> dict:
    rng = np.random.default_rng(seed)
    pos, neg = [], []
    with path.open(encoding="utf-8", newline="") as fh:
        for row in csv.DictReader(fh):
            text = _clean(row["sentence"].replace(" n't", "n't").replace(" 's", "'s").replace(" ,", ",")
                          .replace(" .", ".").replace("-LRB-", "(").replace("-RRB-", ")"))
            value = float(row["values"])
            if 4 <= len(text.split()) <= 30:
                (pos if value > 0.6 else neg if value < 0.4 else []).append((text, value))
    lines, labels = [], {}
    for sign, items in (("pos", pos), ("neg", neg)):
        for k in rng.permutation(len(items))[:per_sign]:
            name = f"{sign}_{int(k):04d}"
            lines.append((name, items[k][0]))
            labels[name] = sign
    clips = work / "valence"
    _speak_lines(lines, clips)
    results = work / "valence-out"
    seconds = run(clips, results)
    right, n, missing, words_right, words_n = 0, 0, 0, 0, 0
    for name, sign in labels.items():
        records = read_records(results / f"{name}.jsonl")
        _, v = mean_reading(records)
        _, words = mean_reading(records, "text")
        if words is not None:
            words_n += 1
            words_right += (words > 0) == (sign == "pos")
        if v is None:
            missing += 1
            continue
        n += 1
        right += (v > 0) == (sign == "pos")
    return {"corpus": str(path), "sentences": len(labels), "seconds": _seconds(seconds), "scored": n,
            "missing_reading": missing, "sign_accuracy": round(right / max(n, 1), 4),
            "text_channel_sign_accuracy": round(words_right / max(words_n, 1), 4)}


def _measure(args: argparse.Namespace, run: Runner, results: dict) -> None:
    if args.faces:
        results["faces"] = faces(args.faces, args.work, run)
    if args.voice:
        results["voice"] = voice(args.voice, args.work, run, args.actors, args.seed)
    if args.dialogue:
        results["dialogue"] = dialogue(args.dialogue, args.work, run, args.lines_per_class, args.seed)
    if args.valence:
        results["valence"] = valence(args.valence, args.work, run, args.sentences_per_sign, args.seed)


def main(argv: list[str] | None = None) -> int:
    parser = Parser(prog="python -m bench.emotions", description=__doc__.split("\n")[0],
                    epilog="exit codes: 0 done; 1 internal failure (a bug); 2 bad input or usage")
    parser.add_argument("--faces", type=Path, help="CK+48-layout folder: <class>/<subject>_<seq>_<frame>.png")
    parser.add_argument("--voice", type=Path, help="RAVDESS speech folder: Actor_NN/03-01-EE-....wav")
    parser.add_argument("--dialogue", type=Path, help="MELD-style CSV with Utterance and Emotion columns")
    parser.add_argument("--valence", type=Path, help="SST-style CSV with sentence and values (0..1) columns")
    parser.add_argument("--checkpoint", help="checkpoint to evaluate (default: the bundled model)")
    parser.add_argument("--work", type=Path, default=ROOT / "runs" / "emotion-eval",
                        help="media and records (default: runs/emotion-eval)")
    parser.add_argument("--actors", type=int, default=8,
                        help="RAVDESS actors (half male, half female; default %(default)s)")
    parser.add_argument("--lines-per-class", type=int, default=40,
                        help="dialogue lines per emotion (default %(default)s)")
    parser.add_argument("--sentences-per-sign", type=int, default=100,
                        help="opinion sentences per sign (default %(default)s)")
    parser.add_argument("--seed", type=int, default=0, help="seed of every sampling choice (default %(default)s)")
    parser.add_argument("--score-only", action="store_true",
                        help="score the records an earlier run of the same checkpoint left in --work, "
                             "without running the CLI again (refuses records of another checkpoint)")
    parser.add_argument("--json", type=Path, default=ROOT / "bench" / "results" / "emotions.json",
                        help="where the results go (JSON)")
    args = parser.parse_args(argv)
    for name in ("faces", "voice", "dialogue", "valence"):
        path = getattr(args, name)
        if path is not None and not path.exists():
            print(f"error: --{name} '{path}' does not exist", file=sys.stderr)
            return 2
    if not any(getattr(args, n) for n in ("faces", "voice", "dialogue", "valence")):
        print("error: give at least one of --faces, --voice, --dialogue, --valence", file=sys.stderr)
        return 2
    args.work.mkdir(parents=True, exist_ok=True)
    run = Runner(args.checkpoint, args.score_only)
    results: dict = {"command": " ".join(["python -m bench.emotions"] + (argv if argv is not None else sys.argv[1:])),
                     "checkpoint": args.checkpoint or "bundled default"}
    try:
        _measure(args, run, results)
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(results, indent=1) + "\n")
    floors = {"faces": ("fused", 0.50), "voice": ("fused", 0.40), "dialogue": ("fused", 0.35)}
    for name, (key, floor) in floors.items():
        if name in results:
            r = results[name]
            channel = next(k for k in r if k.endswith("_channel"))
            print(f"{name:9s} accuracy {r[key]['accuracy']:.3f} (all 7: {r[key]['accuracy_all7']:.3f}; "
                  f"{channel} {r[channel]['accuracy']:.3f}; chance {r[key]['chance']:.2f}; floor {floor}) "
                  f"n={r[key]['n']}")
    if "valence" in results:
        print(f"valence   sign accuracy {results['valence']['sign_accuracy']:.3f} (floor 0.78) "
              f"n={results['valence']['scored']}")
    if "faces" in results:
        print(f"faces     mean valence by class {results['faces']['mean_valence']}")
    print(f"written {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
