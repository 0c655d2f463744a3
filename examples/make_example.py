"""Make the bundled example: a real face that moves a little, speaking sentences of clear
positive and negative sentiment (espeak-ng), written as H.264 + AAC with PyAV.

    python examples/make_example.py [--out examples/talking.mp4] [--sentences FILE]

Also writes ``<out>.json`` with each sentence, its sign and its time span, which the
tests use. Needs Debian's espeak-ng and scikit-image (its astronaut photograph of Eileen
Collins, NASA, public domain). Nothing is downloaded.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from realtime.synth_media import talking_video  # noqa: E402

SENTENCES = [
    ("I love this wonderful day. Everything is great and I am so happy.", 1),
    ("This is terrible. I hate it. It is awful and I feel miserable.", -1),
    ("What a fantastic surprise. Thank you so much, it is beautiful.", 1),
    ("I am sad and upset. This was a horrible disaster.", -1),
]
FPS = 25
SIZE = (480, 360)  # width, height
GAP = 0.8  # seconds of silence between sentences


def make(out: Path, sentences: list[tuple[str, int]], voice: str = "en-us") -> dict:
    return talking_video(out, sentences, voice, fps=FPS, size=SIZE, gap=GAP)


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
