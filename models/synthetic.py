"""Write a synthetic MMSA-style dataset (pickle-free .npz) with a learnable, known signal.

Each sample has one sentiment s ~ N(0, 1) and its label is 3 tanh(0.8 s). Every modality
sees s through its own noise, as words, voice and face all show one feeling but not
equally clearly: z_L = s + 0.3 n_L, z_A = s + 1.0 n_A, z_V = s + 2.0 n_V (n ~ N(0, 1)),
so the label depends strongly on text (corr 0.96), less on audio (0.71) and weakly on
vision (0.45). A model trained on complete data leans on text; one that must cope
without text has to learn to read the others. Each modality's present steps hold its z
along a fixed direction plus per-step noise; sequences have random lengths (given as
``audio_lengths``/``vision_lengths`` and zero padding, as MMSA's unaligned sets).

    python -m models.synthetic --out runs/synthetic.npz [--train 800 --valid 200 --test 200]

Exit codes: 0 done, 1 internal failure (a bug), 2 bad input or usage (one line 'error: ...').
"""

from __future__ import annotations

import math
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from models.errors import Parser

NOISE = {"L": 0.3, "A": 1.0, "V": 2.0}
"""How noisily each modality shows the shared sentiment."""
KEYS = {"L": "text", "A": "audio", "V": "vision"}


@dataclass(frozen=True)
class SyntheticSpec:
    """Sizes of the generated set."""

    train: int = 800
    valid: int = 200
    test: int = 200
    dims: tuple[int, int, int] = (24, 8, 12)
    """Feature sizes of L, A, V."""
    steps: tuple[int, int, int] = (16, 24, 20)
    """Steps of L, A, V (all equal and no lengths with aligned=True)."""
    aligned: bool = False
    noise: float = 1.0
    """Per-step feature noise relative to the signal."""
    seed: int = 0


def make_synthetic(spec: SyntheticSpec) -> dict:
    """The whole dataset as a dict (splits train/valid/test and meta), as MMSA's pickles hold it."""
    rng = np.random.default_rng(spec.seed)
    dims = dict(zip("LAV", spec.dims))
    steps = dict(zip("LAV", spec.steps if not spec.aligned else (spec.steps[0],) * 3))
    directions = {m: rng.standard_normal(dims[m]).astype(np.float32) for m in "LAV"}
    directions = {m: v / np.linalg.norm(v) * np.sqrt(dims[m]) for m, v in directions.items()}
    data: dict = {"meta": {"feature_set": "synthetic", "generator": "models.synthetic", "seed": spec.seed}}
    for split, n in (("train", spec.train), ("valid", spec.valid), ("test", spec.test)):
        sentiment = rng.standard_normal(n).astype(np.float32)
        z = {m: sentiment + NOISE[m] * rng.standard_normal(n).astype(np.float32) for m in "LAV"}
        labels = (3 * np.tanh(0.8 * sentiment)).astype(np.float32)
        out: dict = {"id": [f"{split}_{i:05d}" for i in range(n)], "regression_labels": labels,
                     "raw_text": [""] * n}
        lengths = {}
        for m in "LAV":
            t = steps[m]
            if spec.aligned:
                lengths[m] = lengths.get("L", rng.integers(max(2, t // 2), t + 1, size=n))
            else:
                lengths[m] = rng.integers(max(2, t // 2), t + 1, size=n)
            present = (np.arange(t)[None, :] < lengths[m][:, None]).astype(np.float32)
            signal = z[m][:, None, None] * directions[m][None, None, :]
            noise = spec.noise * rng.standard_normal((n, t, dims[m])).astype(np.float32)
            out[KEYS[m]] = ((signal + noise) * present[:, :, None]).astype(np.float32)
        if not spec.aligned:
            out["audio_lengths"] = lengths["A"].astype(np.int64)
            out["vision_lengths"] = lengths["V"].astype(np.int64)
        data[split] = out
    return data


SAMPLES_MAX = 1_000_000


def main(argv: list[str] | None = None) -> int:
    parser = Parser(prog="python -m models.synthetic", description=__doc__.split("\n")[0],
                    epilog="exit codes: 0 done; 1 internal failure (a bug); 2 bad input or usage")
    parser.add_argument("--out", required=True, type=Path,
                        help="the .npz file to write (pickle-free; read by models.train and models.evaluate)")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing --out file")
    parser.add_argument("--train", type=int, default=SyntheticSpec.train,
                        help=f"training samples, 1 to {SAMPLES_MAX} (default {SyntheticSpec.train})")
    parser.add_argument("--valid", type=int, default=SyntheticSpec.valid,
                        help=f"validation samples (default {SyntheticSpec.valid})")
    parser.add_argument("--test", type=int, default=SyntheticSpec.test,
                        help=f"test samples (default {SyntheticSpec.test})")
    parser.add_argument("--aligned", action="store_true",
                        help="equal steps for all modalities and no length keys (MMSA's aligned sets)")
    parser.add_argument("--noise", type=float, default=SyntheticSpec.noise,
                        help=f"per-step feature noise relative to the signal, 0 to 100 (default {SyntheticSpec.noise})")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    args = parser.parse_args(argv)
    problem = None
    if min(args.train, args.valid, args.test) < 1 or max(args.train, args.valid, args.test) > SAMPLES_MAX:
        problem = f"every split needs from 1 to {SAMPLES_MAX} samples"
    elif not math.isfinite(args.noise) or not 0 <= args.noise <= 100:
        problem = f"--noise must be a number from 0 to 100, got {args.noise}"
    elif args.out.suffix.lower() != ".npz":
        problem = f"--out '{args.out}': name a .npz file (a pickle-free NumPy archive)"
    elif args.out.exists() and not args.overwrite:
        problem = f"--out '{args.out}' exists; pass --overwrite to replace it"
    if problem:
        print(f"error: {problem}", file=sys.stderr)
        return 2
    spec = SyntheticSpec(train=args.train, valid=args.valid, test=args.test, aligned=args.aligned,
                         noise=args.noise, seed=args.seed)
    from models.data import save_dataset

    try:
        save_dataset(args.out, make_synthetic(spec))
    except OSError as exc:
        print(f"error: cannot write {args.out}: {exc.strerror}", file=sys.stderr)
        return 2
    print(f"wrote {args.out} ({spec.train}/{spec.valid}/{spec.test} samples)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
