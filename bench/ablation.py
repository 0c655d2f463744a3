"""Ablation: what the graph units, the decoupling and DHMD's dictionary stage each buy.

    python -m bench.ablation [--seeds 0 1 2] [--epochs 6] [--train 400 --valid 100 --test 200]
        [--variants dmd dmd-no-gd dmd-no-decouple dhmd dhmd-fit-only dmd-alpha-1/8] [--out runs/ablation]
        [--edges-figure docs/edges-spread.png] [--threads 1]
    python -m bench.ablation --table-from runs/ablation/results.json runs/ablation-more/results.json

One synthetic set (models.synthetic, data seed 0) gives the same train/valid/test split to
every variant; each training seed trains every variant as a teacher on complete data and
then as a CorrKD student on missing data (models.train.fit, as ``python -m models.train``
does). Both are scored on the test split complete and at missing rates 0.3 and 0.5
(models.corrkd.drop_missing with one evaluation seed per training seed, the same for every
variant). Prints a Markdown table of mean ± std over seeds and writes it with every number
to --out (table.md, results.json, updated after each fit).

``--table-from`` trains nothing: it prints the table of one or more saved results.json
(runs of other seeds on the same data and epochs pooled as one set of seeds).

``--edges-figure`` also draws the teacher's homogeneous and heterogeneous edge weights per
test window, split by the label's sign, for DMD with the authors' alpha 1/8 and with
alpha 1 (first seed): the spread of the edges before and after the fix of issue 16.

Exit codes: 0 done, 1 internal failure (a bug), 2 bad usage (one line 'error: ...').
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

VARIANTS: dict[str, tuple[dict, dict, str]] = {
    "dmd": ({}, {}, "DMD as configured here (GD-Units, decoupling, alpha 1)"),
    "dmd-no-gd": ({}, {"w_gd_homo": 0.0, "w_gd_hetero": 0.0}, "DMD without the graph units' losses"),
    "dmd-no-decouple": ({"decouple": False}, {"w_decouple": 0.0},
                        "DMD without decoupling: s_m = c_m = the projection, no decoupling losses"),
    "dhmd": ({"architecture": "dhmd"}, {}, "DHMD: DMD plus cross-modal dictionary matching"),
    "dhmd-fit-only": ({"architecture": "dhmd"}, {"w_dict_match": 0.0},
                      "DHMD's dictionaries without the matching loss (only their rebuilding term)"),
    "dmd-alpha-1/8": ({"gd_alpha": 0.125}, {}, "DMD with the authors' edge scale 1/8 (before issue 16)"),
}
"""name -> (model overrides, train overrides, what it is); on top of the small preset."""
RATES = (0.0, 0.3, 0.5)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.ablation", description=__doc__.split("\n")[0],
                                     epilog="exit codes: 0 done; 1 internal failure (a bug); 2 bad usage")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], help="training seeds (default 0 1 2)")
    parser.add_argument("--epochs", type=int, default=6, help="maximum epochs per fit, 1 to 1000 (default 6)")
    parser.add_argument("--train", type=int, default=400, help="synthetic training samples (default 400)")
    parser.add_argument("--valid", type=int, default=100, help="synthetic validation samples (default 100)")
    parser.add_argument("--test", type=int, default=200, help="synthetic test samples (default 200)")
    parser.add_argument("--variants", nargs="+", choices=list(VARIANTS), default=list(VARIANTS),
                        help="which variants to train (default: all)")
    parser.add_argument("--out", type=Path, default=Path("runs/ablation"),
                        help="folder for the data, results.json and table.md (default runs/ablation)")
    parser.add_argument("--edges-figure", type=Path, help="also draw the edges' spread before/after (PNG)")
    parser.add_argument("--threads", type=int, help="torch CPU threads (default: torch's choice)")
    parser.add_argument("--table-from", type=Path, nargs="+", metavar="RESULTS",
                        help="print the table of saved results.json files (pooled) and train nothing")
    args = parser.parse_args(argv)
    if args.table_from:
        return _table_from(args.table_from)
    if not 1 <= args.epochs <= 1000:
        print(f"error: --epochs must be from 1 to 1000, got {args.epochs}", file=sys.stderr)
        return 2
    if min(args.train, args.valid, args.test) < 8:
        print("error: --train, --valid and --test need at least 8 samples each", file=sys.stderr)
        return 2
    if args.edges_figure is not None and not {"dmd", "dmd-alpha-1/8"} <= set(args.variants):
        print("error: --edges-figure needs the variants dmd and dmd-alpha-1/8", file=sys.stderr)
        return 2

    import torch

    from models import safejson
    from models.config import TrainConfig, load_preset
    from models.data import load_dataset, save_dataset
    from models.loop import evaluate
    from models.synthetic import SyntheticSpec, make_synthetic
    from models.train import fit, model_config_for

    if args.threads:
        torch.set_num_threads(args.threads)
    args.out.mkdir(parents=True, exist_ok=True)
    spec = SyntheticSpec(train=args.train, valid=args.valid, test=args.test)
    dataset = load_dataset(save_dataset(args.out / "synthetic.npz", make_synthetic(spec)))
    test = dataset.splits["test"]
    device = torch.device("cpu")
    base_model, base_train = load_preset("small")
    base_train["epochs"] = args.epochs
    results: dict = {"command": "python -m bench.ablation " + " ".join(argv if argv is not None else sys.argv[1:]),
                     "data": {"train": args.train, "valid": args.valid, "test": args.test, "data_seed": spec.seed},
                     "epochs": args.epochs, "seeds": args.seeds, "runs": []}
    edges: dict[str, dict] = {}
    started = time.perf_counter()
    for seed in args.seeds:
        for name in args.variants:
            model_over, train_over, _ = VARIANTS[name]
            model_cfg = model_config_for(dataset, {**base_model, **model_over})
            train_cfg = TrainConfig.from_dict({**base_train, **train_over})
            teacher = fit(dataset, model_cfg, train_cfg, device, seed=seed, progress=False)
            student = fit(dataset, model_cfg, train_cfg, device, teacher=teacher.net, seed=seed, progress=False)
            for role, result in (("teacher", teacher), ("student", student)):
                scores = {}
                for rate in RATES:
                    m = evaluate(result.net, test, device, missing_rate=rate, seed=100 + seed)
                    scores[f"{rate:.1f}"] = {k: m[k] for k in ("MAE", "Non0_F1_score", "Mult_acc_7", "Corr")}
                run = {"variant": name, "role": role, "seed": seed, "best_epoch": result.best_epoch,
                       "seconds": round(result.seconds, 1), "test": scores}
                if model_cfg.architecture == "dhmd":
                    run["atoms"] = atom_statistics(result.net, test, device)
                results["runs"].append(run)
            if seed == args.seeds[0] and name in ("dmd", "dmd-alpha-1/8"):
                edges[name] = _test_edges(teacher.net, test, device)
            print(f"seed {seed} {name}: teacher MAE {results['runs'][-2]['test']['0.0']['MAE']:.3f}, student MAE "
                  f"at 0.5 {results['runs'][-1]['test']['0.5']['MAE']:.3f} ({time.perf_counter() - started:.0f} s)",
                  file=sys.stderr, flush=True)
            (args.out / "results.json").write_text(safejson.dumps(results, indent=1) + "\n")
    table = format_table(results, args.variants)
    (args.out / "table.md").write_text(table + "\n")
    print(table)
    if args.edges_figure is not None:
        edges_figure(edges, args.edges_figure)
        print(f"edges figure written to {args.edges_figure}", file=sys.stderr)
    return 0


def _table_from(paths: list[Path]) -> int:
    import json

    runs, setups = [], set()
    for path in paths:
        try:
            saved = json.loads(path.read_text())
        except (OSError, ValueError) as exc:
            print(f"error: cannot read '{path}': {exc}", file=sys.stderr)
            return 2
        setups.add(json.dumps([saved["data"], saved["epochs"]], sort_keys=True))
        runs += saved["runs"]
    if len(setups) > 1:
        print("error: those results differ in data or epochs; pool only runs of one setup", file=sys.stderr)
        return 2
    keys = [(r["variant"], r["role"], r["seed"]) for r in runs]
    if len(set(keys)) != len(keys):
        print("error: a variant was trained twice with one seed in those results", file=sys.stderr)
        return 2
    variants = list(dict.fromkeys(r["variant"] for r in runs))
    for name in variants:
        print(f"{name}: seeds {sorted({r['seed'] for r in runs if r['variant'] == name})}")
    print(format_table({"runs": runs}, variants))
    return 0


def format_table(results: dict, variants: list[str]) -> str:
    """Mean ± std over seeds of test MAE (lower is better) and Non0 F1 (%), per variant and role."""
    head = "| variant | role | " + " | ".join(f"MAE @{r:.1f} | F1 @{r:.1f}" for r in RATES) + " |"
    lines = [head, "|" + "---|" * (2 + 2 * len(RATES))]
    for name in variants:
        for role in ("teacher", "student"):
            runs = [r for r in results["runs"] if r["variant"] == name and r["role"] == role]
            if not runs:
                continue
            cells = []
            for rate in RATES:
                mae = np.array([r["test"][f"{rate:.1f}"]["MAE"] for r in runs], float)
                f1 = 100 * np.array([r["test"][f"{rate:.1f}"]["Non0_F1_score"] for r in runs], float)
                cells += [f"{mae.mean():.3f} ± {mae.std():.3f}", f"{f1.mean():.1f} ± {f1.std():.1f}"]
            lines.append(f"| {name} | {role} | " + " | ".join(cells) + " |")
    if "dmd" in variants and len(variants) > 1:
        # the same seed gives every variant the same initial draw of batches and missing data:
        # the paired difference removes the seed's share of the spread
        lines += ["", "Paired difference from dmd (same seed), test MAE: mean ± std over seeds; below 0 is "
                  "better than dmd.", "",
                  "| variant | role | " + " | ".join(f"ΔMAE @{r:.1f}" for r in RATES) + " |",
                  "|" + "---|" * (2 + len(RATES))]
        for name in variants:
            if name == "dmd":
                continue
            for role in ("teacher", "student"):
                base = {r["seed"]: r for r in results["runs"] if r["variant"] == "dmd" and r["role"] == role}
                runs = [r for r in results["runs"] if r["variant"] == name and r["role"] == role and r["seed"] in base]
                if not runs:
                    continue
                cells = []
                for rate in RATES:
                    key = f"{rate:.1f}"
                    diff = np.array([r["test"][key]["MAE"] - base[r["seed"]]["test"][key]["MAE"] for r in runs])
                    cells.append(f"{diff.mean():+.3f} ± {diff.std():.3f}")
                lines.append(f"| {name} | {role} | " + " | ".join(cells) + " |")
    atoms = [r for r in results["runs"] if "atoms" in r]
    if atoms:
        lines += ["", "Dictionary activations on complete test data (models.dhmd), mean over seeds: agreement = mean "
                  "Jensen-Shannon divergence between two modalities' activations of one window (0 = the same, "
                  "ln 2 = 0.693 = disjoint); class gap = total variation between a modality's mean activations on "
                  "negative and non-negative windows (0 = blind to the class); atoms used = perplexity of the mean "
                  "activation (of K).", "",
                  "| variant | role | space | agreement JS | class gap L / A / V | atoms used |",
                  "|---|---|---|---|---|---|"]
        for name in variants:
            for role in ("teacher", "student"):
                runs = [r["atoms"] for r in atoms if r["variant"] == name and r["role"] == role]
                for space in ("homo", "hetero") if runs else ():
                    js = np.mean([a[space]["agreement_js"] for a in runs])
                    gap = " / ".join(f"{np.mean([a[space]['class_gap'][m] for a in runs]):.2f}" for m in "LAV")
                    used = np.mean([a[space]["atoms_used"] for a in runs])
                    lines.append(f"| {name} | {role} | {space} | {js:.3f} | {gap} | {used:.1f} |")
    return "\n".join(lines)


def atom_statistics(net, split, device) -> dict:
    """How a DHMD network's activations behave on complete data: cross-modal agreement
    (mean JS divergence over modality pairs and windows), each modality's class gap (total
    variation between its mean activations on negative and non-negative windows), and the
    number of atoms in use (perplexity of the mean activation)."""
    import torch

    from models.loop import batches

    acts: dict[str, dict[str, list]] = {"homo": {m: [] for m in "LAV"}, "hetero": {m: [] for m in "LAV"}}
    net.eval()
    with torch.no_grad():
        for batch in batches(split, 64, device):
            out = net(batch.inputs, batch.masks)
            for m in "LAV":
                acts["homo"][m].append(out.atoms_homo[m].cpu().numpy())
                acts["hetero"][m].append(out.atoms_hetero[m].cpu().numpy())
    negative = split.labels < 0
    stats = {}
    for space, per in acts.items():
        a = {m: np.clip(np.concatenate(v), 1e-8, 1.0) for m, v in per.items()}
        js = []
        for x, y in (("L", "A"), ("L", "V"), ("A", "V")):
            mid = (a[x] + a[y]) / 2
            js.append(0.5 * (a[x] * np.log(a[x] / mid)).sum(1) + 0.5 * (a[y] * np.log(a[y] / mid)).sum(1))
        mean = np.concatenate(list(a.values())).mean(0)
        stats[space] = {
            "agreement_js": float(np.mean(js)),
            "class_gap": {m: float(0.5 * np.abs(a[m][negative].mean(0) - a[m][~negative].mean(0)).sum()) for m in a},
            "atoms_used": float(np.exp(-(mean * np.log(mean)).sum())),
        }
    return stats


def _test_edges(net, split, device) -> dict:
    """Per-window edges (N, 6) of both GD-Units on complete test data, and the labels."""
    import torch

    from models.loop import batches

    homo, hetero = [], []
    net.eval()
    with torch.no_grad():
        for batch in batches(split, 64, device):
            out = net(batch.inputs, batch.masks)
            homo.append(out.edges_homo.cpu().numpy())
            hetero.append(out.edges_hetero.cpu().numpy())
    return {"homo": np.concatenate(homo), "hetero": np.concatenate(hetero), "labels": split.labels.copy()}


def edges_figure(edges: dict[str, dict], path: Path) -> None:
    """Box plots of each edge's weight over test windows, negative and non-negative labels
    side by side: rows homo/hetero, columns alpha 1/8 (before) and alpha 1 (after)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from models.graph_distill import EDGE_NAMES

    fig, axes = plt.subplots(2, 2, figsize=(11, 6.5), sharey=True)
    columns = (("dmd-alpha-1/8", "before: alpha 1/8 (the authors')"), ("dmd", "after: alpha 1"))
    for col, (name, title) in enumerate(columns):
        data = edges[name]
        negative = data["labels"] < 0
        for row, kind in enumerate(("homo", "hetero")):
            ax = axes[row, col]
            values = data[kind]
            x = np.arange(len(EDGE_NAMES))
            for offset, group, colour, label in ((-0.18, negative, "#c0504d", "negative label"),
                                                 (0.18, ~negative, "#4f81bd", "non-negative label")):
                box = ax.boxplot([values[group, i] for i in range(len(EDGE_NAMES))], positions=x + offset,
                                 widths=0.3, patch_artist=True, showfliers=False)
                for patch in box["boxes"]:
                    patch.set_facecolor(colour)
                    patch.set_alpha(0.6)
                ax.plot([], [], color=colour, lw=6, alpha=0.6, label=label)
            ax.axhline(1 / 6, color="grey", lw=0.8, ls=":")
            ax.set_xticks(x, EDGE_NAMES)
            ax.set_title(f"{kind} GD-Unit, {title}", fontsize=10)
            if col == 0:
                ax.set_ylabel("edge weight per test window")
            if row == 0 and col == 0:
                ax.legend(loc="upper left", fontsize=8)
    fig.suptitle("DMD teacher edges on the synthetic test set (boxes: quartiles over windows; dotted: 1/6)",
                 fontsize=11)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=90)
    plt.close(fig)


if __name__ == "__main__":
    sys.exit(main())
