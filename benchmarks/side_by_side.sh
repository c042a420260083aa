#!/bin/bash
# Usage: git worktree add /tmp/old <old commit>; bash benchmarks/side_by_side.sh  (prints wall seconds per side)
# Side by side, same machine, cold: the customization notebook at the start of the session (87a9d31) and now (HEAD).
set -e
ROOT=$(cd "$(dirname "$0")/.." && pwd)
PY=${PY:-$ROOT/.venv/bin/python}
OLD=${OLD:-/tmp/old}
for i in 1; do
  rm -rf /tmp/sbs; mkdir -p /tmp/sbs
  s=$(date +%s.%N)
  (cd $OLD && PYTHONPATH=$OLD EDGETUNE_ROOT=$OLD EDGETUNE_RUNS=/tmp/sbs/old/runs EDGETUNE_FIGURES=/tmp/sbs/old/figures $PY -m edgetune.cli reproduce --section customization --profile default > /tmp/sbs/old.log 2>&1)
  e=$(date +%s.%N); echo "old $(echo "$e - $s" | bc)"
  s=$(date +%s.%N)
  (cd $ROOT && EDGETUNE_RUNS=/tmp/sbs/new/runs EDGETUNE_FIGURES=/tmp/sbs/new/figures $PY -m edgetune.cli reproduce --section customization --profile default > /tmp/sbs/new.log 2>&1)
  e=$(date +%s.%N); echo "new $(echo "$e - $s" | bc)"
done
