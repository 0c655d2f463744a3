"""Evaluate a checkpoint on a split, with and without missing data.

    python -m models.evaluate --checkpoint DIR --data FILE [--split test]
        [--missing-rate R ...] [--subsets] [--device auto|cpu|cuda]

Prints one JSON object per line (``samples`` scored, of which ``rated`` rate a valence and
so count in the valence metrics): one per missing rate (random whole-modality and
time-step drops, models.corrkd.drop_missing, fixed seed) and, with ``--subsets``, one per
available-modality subset ({L}, {A}, {V}, {L,A}, {L,V}, {A,V}, {L,A,V}) as CorrKD reports.
A metric that is undefined (e.g. Non0 scores with no non-zero label) is null, never NaN.
The data's classes are matched to the checkpoint's by name (labels of three of the seven
emotions score the bundled model); a class the checkpoint does not predict is refused.

Exit codes: 0 done, 1 internal failure (a bug), 2 bad input or usage (one line 'error: ...').
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import math
import sys

from models import safejson
from models.checkpoint import load_checkpoint
from models.corrkd import SUBSETS
from models.data import PICKLE_NOTE, load_dataset
from models.device import resolve_device
from models.errors import Parser, UsageError, UserError
from models.loop import evaluate


def run(args: argparse.Namespace) -> int:
    for rate in args.missing_rate:
        if not (math.isfinite(rate) and 0.0 <= rate <= 1.0):
            raise UsageError(f"--missing-rate {rate}: must be within [0, 1]")
    device = resolve_device(args.device)
    ckpt = load_checkpoint(args.checkpoint)
    dataset = load_dataset(args.data, splits=(args.split,))
    ckpt.check_features(dataset.feature_set, dataset.dims, dataset.steps, dataset.meta.get("extractor"))
    split = dataset.splits[args.split]
    split = dataclasses.replace(split, class_labels=ckpt.class_labels_for(dataset.class_names, split.class_labels))
    rated_count = int(split.rated.sum())
    rated = rated_count > 0
    classed = bool(ckpt.model.class_names) and split.class_labels is not None and bool((split.class_labels >= 0).any())
    if not rated and not classed:
        raise UsageError(f"nothing to score: split '{args.split}' of {args.data} rates no valence and "
                         f"{'the checkpoint predicts no classes' if not ckpt.model.class_names else 'names no class'}")
    net = ckpt.build(device)
    # 'rated': the samples the valence metrics cover (a class-only row rates none)
    base = {"checkpoint": ckpt.id, "split": args.split, "samples": len(split), "rated": rated_count}
    for rate in args.missing_rate:
        metrics = evaluate(net, split, device, missing_rate=rate, seed=args.seed)
        print(safejson.dumps({**base, "missing_rate": rate, **metrics}), flush=True)
    if args.subsets:
        for available in (*SUBSETS, ("L", "A", "V")):
            metrics = evaluate(net, split, device, available=available)
            print(safejson.dumps({**base, "available": "".join(available), **metrics}), flush=True)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = Parser(prog="python -m models.evaluate", description=__doc__.split("\n")[0],
                    epilog="exit codes: 0 done; 1 internal failure (a bug); 2 bad input or usage")
    parser.add_argument("--checkpoint", required=True,
                        help="checkpoint folder, or a models.train output folder (its student is scored); "
                             "the bundled model is realtime/assets/default")
    parser.add_argument("--data", required=True,
                        help=f"dataset: a .npz (realtime.extract, realtime.corpus, models.synthetic) or an MMSA "
                             f"pickle (.pkl). {PICKLE_NOTE}")
    parser.add_argument("--split", default="test", choices=("train", "valid", "test"),
                        help="the split to score (default test)")
    parser.add_argument("--missing-rate", type=float, nargs="+", default=[0.0],
                        help="one or more simulated missing rates in [0, 1]: whole modalities and time steps "
                             "dropped (default 0)")
    parser.add_argument("--subsets", action="store_true", help="also score each available-modality subset")
    parser.add_argument("--device", default="auto", help="auto, cpu or cuda[:N] (default auto: a GPU if any)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the simulated missing data (default %(default)s)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s: %(message)s")
    try:
        return run(args)
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    from models.signals import exit_quickly

    exit_quickly(main())  # its models closed: no last garbage collection over them
