"""A long run: a generated talking stream of many minutes through the file pipeline,
faster than real time, watching resident memory, queue depths and threads.

    python -m bench --only soak --soak-minutes 30

Memory is sampled every 0.5 s. Growth compares the median of the last fifth of the run
with the median of the second fifth (the first fifth is warm-up): a leak grows with the
media; the allocators' ups and downs (CTranslate2 keeps buffers per encoder input size,
glibc returns memory late) do not. The peak is reported beside it.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path

import numpy as np


def rss_mb() -> float:
    """This process's resident memory (Linux /proc), MB."""
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    raise OSError("no VmRSS in /proc/self/status")


def soak(components, minutes: float, cache: Path) -> dict:
    """Run the stream through the pipeline with ``components`` (see realtime.service); figures."""
    from bench.e2e import long_video
    from realtime.run import RunOptions, build_run
    from realtime.sinks import Summary
    from realtime.sources.file import FileFeed

    path = long_video(minutes, cache, fps=10, size=(320, 240), name="soak.mkv")
    summary = Summary(source=str(path))
    samples: list[tuple[float, float]] = []  # (media seconds done, rss)
    max_queue = 0
    done = threading.Event()

    class Count:
        t = 0.0

        def write(self, est) -> None:
            Count.t = est.t_end

        def close(self) -> None:
            pass

    started = time.perf_counter()
    with build_run(components, FileFeed(path), RunOptions()) as run:
        bound = max(run.status().bounds.values())

        def watch() -> None:
            nonlocal max_queue
            while not done.wait(0.5):
                samples.append((Count.t, rss_mb()))
                max_queue = max([max_queue, *run.status().queued.values()])

        watcher = threading.Thread(target=watch, name="soak-watch", daemon=True)
        watcher.start()
        run.run([Count()], summary)
        done.set()
        watcher.join()
    wall = time.perf_counter() - started
    media = summary.media_seconds
    second = [rss for t, rss in samples if 0.2 * media < t <= 0.4 * media] or [samples[0][1]]
    last = [rss for t, rss in samples if t > 0.8 * media] or [samples[-1][1]]
    step = max(1, len(samples) // 200)
    return {
        "minutes": minutes, "media_s": round(media, 1), "wall_s": round(wall, 1), "rtf": round(wall / media, 3),
        "windows": summary.windows, "rss_after_warmup_mb": round(float(np.median(second)), 1),
        "rss_last_fifth_mb": round(float(np.median(last)), 1),
        "rss_growth_mb": round(float(np.median(last) - np.median(second)), 1),
        "rss_peak_mb": round(max(rss for _, rss in samples), 1),
        "rss_samples": [(round(t, 1), round(rss, 1)) for t, rss in samples[::step]],
        "max_queue": max_queue, "queue_bound": bound, "dropped": dict(summary.dropped),
        "threads_left": [t.name for t in threading.enumerate() if t.name.startswith("realtime-")],
    }
