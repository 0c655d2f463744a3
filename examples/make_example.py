"""Make the bundled example: a real face that moves a little, speaking sentences of clear
positive and negative sentiment (espeak-ng), written as H.264 + AAC with PyAV.

    python examples/make_example.py [--out examples/talking.mp4] [--sentences FILE]

Also writes ``<out>.json`` with each sentence, its sign and its time span, which the
tests use. Needs Debian's espeak-ng and scikit-image (its astronaut photograph of Eileen
Collins, NASA, public domain). Nothing is downloaded.
"""

from __future__ import annotations

import argparse
import io
import json
import shutil
import subprocess
import sys
import wave
from fractions import Fraction
from pathlib import Path

import numpy as np

SENTENCES = [
    ("I love this wonderful day. Everything is great and I am so happy.", 1),
    ("This is terrible. I hate it. It is awful and I feel miserable.", -1),
    ("What a fantastic surprise. Thank you so much, it is beautiful.", 1),
    ("I am sad and upset. This was a horrible disaster.", -1),
]
RATE = 16000
FPS = 25
SIZE = (480, 360)  # width, height
GAP = 0.8  # seconds of silence between sentences


def speak(text: str, voice: str = "en-us", speed: int = 150) -> np.ndarray:
    """espeak-ng speech as float32 mono at 16 kHz."""
    exe = shutil.which("espeak-ng")
    if exe is None:
        raise SystemExit("error: espeak-ng is not installed (apt-get install espeak-ng)")
    wav = subprocess.run([exe, "-v", voice, "-s", str(speed), "--stdout", text], capture_output=True,
                         check=True, timeout=60).stdout
    with wave.open(io.BytesIO(wav)) as w:
        rate, data = w.getframerate(), np.frombuffer(w.readframes(w.getnframes()), dtype=np.int16)
    y = data.astype(np.float32) / 32768.0
    if rate != RATE:
        import librosa

        y = librosa.resample(y, orig_sr=rate, target_sr=RATE)
    return y.astype(np.float32)


def face_frames(n: int, size: tuple[int, int] = SIZE, seed: int = 0):
    """A real face photograph, panned and zoomed slightly frame to frame."""
    from skimage import data, transform

    image = data.astronaut()  # 512x512 RGB; the face is in the upper middle
    rng = np.random.default_rng(seed)
    phase = rng.uniform(0, 2 * np.pi, 3)
    width, height = size
    for i in range(n):
        t = i / FPS
        zoom = 1.0 + 0.04 * np.sin(0.7 * t + phase[0])
        cx = 250 + 8 * np.sin(0.9 * t + phase[1])
        cy = 150 + 6 * np.sin(1.3 * t + phase[2])
        half_w, half_h = 170 / zoom, 128 / zoom
        crop = image[int(max(0, cy - half_h)) : int(cy + half_h), int(max(0, cx - half_w)) : int(cx + half_w)]
        frame = transform.resize(crop, (height, width), preserve_range=True, anti_aliasing=True)
        yield np.ascontiguousarray(frame.astype(np.uint8))


def write_video(path: Path, audio: np.ndarray, frames) -> None:
    import av

    with av.open(str(path), "w") as container:
        vstream = container.add_stream("libx264", rate=FPS)
        vstream.width, vstream.height = SIZE
        vstream.pix_fmt = "yuv420p"
        vstream.options = {"crf": "28", "preset": "veryfast"}
        astream = container.add_stream("aac", rate=RATE)
        astream.layout = "mono"
        for image in frames:
            for packet in vstream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")):
                container.mux(packet)
        for packet in vstream.encode():
            container.mux(packet)
        step = 1024
        for start in range(0, len(audio), step):
            block = audio[start : start + step]
            frame = av.AudioFrame.from_ndarray(block[None, :], format="flt", layout="mono")
            frame.sample_rate = RATE
            frame.pts = start
            frame.time_base = Fraction(1, RATE)
            for packet in astream.encode(frame):
                container.mux(packet)
        for packet in astream.encode():
            container.mux(packet)


def make(out: Path, sentences: list[tuple[str, int]], voice: str = "en-us") -> dict:
    parts, spans, t = [], [], GAP
    parts.append(np.zeros(int(GAP * RATE), np.float32))
    for text, sign in sentences:
        speech = speak(text, voice)
        spans.append({"text": text, "sign": sign, "start": round(t, 3), "end": round(t + len(speech) / RATE, 3)})
        parts += [speech * 0.8, np.zeros(int(GAP * RATE), np.float32)]
        t += len(speech) / RATE + GAP
    audio = np.concatenate(parts)
    n_frames = int(np.ceil(len(audio) / RATE * FPS))
    out.parent.mkdir(parents=True, exist_ok=True)
    write_video(out, audio, face_frames(n_frames))
    meta = {"video": out.name, "duration": round(len(audio) / RATE, 3), "sentences": spans,
            "face": "skimage.data.astronaut (NASA, public domain)", "voice": f"espeak-ng {voice}"}
    out.with_suffix(".json").write_text(json.dumps(meta, indent=2) + "\n")
    return meta


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python examples/make_example.py")
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "talking.mp4")
    parser.add_argument("--sentences", type=Path, help="text file: one 'sign<TAB>sentence' per line")
    parser.add_argument("--voice", default="en-us")
    args = parser.parse_args(argv)
    sentences = SENTENCES
    if args.sentences:
        sentences = []
        for line in args.sentences.read_text().splitlines():
            if line.strip():
                sign, text = line.split("\t", 1)
                sentences.append((text.strip(), int(sign)))
    meta = make(args.out, sentences, args.voice)
    print(f"wrote {args.out} ({meta['duration']:.1f} s, {len(sentences)} sentences)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
