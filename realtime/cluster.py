"""Per-clip work on a Ray cluster: the ``--engine ray`` of ``realtime.extract`` and of folder runs.

The driver (the process you start) keeps the manifest, the progress bar and every output
file; Ray runs the clips. The clips go through Ray Data, one clip per block, to a pool of
actors (``_ClipActor``): each loads its models once, calls the same per-clip function the
local loop and the process pool call, and returns the clip's result as bytes. The driver
writes each result to its own file (a temporary name, then renamed) as it arrives, so:

* a re-run skips every clip whose file exists and resumes exactly (Ray Data's ``write_*``
  name files at random and duplicate on a re-run: they are not used);
* nothing has to be shared between machines but the inputs (the outputs never leave the
  driver's machine);
* a clip whose worker dies (a crash, a SIGKILL, a node removed) is retried on a new
  actor, at most ``max_tries`` times in all; a clip that still kills its worker is
  recorded as failed and the job goes on. Each actor holds one clip at a time, so a death
  costs a try only to the clip that was running. An exception in a clip is a failure at once
  (the per-clip function catches it and returns it as the clip's result).

Traps this avoids (issue 18): actors that reserve every CPU starve Ray Data's own tasks and
hang without an error (actors take a fraction of a CPU, 0.5 by default, and the pool must
leave one CPU free); ``from_items`` packs hundreds of clips per block (the block count is
set: one clip per block, so a failure names its clip); Ray 2.60 turns on token auth for a
local cluster (a cluster started with ``ray start`` needs its token on every machine that
joins: ``~/.ray/auth_token`` or ``RAY_AUTH_TOKEN``).

Ray is the optional extra ``ray`` and is imported only here, only when asked for.
"""

from __future__ import annotations

import logging
import os
import sys
import warnings
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from models.errors import UsageError
from realtime import logs

logger = logging.getLogger(__name__)

EXTRA_HINT = "pip install -e '.[ray]' (the 'ray' extra)"


@dataclass(frozen=True)
class ClusterOptions:
    """Where and how wide a Ray run goes."""

    address: str | None = None
    """An existing cluster ('auto', 'host:6379' or 'ray://host:10001'); None starts a local one."""
    workers: int = 1
    """Actors, each with its own models (memory: about 1 GB each with the default models)."""
    num_cpus: int | None = None
    """CPUs of the local cluster (None: all of this machine's). Not with ``address``."""
    cpus_per_worker: float = 0.5
    """Ray's logical CPU reservation per actor. Ray does not pin cores; a fraction leaves
    CPUs for Ray Data's own read and bookkeeping tasks, which otherwise never run."""
    gpus_per_worker: float | None = None
    """GPU share per actor; None: the cluster's GPUs shared evenly (at most 1), 0 without GPUs."""
    max_tries: int = 3
    """Times a clip is started before a worker death marks it failed (crashes, kills, lost nodes)."""


def require_ray():
    """The ``ray`` module, or a one-line UsageError naming the extra (exit 2)."""
    try:
        import ray
        import ray.data  # noqa: F401  (ray without its data extra)
    except ImportError:
        raise UsageError(f"--engine ray needs Ray and Ray Data: {EXTRA_HINT}") from None
    return ray


def check_options(options: ClusterOptions) -> None:
    """UsageError for options that cannot run, before anything starts."""
    if options.workers < 1 or options.workers > 4096:
        raise UsageError(f"--workers must be from 1 to 4096, got {options.workers}")
    if not 0 < options.cpus_per_worker <= 64:
        raise UsageError(f"--cpus-per-worker must be above 0 and at most 64, got {options.cpus_per_worker:g}")
    if options.gpus_per_worker is not None and not 0 <= options.gpus_per_worker <= 8:
        raise UsageError(f"--gpus-per-worker must be from 0 to 8, got {options.gpus_per_worker:g}")
    if options.address and options.num_cpus is not None:
        raise UsageError("--num-cpus sizes a local cluster; an existing one (--address) has its own CPUs")
    if options.num_cpus is not None:
        if options.num_cpus < 1:
            raise UsageError(f"--num-cpus must be 1 or more, got {options.num_cpus}")
        _check_room(options, options.num_cpus)


def _check_room(options: ClusterOptions, cpus: float) -> None:
    # the pool must leave a CPU for Ray Data's own tasks, or the job hangs without an error
    need = options.workers * options.cpus_per_worker
    if need > max(cpus - 1, options.cpus_per_worker):
        raise UsageError(f"{options.workers} workers x {options.cpus_per_worker:g} CPU need {need:g} of the "
                         f"cluster's {cpus:g} CPUs and must leave one free for Ray Data: lower --workers or "
                         "--cpus-per-worker")


def add_engine_options(parser, workers: bool = True) -> None:
    """``--engine`` and the Ray options, as every command with per-clip work takes them."""
    group = parser.add_argument_group("engine (several machines: docs/SCALING.md)")
    group.add_argument("--engine", choices=("local", "ray"), default="local",
                       help="local: this machine (default); ray: a Ray cluster (the 'ray' extra)")
    if workers:
        group.add_argument("--workers", type=int, default=1,
                           help="parallel workers, each with its own models (default 1; Ray: actors across "
                                "the cluster)")
    group.add_argument("--address", help="ray: an existing cluster ('auto', HOST:6379 or ray://HOST:10001); "
                                         "default: a local cluster for this run")
    group.add_argument("--num-cpus", type=int, help="ray: CPUs of the local cluster (default: all)")
    group.add_argument("--cpus-per-worker", type=float, default=0.5,
                       help="ray: CPUs reserved per worker (default 0.5; the workers must leave one CPU free)")
    group.add_argument("--gpus-per-worker", type=float,
                       help="ray: GPU share per worker (default: the cluster's GPUs shared evenly, at most 1)")


def cluster_options(args) -> ClusterOptions:
    """ClusterOptions from ``add_engine_options``' arguments; UsageError for Ray options
    given without ``--engine ray`` or values that cannot run."""
    if args.engine != "ray":
        given = [name for name, value in (("--address", args.address), ("--num-cpus", args.num_cpus),
                                          ("--gpus-per-worker", args.gpus_per_worker)) if value is not None]
        if args.cpus_per_worker != 0.5:
            given.append("--cpus-per-worker")
        if given:
            raise UsageError(f"{', '.join(given)}: only with --engine ray")
        return ClusterOptions()
    options = ClusterOptions(address=args.address, workers=args.workers, num_cpus=args.num_cpus,
                             cpus_per_worker=args.cpus_per_worker, gpus_per_worker=args.gpus_per_worker)
    check_options(options)
    require_ray()  # one line naming the extra before any model loads
    return options


@dataclass(frozen=True)
class Outcome:
    """What the driver gets back for one clip."""

    index: int
    payload: bytes | None
    """The clip's result, ready to be written; where it failed, what the caller's ``process``
    sends back with the error (a folder run: the file's warnings before it), or None."""
    error: str | None
    worker: str
    """'pid@node' of the process that ran it ('pid@local' off Ray)."""


class _ClipActor:
    """One Ray worker: loads its models once (``load``), runs ``process(index, path, models)``
    per clip, closes the models when Ray Data lets the pool go (``__del__``, called on a
    graceful shutdown; a killed actor's process takes its models with it)."""

    def __init__(self, load: Callable[[bool], Any], process: Callable[[int, str, Any], Outcome]):
        import ray

        self.node = ray.get_runtime_context().get_node_id()[:8]
        self.models = load(bool(ray.get_gpu_ids()))
        self.process = process

    def __call__(self, batch: dict) -> dict:
        import numpy as np

        outs = [self.process(int(i), str(p), self.models) for i, p in zip(batch["index"], batch["path"])]
        return {"index": np.array([o.index for o in outs], dtype=np.int64),
                "payload": np.array([o.payload or b"" for o in outs], dtype=object),
                "error": np.array([o.error or "" for o in outs], dtype=object),
                "worker": np.array([f"{o.worker.split('@')[0]}@{self.node}" for o in outs], dtype=object)}

    def __del__(self):
        models = getattr(self, "models", None)
        if models is not None:
            self.models = None
            models.close()


def run_on_ray(todo: list[tuple[int, str]], load: Callable[[bool], Any],
               process: Callable[[int, str, Any], Outcome], options: ClusterOptions,
               env: dict[str, str] | None = None) -> Iterator[Outcome]:
    """Run ``process`` on every (index, path) of ``todo`` on Ray; yield each clip's Outcome
    as it arrives, then one failed Outcome per clip whose worker died ``max_tries`` times.

    ``load(has_gpu)`` builds a worker's models (and must be picklable, as must ``process``).
    A local cluster is started and shut down here; an existing one (``options.address``) is
    joined and left running. ``env``: variables for the workers' processes (set when this
    call starts or joins the cluster; a caller that did ``ray.init`` itself sets its own).
    """
    ray = require_ray()
    check_options(options)
    started_here = not ray.is_initialized()
    if started_here:
        _init(ray, options, env)
    try:
        yield from _run(ray, todo, load, process, options)
    finally:
        if started_here:
            ray.shutdown()


def _quiet_token_notice(record: logging.LogRecord) -> bool:
    """Ray's notice that a cluster it starts uses token authentication (its default) is not
    the user's to act on; its warning that authentication is off stays."""
    return "Token authentication is enabled" not in record.getMessage()


def _init(ray, options: ClusterOptions, env: dict[str, str] | None) -> None:
    # a local raylet waits a few seconds for its agent processes; on a 2-core machine busy
    # with other work they took 30 s to start and the raylet aborted ("Timed out waiting
    # for file ... metrics_agent_port"): give them longer (the raylet reads these at start)
    os.environ.setdefault("RAY_agent_register_timeout_ms", "180000")
    os.environ.setdefault("RAY_raylet_start_wait_time_s", "180")
    if not logs.is_verbose():  # -v shows it
        logging.getLogger("ray._private.authentication.authentication_token_setup").addFilter(_quiet_token_notice)
    runtime_env = {"env_vars": dict(env)} if env else None
    kwargs: dict = dict(log_to_driver=False, logging_level=logging.WARNING, runtime_env=runtime_env,
                        configure_logging=False)
    if options.address:
        kwargs["address"] = options.address
    else:
        kwargs.update(num_cpus=options.num_cpus, include_dashboard=False)
    try:
        ray.init(**kwargs)
    except Exception as exc:  # ray raises plain Exception when its processes do not start
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise UsageError(f"cannot start or join the Ray cluster ({first})") from None


def _run(ray, todo, load, process, options: ClusterOptions) -> Iterator[Outcome]:
    from ray.data import ActorPoolStrategy, DataContext

    resources = ray.cluster_resources()
    _check_room(options, resources.get("CPU", 0.0))
    gpus = options.gpus_per_worker
    if gpus is None:
        gpus = min(1.0, resources.get("GPU", 0.0) / options.workers)
    logger.info("Ray: %d nodes, %g CPUs, %g GPUs; %d workers x %g CPU, %g GPU", len(ray.nodes()),
                resources.get("CPU", 0), resources.get("GPU", 0), options.workers, options.cpus_per_worker, gpus)
    if not todo:
        return
    context = DataContext.get_current()
    context.enable_progress_bars = False  # the driver's own bar counts clips across the cluster
    # Ray Data logs each run's start and end and "Progress bars disabled" to stderr: warnings only
    logging.getLogger("ray.data").setLevel(logging.WARNING)
    logging.getLogger("ray.data._internal.progress").setLevel(logging.ERROR)
    context.print_on_execution_start = False
    # a block whose actor died max_tries times is dropped, not fatal: its clip is reported below
    context.max_errored_blocks = len(todo)
    items = [{"index": i, "path": p} for i, p in todo]
    dataset = ray.data.from_items(items, override_num_blocks=len(items))  # one clip per block
    with warnings.catch_warnings():
        # max_restarts, max_task_retries and scheduling_strategy have no named parameter;
        # Ray 2.64 drops the keyword form (pyproject pins the extra below it)
        warnings.filterwarnings("ignore", message="`ray_remote_args` is deprecated")
        mapped = dataset.map_batches(
            _ClipActor, fn_constructor_args=(load, process), batch_size=1, batch_format="numpy",
            # one clip in flight per actor: Ray queues up to four by default, and an actor's
            # death then costs every queued clip a try; a bystander queued behind a clip that
            # kills its worker three times was marked failed (CI, test_ray)
            compute=ActorPoolStrategy(size=options.workers, max_tasks_in_flight_per_actor=1),
            num_cpus=options.cpus_per_worker,
            num_gpus=gpus or None, max_restarts=-1, max_task_retries=options.max_tries - 1,
            scheduling_strategy="SPREAD")  # actors spread over the nodes, not packed on the first
    seen: set[int] = set()
    for row in mapped.iter_rows():
        index = int(row["index"])
        if index in seen:  # a retried block can come back twice; its clip counts once
            continue
        seen.add(index)
        yield Outcome(index=index, payload=bytes(row["payload"]) or None, error=row["error"] or None,
                      worker=str(row["worker"]))
    for index, _ in todo:
        if index not in seen:
            yield Outcome(index=index, payload=None, worker="",
                          error=f"its worker died {options.max_tries} times (a crash, a kill or a lost node)")


def worker_label() -> str:
    return f"{os.getpid()}@local"


def progress(outcomes: Iterable[Outcome], total: int, quiet: bool, desc: str) -> Iterator[Outcome]:
    """``outcomes`` with a progress bar on stderr: clips done and failed, and how many
    workers (processes across the cluster) have finished clips so far. Only on a terminal:
    a log or captured output gets no bar (as training's), only the summary line."""
    from tqdm import tqdm

    workers: Counter = Counter()
    failed = 0
    with tqdm(total=total, unit="clip", desc=desc, disable=quiet or not sys.stderr.isatty(), file=sys.stderr) as bar:
        for outcome in outcomes:
            workers[outcome.worker] += 1
            failed += outcome.error is not None
            bar.set_postfix_str(f"{len(workers)} workers, {failed} failed", refresh=False)
            bar.update(1)
            yield outcome
