#!/usr/bin/env bash
# gpu_check.py on a bare GPU machine without network (see benchmarks/README.md, "On a GPU").
#
#   bash benchmarks/gpu_check.sh prepare     here, once: Optuna's wheels into .whl/, MNIST into
#                                            .mnist/ (both git-ignored), from ../shared or $SHARED
#   bash benchmarks/gpu_check.sh [ARGS]      there: install .whl/ into /tmp/site (no network, no
#                                            pip install of gas-nas), then gpu_check.py --out
#                                            ${OUT:-gpu-check-out} ARGS (e.g. --only reproduce)
set -euo pipefail
cd "$(dirname "$0")/.."

if [[ "${1:-}" == "prepare" ]]; then
    shared="${SHARED:-../shared}"
    exclude="$(git rev-parse --git-path info/exclude)"
    for folder in /.whl/ /.mnist/; do
        grep -qxF "$folder" "$exclude" 2>/dev/null || echo "$folder" >> "$exclude"
    done
    mkdir -p .whl .mnist
    cp "$shared"/device-wheels/*.whl .whl/
    # plotly (the dashboard's study plot) is not among the shared wheels: pure Python, fetched here
    python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 -d .whl plotly narwhals
    cp "$shared"/data/mnist/*-ubyte* .mnist/
    echo "ready: $(ls .whl | wc -l) wheels in .whl/, MNIST in .mnist/; carry both (.whl, .mnist)"
    exit 0
fi

python=python3
if ! "$python" -c "import optuna" 2>/dev/null; then
    ls .whl/*.whl >/dev/null 2>&1 || { echo "gpu_check.sh: no Optuna and no .whl/ wheels (run 'bash benchmarks/gpu_check.sh prepare' and carry .whl)" >&2; exit 2; }
    "$python" -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .whl/*.whl
    export PYTHONPATH="/tmp/site${PYTHONPATH:+:$PYTHONPATH}"
fi
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
if [[ -z "${GAS_NAS_DATA:-}" && -d .mnist ]]; then
    export GAS_NAS_DATA="$PWD/.mnist"
fi
export PYTHONUNBUFFERED=1
exec "$python" benchmarks/gpu_check.py --out "${OUT:-gpu-check-out}" "$@"
