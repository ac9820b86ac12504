#!/usr/bin/env bash
# The one command a device session runs, from the repository root (README.md beside this file):
#   bash benchmarks/gpu/device_run.sh [BUDGET_S] [more device_run.py flags]
# Installs the carried wheels and dcrobench itself offline (the device machine has no network), then runs
# device_run.py in what is left of BUDGET_S seconds (default 480); its results go to $OUT.
# SKIP_INSTALL=1: a dry run where dcrobench and its dependencies are installed already.
set -euo pipefail
gpu=benchmarks/gpu
budget_s=${1:-480}
shift $(( $# > 0 ? 1 : 0 ))
export PYTHONUNBUFFERED=1
if [[ -z ${SKIP_INSTALL:-} ]]; then
  if compgen -G "$gpu/wheels/*.whl" >/dev/null; then
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site \
      "$gpu"/wheels/*.whl
    export PYTHONPATH=/tmp/site${PYTHONPATH:+:$PYTHONPATH}
  fi
  # registers the built-in plugins' entry points; --no-build-isolation: setuptools is there, PyPI is not
  python3 -m pip install -q --no-index --no-deps --no-build-isolation -e .
fi
exec python3 "$gpu/device_run.py" --budget-s $(( budget_s - SECONDS )) --out "${OUT:?OUT is not set}" \
  --state "$gpu/state" --mnist-gz "$gpu/data/mnist" "$@"
