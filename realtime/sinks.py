"""Where estimates go: JSONL or CSV files (flushed record by record), and a run summary."""

from __future__ import annotations

import csv
import errno
import io
import logging
import os
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import numpy as np

from models import safejson
from realtime.outputs import OutputError, end_torn_line, is_special, output_file_problem
from realtime.types import Estimate

logger = logging.getLogger(__name__)

__all__ = ["OutputError", "JsonlSink", "CsvSink", "Summary", "check_output", "make_sink", "flatten"]


RECORD_SUFFIXES = (".jsonl", ".ndjson", ".csv")
"""What --out may end in: JSON Lines (.jsonl, .ndjson) or a table (.csv)."""


class Sink(Protocol):
    def write(self, estimate: Estimate) -> None: ...

    def close(self) -> None: ...


def output_mode(overwrite: bool, append: bool) -> str:
    """The records file's mode from the --overwrite and --append flags (the command line's
    --out, the window's --record)."""
    return "overwrite" if overwrite else "append" if append else "refuse"


def _open(path: Path, mode: str, label: str):
    """mode: 'refuse' (never overwrite), 'overwrite' or 'append'. Unbuffered bytes: each
    record is written whole by ``_write_whole``."""
    check_output(path, mode, label)
    if mode == "append":
        end_torn_line(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        return path.open("ab" if mode == "append" else "wb", buffering=0)
    except OSError as exc:
        raise OutputError(f"cannot write {label} '{path}': {exc.strerror}") from None


def _write_whole(fh, text: str, path: Path, label: str) -> None:
    """Append ``text`` (a record, or a header and a row) to the file and fsync it, whole or not
    at all: a write that fails (a full disk) is cut back off the file, so every line in it is
    a whole record, and the run stops with one line naming the file."""
    data = memoryview(text.encode("utf-8"))
    fd = fh.fileno()
    start = os.lseek(fd, 0, os.SEEK_END)  # a regular file (check_output refuses pipes and devices)
    try:
        while data:
            written = os.write(fd, data)
            if written == 0:
                raise OSError(errno.EIO, "the write made no progress")
            data = data[written:]
        os.fsync(fd)
    except OSError as exc:
        try:
            os.ftruncate(fd, start)
        except OSError:
            pass
        raise OutputError(f"cannot write {label} '{path}': {exc.strerror or exc}; the records before this "
                          "one are kept") from None


def _named(record: dict, source: str | None) -> dict:
    """The record with its input named last (``source``), when there is one to name."""
    if source is not None:
        record["source"] = source
    return record


class JsonlSink:
    """One JSON object per line, flushed to disk as each window is done."""

    def __init__(self, path: str | Path, mode: str = "refuse", source: str | None = None, label: str = "--out"):
        self.path = Path(path)
        self.source = source
        """The input every record names (its ``source`` field); None: no such field."""
        self.label = label  # how errors name the file
        self._fh = _open(self.path, mode, label)

    def write(self, estimate: Estimate) -> None:
        # never NaN or Infinity: they are not JSON (models.safejson)
        _write_whole(self._fh, safejson.dumps(_named(estimate.record(), self.source), ensure_ascii=False) + "\n",
                     self.path, self.label)

    def close(self) -> None:
        if not self._fh.closed:
            self._fh.close()


def flatten(record: dict, prefix: str = "") -> dict:
    """Nested dicts to dotted columns; word lists joined with spaces."""
    out = {}
    for key, value in record.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            out.update(flatten(value, name + "."))
        elif isinstance(value, list):
            out[name] = " ".join(map(str, value))
        else:
            out[name] = "" if value is None else value
    return out


class CsvSink:
    """One row per window; columns fixed by the first record, or, appending, by the file's
    header (rows of another checkpoint's or version's columns would not line up under it)."""

    def __init__(self, path: str | Path, mode: str = "refuse", source: str | None = None, label: str = "--out"):
        self.path = Path(path)
        self.source = source
        """The input every row names (its ``source`` column); None: no such column."""
        self.label = label  # how errors name the file
        self._fh = _open(self.path, mode, label)  # checks it (check_output), the header too when appending
        try:
            self._header = _csv_header(self.path, label) if mode == "append" else None
        except OutputError:  # changed since the check
            self._fh.close()
            raise
        self._writer: csv.DictWriter | None = None
        self._text = io.StringIO(newline="")  # the csv module writes a row here, then it goes whole

    def write(self, estimate: Estimate) -> None:
        # the same columns whatever is present; non-finite numbers as empty cells, like JSON's null
        row = flatten(safejson.finite(_named(estimate.record(all_channels=True), self.source)))
        if self._writer is None:
            if self._header is not None:
                left_out = [name for name in row if name not in self._header]
                if left_out:
                    logger.warning("'%s' has other columns than this run's records (another checkpoint or "
                                   "version): %d of them are left out (%s)", self.path, len(left_out),
                                   ", ".join(left_out[:5]) + (", ..." if len(left_out) > 5 else ""))
            self._writer = csv.DictWriter(self._text, fieldnames=self._header or list(row), extrasaction="ignore",
                                          restval="")
            if self._header is None:
                self._writer.writeheader()
        self._writer.writerow(row)
        text = self._text.getvalue()
        self._text.seek(0)
        self._text.truncate()
        _write_whole(self._fh, text, self.path, self.label)  # the header with the first row: no file of a header alone

    def close(self) -> None:
        if not self._fh.closed:
            self._fh.close()


def _csv_header(path: Path, label: str = "--out") -> list[str] | None:
    """The columns of a records table being appended to (None: it is empty or absent, so the
    run writes its own header); OutputError if its first line is not such a header."""
    try:
        with path.open(encoding="utf-8-sig", newline="") as fh:  # a spreadsheet may have added a BOM
            first = next((line for line in fh if line.strip()), "")
    except FileNotFoundError:
        return None
    except (OSError, UnicodeDecodeError) as exc:
        raise OutputError(f"cannot append to {label} '{path}': {exc}") from None
    if not first:
        return None
    header = next(csv.reader([first]))
    if header[:2] != ["t_start", "t_end"] or "checkpoint" not in header:
        raise OutputError(f"cannot append to {label} '{path}': its first line is not a records header "
                          "(t_start,t_end,...,checkpoint)")
    return header


def check_output(path: str | Path, mode: str = "refuse", label: str = "--out",
                 advice: str = "pass --overwrite or --append") -> None:
    """Fail early, before any model loads, on an output that cannot be written. ``label``
    names the file in the error, ``advice`` says how a file holding records may be replaced
    (the command line's words by default)."""
    path = Path(path)
    if is_special(path):  # a record being written would hold up a stop while its reader does not read
        raise OutputError(f"{label} '{path}' is a pipe or a device: records go to a file (follow one as it grows "
                          "with tail -f)")
    if not path.is_dir():
        if path.suffix.lower() == ".json":
            raise OutputError(f"{label} '{path}': records are JSON Lines (one object per line, not one JSON "
                              "document): name the file .jsonl, or .csv for a table")
        if path.suffix.lower() not in RECORD_SUFFIXES:
            raise OutputError(f"{label} '{path}': use a .jsonl or .csv file name")
    if problem := output_file_problem(label, path, mode != "refuse", advice):
        raise OutputError(problem)
    if mode == "append" and path.suffix.lower() == ".csv":
        _csv_header(path, label)  # a table that is not one of records is refused before any model loads


def make_sink(path: str | Path, mode: str = "refuse", source: str | None = None, label: str = "--out") -> Sink:
    """A records file (``check_output``'s names); ``source``: the input every record names;
    ``label``: how errors name the file."""
    path = Path(path)  # each sink checks it (``check_output``) as it opens
    kind = CsvSink if path.suffix.lower() == ".csv" else JsonlSink
    return kind(path, mode, source, label)


@dataclass
class Summary:
    """What a run did, printed at the end."""

    source: str
    windows: int = 0
    sentiment_sum: float = 0.0
    coverage_sum: dict[str, float] = field(default_factory=lambda: {"face": 0.0, "audio": 0.0, "text": 0.0})
    media_seconds: float = 0.0
    wall_seconds: float = 0.0
    dropped: dict[str, int] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    face_frames: int = 0
    """Video frames the face worker analysed, a face found in them or not."""
    said: set[str] = field(default_factory=set)
    """Warnings already logged as they happened (a file cut short, said by its reader): the
    summary keeps them, the end of the run does not log them again (``said_warning``)."""
    latencies_ms: list[float] = field(default_factory=list)
    speech_lags_ms: list[float] = field(default_factory=list)
    interrupted: bool = False
    leading: dict[str, int] = field(default_factory=dict)
    """How many windows each emotion led (of those with something to read)."""
    empty: int = 0
    """Windows with nothing to read: no face, no voice, no word (silence, noise or music over
    an empty frame). Their record holds the model's reading of nothing, its prior: they are
    left out of the mean sentiment and the leading emotions."""
    load_seconds: float | None = None
    """Seconds the command spent loading its models before this run (the first run of a
    command that loaded them; None otherwise): not part of ``wall_seconds``."""
    keep_records: bool = False
    """Keep every record (for --plot)."""
    records: list[dict] = field(default_factory=list)

    def add(self, estimate: Estimate) -> None:
        self.windows += 1
        if self.keep_records:
            self.records.append(estimate.record())
        for k in self.coverage_sum:
            self.coverage_sum[k] += estimate.modalities.get(k, 0.0)
        if estimate.latency_ms is not None:
            self.latencies_ms.append(estimate.latency_ms)
        if not any(estimate.modalities.get(k, 0.0) > 0 for k in self.coverage_sum):
            self.empty += 1
            return
        if estimate.emotion is not None:
            self.leading[estimate.emotion] = self.leading.get(estimate.emotion, 0) + 1
        self.sentiment_sum += estimate.sentiment

    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    def said_warning(self, message: str) -> None:
        """A warning logged as it happened (any thread; the CLI passes every warning of a run
        here, ``logs.warnings_to``): kept once among ``warnings``, not said again at the end."""
        with self._lock:
            if message not in self.said:
                self.said.add(message)
                if message not in self.warnings:
                    self.warnings.append(message)

    @property
    def unsaid(self) -> list[str]:
        """The warnings nobody has said yet: the run's end findings (decode errors, no face
        found, windows left unscored), for the end of the run to say."""
        return [w for w in self.warnings if w not in self.said]

    def as_dict(self) -> dict:
        n = max(self.windows, 1)
        read = self.windows - self.empty
        out = {
            "source": self.source,
            "windows": self.windows,
            "empty_windows": self.empty,
            "coverage": {k: round(v / n, 3) for k, v in self.coverage_sum.items()},
            "mean_sentiment": round(self.sentiment_sum / read, 3) if read else None,
            "leading_emotions": {k: round(v / read, 3) for k, v in sorted(self.leading.items(), key=lambda kv: -kv[1])},
            "media_seconds": round(self.media_seconds, 2),
            "wall_seconds": round(self.wall_seconds, 2),
            "real_time_factor": round(self.wall_seconds / self.media_seconds, 3) if self.media_seconds > 0 else None,
            **({"load_seconds": round(self.load_seconds, 2)} if self.load_seconds is not None else {}),
            "dropped": dict(self.dropped),
            "interrupted": self.interrupted,
        }
        for key, values in (("latency_ms", self.latencies_ms), ("speech_lag_ms", self.speech_lags_ms)):
            if values:
                out[key] = {f"p{q}": round(float(np.percentile(values, q)), 1) for q in (50, 95, 99)}
        if self.warnings:  # what the run warned of as it went (said_warning) and at its end
            out["warnings"] = list(self.warnings)
        return out

    def line(self) -> str:
        d = self.as_dict()
        cov = ", ".join(f"{k} {v:.0%}" for k, v in d["coverage"].items())
        mean = "n/a" if d["mean_sentiment"] is None else f"{d['mean_sentiment']:+.2f}"
        rtf = "n/a" if d["real_time_factor"] is None else f"{d['real_time_factor']:.2f}"
        text = f"{self.source}: {d['windows']} window{'' if d['windows'] == 1 else 's'}"
        if self.empty:
            text += f" ({self.empty} with nothing to read: no face, voice or word)"
        text += f", coverage {cov}, mean sentiment {mean}, "
        if d["leading_emotions"]:
            text += "leading emotion " + ", ".join(f"{k} {v:.0%}" for k, v in
                                                     list(d["leading_emotions"].items())[:3]) + ", "
        text += f"{d['wall_seconds']:.1f} s for {d['media_seconds']:.1f} s of media (real-time factor {rtf}"
        if "load_seconds" in d:
            text += f"; the models loaded in {d['load_seconds']:.1f} s before"
        text += ")"
        if self.dropped and any(self.dropped.values()):
            text += ", dropped " + ", ".join(f"{k} {v}" for k, v in self.dropped.items() if v)
        if "latency_ms" in d:
            text += ", latency p50/p95 {p50}/{p95} ms".format(**d["latency_ms"])
        if "speech_lag_ms" in d:
            text += ", speech lag p50/p95 {p50}/{p95} ms".format(**d["speech_lag_ms"])
        if self.interrupted:
            text += " (interrupted)"
        return text
