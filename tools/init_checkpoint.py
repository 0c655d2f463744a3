"""Write an untrained DMD checkpoint for the live feature set (pipeline tests, benchmarks).

    python tools/init_checkpoint.py --out DIR [--seed S] [--classes negative neutral positive] [--text-encoder minilm]

Its predictions mean nothing; it exercises the real network on real features.
"""

import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from models.checkpoint import save_checkpoint  # noqa: E402
from models.config import PRESETS, ModelConfig  # noqa: E402
from models.dmd import DMD  # noqa: E402
from models.errors import Parser
from realtime.features.text import add_text_encoder_option  # noqa: E402
from realtime.featureset import FeatureSpec  # noqa: E402


def main() -> int:
    parser = Parser(prog="python tools/init_checkpoint.py", description=__doc__.split("\n")[0],
                    epilog="exit codes: 0 done; 1 internal failure (a bug); 2 bad usage")
    parser.add_argument("--out", required=True, type=Path,
                        help="checkpoint folder to write (model.safetensors + checkpoint.json)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the random weights (default 0)")
    parser.add_argument("--classes", nargs="*", default=[],
                        help="emotion class names: adds a classification head (default: none)")
    add_text_encoder_option(parser, "the words' encoder its feature set names")
    args = parser.parse_args()
    torch.manual_seed(args.seed)
    spec = FeatureSpec(text_encoder=args.text_encoder)
    cfg = ModelConfig(dims=spec.dims, steps=spec.steps, class_names=tuple(args.classes), **PRESETS["small"]["model"])
    save_checkpoint(args.out, DMD(cfg), cfg, spec.describe(), {"name": "untrained", "role": "untrained"})
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
