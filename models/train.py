"""Train a DMD teacher on complete data and a CorrKD student on missing data.

    python -m models.train --data FILE --out DIR [--config mosi|mosei|small|PATH]
        [--model dmd|dhmd] [--stage teacher|student|both] [--epochs N] [--device auto|cpu|cuda] [--seed S]

Writes ``DIR/teacher`` and ``DIR/student``, each a checkpoint (best validation epoch only).
The student is what ships: serve ``DIR/student`` (or ``DIR``, which resolves to it).
A checkpoint that exists is replaced only with ``--overwrite``; each file of a checkpoint
is written under a temporary name and renamed.

Exit codes: 0 done, 1 internal failure (a bug), 2 bad input or usage (one line
'error: ...'), 130 interrupted (the stage in progress is not saved).
"""

from __future__ import annotations

import argparse
import copy
import json
import logging
import math
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from models.checkpoint import config_problem, load_checkpoint, save_checkpoint
from models.config import ARCHITECTURES, ModelConfig, TrainConfig, load_preset
from models.corrkd import corrkd_losses, drop_missing
from models.data import Dataset, load_dataset
from models.dhmd import network_for
from models.dmd import DMD
from models.errors import UsageError, UserError
from models.loop import batches, evaluate, resolve_device
from models.losses import dmd_losses

logger = logging.getLogger(__name__)

STUDENT_VALID_RATES = (0.0, 0.35, 0.7)
"""A student is selected on its mean validation MAE over these missing rates."""


@dataclass
class FitResult:
    net: DMD
    best_epoch: int
    best_score: float
    history: list[dict]
    seconds: float


def source_weights(ids: list[str]) -> np.ndarray:
    """Per-sample draw probabilities giving each source (id before its first '/') a share
    proportional to the square root of its size."""
    sources = np.array([i.split("/", 1)[0] if "/" in i else "" for i in ids])
    _, inverse, counts = np.unique(sources, return_inverse=True, return_counts=True)
    weights = 1.0 / np.sqrt(counts[inverse])
    return weights / weights.sum()


def model_config_for(dataset: Dataset, overrides: dict) -> ModelConfig:
    """A ModelConfig whose dims and steps come from the data, sizes from the preset."""
    fields = dict(overrides)
    fields["dims"] = dataset.dims
    fields["steps"] = dataset.steps
    fields.setdefault("class_names", dataset.class_names)
    return ModelConfig(**fields)


def _validation_score(net: DMD, dataset: Dataset, device: torch.device, student: bool) -> float:
    """Validation MAE (lower is better); with emotion classes, plus 3 x (1 - macro F1), so
    that a point of macro F1 weighs as much as 0.03 of MAE on the [-3, 3] scale."""
    rates = STUDENT_VALID_RATES if student else (0.0,)
    scores = []
    for rate in rates:
        metrics = evaluate(net, dataset.splits["valid"], device, rate, seed=1)
        scores.append(metrics["MAE"] + 3.0 * (1.0 - metrics.get("Class_macro_F1", 1.0)))
    return float(np.mean(scores))


def input_statistics(split) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """Per-feature mean and std over the present steps of a split."""
    mean, std = {}, {}
    for m in split.inputs:
        present = split.inputs[m][split.masks[m] > 0]  # (steps, d)
        if len(present) < 2:
            present = split.inputs[m].reshape(-1, split.inputs[m].shape[-1])
        mean[m] = torch.from_numpy(present.mean(0).astype(np.float32))
        std[m] = torch.from_numpy(present.std(0).astype(np.float32))
    return mean, std


def fit(dataset: Dataset, model_cfg: ModelConfig, train_cfg: TrainConfig, device: torch.device,
        teacher: DMD | None = None, seed: int = 0, progress: bool = True) -> FitResult:
    """Train one network; a teacher given means CorrKD student training.

    The student starts from the teacher's weights, sees each batch with missing data
    simulated at a rate drawn from [0, missing_rate_max], and adds the three CorrKD
    losses against the teacher's view of the complete batch. Selection uses the
    validation split only (the authors' code scores the test split every epoch).
    """
    from tqdm import tqdm

    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    gen = torch.Generator().manual_seed(seed)
    net = network_for(model_cfg)
    net.set_input_statistics(*input_statistics(dataset.splits["train"]))
    net = net.to(device)
    if teacher is not None:
        net.load_state_dict(teacher.state_dict())
        teacher = teacher.to(device).eval()
        for p in teacher.parameters():
            p.requires_grad_(False)
    optimizer = torch.optim.Adam(net.parameters(), lr=train_cfg.lr, weight_decay=train_cfg.weight_decay)
    scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(optimizer, mode="min", factor=0.5,
                                                           patience=train_cfg.patience)
    train = dataset.splits["train"]
    best_score, best_epoch, best_state = math.inf, 0, None
    history: list[dict] = []
    start = time.perf_counter()
    role = "student" if teacher is not None else "teacher"
    draw = source_weights(train.ids) if train_cfg.balance_sources else None  # per-sample epoch draw
    for epoch in range(1, train_cfg.epochs + 1):
        net.train()
        sums: dict[str, float] = {}
        epoch_split = train
        if train_cfg.epoch_samples is not None and train_cfg.epoch_samples < len(train):
            epoch_split = train.subset(np.sort(rng.choice(len(train), train_cfg.epoch_samples, replace=False,
                                                          p=draw)))
        n_batches = math.ceil(len(epoch_split) / train_cfg.batch_size)
        bar = tqdm(batches(epoch_split, train_cfg.batch_size, device, rng), total=n_batches, leave=False,
                   desc=f"{role} epoch {epoch}", disable=not progress)
        for batch in bar:
            masks = batch.masks
            if teacher is not None:
                rate = float(torch.rand((), generator=gen)) * train_cfg.missing_rate_max
                masks = drop_missing(batch.masks, rate, gen)
            out = net(batch.inputs, masks)
            losses = dmd_losses(out, batch.labels, train_cfg, batch.class_labels, batch.channel_weights)
            loss = losses.total
            terms = losses.as_floats()
            if teacher is not None:
                with torch.no_grad():
                    t_out = teacher(batch.inputs, batch.masks)
                kd = corrkd_losses(out, t_out, batch.labels, batch.class_labels, train_cfg.corrkd_tau)
                loss = loss + kd.total(train_cfg.w_corrkd)
                terms.update(kd_sample=float(kd.sample.detach()), kd_prototype=float(kd.prototype.detach()),
                             kd_response=float(kd.response.detach()))
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_value_(net.parameters(), train_cfg.grad_clip)
            optimizer.step()
            for k, v in terms.items():
                sums[k] = sums.get(k, 0.0) + v
            bar.set_postfix(loss=f"{terms['total']:.3f}")
        score = _validation_score(net, dataset, device, student=teacher is not None)
        scheduler.step(score)
        record = {"epoch": epoch, "valid_score": round(score, 4),
                  **{k: round(v / n_batches, 4) for k, v in sums.items()}}
        history.append(record)
        improved = score < best_score
        if improved:
            best_score, best_epoch = score, epoch
            best_state = copy.deepcopy(net.state_dict())
        logger.info("%s epoch %d: train loss %.4f, valid score %.4f%s", role, epoch, record.get("total", 0),
                    score, " (best)" if improved else "")
        if epoch - best_epoch >= train_cfg.early_stop:
            logger.info("%s: no better validation score for %d epochs; stopping", role, train_cfg.early_stop)
            break
    assert best_state is not None
    net.load_state_dict(best_state)
    return FitResult(net=net.eval(), best_epoch=best_epoch, best_score=best_score, history=history,
                     seconds=time.perf_counter() - start)


def feature_set_of(dataset: Dataset) -> dict:
    """What a checkpoint records about its inputs."""
    spec = {"name": dataset.feature_set, "dims": dataset.dims, "steps": dataset.steps}
    if "extractor" in dataset.meta:
        spec["extractor"] = dataset.meta["extractor"]
    return spec


def save_stage(out: Path, role: str, result: FitResult, dataset: Dataset, model_cfg: ModelConfig,
               train_cfg: TrainConfig, device: torch.device, seed: int, extra: dict | None = None) -> Path:
    test = evaluate(result.net, dataset.splits["test"], device) if "test" in dataset.splits else {}
    provenance = {
        "name": f"{model_cfg.architecture}-{role}",
        "role": role,
        "dataset": dataset.source,
        "dataset_meta": {k: v for k, v in dataset.meta.items() if isinstance(v, (str, int, float, bool))},
        "train_config": train_cfg.to_dict(),
        "seed": seed,
        "best_epoch": result.best_epoch,
        "valid_score": round(result.best_score, 4),
        "test_metrics": test,
        "train_seconds": round(result.seconds, 1),
        "device": str(device),
        **(extra or {}),
    }
    path = save_checkpoint(out / role, result.net, model_cfg, feature_set_of(dataset), provenance)
    logger.info("%s saved to %s: test %s", role, path, json.dumps(test))
    return path


def check_out(out: Path, stage: str, overwrite: bool) -> None:
    """UsageError unless ``out`` can take this run's checkpoints: a folder (or a new path)
    where the stages to write do not exist yet, or ``overwrite``; checked before training."""
    if out.exists() and not out.is_dir():
        raise UsageError(f"--out '{out}' is a file; name a folder (teacher/ and student/ go inside)")
    roles = {"both": ("teacher", "student")}.get(stage, (stage,))
    if not overwrite:
        existing = [role for role in roles if (out / role).exists()]
        if existing:
            raise UsageError(f"--out '{out}' already holds {' and '.join(existing)}/; pass --overwrite to replace "
                             "it or choose another folder")
    if stage == "student" and not (out / "teacher").is_dir():
        raise UsageError(f"--stage student needs a trained teacher in '{out / 'teacher'}'")


def run(args: argparse.Namespace) -> int:
    for name, value, high in (("--epochs", args.epochs, EPOCHS_MAX), ("--batch-size", args.batch_size, BATCH_MAX)):
        if value is not None and not 1 <= value <= high:
            raise UsageError(f"{name} must be from 1 to {high}, got {value}")
    out = Path(args.out)
    check_out(out, args.stage, args.overwrite)
    device = resolve_device(args.device)
    dataset = load_dataset(args.data)
    model_over, train_over = load_preset(args.config)
    if args.epochs is not None:
        train_over["epochs"] = args.epochs
    if args.batch_size is not None:
        train_over["batch_size"] = args.batch_size
    if args.model is not None:
        model_over["architecture"] = args.model
    problem = config_problem({"model": {**model_over, "dims": dataset.dims, "steps": dataset.steps}})
    if problem:
        raise UsageError(f"config {args.config}: {problem}")
    try:
        train_cfg = TrainConfig.from_dict(train_over)
        model_cfg = model_config_for(dataset, model_over)
    except (TypeError, ValueError, ArithmeticError) as exc:  # unknown keys, heads 0, d not divisible by heads, ...
        raise UsageError(f"config {args.config}: {exc}") from None
    problem = train_config_problem(train_cfg)
    if problem:
        raise UsageError(f"config {args.config}: {problem}")
    try:  # made only once everything is known to be usable
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UsageError(f"cannot write --out '{out}': {exc.strerror}") from None
    progress = not args.quiet
    teacher_net = None
    if args.stage in ("teacher", "both"):
        result = fit(dataset, model_cfg, train_cfg, device, seed=args.seed, progress=progress)
        save_stage(out, "teacher", result, dataset, model_cfg, train_cfg, device, args.seed)
        teacher_net = result.net
        print(f"teacher: best epoch {result.best_epoch}, valid score {result.best_score:.4f}, "
              f"{result.seconds:.0f} s", file=sys.stderr)
    if args.stage in ("student", "both"):
        if teacher_net is None:
            ckpt = load_checkpoint(out / "teacher")
            ckpt.check_features(dataset.feature_set, dataset.dims, dataset.steps)
            model_cfg = ckpt.model
            if args.model is not None and args.model != model_cfg.architecture:
                raise UsageError(f"--model {args.model}: the teacher in '{out / 'teacher'}' is "
                                 f"{model_cfg.architecture}; a student starts from its teacher's weights")
            teacher_net = ckpt.build(device)
        result = fit(dataset, model_cfg, train_cfg, device, teacher=teacher_net, seed=args.seed, progress=progress)
        save_stage(out, "student", result, dataset, model_cfg, train_cfg, device, args.seed,
                   extra={"teacher": str(out / "teacher")})
        print(f"student: best epoch {result.best_epoch}, valid mean score {result.best_score:.4f}, "
              f"{result.seconds:.0f} s", file=sys.stderr)
    return 0


def train_config_problem(cfg: TrainConfig) -> str | None:
    """A training setting that cannot run (as a phrase naming the field), or None."""
    for name in ("epochs", "batch_size", "patience", "early_stop"):
        value = getattr(cfg, name)
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            return f"{name} must be a positive integer, got {value!r}"
    if cfg.epoch_samples is not None and (not isinstance(cfg.epoch_samples, int) or cfg.epoch_samples < 1):
        return f"epoch_samples must be a positive integer or null, got {cfg.epoch_samples!r}"
    for name in ("lr", "weight_decay", "grad_clip", "corrkd_tau", "missing_rate_max"):
        value = getattr(cfg, name)
        if not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
            return f"{name} must be a finite number >= 0, got {value!r}"
    if cfg.lr <= 0 or cfg.grad_clip <= 0 or cfg.corrkd_tau <= 0:
        return "lr, grad_clip and corrkd_tau must be above 0"
    if cfg.missing_rate_max > 1:
        return f"missing_rate_max must be within [0, 1], got {cfg.missing_rate_max}"
    return None


EPOCHS_MAX, BATCH_MAX = 100_000, 65_536


def build_parser() -> argparse.ArgumentParser:
    from models.data import PICKLE_NOTE

    parser = argparse.ArgumentParser(prog="python -m models.train", description=__doc__.split("\n")[0],
                                     epilog="exit codes: 0 done; 1 internal failure (a bug); 2 bad input or usage; "
                                            "130 interrupted (nothing saved for the stage in progress)")
    parser.add_argument("--data", required=True,
                        help=f"dataset: a .npz from models.extract, models.corpus or models.synthetic, or an MMSA "
                             f"feature pickle (.pkl). {PICKLE_NOTE}")
    parser.add_argument("--out", required=True,
                        help="output folder (teacher/ and student/ inside); existing checkpoints there are "
                             "replaced only with --overwrite")
    parser.add_argument("--overwrite", action="store_true", help="replace checkpoints already in --out")
    parser.add_argument("--config", default="mosi",
                        help="preset (mosi, mosei, small) or a JSON file with 'model' and/or 'train' overrides "
                             "(default mosi)")
    parser.add_argument("--model", choices=ARCHITECTURES,
                        help="dmd (DMD, CVPR 2023) or dhmd (DHMD: DMD plus cross-modal dictionary matching, "
                             "models/dhmd.py); default: the config's, which is dmd")
    parser.add_argument("--stage", choices=("teacher", "student", "both"), default="both",
                        help="teacher: DMD on complete data; student: CorrKD on missing data from --out/teacher; "
                             "both (default): one then the other")
    parser.add_argument("--epochs", type=int,
                        help="maximum epochs, 1 to 100000 (default: the preset's)")
    parser.add_argument("--batch-size", type=int,
                        help="samples per batch, 1 to 65536 (default: the preset's)")
    parser.add_argument("--device", default="auto", help="auto, cpu or cuda[:N] (default auto: a GPU if any)")
    parser.add_argument("--seed", type=int, default=0, help="random seed of weights, batches and missing data "
                                                            "(default 0)")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        return run(args)
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("error: interrupted; nothing saved for the stage in progress", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
