"""Train a DMD teacher on complete data and a CorrKD student on missing data.

    python -m models.train --data FILE --out DIR [--config mosi|mosei|small|PATH]
        [--model dmd|dhmd] [--stage teacher|student|both] [--epochs N] [--device auto|cpu|cuda] [--seed S]
        [--resume]

    torchrun --standalone --nproc_per_node=N [--max-restarts=2] -m models.train ...

Under torchrun each process trains a DDP replica on its share of every batch, rank 0
logs and writes, each epoch's state is kept in ``DIR/resume/`` and a restart resumes from
it (``--resume`` does the same in one process): docs/DISTRIBUTED.md.

Writes ``DIR/teacher`` and ``DIR/student``, each a checkpoint (best validation epoch only).
The student is what ships: serve ``DIR/student`` (or ``DIR``, which resolves to it).
A checkpoint that exists is replaced only with ``--overwrite``; each file of a checkpoint
is written under a temporary name and renamed.

Exit codes: 0 done, 1 internal failure (a bug), 2 bad input or usage (one line
'error: ...'), 130 interrupted (the stage in progress is not saved, unless its epochs
were kept: --resume or torchrun).
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import logging
import math
import shutil
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from models import safejson
from models.checkpoint import Checkpoint, CheckpointError, config_problem, load_checkpoint, save_checkpoint
from models.config import ARCHITECTURES, ModelConfig, TrainConfig, load_preset
from models.corrkd import corrkd_losses, drop_missing
from models.data import Dataset, load_dataset
from models.device import resolve_device
from models.dhmd import network_for
from models.distributed import (
    RESUME_DIR,
    RUN_FILE,
    SINGLE,
    EpochState,
    Ranks,
    broadcast,
    comparable,
    gather,
    load_epoch_state,
    mean_over_ranks,
    numpy_state,
    parameter_digest,
    random_state,
    ranks_from_env,
    read_run_file,
    save_epoch_state,
    set_numpy_state,
    set_random_state,
    start,
    stop,
    write_run_file,
)
from models.dmd import DMD
from models.errors import Parser, UsageError, UserError
from models.loop import batches, evaluate
from models.losses import dmd_losses
from models.progress import Progress, on_terminal
from models.signals import give_back, interrupt_on_signals
from models.teacher_cache import TeacherCache

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
    steps: int = 0
    """Optimizer steps taken by this process in this run (not before a resume)."""


def source_weights(ids: list[str], groups: dict[str, str] | None = None) -> np.ndarray:
    """Per-sample draw probabilities giving each source (id before its first '/', or the
    group ``groups`` puts it in) a share proportional to the square root of its size."""
    groups = groups or {}
    sources = np.array([groups.get(s, s) for s in (i.split("/", 1)[0] if "/" in i else "" for i in ids)])
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
    that a point of macro F1 weighs as much as 0.03 of MAE on the [-3, 3] scale. A split
    that rates no valence (classes only) is scored by its classes alone."""
    rates = STUDENT_VALID_RATES if student else (0.0,)
    scores = []
    for rate in rates:
        metrics = evaluate(net, dataset.splits["valid"], device, rate, seed=1)
        mae = metrics["MAE"] if math.isfinite(metrics["MAE"]) else 0.0
        scores.append(mae + 3.0 * (1.0 - metrics.get("Class_macro_F1", 1.0)))
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


RANK_SEED_STRIDE = 7919
"""Rank r > 0 seeds its dropout and missing-data draws with seed + r x this (rank 0 draws as
a plain run does): the ranks' shares of a batch must not get the same masks."""


def fit(dataset: Dataset, model_cfg: ModelConfig, train_cfg: TrainConfig, device: torch.device,
        teacher: DMD | None = None, seed: int = 0, progress: bool = True, ranks: Ranks = SINGLE,
        state_path: Path | None = None) -> FitResult:
    """Train one network; a teacher given means CorrKD student training.

    The student starts from the teacher's weights, sees each batch with missing data
    simulated at a rate drawn from [0, missing_rate_max], and adds the three CorrKD
    losses against the teacher's view of the complete batch. Selection uses the
    validation split only (the authors' code scores the test split every epoch).

    Under torchrun (``ranks``) every process trains a DDP replica on its share of each
    global batch of ``batch_size``; rank 0 alone validates and the others take its score,
    so that the learning rate, the best epoch and early stopping agree on every rank.
    ``state_path``: rank 0 saves the epoch state there after every epoch, and the stage
    goes on from it when it is there at the start. ``progress``: show the stage's and the
    epoch's bars (the caller decides where: ``run`` shows them on rank 0's terminal only).

    The frozen teacher's response to each complete training sample is computed once per
    stage (models/teacher_cache.py), not in every epoch.
    """
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    gen = torch.Generator().manual_seed(seed + RANK_SEED_STRIDE * ranks.rank)
    net = network_for(model_cfg)
    net.set_input_statistics(*input_statistics(dataset.splits["train"]))
    net = net.to(device)
    if teacher is not None:
        net.load_state_dict(teacher.state_dict())
        teacher = teacher.to(device).eval()
        for p in teacher.parameters():
            p.requires_grad_(False)
    if ranks.rank:
        torch.manual_seed(seed + RANK_SEED_STRIDE * ranks.rank)
    # the frozen teacher's view of each complete training sample, the same in every epoch
    teacher_cache = TeacherCache(teacher, dataset.splits["train"], device, train_cfg.batch_size) \
        if teacher is not None else None
    optimizer = torch.optim.Adam(net.parameters(), lr=train_cfg.lr, weight_decay=train_cfg.weight_decay)
    scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(optimizer, mode="min", factor=0.5,
                                                           patience=train_cfg.patience)
    train = dataset.splits["train"]
    best_score, best_epoch, best_state = math.inf, 0, None
    history: list[dict] = []
    start = time.perf_counter()
    role = "student" if teacher is not None else "teacher"
    # per-sample epoch draw
    draw = source_weights(train.ids, train_cfg.source_groups) if train_cfg.balance_sources else None
    first_epoch, stopped, seconds_before, steps = 1, False, 0.0, 0
    state = _read_epoch_state(state_path, ranks)
    if state is not None:
        net.load_state_dict(state.net)
        optimizer.load_state_dict(state.optimizer)
        scheduler.load_state_dict(state.scheduler)
        set_numpy_state(rng, state.numpy_rng)
        if len(state.random) == ranks.world_size:
            set_random_state(state.random[ranks.rank], gen, device)
        else:  # dropout and missing data then differ from an uninterrupted run's
            logger.warning("%s: the epoch state comes from %d processes, this run has %d: its random draws go "
                           "on from new seeds", role, len(state.random), ranks.world_size)
            torch.manual_seed(seed + state.epoch + RANK_SEED_STRIDE * ranks.rank)
            gen.manual_seed(seed + state.epoch + RANK_SEED_STRIDE * ranks.rank)
        best_score, best_epoch, history = state.best_score, state.best_epoch, list(state.history)
        best_state = state.best or None
        first_epoch, stopped, seconds_before = state.epoch + 1, state.stopped, state.seconds
        logger.info("%s: resuming after epoch %d (best epoch %d, valid score %.4f)", role, state.epoch,
                    best_epoch, best_score)
    step_net = net
    if ranks.launched:  # made after any resume: DDP starts every replica from rank 0's weights
        from torch.nn.parallel import DistributedDataParallel

        # some parameters get no gradient in some steps (a branch whose loss weight is 0,
        # a modality dropped from the whole batch); DDP must look for them or it waits forever
        step_net = DistributedDataParallel(net, device_ids=[device.index] if device.type == "cuda" else None,
                                           find_unused_parameters=True)
        logger.info("%s: %d processes, each %s of every batch of %d", role, ranks.world_size,
                    f"1/{ranks.world_size}" if ranks.world_size > 1 else "all", train_cfg.batch_size)
    with Progress(role, train_cfg.epochs, first_epoch - 1, progress) as bars:
        # a resumed stage that had stopped early, or had run all its epochs, has none left
        for epoch in range(first_epoch, first_epoch if stopped else train_cfg.epochs + 1):
            step_net.train()
            sums: dict[str, float] = {}
            epoch_split, rows = train, np.arange(len(train))  # rows: the epoch's samples in the training split
            if train_cfg.epoch_samples is not None and train_cfg.epoch_samples < len(train):
                rows = np.sort(rng.choice(len(train), train_cfg.epoch_samples, replace=False, p=draw))
                epoch_split = train.subset(rows)
            n_batches = math.ceil(len(epoch_split) / train_cfg.batch_size)
            bar = bars.epoch(batches(epoch_split, train_cfg.batch_size, device, rng, ranks.shard), n_batches, epoch)
            for batch in bar:
                masks = batch.masks
                if teacher is not None:
                    rate = float(torch.rand((), generator=gen)) * train_cfg.missing_rate_max
                    masks = drop_missing(batch.masks, rate, gen)
                out = step_net(batch.inputs, masks)
                losses = dmd_losses(out, batch.labels, train_cfg, batch.class_labels, batch.channel_weights,
                                    batch.valence_weights)
                loss = losses.total
                terms = losses.as_floats()
                if teacher_cache is not None:
                    t_out = teacher_cache(batch, rows[batch.index])
                    kd = corrkd_losses(out, t_out, batch.labels, batch.class_labels, train_cfg.corrkd_tau,
                                       batch.valence_weights)
                    loss = loss + kd.total(train_cfg.w_corrkd)
                    terms.update(kd_sample=float(kd.sample.detach()), kd_prototype=float(kd.prototype.detach()),
                                 kd_response=float(kd.response.detach()))
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                torch.nn.utils.clip_grad_value_(net.parameters(), train_cfg.grad_clip)
                optimizer.step()
                steps += 1
                for k, v in terms.items():
                    sums[k] = sums.get(k, 0.0) + v
                bar.set_postfix(loss=f"{terms['total']:.3f}")
            sums = mean_over_ranks(sums, ranks)
            # the unwrapped replica: rank 0 alone validates, with no collective in its forward
            score = _validation_score(net, dataset, device, student=teacher is not None) if ranks.main else math.nan
            score = broadcast(score, ranks)
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
            bars.epoch_done(best_score)
            stopped = epoch - best_epoch >= train_cfg.early_stop
            if ranks.launched:
                _check_replicas(net, ranks, f"{role} epoch {epoch}")
            if state_path is not None:
                random = gather(random_state(gen, device), ranks)
                if ranks.main:
                    save_epoch_state(state_path, EpochState(
                        epoch=epoch, stopped=stopped, best_epoch=best_epoch, best_score=best_score, history=history,
                        seconds=seconds_before + time.perf_counter() - start, net=net.state_dict(),
                        best=best_state or {}, optimizer=optimizer.state_dict(), scheduler=scheduler.state_dict(),
                        numpy_rng=numpy_state(rng), random=random))
            if stopped:
                logger.info("%s: no better validation score for %d epochs; stopping", role, train_cfg.early_stop)
                break
    if ranks.launched:
        logger.info("%s: %d optimizer steps in this process; replicas %s", role, steps,
                    " ".join(gather(parameter_digest(net), ranks)))
    assert best_state is not None
    net.load_state_dict(best_state)
    return FitResult(net=net.eval(), best_epoch=best_epoch, best_score=best_score, history=history,
                     seconds=seconds_before + time.perf_counter() - start, steps=steps)


def _read_epoch_state(path: Path | None, ranks: Ranks) -> EpochState | None:
    """The epoch state at ``path`` as rank 0 reads it (only rank 0's machine need hold it), on every rank."""
    if path is None:
        return None
    state = load_epoch_state(path) if ranks.main and path.is_file() else None
    return broadcast(state, ranks)


def _check_replicas(net: DMD, ranks: Ranks, when: str) -> None:
    """RuntimeError (a bug: exit 1) unless every rank holds the same weights, bit for bit."""
    digests = gather(parameter_digest(net), ranks)
    if len(set(digests)) > 1:
        raise RuntimeError(f"{when}: the replicas differ ({', '.join(digests)})")


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
        "rated_samples": int(dataset.splits["train"].rated.sum()),
        "device": str(device),
        **(extra or {}),
    }
    path = save_checkpoint(out / role, result.net, model_cfg, feature_set_of(dataset), provenance)
    logger.info("%s saved to %s: test %s", role, path, safejson.dumps(test))  # null where undefined, as evaluate
    return path


def check_out(out: Path, stage: str, overwrite: bool, resuming: bool = False, asked_to_resume: bool = False) -> None:
    """UsageError unless ``out`` can take this run's checkpoints: a folder (or a new path)
    where the stages to write do not exist yet, or ``overwrite``, or ``resuming`` the
    interrupted run that wrote them; checked before training. An interrupted run is named
    first: its finished stages are there too, and --overwrite would throw its epochs away."""
    if out.exists() and not out.is_dir():
        raise UsageError(f"--out '{out}' is a file; name a folder (teacher/ and student/ go inside)")
    # a new teacher leaves the student distilled from the old one stale: it goes too (_drop_stale_student)
    roles = {"both": ("teacher", "student"), "teacher": ("teacher", "student")}.get(stage, (stage,))
    if not overwrite and not resuming:
        if (out / RESUME_DIR / RUN_FILE).exists():
            raise UsageError(f"--out '{out}' holds an interrupted run ({RESUME_DIR}/); pass --resume to continue it "
                             "or --overwrite to start again")
        existing = [f"{role}/" for role in roles if (out / role).exists()]
        if existing:
            done = ", finished: nothing to resume" if asked_to_resume else ""
            what = ("replace the teacher (the student distilled from it is removed)" if stage == "teacher"
                    else f"replace {'them' if len(existing) > 1 else 'it'}")
            raise UsageError(f"--out '{out}' already holds {' and '.join(existing)}{done}; pass --overwrite to "
                             f"{what} or choose another folder")
    if stage == "student" and not (out / "teacher").is_dir():
        raise UsageError(f"--stage student needs a trained teacher in '{out / 'teacher'}'")


def run(args: argparse.Namespace, ranks: Ranks = SINGLE) -> int:
    for name, value, high in (("--epochs", args.epochs, EPOCHS_MAX), ("--batch-size", args.batch_size, BATCH_MAX),
                              ("--threads", args.threads, THREADS_MAX)):
        if value is not None and not 1 <= value <= high:
            raise UsageError(f"{name} must be from 1 to {high}, got {value}")
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    if not 0 < args.dist_timeout <= DIST_TIMEOUT_MAX:
        raise UsageError(f"--dist-timeout must be from 1 to {DIST_TIMEOUT_MAX} seconds, got {args.dist_timeout}")
    out = Path(args.out)
    resume_dir = out / RESUME_DIR
    # epoch states are kept with --resume and under torchrun, whose restarts need them;
    # a restart (torchrun --max-restarts) continues its own interrupted run
    keep_state = args.resume or ranks.launched
    resuming = (args.resume or ranks.restarts > 0) and (resume_dir / RUN_FILE).is_file()
    if ranks.main:  # the other ranks never touch --out (on other machines it need not exist)
        check_out(out, args.stage, args.overwrite, resuming, asked_to_resume=args.resume)
    device = resolve_device(args.device)
    if ranks.launched:
        device = start(ranks, device, args.dist_timeout)
    dataset = load_dataset(args.data)
    untrained = dataset.classes_not_in("train")
    if untrained and ranks.main:
        logger.warning("the classes %s have no sample in the train split: the model cannot learn them", untrained)
    if not dataset.splits["train"].rated.any() and ranks.main:
        logger.warning("no sample of the train split rates a valence: the model learns emotions only, and its "
                       "valence (sentiment) means nothing; the checkpoint says so (provenance 'rated_samples')")
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
    done: list[str] = []
    if ranks.main:
        try:  # made only once everything is known to be usable
            out.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise UsageError(f"cannot write --out '{out}': {exc.strerror}") from None
        if keep_state:
            done = _start_or_resume(resume_dir, resuming, {
                "data": str(Path(args.data).resolve()), "stage": args.stage, "seed": args.seed,
                "model": model_cfg.to_dict(), "train": train_cfg.to_dict()})
        elif resume_dir.exists():
            # --overwrite starts again (check_out): an interrupted run's state left here would
            # let a later --resume take this run's checkpoints for its own and train over them
            shutil.rmtree(resume_dir, ignore_errors=True)
            logger.info("removed the interrupted run's state in %s (--overwrite)", resume_dir)
    done = broadcast(done, ranks)
    progress = not args.quiet and ranks.main and on_terminal()  # bars on rank 0's terminal, never in a log
    extra = {"distributed": {"world_size": ranks.world_size, "backend": _backend(device),
                             "restarts": ranks.restarts}} if ranks.launched else {}
    teacher_net = None
    if args.stage in ("teacher", "both") and "teacher" in done:
        logger.info("teacher: kept from the interrupted run (%s)", out / "teacher")
    elif args.stage in ("teacher", "both"):
        result = fit(dataset, model_cfg, train_cfg, device, seed=args.seed, progress=progress, ranks=ranks,
                     state_path=resume_dir / "teacher.safetensors" if keep_state else None)
        teacher_net = result.net
        if ranks.main:
            save_stage(out, "teacher", result, dataset, model_cfg, train_cfg, device, args.seed, extra=extra)
            _drop_stale_student(out, said=args.stage == "teacher")
            if keep_state:
                _finish_stage(resume_dir, "teacher")
            print(f"teacher: best epoch {result.best_epoch}, valid score {result.best_score:.4f}, "
                  f"{result.seconds:.0f} s", file=sys.stderr)
    if args.stage in ("student", "both"):
        if teacher_net is None:
            teacher_net, model_cfg = _trained_teacher(out, dataset, model_cfg.class_names, args.model, device, ranks)
        result = fit(dataset, model_cfg, train_cfg, device, teacher=teacher_net, seed=args.seed, progress=progress,
                     ranks=ranks, state_path=resume_dir / "student.safetensors" if keep_state else None)
        if ranks.main:
            save_stage(out, "student", result, dataset, model_cfg, train_cfg, device, args.seed,
                       extra={"teacher": str(out / "teacher"), **extra})
            if keep_state:
                _finish_stage(resume_dir, "student")
            print(f"student: best epoch {result.best_epoch}, valid mean score {result.best_score:.4f}, "
                  f"{result.seconds:.0f} s", file=sys.stderr)
    if ranks.main and keep_state:
        shutil.rmtree(resume_dir, ignore_errors=True)  # the run is complete: nothing left to resume
    return 0


def _drop_stale_student(out: Path, said: bool) -> None:
    """A new teacher is saved in ``out``: a student there was distilled from the teacher it
    replaced, and serving the folder would take it, so it is removed now (``check_out``
    asked for --overwrite), not when this run's own student is saved: a run stopped in
    between leaves the new teacher alone. ``said``: name the removal (--stage teacher)."""
    student = out / "student"
    if student.is_dir():
        shutil.rmtree(student)
        (logger.warning if said else logger.info)("removed '%s': it was distilled from the teacher this run "
                                                  "replaced", student)


def _backend(device: torch.device) -> str:
    return "nccl" if device.type == "cuda" else "gloo"


def _start_or_resume(resume_dir: Path, resuming: bool, identity: dict) -> list[str]:
    """The stages an interrupted run finished (UsageError if it had other settings), or, for
    a new run, [] after recording its settings in ``resume_dir``."""
    if resuming:
        doc = read_run_file(resume_dir)
        assert doc is not None
        differ = _differences(doc["identity"], {k: comparable(v) for k, v in identity.items()})
        if differ:
            raise UsageError(f"{resume_dir}: the interrupted run had other settings ({'; '.join(differ)}); "
                             "rerun it as it was, or pass --overwrite without --resume to start again")
        done = [role for role in doc.get("done", []) if role in ("teacher", "student")]
        logger.info("resuming the interrupted run in %s (finished: %s)", resume_dir, ", ".join(done) or "none")
        return done
    shutil.rmtree(resume_dir, ignore_errors=True)  # an earlier run's, which --overwrite replaces
    write_run_file(resume_dir, {"identity": identity, "done": []})
    return []


def _differences(then: dict, now: dict) -> list[str]:
    """The settings that differ, each as "name: then -> now" (a section's own keys named:
    "train.epochs: 30 -> 12", not "train")."""
    out = []
    for key in now:
        a, b = then.get(key), now[key]
        if a == b:
            continue
        if isinstance(a, dict) and isinstance(b, dict):
            out += [f"{key}.{k}: {a.get(k)!r} -> {b.get(k)!r}" for k in sorted(set(a) | set(b)) if a.get(k) != b.get(k)]
        else:
            out.append(f"{key}: {a!r} -> {b!r}")
    return out


def _finish_stage(resume_dir: Path, role: str) -> None:
    """Record a saved stage as finished, then drop its epoch state (a crash in between
    resumes that stage after its last epoch and saves it again)."""
    doc = read_run_file(resume_dir) or {"identity": {}, "done": []}
    doc["done"] = [*doc.get("done", []), role]
    write_run_file(resume_dir, doc)
    (resume_dir / f"{role}.safetensors").unlink(missing_ok=True)


def _trained_teacher(out: Path, dataset: Dataset, classes: tuple[str, ...], model: str | None,
                     device: torch.device, ranks: Ranks) -> tuple[DMD, ModelConfig]:
    """The teacher in ``out/teacher`` and its config, read by rank 0 and sent to every rank.
    ``classes``: the class names this run's config gives the data (the teacher's must be
    these, in this order: the student keeps its teacher's heads)."""
    ckpt = None
    if ranks.main:
        ckpt = load_checkpoint(out / "teacher")
        ckpt.check_features(dataset.feature_set, dataset.dims, dataset.steps, dataset.meta.get("extractor"))
        trained_on = ckpt.provenance.get("dataset")
        if trained_on and Path(trained_on).resolve() != Path(dataset.source).resolve():
            logger.warning("the teacher in '%s' was trained on %s, this run's data is %s: a student of other data "
                           "may be tested on what its teacher learned from", out / "teacher", trained_on,
                           dataset.source)
        if tuple(ckpt.model.class_names) != tuple(classes):
            raise CheckpointError(f"the teacher in '{out / 'teacher'}' was trained on the classes "
                                  f"{list(ckpt.model.class_names)}, this run's are {list(classes)}; "
                                  "train a teacher on this data (--stage both --overwrite)")
        if model is not None and model != ckpt.model.architecture:
            raise UsageError(f"--model {model}: the teacher in '{out / 'teacher'}' is "
                             f"{ckpt.model.architecture}; a student starts from its teacher's weights")
    if ranks.launched:
        model_cfg, weights = broadcast((ckpt.model, ckpt.state_dict) if ckpt is not None else None, ranks)
        if ckpt is None:
            ckpt = Checkpoint(model=model_cfg, feature_set={}, provenance={}, state_dict=weights, path=out / "teacher")
    return ckpt.build(device), ckpt.model


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


EPOCHS_MAX, BATCH_MAX, THREADS_MAX = 100_000, 65_536, 1024
DIST_TIMEOUT_MAX = 7 * 24 * 3600


def build_parser() -> argparse.ArgumentParser:
    from models.data import PICKLE_NOTE

    parser = Parser(prog="python -m models.train", description=__doc__.split("\n")[0],
                    epilog="exit codes: 0 done; 1 internal failure (a bug); 2 bad input or usage; "
                           "130 interrupted (the stage in progress is lost, except its "
                           "finished epochs with --resume or under torchrun)")
    parser.add_argument("--data", required=True,
                        help=f"dataset: a .npz from realtime.extract, realtime.corpus or models.synthetic, or an MMSA "
                             f"feature pickle (.pkl). {PICKLE_NOTE}")
    parser.add_argument("--out", required=True,
                        help="output folder (teacher/ and student/ inside); existing checkpoints there are "
                             "replaced only with --overwrite")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace checkpoints already in --out (a new teacher removes the student distilled "
                             "from the old one)")
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
    parser.add_argument("--threads", type=int,
                        help="torch CPU threads, 1 to 1024 (default: torch's, one per core); on cores shared "
                             "with other work 1 is often faster: idle threads busy-wait")
    parser.add_argument("--seed", type=int, default=0, help="random seed of weights, batches and missing data "
                                                            "(default 0)")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    parser.add_argument("--resume", action="store_true",
                        help="keep each epoch's state in --out/resume/ and continue an interrupted run from it "
                             "(under torchrun the state is always kept, and a restart resumes; "
                             "docs/DISTRIBUTED.md)")
    parser.add_argument("--dist-timeout", type=float, default=1800,
                        help="under torchrun: seconds a process waits for the others (at a batch, or while "
                             "rank 0 validates and saves) before it fails (default 1800)")
    return parser


def _remove_if_empty(out: str, made: bool) -> None:
    """Remove the --out folder this run made when a failure or a stop left nothing in it."""
    if made:
        with contextlib.suppress(OSError):  # not empty, or gone: leave it
            Path(out).rmdir()


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        ranks = ranks_from_env()
    except UsageError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    # under torchrun, rank 0 speaks for all; the others say only warnings and errors
    logging.basicConfig(level=logging.INFO if ranks.main else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s" if ranks.main
                        else f"%(levelname)s %(name)s [rank {ranks.rank}]: %(message)s")
    made = not Path(args.out).exists()
    # SIGTERM (a scheduler's, or torchrun tearing the group down) ends a run as Ctrl-C does:
    # exit 130 and its message, not 143 and nothing said (signals: the main thread's only)
    previous = interrupt_on_signals()
    try:
        return run(args, ranks)
    except UserError as exc:
        print(f"error: {exc}" if ranks.main else f"error: rank {ranks.rank}: {exc}", file=sys.stderr)
        _remove_if_empty(args.out, made and ranks.main)
        return 2
    except KeyboardInterrupt:
        if args.resume or ranks.launched:
            print(f"error: interrupted; --resume continues from the last finished epoch in {args.out}/{RESUME_DIR}",
                  file=sys.stderr)
        else:
            print("error: interrupted; nothing saved for the stage in progress", file=sys.stderr)
        _remove_if_empty(args.out, made and ranks.main)
        return 130
    finally:
        give_back(previous)
        if ranks.launched:
            stop()


if __name__ == "__main__":
    from models.signals import exit_quickly

    exit_quickly(main())  # its models closed: no last garbage collection over them
