"""Exit audit for processes the tests start (this folder is on their PYTHONPATH).

At exit, after every other atexit handler, names each MediaPipe graph that is still open:
its only remaining close is its finalizer during interpreter shutdown, which can wait
forever on a dispatcher thread that has gone (issue 13). The tests fail on the line.

With ``EXIT_AUDIT_LOG`` set, every process that reaches its exit also appends a line to that
file: its pid, "face" if it used MediaPipe's face landmarker (else "-"), and how many graphs
were still open. A process killed or terminated writes none: a test can tell that a pool's
workers ended their work themselves.
"""

import atexit
import gc
import os
import sys


def _audit() -> None:
    module = sys.modules.get("mediapipe.tasks.python.vision.face_landmarker")
    frozen = gc.get_freeze_count()  # models.signals.exit_quickly froze the heap: unfrozen to be seen
    gc.unfreeze()
    # type(), not isinstance(): the heap holds weak proxies whose referents are gone
    still_open = [] if module is None else [
        obj for obj in gc.get_objects()
        if issubclass(type(obj), module.FaceLandmarker) and getattr(obj, "_handle", None)]
    if frozen:
        gc.freeze()
    log = os.environ.get("EXIT_AUDIT_LOG")
    if log:
        with open(log, "a", encoding="ascii") as f:
            f.write(f"{os.getpid()} {'face' if module else '-'} {len(still_open)}\n")
    if still_open:
        os.write(2, f"exit-audit: {len(still_open)} FaceLandmarker graph(s) still open at exit, "
                    "left to a finalizer\n".encode())


atexit.register(_audit)  # registered first, so it runs last
