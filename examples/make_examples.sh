#!/usr/bin/env bash
# Regenerate the example traces from real demo runs (small Flax models on generated data).
set -euo pipefail
cd "$(dirname "$0")"
DIAG=${DIAG:-diag}
for scenario in healthy lr_too_high dead_relu nan_in_input_data target_leakage fp16_overflow overfitting; do
  $DIAG demo "$scenario" --out "$scenario.jsonl.tmp" --no-explain --seed 0 >/dev/null
  mv "$scenario.jsonl.tmp" "$scenario.jsonl"
done
ls -la *.jsonl
