"""Exit audit for processes the tests start (this folder is on their PYTHONPATH).

At exit, after every other atexit handler, names each MediaPipe graph that is still open:
its only remaining close is its finalizer during interpreter shutdown, which can wait
forever on a dispatcher thread that has gone (issue 13). The tests fail on the line.
"""

import atexit
import gc
import os
import sys


def _audit() -> None:
    module = sys.modules.get("mediapipe.tasks.python.vision.face_landmarker")
    if module is None:
        return
    # type(), not isinstance(): the heap holds weak proxies whose referents are gone
    still_open = [obj for obj in gc.get_objects()
                  if issubclass(type(obj), module.FaceLandmarker) and getattr(obj, "_handle", None)]
    if still_open:
        os.write(2, f"exit-audit: {len(still_open)} FaceLandmarker graph(s) still open at exit, "
                    "left to a finalizer\n".encode())


atexit.register(_audit)  # registered first, so it runs last
