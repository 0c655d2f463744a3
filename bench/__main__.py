"""python -m bench: what each stage and the whole product cost on this machine.

    python -m bench                       # stages, end to end (example + 5-minute videos), live replay
    python -m bench --only stages         # any of: stages, file, live, long, alone, varied, soak, gpu, reference,
                                          # threads (varied: the file pipeline and its stages alone on speech
                                          # that never repeats, where the words' embedding costs what it does
                                          # on a real talk)
    python -m bench --only reference --reference-dmd ~/src/DMD   # ours beside the authors' DMD
    python -m bench --only soak --soak-minutes 30   # the long-run memory check
    python -m bench --json bench/results/mine.json

Prints a table with each figure beside its floor and writes every figure as JSON, with
the machine it ran on. Run it on an otherwise idle machine: it measures wall time.

Exit codes: 0 done, 1 internal failure (a bug), 2 bad input or usage (one line 'error: ...').
"""

from __future__ import annotations

import math
import os
import platform
import sys
import time
from pathlib import Path

from models.errors import Parser

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "examples" / "talking.mp4"
PARTS = ("stages", "file", "live", "long", "alone", "varied", "soak", "gpu", "reference", "threads")

# (key, label, floor, direction): the floors on a 2-core CPU machine
FLOORS = [
    ("file.rtf", "file pipeline real-time factor, example", 0.5, "max"),
    ("long.rtf", "file pipeline real-time factor, generated long video (--minutes)", 0.5, "max"),
    ("alone.pipeline_over_slowest", "file pipeline over its slowest stage alone, long video (x)", 1.3, "max"),
    ("varied.pipeline", "file pipeline real-time factor, speech that never repeats (--minutes)", 0.5, "max"),
    ("varied.pipeline_over_slowest", "the same over its slowest stage alone (x)", 1.3, "max"),
    ("live.latency_ms_p95", "live: window end -> record p95 (ms)", 200.0, "max"),
    ("live.speech_lag_ms_p95", "live: word end -> commit p95 (ms)", 2500.0, "max"),
    ("stages.dmd_ms_batch1_cpu", "DMD student forward, batch 1, CPU (ms)", 4.0, "max"),
    ("reference.batch1.speedup", "DMD vs the authors' code, MOSI config, batch 1 (x)", 2.0, "min"),
    ("reference.batch64.speedup", "DMD vs the authors' code, MOSI config, batch 64 (x)", 2.0, "min"),
    ("peak_rss_mb", "peak resident memory of a run (MB)", 2560.0, "max"),
    ("soak.rss_growth_mb", "soak: memory growth after warm-up (MB)", 50.0, "max"),
]


def machine() -> dict:
    import torch

    from realtime.features.text import native_bfloat16

    info = {"python": platform.python_version(), "platform": platform.platform(), "cpus": os.cpu_count(),
            "torch": torch.__version__, "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
            # whether file runs embed their words in bfloat16 here (--text-precision auto)
            "cpu_bfloat16": native_bfloat16()}
    try:
        with open("/proc/cpuinfo") as fh:
            info["cpu"] = next((line.split(":", 1)[1].strip() for line in fh if line.startswith("model name")), None)
        with open("/proc/meminfo") as fh:
            info["memory_gb"] = round(int(fh.readline().split()[1]) / 2**20, 1)
    except OSError:
        pass
    return info


def flat(results: dict, prefix: str = "") -> dict:
    out = {}
    for k, v in results.items():
        if isinstance(v, dict):
            out.update(flat(v, f"{prefix}{k}."))
        elif not isinstance(v, list):
            out[f"{prefix}{k}"] = v
    return out


def table(results: dict) -> str:
    values = flat(results)
    values["peak_rss_mb"] = max((v for k, v in values.items() if k.endswith("peak_rss_mb")), default=None)
    lines = ["| measure | figure | floor | met |", "|---|---|---|---|"]
    for key, label, floor, direction in FLOORS:
        v = values.get(key)
        ok = None if v is None else (v <= floor if direction == "max" else v >= floor)
        met = "" if ok is None else ("yes" if ok else "**no**")
        bound = f"{'<=' if direction == 'max' else '>='} {floor:g}"
        lines.append(f"| {label} | {'-' if v is None else v} | {bound} | {met} |")
    shown = {k for k, *_ in FLOORS}
    for key, v in values.items():
        if key not in shown and not key.startswith("machine."):
            lines.append(f"| {key} | {v} | | |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = Parser(prog="python -m bench", description=__doc__.split("\n")[0],
               epilog="exit codes: 0 done; 1 internal failure (a bug); 2 bad input or usage")
    p.add_argument("--only", nargs="+", choices=PARTS,
                   help="run only these parts (default: all but soak and threads; gpu only where CUDA is available; "
                        "reference only with --reference-dmd)")
    p.add_argument("--json", type=Path, default=ROOT / "bench" / "results" / "latest.json",
                   help="where every figure is written as JSON (default bench/results/latest.json)")
    p.add_argument("--video", type=Path, default=EXAMPLE, help="the short video (default: the example)")
    p.add_argument("--minutes", type=float, default=5.0,
                   help="length of the generated long video, 0.1 to 600 minutes (default 5)")
    p.add_argument("--soak-minutes", type=float, default=30.0,
                   help="length of the soak stream, 0.1 to 10080 minutes (default 30)")
    p.add_argument("--device", default="auto", help="device for the pipeline runs (auto, cpu, cuda)")
    p.add_argument("--reference-dmd", type=Path, default=None, metavar="PATH",
                   help="a local copy of the DMD authors' code (github.com/mdswyz/DMD) to time ours against; "
                        "nothing is fetched (without it the reference part is skipped)")
    p.add_argument("--threads", type=int, default=2, help="torch threads for the reference part (default 2)")
    p.add_argument("--cache", type=Path, default=ROOT / "runs" / "bench", help="where generated videos are kept")
    args = p.parse_args(argv)
    for name, value, high in (("--minutes", args.minutes, 600.0), ("--soak-minutes", args.soak_minutes, 10080.0)):
        if not (math.isfinite(value) and 0.1 <= value <= high):
            print(f"error: {name} must be a number from 0.1 to {high:g}, got {value}", file=sys.stderr)
            return 2
    if not args.video.is_file():
        print(f"error: '{args.video}': no such file", file=sys.stderr)
        return 2
    if args.threads < 1:
        print(f"error: --threads must be at least 1, got {args.threads}", file=sys.stderr)
        return 2
    from realtime.outputs import writable_problem

    problem = writable_problem(args.json)
    if problem:  # known before minutes of measuring, not after
        print(f"error: cannot write --json '{args.json}': {problem}", file=sys.stderr)
        return 2
    if args.reference_dmd is not None:
        from bench.reference import reference_problem

        problem = reference_problem(args.reference_dmd)
        if problem:
            print(f"error: --reference-dmd: {problem}", file=sys.stderr)
            return 2
    # the soak (30 minutes of media) runs only when asked for
    parts = args.only or [part for part in PARTS if part not in ("soak", "threads") and (part != "gpu" or _has_cuda())
                          and (part != "reference" or args.reference_dmd is not None)]
    results: dict = {"machine": machine(), "started": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
    from bench import e2e, gpu, stages

    for part in parts:
        started = time.perf_counter()
        print(f"bench: {part} ...", file=sys.stderr, flush=True)
        if part == "stages":
            results["stages"] = stages.run(args.video)
        elif part == "file":
            results["file"] = e2e.file_pipeline(args.video, args.device)
        elif part == "live":
            results["live"] = e2e.live_replay(args.video, args.device)
        elif part == "long":
            results["long"] = e2e.file_pipeline(e2e.long_video(args.minutes, args.cache), args.device)
        elif part in ("alone", "varied"):  # the pipeline beside its stages alone, on either video
            from bench.alone import compare

            make = e2e.long_video if part == "alone" else e2e.varied_video
            results[part] = compare(make(args.minutes, args.cache), args.device)
        elif part == "soak":
            from bench.soak import soak
            from realtime.service import component_args, load_components

            with load_components(component_args(device=args.device)) as comps:
                results["soak"] = soak(comps, args.soak_minutes, args.cache)
        elif part == "reference":
            from bench.reference import compare

            results["reference"] = compare(args.reference_dmd, threads=args.threads)
            if "skipped" in results["reference"]:
                print(f"bench: reference skipped: {results['reference']['skipped']}", file=sys.stderr)
        elif part == "threads":
            from bench.threads import scaling

            results["threads"] = scaling()
        elif part == "gpu":
            results["gpu"] = gpu.dmd_sweep()
            if "skipped" not in results["gpu"]:
                try:
                    results["gpu_file"] = e2e.file_pipeline(args.video, "cuda")
                except RuntimeError as exc:  # the pipeline cannot run here (a package or model missing)
                    results["gpu_file"] = {"skipped": str(exc).splitlines()[-1]}
                    print(f"bench: the pipeline on cuda skipped: {results['gpu_file']['skipped']}", file=sys.stderr)
        print(f"bench: {part} took {time.perf_counter() - started:.0f} s", file=sys.stderr, flush=True)
    print(table(results))
    if "gpu" in results and "rows" in results["gpu"]:
        print("\n| forward | dtype | batch | ms | windows/s |\n|---|---|---|---|---|")
        for row in results["gpu"]["rows"]:
            print(f"| {row['forward']} | {row['dtype']} | {row['batch']} | {row['ms']} | {row['windows_per_s']} |")
    from models import safejson
    from realtime.outputs import OutputError, write_atomic

    try:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        write_atomic(args.json, safejson.dumps(results, indent=1) + "\n", label="--json")
    except OSError as exc:  # the table above keeps the figures; an output, not a bug: 2
        print(f"error: cannot write --json '{args.json}': {exc.strerror}", file=sys.stderr)
        return 2
    except OutputError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"\nwritten to {args.json}", file=sys.stderr)
    return 0


def _has_cuda() -> bool:
    import torch

    return torch.cuda.is_available()


if __name__ == "__main__":
    sys.exit(main())
