"""Build the bundled default model from human-rated sentences, with nothing downloaded.

    python tools/build_default_model.py --corpus ../shared/data/human_rated_sentences \
        [--faces ../shared/data/talking_faces] [--sentences 1500] [--work runs/default] \
        [--install realtime/assets/default]

1. picks sentences (4 to 14 words) from VADER's human-rated ground truth (MIT), balanced
   over the rating scale, and splits them by sentence (none shared between splits);
2. speaks each with espeak-ng (varied voices, rates and pitches) over a real face
   photograph, moving slightly (the face channel carries no label);
3. extracts the live feature set with ``models.extract`` (the live pipeline's code);
4. trains a DMD teacher and a CorrKD student (``models.train``, preset 'small');
5. copies the student to ``--install`` with its provenance saying exactly what it is.
"""

from __future__ import annotations

import argparse
import csv
import html
import json
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

VOICES = ["en-us", "en-gb", "en-us+f3", "en-us+m3", "en-gb+f4", "en-gb-x-rp", "en-029", "en-gb-scotland",
          "en-us+f2", "en-us+m5"]
RATING_TO_MOSI = 0.75  # VADER's [-4, 4] mean ratings onto MOSI's [-3, 3]


def read_corpus(folder: Path) -> list[tuple[str, float, str]]:
    """(id, rating, sentence) from every *_GroundTruth.txt file in the folder."""
    rows = []
    files = sorted(folder.glob("*GroundTruth*.txt"))
    if not files:
        raise SystemExit(f"error: no *GroundTruth*.txt files in '{folder}'")
    for path in files:
        for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
            parts = line.strip().split("\t")
            if len(parts) < 3:
                continue
            text = html.unescape(parts[2]).encode("ascii", "ignore").decode()
            text = re.sub(r"\s+", " ", text).strip()
            try:
                rating = float(parts[1])
            except ValueError:
                continue
            rows.append((f"{path.stem.split('_')[0]}_{parts[0]}", rating, text))
    return rows


def pick(rows, n: int, seed: int) -> list[tuple[str, float, str]]:
    """Sentences of 4-14 words with letters, balanced over 8 rating bins."""
    rng = np.random.default_rng(seed)
    ok = [r for r in rows if 4 <= len(r[2].split()) <= 14 and re.search(r"[a-zA-Z]{3}", r[2])]
    bins = np.clip(((np.array([r[1] for r in ok]) + 4) // 1).astype(int), 0, 7)
    chosen = []
    per_bin = n // 8
    for b in range(8):
        idx = np.flatnonzero(bins == b)
        rng.shuffle(idx)
        chosen.extend(ok[i] for i in idx[:per_bin])
    leftover = [r for r in ok if r not in set(chosen)]
    rng.shuffle(leftover)
    chosen.extend(leftover[: n - len(chosen)])
    return chosen


def face_pool(faces_dir: Path | None) -> list[tuple[np.ndarray, tuple[float, float, float]]]:
    """The astronaut photograph plus one frame of each talking-face clip, with face boxes."""
    from realtime.features.face import FaceExtractor
    from realtime.sources.file import FileSource
    from realtime.synth_media import astronaut_face
    from realtime.types import VideoFrame

    pool = [astronaut_face()]
    if faces_dir is None or not faces_dir.is_dir():
        return pool
    extractor = FaceExtractor()
    for clip in sorted(faces_dir.glob("*.mp4")):
        extractor.new_stream()
        for item in FileSource(clip):
            if isinstance(item, VideoFrame):
                found = extractor(item)
                if found.landmarks is not None:
                    h, w = item.image.shape[:2]
                    xs, ys = found.landmarks[:, 0] * w, found.landmarks[:, 1] * h
                    half = 0.9 * (ys.max() - ys.min())
                    pool.append((item.image, (float(xs.mean()), float(ys.mean()), float(half))))
                    break
    extractor.close()
    return pool


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python tools/build_default_model.py")
    parser.add_argument("--corpus", required=True, type=Path)
    parser.add_argument("--faces", type=Path)
    parser.add_argument("--sentences", type=int, default=1500)
    parser.add_argument("--work", type=Path, default=ROOT / "runs" / "default")
    parser.add_argument("--install", type=Path, default=ROOT / "realtime" / "assets" / "default")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    from realtime.synth_media import talking_clip

    started = time.time()
    rows = pick(read_corpus(args.corpus), args.sentences, args.seed)
    rng = np.random.default_rng(args.seed)
    order = rng.permutation(len(rows))
    n_test = n_valid = max(1, len(rows) // 10)
    split_of = {int(i): "test" for i in order[:n_test]}
    split_of.update({int(i): "valid" for i in order[n_test : n_test + n_valid]})
    clips = args.work / "clips"
    clips.mkdir(parents=True, exist_ok=True)
    faces = face_pool(args.faces)
    labels = args.work / "labels.csv"
    with labels.open("w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["path", "label", "split", "text", "rating"])
        for i, (sid, rating, text) in enumerate(rows):
            path = clips / f"{sid}.mp4"
            if not path.exists():
                tmp = path.with_suffix(".tmp.mp4")
                talking_clip(tmp, text, faces[i % len(faces)], voice=VOICES[int(rng.integers(len(VOICES)))],
                             speed=int(rng.integers(140, 191)), pitch=int(rng.integers(30, 71)), seed=i)
                tmp.replace(path)
            writer.writerow([path.name, round(rating * RATING_TO_MOSI, 4), split_of.get(i, "train"), text, rating])
    print(f"corpus: {len(rows)} clips in {clips} ({time.time() - started:.0f} s)", flush=True)

    py = sys.executable
    features = args.work / "features.pkl"
    subprocess.run([py, "-m", "models.extract", "--videos", str(clips), "--labels", str(labels), "--out",
                    str(features), "--workers", str(args.workers)], check=True, cwd=ROOT)
    print(f"extracted ({time.time() - started:.0f} s)", flush=True)
    model_dir = args.work / "model"
    subprocess.run([py, "-m", "models.train", "--data", str(features), "--out", str(model_dir), "--config",
                    "small", "--epochs", str(args.epochs), "--device", "cpu", "--seed", str(args.seed), "--quiet"],
                   check=True, cwd=ROOT)
    print(f"trained ({time.time() - started:.0f} s)", flush=True)

    student = model_dir / "student"
    annotate(student, features, len(rows))
    if args.install.exists():
        shutil.rmtree(args.install)
    shutil.copytree(student, args.install)
    doc = json.loads((args.install / "checkpoint.json").read_text())
    print(f"installed {args.install}: test {json.dumps(doc['provenance'].get('test_metrics'))}, "
          f"strong-sentence sign accuracy {doc['provenance']['test_strong_sign_accuracy']}")
    return 0


def annotate(student: Path, features: Path, n_sentences: int) -> None:
    """Say in the checkpoint exactly what it is, with its held-out sign accuracy on strongly
    rated sentences (|rating| >= 2 of 4, i.e. |label| >= 1.5)."""
    import torch

    from models.checkpoint import load_checkpoint
    from models.data import load_dataset
    from models.loop import evaluate, predict

    ckpt = load_checkpoint(student)
    net = ckpt.build("cpu")
    test = load_dataset(features).splits["test"]
    pred, _ = predict(net, test, torch.device("cpu"))
    strong = abs(test.labels) >= 1.5
    sign_acc = float(((pred[strong] > 0) == (test.labels[strong] > 0)).mean())
    text_only = evaluate(net, test, torch.device("cpu"), available=("L",))
    doc = json.loads((student / "checkpoint.json").read_text())
    doc["provenance"]["description"] = (
        "Default model: written sentences with human sentiment ratings (VADER ground truth, Hutto & Gilbert "
        "2014, MIT; rating x 0.75 onto [-3, 3]) spoken by the espeak-ng synthesizer with varied voices, "
        "rates and pitches over real face photographs that carry no emotion label. The text side learns "
        "from human labels; voice and face sides learn only what synthetic speech and still faces allow. "
        "Not a benchmark model: retrain on CMU-MOSI/MOSEI or your own labelled videos for real use."
    )
    doc["provenance"]["corpus"] = {"sentences": n_sentences, "split": "by sentence, 80/10/10",
                                   "source": "VADER human-rated sentences (tweets, movie and product reviews)"}
    doc["provenance"]["test_strong_sign_accuracy"] = round(sign_acc, 4)
    doc["provenance"]["test_strong_count"] = int(strong.sum())
    doc["provenance"]["test_metrics_text_only"] = text_only
    doc["provenance"]["id"] = "default-" + doc["provenance"]["weights_sha256"][:12]
    (student / "checkpoint.json").write_text(json.dumps(doc, indent=2, sort_keys=True) + "\n")


if __name__ == "__main__":
    sys.exit(main())
