"""python -m gui: the live demo window.

    python -m gui                                   # choose a camera or a file in the window
    python -m gui --source examples/talking.mp4     # play a file at its own speed
    python -m gui --source 0 --microphone "USB"     # camera 0 and a named microphone
    python -m gui --source examples/talking.mp4 --screenshot docs/gui.png --after 12

Exit codes: 0 closed normally (or screenshot saved), 1 internal failure (a bug), 2 bad
usage or a screenshot run that failed, 130 Ctrl-C, 143 SIGTERM (the window closes, its run
stops and its models close first).
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import sys
import threading
from pathlib import Path

from realtime.service import (
    AFTER_MAX,
    Parser,
    UsageError,
    add_model_options,
    check_model_options,
    prog_name,
    seconds_option,
    version_string,
)


def build_parser() -> argparse.ArgumentParser:
    p = Parser(prog=prog_name("python -m gui"), description=__doc__.split("\n")[0],
                                epilog="exit codes: 0 closed normally (or screenshot saved); 1 internal failure "
                                       "(a bug); 2 bad usage, or a screenshot run that failed; 130 Ctrl-C; "
                                       "143 SIGTERM")
    p.add_argument("--version", action="version", version=version_string())
    p.add_argument("--source", help="a media file, 'webcam' or a camera index (default: camera 0 if any)")
    add_model_options(p, file_runs=False)
    p.add_argument("--microphone", default="", help="input device name or index (default: the system's)")
    p.add_argument("--no-microphone", action="store_true", help="live: video only")
    p.add_argument("--pace", choices=("realtime", "asap"), default="realtime",
                   help="files: play at media speed (default) or as fast as possible")
    p.add_argument("--record", help="write every record to this .jsonl or .csv file (one that holds records is "
                                    "refused unless --overwrite or --append)")
    kept = p.add_mutually_exclusive_group()
    kept.add_argument("--overwrite", action="store_true", help="--record: replace the file")
    kept.add_argument("--append", action="store_true", help="--record: add to the file's records")
    p.add_argument("--screenshot", help="save the window as an image (.png, .jpg, .jpeg or .bmp; PNG for a name "
                                        "without a suffix) after --after seconds of media, then exit")
    p.add_argument("--after", type=float, default=10.0,
                   help=f"media seconds before --screenshot, 0 to {AFTER_MAX:g} (default 10)")
    p.add_argument("-v", "--verbose", action="store_true",
                   help="log model loading, and let third-party libraries' own output through")
    return p


def main(argv: list[str] | None = None, ignore_unknown: bool = False) -> int:
    """``ignore_unknown``: launched as ``python -m realtime --gui``, whose other options
    (--quiet, --summary, ...) the window does not take; they are named in one warning.
    Its ``--out`` is the window's ``--record``."""
    parser = build_parser()
    unknown: list[str] = []
    if ignore_unknown:
        # the command line's records file is the window's recording (it had been ignored)
        argv = ["--record" if a == "--out" else f"--record={a[6:]}" if a.startswith("--out=") else a
                for a in (sys.argv[1:] if argv is None else argv)]
        args, unknown = parser.parse_known_args(argv)
    else:
        args = parser.parse_args(argv)
    from realtime import logs

    logs.configure(args.verbose)
    if unknown:
        logging.getLogger(__name__).warning("the GUI ignores %s", " ".join(unknown))
    try:
        check_model_options(args)
        seconds_option("--after", args.after, 0.0, AFTER_MAX)
    except UsageError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if (args.overwrite or args.append) and not args.record:
        print(f"error: --{'overwrite' if args.overwrite else 'append'} is for the "
              f"{'--out' if ignore_unknown else '--record'} file; give one", file=sys.stderr)
        return 2
    if args.screenshot:
        if not args.source:
            print("error: --screenshot needs --source", file=sys.stderr)
            return 2
        from gui.window import IMAGE_SUFFIXES

        shot = Path(args.screenshot)
        if shot.suffix and shot.suffix.lower() not in IMAGE_SUFFIXES:  # its data would be PNG under that name
            print(f"error: --screenshot saves {', '.join(IMAGE_SUFFIXES)} images; '{shot.name}' names none",
                  file=sys.stderr)
            return 2
        from realtime.outputs import output_file_problem

        if problem := output_file_problem("--screenshot", shot, replace=True):  # before the models load
            print(f"error: {problem}", file=sys.stderr)
            return 2
        os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")  # no display needed to render
    if args.source:
        from realtime.sources.live import camera_index

        if camera_index(args.source) is None:  # a file that cannot be played: one line, no window
            from realtime.sources.file import MediaError, probe

            try:
                probe(args.source)
            except MediaError as exc:
                print(f"error: {exc}", file=sys.stderr)
                return 2
    headless = sys.platform.startswith("linux") and not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))
    if headless and not os.environ.get("QT_QPA_PLATFORM"):
        # Qt would abort the process with a long message; say what to do instead
        print("error: no display to open the window on (DISPLAY is not set); use --screenshot PATH, "
              "or python -m realtime for headless runs", file=sys.stderr)
        return 2
    from PyQt6 import sip
    from PyQt6.QtCore import qInstallMessageHandler
    from PyQt6.QtWidgets import QApplication

    if not args.verbose:
        qInstallMessageHandler(_quiet_qt)

    from gui.session import SessionOptions
    from gui.window import MainWindow

    app = QApplication.instance() or QApplication(sys.argv[:1])
    base = SessionOptions(source=args.source or "0", microphone=None if args.no_microphone else args.microphone,
                          window=args.window, hop=args.hop, pace=args.pace, checkpoint=args.checkpoint,
                          device=args.device, face_model=args.face_model, face_fps=args.face_fps,
                          whisper_model=args.whisper_model,
                          text_model=args.text_model)
    window = MainWindow(base)
    try:
        return _run(app, window, args)
    finally:
        # Stop the run's threads and close the models now, not in finalizers at exit; then
        # delete the window while the QApplication still exists. Left to the interpreter, the
        # window (kept alive by its screenshot slot's reference cycle) went in the exit's
        # final garbage collection, after the QApplication: exits took over 10 s on 2 busy
        # cores, or crashed with SIGSEGV.
        window.close()  # its closeEvent stops the run and the recording (a signal ends the loop without it)
        window.session.close()
        if not window.session.alive:  # a run still loading its models would reach the deleted session
            sip.delete(window)


QT_NOISE = ("This plugin does not support propagateSizeHints()",)
"""Qt's own lines a user cannot act on (the offscreen platform of --screenshot writes this one
at each resize of the window); --verbose shows them."""


def _quiet_qt(kind, context, message: str) -> None:
    """Qt's messages on stderr, less QT_NOISE."""
    if message not in QT_NOISE:
        sys.stderr.write(message + "\n")


def _run(app, window, args: argparse.Namespace) -> int:
    """Show the window, start its run if a source is given, and run Qt's loop until it closes."""
    if args.record:
        from realtime.sinks import output_mode

        window.record_to(args.record, output_mode(args.overwrite, args.append), advice="pass --overwrite or --append")
        if window.recorder is None:
            print(f"error: {window.banner.text().removeprefix('error: ')}", file=sys.stderr)
            return 2
    window.show()
    result = {"code": 0}
    if args.screenshot:
        def saved(path: str) -> None:
            if not path:
                print(f"error: could not write {args.screenshot}", file=sys.stderr)
                result["code"] = 2
            elif window.banner.isVisible():
                print(f"{window.banner.text()} (screenshot saved to {path})", file=sys.stderr)
                result["code"] = 2
            else:
                print(f"screenshot saved to {path}", file=sys.stderr)
            window.close()

        window.screenshot_saved.connect(saved)
        window.screenshot_when(args.after, args.screenshot)
    if args.source:
        window.start()
    with _closing_on_signals(app, result):
        app.exec()
    return result["code"]


@contextlib.contextmanager
def _closing_on_signals(app, result: dict):
    """Ctrl-C and SIGTERM end Qt's loop (``main`` then stops the run and closes its models)
    with exit code 128 + the signal's number. Python runs a handler only between bytecodes,
    which Qt's loop seldom gives it: a timer hands it some every 0.2 s. Before, Ctrl-C raised
    KeyboardInterrupt inside whatever slot ran (a traceback, and the window went on), and
    SIGTERM killed the process before the models were closed. The handlers found are put
    back after (``realtime.interrupts``).

    The handler only posts the quit: it runs at whatever bytecode Python reaches next, which
    may be inside a widget's paintEvent, and Qt 6's ``quit()`` closes the windows at once
    (the run stops, queued events are delivered): done from inside a paint, the process
    crashed with SIGSEGV (about 1 Ctrl-C in 6)."""
    from PyQt6.QtCore import QTimer

    from realtime import interrupts

    quit_soon = QTimer()
    quit_soon.setSingleShot(True)
    quit_soon.timeout.connect(app.quit)

    def stop(signum, frame) -> None:
        result["code"] = 128 + signum
        quit_soon.start(0)  # carried out by the loop, outside whatever was running

    if threading.current_thread() is not threading.main_thread():  # signals reach the main thread only
        yield
        return
    before = interrupts.take_signals(stop)
    timer = QTimer()
    timer.timeout.connect(lambda: None)
    timer.start(200)
    try:
        yield
    finally:
        timer.stop()
        quit_soon.stop()  # a signal the loop did not reach quits no later loop
        interrupts.give_back(before)


def script() -> None:
    """The installed command's entry point (pyproject.toml), as python -m runs it."""
    from models.signals import exit_quickly

    exit_quickly(main())  # its models closed: no last garbage collection over them


if __name__ == "__main__":
    script()
