#!/usr/bin/env bash
# The GPU check on a machine without a package registry (the lent H200 machine: Python 3.12 with torch,
# torchvision, timm and the other dependencies preinstalled, kornia absent). Installs the wheels carried in
# .whl/ (`make gpu-wheels`: kornia and kornia_rs) into /tmp/site and sslkit itself without dependencies over
# the machine's torch, then runs benchmarks/gpu_check.py with the report under $OUT (the device tool's
# folder that comes back) or build/gpu-check. Extra arguments go to gpu_check.py. See docs/performance.md.
set -uo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-python3}"
REPORT="${OUT:-build/gpu-check}"
mkdir -p "$REPORT"
if compgen -G ".whl/*.whl" > /dev/null; then
  "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
    || exit 1
  export PYTHONPATH="/tmp/site${PYTHONPATH:+:$PYTHONPATH}"
fi
"$PY" -m pip install -q --no-index --no-deps --no-build-isolation -e . || exit 1
"$PY" -c "import torch, kornia, sslkit_plugins; print('torch', torch.__version__, '| kornia', kornia.__version__)" \
  || exit 1
export PYTHONUNBUFFERED=1
# the script keeps to its --budget (default 430 s); the timeout is the last guard of the 8 minutes
timeout --kill-after=15 "${GPU_CHECK_TIMEOUT:-450}" "$PY" benchmarks/gpu_check.py --out "$REPORT" "$@" \
  2>&1 | tee "$REPORT/gpu-check.log"
