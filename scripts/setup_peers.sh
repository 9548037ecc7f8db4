#!/usr/bin/env bash
# Peer libraries for benchmarks/bench_frontier.py in their own virtual environment, .venv-peers:
# cache-dit 1.5.3 from PyPI ships a package named `cache_dit`, which would shadow ours in .venv.
# torch is installed FIRST from the local CPU wheel so no dependency can pull a CUDA build; diffusers
# and transformers are pinned to what .venv has, so both sides run the same model code. Idempotent.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
MAIN_PY=${CACHE_DIT_MAIN_PY:-.venv/bin/python}
[ -x "$MAIN_PY" ] || MAIN_PY=/work/main/.venv/bin/python
TORCH_SPEC=${CACHE_DIT_TORCH:-torch==2.13.0}
PEER_SPEC=${CACHE_DIT_PEER:-cache-dit==1.5.3}
version_of() { "$MAIN_PY" -c "import importlib.metadata as m; print(m.version('$1'))"; }
DIFFUSERS_SPEC="diffusers==$(version_of diffusers)"
TRANSFORMERS_SPEC="transformers==$(version_of transformers)"
SAFETENSORS_SPEC="safetensors==$(version_of safetensors)"
VENV=.venv-peers
want="$(printf '%s\n' "$TORCH_SPEC" "$PEER_SPEC" "$DIFFUSERS_SPEC" "$TRANSFORMERS_SPEC" \
  "$SAFETENSORS_SPEC" | cat - scripts/setup_peers.sh | sha256sum | cut -c1-16)"
stamp=$VENV/.setup-peers
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
  exit 0
fi
[ -x $VENV/bin/python ] || "$PY" -m venv $VENV
export PIP_DISABLE_PIP_VERSION_CHECK=1
VPY=$VENV/bin/python
"$VPY" -m pip install -q "$TORCH_SPEC" 2>&1 | grep -v "is ignored: it is neither" || true
"$VPY" -c "import torch; assert torch.version.cuda is None, torch.__version__" \
  || { echo "setup_peers: torch in $VENV is not the CPU build" >&2; exit 1; }
# Keep torch pinned in the same command, so no resolver step may swap it for a CUDA build.
"$VPY" -m pip install -q "$TORCH_SPEC" "$PEER_SPEC" "$DIFFUSERS_SPEC" "$TRANSFORMERS_SPEC" \
  "$SAFETENSORS_SPEC" numpy 2>&1 | grep -v "is ignored: it is neither" || true
"$VPY" -c "import torch, cache_dit, diffusers; assert torch.version.cuda is None; \
print('peers:', 'torch', torch.__version__, 'cache_dit', cache_dit.__version__, 'diffusers', diffusers.__version__)"
echo "$want" > "$stamp"
