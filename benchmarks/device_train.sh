#!/usr/bin/env bash
# Train the bundled model further on a lent GPU (issue 13): one GPU's minutes are hours of the
# 2-core CPU the shipped stages were trained on. Nothing to prepare: training needs only what the
# device has (jax, flax, optax, orbax, typer, Pillow); the fruit pictures are drawn there on every
# core. One `run` call (timeout_s about 60 * MINUTES + 180):
#
#   MINUTES=7 bash benchmarks/device_train.sh [gvjax train options]
#
# 1. `gvjax dataset fruit` (COUNT pictures, 64x64, seed 3: stage 4's), and with GRAPES > 1 a copy with
#    the grapes pictures GRAPES times over (`bundled_config oversample`, as stages 7 and 8);
# 2. `gvjax train DATA --from bundled` with stage 8's options and then the ones given (later ones
#    win), stopped by SIGTERM after MINUTES and finished at its last checkpoint (`--resume --kimg K`);
# 3. into $OUT: the new stage's `bundled_fruit64.npz` (`bundled_config record` + `export`, the commands
#    recorded), the run's config.json, log.jsonl and sample grids. Score it here with
#    `python benchmarks/bundled_quality.py --model OUT/bundled_fruit64.npz`.
#
# Settings (environment): MINUTES (training wall time, default 7), COUNT (100000), GRAPES (1),
# SNAP (checkpoint interval in kimg, default 10), WORK (scratch, default /tmp/gvjax-train),
# OUT (default ./out).
set -euo pipefail
cd "$(dirname "$0")/.."
py=${PYTHON:-python3}
note() { echo "[device_train.sh] $*" >&2; }
export PYTHONUNBUFFERED=1
. benchmarks/device_env.sh
minutes=${MINUTES:-7} count=${COUNT:-100000} grapes=${GRAPES:-1} snap=${SNAP:-10}
work=${WORK:-/tmp/gvjax-train} out=${OUT:-$PWD/out}
gvjax() { $py -m gvjax "$@"; }
mkdir -p "$out"
rm -rf "$work" && mkdir -p "$work"
$py -c 'import jax; print("devices:", jax.devices())'

commands=("gvjax dataset fruit fruit64 --count $count --res 64 --seed 3")
gvjax dataset fruit "$work/fruit64" --count "$count" --res 64 --seed 3
data=fruit64
if [ "$grapes" -gt 1 ]; then
  data=fruit64-grapes$grapes
  commands+=("python -m gvjax.train.bundled_config oversample fruit64 $data --species grapes --times $grapes")
  $py -m gvjax.train.bundled_config oversample "$work/fruit64" "$work/$data" --species grapes --times "$grapes"
fi

p=$($py -c 'import sys; from gvjax.bundled import read_npz_model; print(read_npz_model(sys.argv[1])[2]["record"]["final_augment_p"])' gvjax/data/bundled_fruit64.npz)
options=(--batch 16 --seed 11 --ada-kimg 100 --augment xflip,translate --augment-p "$p" --pl-weight 0 --ema-kimg 10
         --ema-rampup 0 --snap "$snap" --sample-kimg "$snap" --keep 2 "$@")
commands+=("gvjax train $data --from bundled --out run --kimg 100000 ${options[*]}")
note "training for $minutes minutes: ${commands[-1]}"
started=$(date +%s)
set +e
timeout -s TERM "${minutes}m" $py -m gvjax train "$work/$data" --from bundled --out "$work/run" --kimg 100000 "${options[@]}"
status=$?
set -e
[ "$status" -eq 0 ] || [ "$status" -eq 124 ] || [ "$status" -eq 130 ] || [ "$status" -eq 143 ] || { note "training failed ($status)"; exit "$status"; }
kimg=$($py -c '
import json, pathlib, sys
run = pathlib.Path(sys.argv[1])
step = max(int(p.name) for p in (run / "checkpoints").iterdir() if p.name.isdigit())
print(step * json.loads((run / "config.json").read_text())["resolved"]["batch"] / 1000)' "$work/run")
[ "$kimg" != 0.0 ] || { note "no checkpoint after step 0 within $minutes minutes: give it more (MINUTES) or checkpoint more often (SNAP)"; exit 1; }
commands+=("gvjax train $data --out run --resume --kimg $kimg")
gvjax train "$work/$data" --out "$work/run" --resume --kimg "$kimg"
wall=$(( $(date +%s) - started ))

record=(--previous gvjax/data/bundled_fruit64.npz --stopped "SIGTERM after $minutes minutes on $($py -c 'import jax; print(jax.devices()[0].device_kind)'), finished at its last checkpoint" --wall-seconds "$wall" --out "$out/record.json")
for c in "${commands[@]}"; do record+=(--command "$c"); done
$py -m gvjax.train.bundled_config record "$work/run" "${record[@]}"
$py -m gvjax.train.bundled_config export "$work/run/model" "$out/bundled_fruit64.npz" --record "$out/record.json"
cp "$work/run/config.json" "$work/run/log.jsonl" "$out/"
cp "$work/run/"fakes*.png "$out/" 2>/dev/null || true
note "wrote $out/bundled_fruit64.npz ($kimg kimg in ${wall}s)"
