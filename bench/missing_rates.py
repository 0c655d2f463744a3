"""Robustness table: DMD teacher (complete data only) vs CorrKD student, over missing rates.

    python -m bench.missing_rates [--seeds 0 1 2] [--out runs/missing] [--epochs N]

Generates the synthetic set, trains both per seed, evaluates at missing rates 0.0-0.7
and on each available-modality subset, and prints a Markdown table of mean MAE / F1.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np
import torch

from models import safejson
from models.config import TrainConfig, load_preset
from models.corrkd import SUBSETS
from models.data import load_dataset, save_dataset
from models.errors import Parser
from models.loop import evaluate
from models.synthetic import SyntheticSpec, make_synthetic
from models.train import fit, model_config_for

RATES = (0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7)


def main(argv: list[str] | None = None) -> int:
    parser = Parser(prog="python -m bench.missing_rates", description=__doc__.split("\n")[0],
                    epilog="exit codes: 0 done; 1 internal failure (a bug); 2 bad usage")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2],
                        help="training seeds; the table gives mean and spread over them (default 0 1 2)")
    parser.add_argument("--out", type=Path, default=Path("runs/missing"),
                        help="folder for the generated data and table.json/table.md (default runs/missing)")
    parser.add_argument("--epochs", type=int, default=None,
                        help="maximum epochs per model, 1 to 100000 (default: the small preset's)")
    args = parser.parse_args(argv)
    if args.epochs is not None and not 1 <= args.epochs <= 100_000:
        print(f"error: --epochs must be from 1 to 100000, got {args.epochs}", file=sys.stderr)
        return 2
    args.out.mkdir(parents=True, exist_ok=True)
    data_path = save_dataset(args.out / "synthetic.npz", make_synthetic(SyntheticSpec()))
    dataset = load_dataset(data_path)
    model_over, train_over = load_preset("small")
    if args.epochs:
        train_over["epochs"] = args.epochs
    train_cfg = TrainConfig.from_dict(train_over)
    model_cfg = model_config_for(dataset, model_over)
    device = torch.device("cpu")
    rows: dict[str, dict[str, list]] = {"teacher": {}, "student": {}}
    times = {"teacher": [], "student": []}
    test = dataset.splits["test"]
    for seed in args.seeds:
        teacher = fit(dataset, model_cfg, train_cfg, device, seed=seed, progress=False)
        student = fit(dataset, model_cfg, train_cfg, device, teacher=teacher.net, seed=seed, progress=False)
        for role, result in (("teacher", teacher), ("student", student)):
            times[role].append(result.seconds)
            for rate in RATES:
                m = evaluate(result.net, test, device, missing_rate=rate, seed=100 + seed)
                rows[role].setdefault(f"rate {rate:.1f}", []).append((m["MAE"], m["Non0_F1_score"]))
            for subset in (*SUBSETS, ("L", "A", "V")):
                m = evaluate(result.net, test, device, available=subset)
                rows[role].setdefault("{" + ",".join(subset) + "}", []).append((m["MAE"], m["Non0_F1_score"]))
        print(f"seed {seed} done ({time.strftime('%H:%M:%S')})", file=sys.stderr, flush=True)
    lines = ["| condition | DMD teacher MAE | CorrKD student MAE | teacher F1 | student F1 |", "|---|---|---|---|---|"]
    for key in rows["teacher"]:
        t = np.array(rows["teacher"][key])
        s = np.array(rows["student"][key])
        lines.append(f"| {key} | {t[:, 0].mean():.3f} ± {t[:, 0].std():.3f} | {s[:, 0].mean():.3f} ± "
                     f"{s[:, 0].std():.3f} | {100 * t[:, 1].mean():.1f} | {100 * s[:, 1].mean():.1f} |")
    print("\n".join(lines))
    summary = {"seeds": args.seeds, "rows": rows, "train_seconds": times}
    (args.out / "table.json").write_text(safejson.dumps(summary, indent=1))
    (args.out / "table.md").write_text("\n".join(lines) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
