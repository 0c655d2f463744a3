"""What a run writes, checked and held before any model loads.

Every path a run will write (records, summary, plot) is known before it starts. They are
checked together: never an input of the run, never two outputs on one file, never a file
another live run is writing (an advisory ``flock`` on each output, held for the whole run;
a second run gets a one-line error). Folder runs name each input's outputs so that no two
inputs collide (``clip.jsonl``, or ``clip.mp4.jsonl`` and ``clip.wav.jsonl`` when two
inputs share a name). Files written whole (the summary) are written to a temporary name
and renamed, so a reader or a crash never sees half of one. A run that ends before it
writes anything leaves no empty file behind.
"""

from __future__ import annotations

import errno
import fcntl
import logging
import os
import socket
import stat
import time
from pathlib import Path

from models.errors import UserError

logger = logging.getLogger(__name__)


class OutputError(UserError, ValueError):
    """An output that cannot be written; one line naming it."""


def same_path(a: Path, b: Path) -> bool:
    """True when ``a`` and ``b`` name one file (through links, ``..`` or another spelling)."""
    try:
        if a.exists() and b.exists():
            return os.path.samefile(a, b)
    except OSError:
        pass
    return a.resolve() == b.resolve()


def check_distinct(inputs: list[Path], outputs: list[tuple[str, Path]]) -> None:
    """OutputError when an output is one of the inputs or two outputs are one file.

    ``outputs``: (option name, path) pairs, e.g. ("--summary", Path("s.json")).
    """
    for i, (label, path) in enumerate(outputs):
        for source in inputs:
            if same_path(path, source):
                raise OutputError(f"{label} '{path}' is the input '{source}'; refusing to overwrite it")
        for other_label, other in outputs[:i]:
            if same_path(path, other):
                raise OutputError(f"{label} '{path}' is also {other_label}: give each output its own file")


def output_names(files: list[Path]) -> dict[Path, str]:
    """A distinct output base name per input of a folder: the stem (``clip``), or the whole
    name (``clip.mp4``) for inputs that share a stem; OutputError if names still collide."""
    stems: dict[str, int] = {}
    for path in files:
        stems[path.stem] = stems.get(path.stem, 0) + 1
    names = {path: path.stem if stems[path.stem] == 1 else path.name for path in files}
    seen: dict[str, Path] = {}
    for path, name in names.items():
        if name in seen:
            raise OutputError(f"'{seen[name]}' and '{path}' would write the same output '{name}'; rename one")
        seen[name] = path
    return names


_HOST = socket.gethostname().replace("/", "_")
_WRITER = f"{_HOST}-{os.getpid()}"
"""What a temporary's name says of its writer (``.NAME.tmp-HOST-PID``): a clean-up on another
machine sharing the folder sees that the process is not one of its own."""


def is_special(path: Path) -> bool:
    """Whether ``path`` is, or links to, something other than a file or folder: a device
    (/dev/null), a pipe (/dev/stdout under ``| head``), a socket. Written into, never
    renamed over: a rename would put a file in its place (as root, /dev/null itself)."""
    try:
        mode = os.stat(path).st_mode  # through links
    except OSError:
        return False
    return not (stat.S_ISREG(mode) or stat.S_ISDIR(mode))


def _cannot_write(label: str, path: Path, why) -> OutputError:
    """The one line for an output that cannot be written (``label``: its option, or "")."""
    return OutputError(f"cannot write {label + ' ' if label else ''}'{path}': {why}")


def _open_special(path: Path, label: str = "") -> int:
    """A device or a pipe opened for writing, without waiting for a pipe's reader (none:
    OutputError at once, not a wait for ever); then blocking, so that a write goes whole."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_NONBLOCK)
    except OSError as exc:
        if exc.errno == errno.ENXIO:
            raise _cannot_write(label, path, "a named pipe that no program reads (start its reader first)") from None
        raise _cannot_write(label, path, exc.strerror or exc) from None
    os.set_blocking(fd, True)
    return fd


def write_atomic(path: Path, text: str | bytes, label: str = "") -> None:
    """Write ``text`` (or bytes) to ``path`` whole: a temporary file in the same folder,
    fsynced, then renamed over ``path`` (a crash leaves the old file or the new one, never half).
    A device or a pipe at ``path`` (``is_special``) is written into instead. ``label``: how
    an error names the output (its option)."""
    path = Path(path)
    if is_special(path):
        data = text if isinstance(text, bytes) else text.encode("utf-8")
        fd = _open_special(path, label)
        try:
            with os.fdopen(fd, "wb") as fh:
                fh.write(data)
        except OSError as exc:
            raise _cannot_write(label, path, exc.strerror or exc) from None
        return
    tmp = path.with_name(f".{path.name}.tmp-{_WRITER}")
    try:
        with (tmp.open("wb") if isinstance(text, bytes) else tmp.open("w", encoding="utf-8")) as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise _cannot_write(label, path, exc.strerror) from None
    except BaseException:  # Ctrl-C or SIGTERM mid-write: no temporary left for the next run to find
        tmp.unlink(missing_ok=True)
        raise


def _unresolved(path: Path) -> Path:
    """``path`` made absolute as the kernel will walk it: ``..`` and links left in place
    (``os.path.abspath`` would fold ``link/..`` lexically, to another folder than the kernel's)."""
    return Path(path) if Path(path).is_absolute() else Path.cwd() / path


def folder_problem(path: Path) -> str | None:
    """Why no file can be made at ``path`` for want of a folder, or None. Its folder may be
    missing (a run makes it, and removes it again if it ends with nothing in it), but the
    nearest part of it that exists must be a folder this user can write in."""
    probe = _unresolved(path).parent
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    if not probe.is_dir():
        return f"'{probe}' is a file, not a folder"
    if not os.access(probe, os.W_OK | os.X_OK):
        return f"the folder '{probe}' is not writable"
    return None


def writable_problem(path: Path) -> str | None:
    """Why no file can be written at ``path``, or None: a folder there, a folder problem
    (``folder_problem``), or a file this user cannot write."""
    path = Path(path)
    if path.is_dir():
        return "it is a folder; give a file name"
    if is_special(path):  # a device or a pipe (/dev/null, /dev/stdout): its own permission, not its folder's
        return None if os.access(path, os.W_OK) else "permission denied"
    problem = folder_problem(path)
    if problem is None and path.exists() and not os.access(path, os.W_OK):
        problem = "permission denied"
    return problem


def output_file_problem(label: str, path: Path, replace: bool,
                        advice: str = "pass --overwrite to replace it") -> str | None:
    """The one-line refusal of ``path`` as an output file named ``label`` (``--out``, ``--plot``,
    ...), or None: a folder in its place, a file holding something that may not be replaced
    (``replace`` False; ``advice`` says how to), or a path this user cannot write."""
    path = Path(path)
    if path.is_dir():
        return f"{label} '{path}' is a folder; give a file name"
    if not replace and path.is_file() and path.stat().st_size > 0:
        return f"{label} '{path}' exists; {advice}"
    problem = writable_problem(path)
    return f"cannot write {label} '{path}': {problem}" if problem else None


STALE_AFTER = 3600.0
"""Seconds after which a temporary ``write_atomic`` left is stale whoever wrote it: the only
sign of a writer on another machine sharing the folder, whose process this one cannot see."""


def remove_stale_temporaries(folder: Path, pattern: str) -> list[Path]:
    """Remove the temporaries ``write_atomic`` left in ``folder`` (``pattern``: the glob of
    their names, ``.NAME.tmp-HOST-PID``) whose writer is gone: a process of this machine
    that no longer runs, or a file over ``STALE_AFTER`` seconds old. A temporary of a live
    writer (another run filling the same cache now, here or on another machine) is kept, so
    its rename still finds it. Names without a host (``.NAME.tmp-PID``, older versions) are
    taken for this machine's. Returns those removed."""
    removed = []
    for path in Path(folder).glob(pattern):
        host, _, pid = path.name.rpartition(".tmp-")[2].rpartition("-")
        try:
            old = time.time() - path.stat().st_mtime > STALE_AFTER
        except FileNotFoundError:
            continue  # renamed by its writer meanwhile
        here = host in ("", _HOST)
        if old or (here and not (pid.isdigit() and _running(int(pid)))):
            path.unlink(missing_ok=True)
            removed.append(path)
    return removed


def _running(pid: int) -> bool:
    """Whether process ``pid`` runs on this machine (whoever owns it)."""
    if pid <= 0:  # 0 and below name process groups, not a process
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # another user's process
    return True


def end_torn_line(path: Path) -> bool:
    """Before appending: if ``path`` ends inside a line (a run killed mid-write), start a
    fresh line so that the next record is not glued to the torn one. True if it did."""
    path = Path(path)
    try:
        size = path.stat().st_size
    except FileNotFoundError:
        return False
    if size == 0:
        return False
    with path.open("rb+") as fh:
        fh.seek(-1, os.SEEK_END)
        if fh.read(1) == b"\n":
            return False
        fh.seek(0, os.SEEK_END)
        fh.write(b"\n")
    logger.warning("'%s' ended in a torn line (a run that was killed while writing); new records start on a "
                   "fresh line; nothing else in the file was repaired", path)
    return True


def make_folders(folder: Path) -> list[Path]:
    """Make ``folder`` and any missing folder above it, top down, as the kernel walks the
    path; returns those this call made (one another process made meanwhile is not ours)."""
    made = []
    full = _unresolved(folder)
    for part in [*reversed(full.parents), full]:
        if not part.exists():
            try:
                part.mkdir()
            except FileExistsError:
                continue
            made.append(part)
    return made


class OutputLocks:
    """Advisory locks on a run's outputs, held until ``release`` (a context manager).

    Locking an output creates it if needed (empty), and its folders; ``release`` removes the
    files it created that are still empty, unless ``keep`` was called for them (a finished
    input whose run gave no windows keeps its empty record file), and the folders it made
    that are left empty: a run refused after its outputs were locked leaves nothing behind.
    """

    def __init__(self) -> None:
        self._held: dict[Path, int] = {}
        self._created: set[Path] = set()
        self._kept: set[Path] = set()
        self._folders: set[Path] = set()

    def acquire(self, path: Path, label: str) -> None:
        path = Path(path)
        key = path.resolve()
        if key in self._held:
            return
        if is_special(path):
            self._acquire_special(path, key, label)
            return
        existed = path.exists()
        problem = folder_problem(path)
        if problem:
            raise OutputError(f"cannot write {label} '{path}': {problem}")
        try:
            self._folders.update(make_folders(path.parent))
            fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o644)
        except OSError as exc:
            raise OutputError(f"cannot write {label} '{path}': {exc.strerror}") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            raise OutputError(f"{label} '{path}' is being written by another run; wait for it or choose "
                              "another file") from None
        self._held[key] = fd
        if not existed:
            self._created.add(key)

    def _acquire_special(self, path: Path, key: Path, label: str) -> None:
        """A device (/dev/null, a terminal) is shared by every process: not locked. A named
        pipe (/dev/stdout under ``| head``) is held open from now on, so that its reader stays
        connected until the run writes into it; no reader: refused at once (opening a pipe
        for writing would wait for one for ever)."""
        if not os.access(path, os.W_OK):
            raise OutputError(f"cannot write {label} '{path}': permission denied")
        if stat.S_ISFIFO(os.stat(path).st_mode):
            self._held[key] = _open_special(path, label)

    def keep(self, path: Path) -> None:
        """``path`` is a finished output: kept even when empty."""
        self._kept.add(Path(path).resolve())

    def discard(self, path: Path) -> None:
        """Unlock ``path`` now and remove it if this run created it and it is still empty."""
        key = Path(path).resolve()
        fd = self._held.pop(key, None)
        if key in self._created and key not in self._kept:
            try:
                if key.stat().st_size == 0:
                    key.unlink()
            except OSError:
                pass
        if fd is not None:
            os.close(fd)

    def replace(self, path: Path, text: str) -> None:
        """``write_atomic`` for a held output, and hold the new file (the rename gave the
        name a new inode, which the old lock does not cover). A device or a pipe is written
        into, by the name given (/dev/stdout resolves to a pipe no name opens again)."""
        if is_special(path):
            write_atomic(Path(path), text)
            return
        key = Path(path).resolve()
        write_atomic(key, text)
        self._kept.add(key)
        fd = os.open(key, os.O_RDONLY)
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # a name just made by us: nobody else holds it
        old = self._held.get(key)
        self._held[key] = fd
        if old is not None:
            os.close(old)

    def release(self) -> None:
        for key in list(self._held):
            self.discard(key)
        self._created.clear()
        for folder in sorted(self._folders, key=lambda f: len(f.parts), reverse=True):  # deepest first
            try:
                folder.rmdir()  # only an empty one
            except OSError:
                pass
        self._folders.clear()

    def __enter__(self) -> OutputLocks:
        return self

    def __exit__(self, *exc) -> None:
        self.release()
