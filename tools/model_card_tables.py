"""Print the model card's measured tables from a checkpoint and a bench.emotions result.

    python tools/model_card_tables.py [--checkpoint realtime/assets/default] [--bench bench/results/emotions.json]

Writes Markdown to stdout: the held-out table (each corpus's test split, its channel
alone), the channel heads' confusion matrices, and the never-seen corpora table, so
docs/MODEL_CARD.md is refreshed from the figures rather than retyped.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from models.emotions import EMOTIONS  # noqa: E402
from models.errors import Parser  # noqa: E402

HELD_OUT = {"faces": "FER2013 PrivateTest (face)", "voice": "EmoDB speakers 03, 08 (voice)",
            "texts": "GoEmotions test (words, clean text)", "sentences": "VADER held-out sentences (words, clean text)"}
NEVER_SEEN = {"faces": ("faces, no audio", "face_channel", 0.50, 0.75),
              "voice": ("voice, neutral words", "audio_channel", 0.40, 0.60),
              "dialogue": ("words, flat voice", "text_channel", 0.35, 0.50)}


def _f(x: float | None) -> str:
    return "-" if x is None else f"{x:.3f}"


def held_out(report: dict) -> list[str]:
    lines = ["| corpus (channel) | n | fused accuracy | fused macro F1 | channel head accuracy | "
             "channel head macro F1 | valence sign |", "|---|---|---|---|---|---|---|"]
    for name, title in HELD_OUT.items():
        e = report.get(name)
        if not e:
            continue
        fused, head = e.get("fused", {}), e.get("channel_head", {})
        lines.append(f"| {title} | {e['n']:,} | {_f(fused.get('Class_acc'))} | {_f(fused.get('Class_macro_F1'))} | "
                     f"{_f(head.get('Class_acc'))} | {_f(head.get('Class_macro_F1'))} | "
                     f"{_f(e.get('valence_sign_accuracy'))} |")
    return lines


def confusion(matrix: dict) -> list[str]:
    lines = ["| truth \\ said | " + " | ".join(EMOTIONS) + " | recall |", "|---" * (len(EMOTIONS) + 2) + "|"]
    for truth in EMOTIONS:
        row = matrix.get(truth)
        if row is None:
            continue
        total = sum(row.values())
        lines.append(f"| {truth} | " + " | ".join(str(row.get(p, 0)) for p in EMOTIONS)
                     + f" | {row.get(truth, 0) / max(total, 1):.2f} |")
    return lines


def never_seen(bench: dict) -> list[str]:
    lines = ["| test | n | accuracy among its classes | all 7 | the channel's own head | chance | floor (goal) |",
             "|---|---|---|---|---|---|---|"]
    for key, (title, channel, floor, goal) in NEVER_SEEN.items():
        e = bench.get(key)
        if not e:
            continue
        fused, own = e["fused"], e.get(channel, {})
        met = "met" if fused["accuracy"] >= floor else "not met"
        lines.append(f"| {title} | {fused['n']} | **{fused['accuracy']:.3f}** | {fused['accuracy_all7']:.3f} | "
                     f"{_f(own.get('accuracy'))} | {fused['chance']:.2f} | {floor:.2f} ({goal:.2f}): **{met}** |")
    v = bench.get("valence")
    if v:
        met = "met" if v["sign_accuracy"] >= 0.78 else "not met"
        words = v.get("text_channel_sign_accuracy")
        lines.append(f"| valence of words | {v['scored']} | sign **{v['sign_accuracy']:.3f}** | | {_f(words)} | 0.50 | "
                     f"0.78 (0.85): **{met}** |")
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = Parser(prog="python tools/model_card_tables.py", description=__doc__.split("\n")[0])
    parser.add_argument("--checkpoint", type=Path, default=ROOT / "realtime" / "assets" / "default")
    parser.add_argument("--bench", type=Path, default=ROOT / "bench" / "results" / "emotions.json")
    args = parser.parse_args(argv)
    try:
        provenance = json.loads((args.checkpoint / "checkpoint.json").read_text())["provenance"]
        bench = json.loads(args.bench.read_text()) if args.bench.is_file() else {}
    except (OSError, ValueError, KeyError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    report = provenance.get("held_out", {})
    out = ["## Held-out", "", *held_out(report)]
    for name in ("faces", "voice", "texts"):
        head = report.get(name, {}).get("channel_head")
        if head:
            out += ["", f"### {HELD_OUT[name]}: channel head", "", *confusion(head["confusion"])]
    if bench:
        out += ["", "## Never seen", "", *never_seen(bench)]
    print("\n".join(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
