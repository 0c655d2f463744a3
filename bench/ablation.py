"""Ablation: what the graph units, the decoupling and DHMD's dictionary stage each buy.

    python -m bench.ablation [--seeds 0 1 2] [--epochs 6] [--train 400 --valid 100 --test 200]
        [--variants dmd dmd-no-gd dmd-no-decouple dhmd dhmd-fit-only dmd-alpha-1/8] [--out runs/ablation]
        [--edges-figure docs/edges-spread.png] [--threads 1]
    python -m bench.ablation --corpus runs/default/corpus.npz [--corpus-train 2000 --corpus-valid 400
        --corpus-test 1000] [--corpus-pairs 0] [--corpus-seed 0] [--seeds 0 1 2] [--epochs 6]
        [--edges-figure PNG --corpus-edge-windows 600 --teachers-only] ...
    python -m bench.ablation --table-from runs/ablation/results.json runs/ablation-more/results.json

One synthetic set (models.synthetic, data seed 0) gives the same train/valid/test split to
every variant; each training seed trains every variant as a teacher on complete data and
then as a CorrKD student on missing data (models.train.fit, as ``python -m models.train``
does). Both are scored on the test split complete and at missing rates 0.3 and 0.5
(models.corrkd.drop_missing with one evaluation seed per training seed, the same for every
variant). Prints a Markdown table of mean ± std over seeds and writes it with every number
to --out (table.md, results.json, updated after each fit).

``--corpus`` replaces the synthetic set with a labelled emotion corpus written by
``python -m realtime.corpus`` (seven emotion classes and valence; each sample has the one
channel its corpus gives). Each split is cut to a fixed sample, stratified by source and
class and drawn with ``--data-seed``, so every variant and training seed sees the same
rows (their ids are written to --out/subset.json); ``--corpus-pairs`` adds complete
training samples as the default model's recipe does (realtime.recipe
add_pairs): on unimodal samples there is no edge, so without pairs the graph units and
DHMD's matching have nothing to act on. The recipe's pooled homogeneous heads are used.
Scores: 7-class accuracy and macro F1 of the emotion head, valence sign accuracy (Non0)
and MAE, from models.loop.evaluate.

``--table-from`` trains nothing: it prints the table of one or more saved results.json
(runs of other seeds on the same data and epochs pooled as one set of seeds).

``--edges-figure`` also draws the teacher's homogeneous and heterogeneous edge weights per
test window, split by the label's sign, for DMD with the authors' alpha 1/8 and with
alpha 1 (first seed): the spread of the edges before and after the fix of issue 16 (the
numbers in --out/edges.npz). With ``--corpus``, whose windows hold one channel each and so
have no edge, the edges are drawn by emotion on ``--corpus-edge-windows`` complete windows
that the recipe's pairing builds from the kept test rows.

Exit codes: 0 done, 1 internal failure (a bug), 2 bad usage or input (one line 'error: ...').
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from models.errors import Parser
from realtime.recipe import add_pairs

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
SYNTHETIC_METRICS = ("MAE", "Non0_F1_score", "Mult_acc_7", "Corr")
CORPUS_METRICS = ("Class_acc", "Class_macro_F1", "Non0_acc_2", "MAE", "Corr")
"""What a run keeps of models.loop.evaluate's metrics at each missing rate."""
CORPUS_MODEL = {"homo_pooling": "pool"}
"""The emotion recipe's model settings (tools/build_default_model.py) on top of the small
preset: a channel that fills a few steps of its window reads the same wherever they fall."""


@dataclass(frozen=True)
class CorpusCut:
    """Which part of a labelled emotion corpus the ablation trains and scores on."""

    path: Path
    """A .npz written by ``python -m realtime.corpus``."""
    train: int
    """Training samples kept (all if the split has fewer), before the pairs."""
    valid: int
    """Validation samples kept: model selection, every epoch."""
    test: int
    """Test samples kept: the scores."""
    pairs: int
    """Complete training samples added, a face, a voice and words of one emotion from the
    kept training samples (realtime.recipe.add_pairs); 0: none."""
    seed: int
    """Seed of the samples kept and of the pairs: the same rows for every variant and training seed."""


@dataclass(frozen=True)
class Column:
    """One metric as a table shows it."""

    key: str  # in a run's scores
    label: str
    scale: float  # 100: shown in percent
    digits: int


MAE = Column("MAE", "MAE", 1.0, 3)
SYNTHETIC_TABLES = ((MAE, Column("Non0_F1_score", "F1", 100.0, 1)),)
CORPUS_TABLES = ((Column("Class_acc", "Acc7", 100.0, 1), Column("Class_macro_F1", "F1m", 100.0, 1)),
                 (Column("Non0_acc_2", "sign", 100.0, 1), MAE))


def main(argv: list[str] | None = None) -> int:
    parser = Parser(prog="python -m bench.ablation", description=__doc__.split("\n")[0],
                    epilog="exit codes: 0 done; 1 internal failure (a bug); 2 bad usage or input")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], help="training seeds (default 0 1 2)")
    parser.add_argument("--epochs", type=int, default=6, help="maximum epochs per fit, 1 to 1000 (default 6)")
    parser.add_argument("--train", type=int, default=400, help="synthetic training samples (default 400)")
    parser.add_argument("--valid", type=int, default=100, help="synthetic validation samples (default 100)")
    parser.add_argument("--test", type=int, default=200, help="synthetic test samples (default 200)")
    parser.add_argument("--corpus", type=Path,
                        help="train and score on this labelled emotion corpus (.npz from python -m realtime.corpus) "
                             "instead of the synthetic set")
    parser.add_argument("--corpus-train", type=int, default=2000,
                        help="with --corpus: training samples kept, stratified by source and class (default 2000)")
    parser.add_argument("--corpus-valid", type=int, default=400,
                        help="with --corpus: validation samples kept, stratified likewise (default 400)")
    parser.add_argument("--corpus-test", type=int, default=1000,
                        help="with --corpus: test samples kept, stratified likewise (default 1000)")
    parser.add_argument("--corpus-pairs", type=int, default=0,
                        help="with --corpus: complete cross-corpus training samples added as the default model's "
                             "recipe does (default 0; without them no sample has an edge)")
    parser.add_argument("--corpus-edge-windows", type=int, default=0,
                        help="with --corpus and --edges-figure: complete windows built from the kept test rows as "
                             "the recipe builds its pairs, on which the edges are drawn by emotion (a corpus's own "
                             "windows hold one channel each and have no edges)")
    parser.add_argument("--corpus-seed", type=int, default=0,
                        help="with --corpus: seed of the samples kept and of the pairs (default 0)")
    parser.add_argument("--variants", nargs="+", choices=list(VARIANTS), default=list(VARIANTS),
                        help="which variants to train (default: all)")
    parser.add_argument("--out", type=Path, default=Path("runs/ablation"),
                        help="folder for the data, results.json and table.md (default runs/ablation)")
    parser.add_argument("--edges-figure", type=Path, help="also draw the edges' spread before/after (PNG)")
    parser.add_argument("--teachers-only", action="store_true",
                        help="train and score the teachers only (the edges figure needs no student)")
    parser.add_argument("--threads", type=int, help="torch CPU threads (default: torch's choice)")
    parser.add_argument("--table-from", type=Path, nargs="+", metavar="RESULTS",
                        help="print the table of saved results.json files (pooled) and train nothing")
    args = parser.parse_args(argv)
    if args.table_from:
        return _table_from(args.table_from)
    if not 1 <= args.epochs <= 1000:
        print(f"error: --epochs must be from 1 to 1000, got {args.epochs}", file=sys.stderr)
        return 2
    if min(args.train, args.valid, args.test, args.corpus_train, args.corpus_valid, args.corpus_test) < 8:
        print("error: --train, --valid, --test and --corpus-train/-valid/-test need at least 8 samples each",
              file=sys.stderr)
        return 2
    if args.corpus_pairs < 0:
        print(f"error: --corpus-pairs must be 0 or more, got {args.corpus_pairs}", file=sys.stderr)
        return 2
    if args.edges_figure is not None and not {"dmd", "dmd-alpha-1/8"} <= set(args.variants):
        print("error: --edges-figure needs the variants dmd and dmd-alpha-1/8", file=sys.stderr)
        return 2
    if args.edges_figure is not None and args.corpus is not None and args.corpus_edge_windows < 8:
        print("error: --edges-figure with --corpus needs --corpus-edge-windows of 8 or more: a corpus's own windows "
              "hold one channel each and have no edges", file=sys.stderr)
        return 2

    import torch

    from models import safejson
    from models.config import TrainConfig, load_preset
    from models.data import DataError, load_dataset, save_dataset
    from models.loop import evaluate
    from models.synthetic import SyntheticSpec, make_synthetic
    from models.train import fit, model_config_for

    if args.threads:
        torch.set_num_threads(args.threads)
    args.out.mkdir(parents=True, exist_ok=True)
    base_model, base_train = load_preset("small")
    base_train["epochs"] = args.epochs
    command = "python -m bench.ablation " + " ".join(argv if argv is not None else sys.argv[1:])
    if args.corpus is None:
        spec = SyntheticSpec(train=args.train, valid=args.valid, test=args.test)
        dataset = load_dataset(save_dataset(args.out / "synthetic.npz", make_synthetic(spec)))
        data = {"train": args.train, "valid": args.valid, "test": args.test, "data_seed": spec.seed}
        keys = SYNTHETIC_METRICS
    else:
        cut = CorpusCut(path=args.corpus, train=args.corpus_train, valid=args.corpus_valid, test=args.corpus_test,
                        pairs=args.corpus_pairs, seed=args.corpus_seed)
        started = time.perf_counter()
        try:
            dataset, data, ids = corpus_dataset(cut)
        except DataError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
        (args.out / "subset.json").write_text(safejson.dumps(ids) + "\n")
        print(f"corpus sample ready ({time.perf_counter() - started:.0f} s): "
              + ", ".join(f"{k} {len(v)}" for k, v in dataset.splits.items()), file=sys.stderr, flush=True)
        base_model.update(CORPUS_MODEL)
        keys = CORPUS_METRICS
    test = dataset.splits["test"]
    edge_split = test
    if args.corpus is not None and args.edges_figure is not None:
        # the recipe's pairing on the kept test rows, with a seed of its own: complete windows to draw
        paired = add_pairs(test, args.corpus_edge_windows, args.corpus_seed + 1)
        edge_split = paired.subset(np.arange(len(test), len(paired)))
        data["edge_windows"] = args.corpus_edge_windows
    device = torch.device("cpu")
    results: dict = {"command": command, "data": data, "epochs": args.epochs, "seeds": args.seeds, "runs": []}
    headline = keys[0] if args.corpus is None else "Class_macro_F1"
    edges: dict[str, dict] = {}
    started = time.perf_counter()
    for seed in args.seeds:
        for name in args.variants:
            model_over, train_over, _ = VARIANTS[name]
            model_cfg = model_config_for(dataset, {**base_model, **model_over})
            train_cfg = TrainConfig.from_dict({**base_train, **train_over})
            teacher = fit(dataset, model_cfg, train_cfg, device, seed=seed, progress=False)
            fits = [("teacher", teacher)]
            if not args.teachers_only:
                fits.append(("student", fit(dataset, model_cfg, train_cfg, device, teacher=teacher.net, seed=seed,
                                            progress=False)))
            for role, result in fits:
                scores = {}
                for rate in RATES:
                    m = evaluate(result.net, test, device, missing_rate=rate, seed=100 + seed)
                    scores[f"{rate:.1f}"] = {k: m.get(k) for k in keys}
                run = {"variant": name, "role": role, "seed": seed, "best_epoch": result.best_epoch,
                       "seconds": round(result.seconds, 1), "test": scores}
                if model_cfg.architecture == "dhmd":
                    run["atoms"] = atom_statistics(result.net, test, device)
                results["runs"].append(run)
            if seed == args.seeds[0] and name in ("dmd", "dmd-alpha-1/8") and args.edges_figure is not None:
                edges[name] = _test_edges(teacher.net, edge_split, device)
            scored = {run["role"]: run["test"] for run in results["runs"][-len(fits):]}
            said = f"seed {seed} {name}: teacher {headline} {_number(scored['teacher']['0.0'][headline]):.3f}"
            if "student" in scored:
                said += f", student {headline} at 0.5 {_number(scored['student']['0.5'][headline]):.3f}"
            print(f"{said} ({time.perf_counter() - started:.0f} s)",
                  file=sys.stderr, flush=True)
            (args.out / "results.json").write_text(safejson.dumps(results, indent=1) + "\n")
    table = format_table(results, args.variants)
    (args.out / "table.md").write_text(table + "\n")
    print(table)
    if args.edges_figure is not None:
        edges_figure(edges, args.edges_figure, dataset.class_names if args.corpus is not None else ())
        np.savez(args.out / "edges.npz", **{f"{name}.{k}": v for name, e in edges.items() for k, v in e.items()})
        print(f"edges figure written to {args.edges_figure}", file=sys.stderr)
    return 0


def corpus_dataset(cut: CorpusCut):
    """The corpus with each split cut to a seeded sample stratified by source and class,
    and ``cut.pairs`` complete samples added to training; with what describes the cut
    (for results.json) and the ids kept per split. DataError if it cannot be used."""
    from models.data import DataError, Dataset, load_dataset

    full = load_dataset(cut.path)
    if not full.class_names or any(s.class_labels is None for s in full.splits.values()):
        raise DataError(f"{cut.path}: no emotion classes (meta 'class_names' and per-split 'class_labels'); "
                        "--corpus takes a corpus written by python -m realtime.corpus")
    splits = {}
    for i, (name, n) in enumerate((("train", cut.train), ("valid", cut.valid), ("test", cut.test))):
        # one generator per split: the valid and test rows do not move when --corpus-train changes
        rows = stratified_rows(full.splits[name], n, np.random.default_rng([cut.seed, i]))
        splits[name] = full.splits[name].subset(rows)
    del full.splits  # the whole corpus (GBs) is not needed past here
    kept = {name: list(split.ids) for name, split in splits.items()}
    if cut.pairs:
        splits["train"] = add_pairs(splits["train"], cut.pairs, cut.seed)
    dataset = Dataset(splits=splits, feature_set=full.feature_set, class_names=full.class_names, meta=full.meta,
                      source=full.source)
    data = {"corpus": str(cut.path), "train": cut.train, "valid": cut.valid, "test": cut.test, "pairs": cut.pairs,
            "corpus_seed": cut.seed, "class_names": list(full.class_names),
            "kept": {name: _counts(split.ids, split.class_labels, full.class_names) for name, split in splits.items()}}
    return dataset, data, kept


def stratified_rows(split, n: int, rng: np.random.Generator) -> np.ndarray:
    """``n`` rows of a split (all of them if it has no more), sorted: each source (the id
    up to its first '/') in proportion to its size, within it each class likewise (the
    remainders to the largest fractions), drawn at random within the class."""
    if n >= len(split):
        return np.arange(len(split))
    sources = np.array([i.split("/", 1)[0] if "/" in i else "" for i in split.ids])
    classes = split.class_labels if split.class_labels is not None else np.full(len(split), -1)
    rows = []
    names, sizes = np.unique(sources, return_counts=True)
    for source, k in zip(names, _shares(sizes, n)):
        in_source = np.flatnonzero(sources == source)
        labels, counts = np.unique(classes[in_source], return_counts=True)
        for label, j in zip(labels, _shares(counts, k)):
            rows.append(rng.choice(in_source[classes[in_source] == label], j, replace=False))
    return np.sort(np.concatenate(rows))


def _shares(sizes: np.ndarray, n: int) -> np.ndarray:
    """``n`` split over groups of these sizes in proportion, the remainders to the largest fractions."""
    quota = sizes * n / sizes.sum()
    take = np.floor(quota).astype(int)
    take[np.argsort(take - quota, kind="stable")[: n - take.sum()]] += 1
    return take


def _counts(ids: list[str], class_labels: np.ndarray, class_names: tuple[str, ...]) -> dict[str, dict[str, int]]:
    """Samples per source and class ("valence only" for class -1)."""
    counts: dict[str, dict[str, int]] = {}
    for ident, c in zip(ids, class_labels):
        source = ident.split("/", 1)[0] if "/" in ident else ""
        name = class_names[c] if c >= 0 else "valence only"
        counts.setdefault(source, {})
        counts[source][name] = counts[source].get(name, 0) + 1
    return counts


def _number(value) -> float:
    """A saved metric as a float (null, for a metric undefined on the data, as NaN)."""
    return float("nan") if value is None else float(value)


def _spread(values: np.ndarray, digits: int, signed: bool = False) -> str:
    """Mean ± spread of the seeds' values where the metric is defined (NaN where it is not,
    e.g. Corr on a constant prediction), saying how many had it when some did not."""
    known = values[np.isfinite(values)]
    if not len(known):
        return "n/a"
    text = f"{known.mean():{'+' if signed else ''}.{digits}f} ± {known.std():.{digits}f}"
    return text if len(known) == len(values) else f"{text} ({len(known)} of {len(values)} seeds)"


def _mean_text(values: list, digits: int) -> str:
    """The mean of the values that exist, or "n/a" if none does."""
    known = [v for v in values if v is not None]
    return f"{np.mean(known):.{digits}f}" if known else "n/a"


def _table_from(paths: list[Path]) -> int:
    import json

    runs, setups, data = [], set(), {}
    for path in paths:
        try:
            saved = json.loads(path.read_text())
        except (OSError, ValueError) as exc:
            print(f"error: cannot read '{path}': {exc}", file=sys.stderr)
            return 2
        setups.add(json.dumps([saved["data"], saved["epochs"]], sort_keys=True))
        data = saved["data"]
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
    print(format_table({"data": data, "runs": runs}, variants))
    return 0


def format_table(results: dict, variants: list[str]) -> str:
    """Mean ± std over seeds per variant and role: test MAE (lower is better) and Non0 F1 (%)
    on the synthetic set; 7-class accuracy and macro F1, valence sign accuracy (%) and MAE
    on a corpus. Then the paired difference from dmd, and DHMD's activation statistics."""
    runs = results["runs"]
    corpus = "corpus" in results.get("data", {})
    lines: list[str] = []
    for columns in CORPUS_TABLES if corpus else SYNTHETIC_TABLES:
        if lines:
            lines.append("")
        lines += _mean_table(runs, variants, columns)
    if "dmd" in variants and len(variants) > 1:
        # the same seed gives every variant the same initial draw of batches and missing data:
        # the paired difference removes the seed's share of the spread
        if corpus:
            lines += ["", "Paired difference from dmd (same seed), test macro F1 and 7-class accuracy in points: "
                      "mean ± std over seeds; above 0 is better than dmd.", ""]
            lines += _paired_table(runs, variants, CORPUS_TABLES[0], digits=1)
        else:
            lines += ["", "Paired difference from dmd (same seed), test MAE: mean ± std over seeds; below 0 is "
                      "better than dmd.", ""]
            lines += _paired_table(runs, variants, (MAE,), digits=3)
    atoms = [r for r in runs if "atoms" in r]
    if atoms:
        lines += ["", "Dictionary activations on complete test data (models.dhmd), mean over seeds: agreement = mean "
                  "Jensen-Shannon divergence between two modalities' activations of one window (0 = the same, "
                  "ln 2 = 0.693 = disjoint); class gap = total variation between a modality's mean activations on "
                  "negative and non-negative windows (0 = blind to the class); atoms used = perplexity of the mean "
                  "activation (of K); each modality only where present, n/a where no window allows it.", "",
                  "| variant | role | space | agreement JS | class gap L / A / V | atoms used |",
                  "|---|---|---|---|---|---|"]
        for name in variants:
            for role in ("teacher", "student"):
                per = [r["atoms"] for r in atoms if r["variant"] == name and r["role"] == role]
                for space in ("homo", "hetero") if per else ():
                    gap = " / ".join(_mean_text([a[space]["class_gap"][m] for a in per], 2) for m in "LAV")
                    js = _mean_text([a[space]["agreement_js"] for a in per], 3)
                    used = np.mean([a[space]["atoms_used"] for a in per])
                    lines.append(f"| {name} | {role} | {space} | {js} | {gap} | {used:.1f} |")
    return "\n".join(lines)


def _mean_table(runs: list[dict], variants: list[str], columns: tuple[Column, ...]) -> list[str]:
    head = "| variant | role | " + " | ".join(f"{c.label} @{r:.1f}" for r in RATES for c in columns) + " |"
    lines = [head, "|" + "---|" * (2 + len(columns) * len(RATES))]
    for name in variants:
        for role in ("teacher", "student"):
            chosen = [r for r in runs if r["variant"] == name and r["role"] == role]
            if not chosen:
                continue
            cells = []
            for rate in RATES:
                for c in columns:
                    v = c.scale * np.array([_number(r["test"][f"{rate:.1f}"][c.key]) for r in chosen])
                    cells.append(_spread(v, c.digits))
            lines.append(f"| {name} | {role} | " + " | ".join(cells) + " |")
    return lines


def _paired_table(runs: list[dict], variants: list[str], columns: tuple[Column, ...], digits: int) -> list[str]:
    lines = ["| variant | role | " + " | ".join(f"Δ{c.label} @{r:.1f}" for r in RATES for c in columns) + " |",
             "|" + "---|" * (2 + len(columns) * len(RATES))]
    for name in variants:
        if name == "dmd":
            continue
        for role in ("teacher", "student"):
            base = {r["seed"]: r for r in runs if r["variant"] == "dmd" and r["role"] == role}
            chosen = [r for r in runs if r["variant"] == name and r["role"] == role and r["seed"] in base]
            if not chosen:
                continue
            cells = []
            for rate in RATES:
                key = f"{rate:.1f}"
                for c in columns:
                    diff = c.scale * np.array([_number(r["test"][key][c.key])
                                               - _number(base[r["seed"]]["test"][key][c.key]) for r in chosen])
                    cells.append(_spread(diff, digits, signed=True))
            lines.append(f"| {name} | {role} | " + " | ".join(cells) + " |")
    return lines


def atom_statistics(net, split, device) -> dict:
    """How a DHMD network's activations behave on complete data, each modality only where
    it is present: cross-modal agreement (mean JS divergence over the windows that hold
    both modalities of a pair), each modality's class gap (total variation between its mean
    activations on negative and non-negative windows), and the number of atoms in use
    (perplexity of the mean activation). None where no window allows it (a corpus whose
    windows hold one channel each has no agreement to measure)."""
    import torch

    from models.loop import batches

    acts: dict[str, dict[str, list]] = {"homo": {m: [] for m in "LAV"}, "hetero": {m: [] for m in "LAV"}}
    present: dict[str, list] = {m: [] for m in "LAV"}
    net.eval()
    with torch.no_grad():
        for batch in batches(split, 64, device):
            out = net(batch.inputs, batch.masks)
            for m in "LAV":
                acts["homo"][m].append(out.atoms_homo[m].cpu().numpy())
                acts["hetero"][m].append(out.atoms_hetero[m].cpu().numpy())
                present[m].append(batch.masks[m].sum(1).cpu().numpy() > 0)
    has = {m: np.concatenate(v) for m, v in present.items()}
    negative = split.labels < 0
    stats = {}
    for space, per in acts.items():
        a = {m: np.clip(np.concatenate(v), 1e-8, 1.0) for m, v in per.items()}
        js = []
        for x, y in (("L", "A"), ("L", "V"), ("A", "V")):
            both = has[x] & has[y]
            ax, ay = a[x][both], a[y][both]
            mid = (ax + ay) / 2
            js.append(0.5 * (ax * np.log(ax / mid)).sum(1) + 0.5 * (ay * np.log(ay / mid)).sum(1))
        js = np.concatenate(js)
        gap = {}
        for m in a:
            neg, pos = has[m] & negative, has[m] & ~negative
            gap[m] = float(0.5 * np.abs(a[m][neg].mean(0) - a[m][pos].mean(0)).sum()) \
                if neg.any() and pos.any() else None
        mean = np.concatenate([a[m][has[m]] for m in a]).mean(0)
        stats[space] = {
            "agreement_js": float(js.mean()) if len(js) else None,
            "class_gap": gap,
            "atoms_used": float(np.exp(-(mean * np.log(mean)).sum())),
        }
    return stats


def _test_edges(net, split, device) -> dict:
    """Per-window edges (N, 6) of both GD-Units on complete data, the labels and the classes."""
    import torch

    from models.loop import batches

    homo, hetero = [], []
    net.eval()
    with torch.no_grad():
        for batch in batches(split, 64, device):
            out = net(batch.inputs, batch.masks)
            homo.append(out.edges_homo.cpu().numpy())
            hetero.append(out.edges_hetero.cpu().numpy())
    classes = split.class_labels if split.class_labels is not None else np.full(len(split), -1)
    return {"homo": np.concatenate(homo), "hetero": np.concatenate(hetero), "labels": split.labels.copy(),
            "classes": classes.copy()}


def edges_figure(edges: dict[str, dict], path: Path, class_names: tuple[str, ...] = ()) -> None:
    """Box plots of each edge's weight over test windows, negative and non-negative labels
    side by side (with ``class_names``: one box per emotion): rows homo/hetero, columns
    alpha 1/8 (before) and alpha 1 (after)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from models.graph_distill import EDGE_NAMES

    fig, axes = plt.subplots(2, 2, figsize=(14, 7.5) if class_names else (11, 6.5), sharey=True)
    columns = (("dmd-alpha-1/8", "before: alpha 1/8 (the authors')"), ("dmd", "after: alpha 1"))
    for col, (name, title) in enumerate(columns):
        data = edges[name]
        if class_names:
            palette = plt.get_cmap("tab10").colors
            groups = [(data["classes"] == k, palette[k % 10], f"{c} (n={int((data['classes'] == k).sum())})")
                      for k, c in enumerate(class_names) if (data["classes"] == k).any()]
        else:
            negative = data["labels"] < 0
            groups = [(negative, "#c0504d", "negative label"), (~negative, "#4f81bd", "non-negative label")]
        step = min(0.36, 0.84 / len(groups))  # two groups: boxes at -0.18 and +0.18, 0.3 wide
        for row, kind in enumerate(("homo", "hetero")):
            ax = axes[row, col]
            values = data[kind]
            x = np.arange(len(EDGE_NAMES))
            for j, (group, colour, label) in enumerate(groups):
                offset = (j - (len(groups) - 1) / 2) * step
                box = ax.boxplot([values[group, i] for i in range(len(EDGE_NAMES))], positions=x + offset,
                                 widths=step * 5 / 6, patch_artist=True, showfliers=False)
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
                ax.legend(loc="upper left", fontsize=8, ncol=2 if class_names else 1)
    where = ("complete test windows of the emotion corpora (a face, a voice and words of one emotion)"
             if class_names else "the synthetic test set")
    fig.suptitle(f"DMD teacher edges on {where} (boxes: quartiles over windows; dotted: 1/6)", fontsize=11)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=90)
    plt.close(fig)


if __name__ == "__main__":
    sys.exit(main())
