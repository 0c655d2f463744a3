"""The product as a user runs it: ``python -m realtime`` in a child process, timed by its
own summary, with the child's peak resident memory from the kernel (wait4)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def run_cli(*args: str, timeout: float = 3600) -> dict:
    """Run python -m realtime with ``args``; its summary plus wall time and peak RSS (MB)."""
    with tempfile.TemporaryDirectory() as tmp:
        summary = Path(tmp) / "summary.json"
        out = Path(tmp) / "records.jsonl"
        cmd = [sys.executable, "-m", "realtime", *args, "--out", str(out), "--summary", str(summary), "--quiet"]
        started = time.perf_counter()
        proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        deadline = started + timeout
        while True:
            pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
            if pid:
                break
            if time.perf_counter() > deadline:
                proc.kill()
                raise TimeoutError(f"{' '.join(cmd)} ran past {timeout:.0f} s")
            time.sleep(0.05)
        wall = time.perf_counter() - started
        stderr = proc.stderr.read() if proc.stderr else ""
        code = os.waitstatus_to_exitcode(status)
        if code != 0:
            raise RuntimeError(f"python -m realtime {' '.join(args)} exited {code}: {stderr.strip()[-500:]}")
        result = json.loads(summary.read_text())
        result["process_wall_seconds"] = round(wall, 2)
        result["peak_rss_mb"] = round(usage.ru_maxrss / 1024, 1)  # Linux: kilobytes
        result["records"] = sum(1 for _ in out.open())
        return result


def long_video(minutes: float, cache: Path, fps: int = 25, size: tuple[int, int] = (480, 360),
               name: str = "talking.mp4") -> Path:
    """A generated talking video of ``minutes`` (the example's sentences, repeated), cached
    as ``<stem>-<minutes>min<suffix>`` of ``name``."""
    from realtime.synth_media import talking_video

    path = Path(cache) / f"{Path(name).stem}-{minutes:g}min{Path(name).suffix}"
    if not path.is_file():
        sys.path.insert(0, str(ROOT / "examples"))
        from make_example import SENTENCES

        path.parent.mkdir(parents=True, exist_ok=True)
        talking_video(path, SENTENCES, fps=fps, size=size, minutes=minutes)
    return path


_WHO = ("My neighbour", "The new teacher", "Our driver", "A quiet student", "The old baker", "Her brother",
        "The night nurse", "A tired pilot", "The young chef", "His manager", "The museum guard", "Your cousin")
_DID = ("painted", "repaired", "carried", "described", "ordered", "forgot", "cleaned", "measured", "borrowed",
        "photographed", "delivered", "returned")
_WHAT = ("a wooden chair", "the broken radio", "three green bottles", "a map of the city", "the heavy boxes",
         "a letter from Spain", "the garden fence", "an orange bicycle", "the kitchen window", "two paper lamps",
         "a winter coat", "the station clock")
_WHEN = ("before lunch", "on Tuesday morning", "after the long meeting", "during the storm", "late last night",
         "at the market", "near the old bridge", "without a word", "for the third time", "in the spring")


def varied_sentences(n: int, seed: int = 0) -> list[tuple[str, int]]:
    """``n`` different plain sentences ("My neighbour painted a wooden chair before lunch."),
    drawn without repeats from a small grammar: speech whose every window holds new words,
    as a real talk's do (the example's sentences, repeated, let the words' embedder find
    almost every window's words remembered)."""
    import itertools
    import random

    every = list(itertools.product(_WHO, _DID, _WHAT, _WHEN))
    chosen = random.Random(seed).sample(every, min(n, len(every)))
    return [(f"{who} {did} {what} {when}.", 0) for who, did, what, when in chosen]


def varied_video(minutes: float, cache: Path, fps: int = 25, size: tuple[int, int] = (480, 360)) -> Path:
    """A generated talking video of ``minutes`` whose sentences never repeat (``varied_sentences``),
    cached as ``talking-varied-<minutes>min.mp4``."""
    from realtime.synth_media import talking_video

    path = Path(cache) / f"talking-varied-{minutes:g}min.mp4"
    if not path.is_file():
        path.parent.mkdir(parents=True, exist_ok=True)
        # each sentence and its pause take over 2.5 s: enough sentences that none repeats
        talking_video(path, varied_sentences(int(minutes * 60 / 2.5) + 1), fps=fps, size=size, minutes=minutes)
    return path


def file_pipeline(video: Path, device: str = "auto") -> dict:
    r = run_cli("--source", str(video), "--device", device)
    return {"media_s": r["media_seconds"], "rtf": r["real_time_factor"], "wall_s": r["wall_seconds"],
            "process_s": r["process_wall_seconds"], "peak_rss_mb": r["peak_rss_mb"], "windows": r["windows"]}


def live_replay(video: Path, device: str = "auto") -> dict:
    """The file replayed at wall-clock pace: the live code path's clocks and drops."""
    r = run_cli("--source", str(video), "--pace", "realtime", "--device", device)
    out = {"windows": r["windows"], "peak_rss_mb": r["peak_rss_mb"], "dropped": r["dropped"]}
    for key in ("latency_ms", "speech_lag_ms"):
        for q, v in r.get(key, {}).items():
            out[f"{key}_{q}"] = v
    return out
