#!/usr/bin/env bash
# The device check on a lent machine (issue 12). That machine has no network: install what
# benchmarks/prepare_device_check.sh put in .whl/ (wheels, an xz-compressed ffmpeg), the project
# itself (--no-deps), then run benchmarks/device_check.py (its table is printed last; JSON, table
# and log go to $OUT).
#   bash benchmarks/device_check.sh [device_check.py options]    # e.g. --parts generator,nvidia
set -u
started=$(date +%s.%N)  # the check's time budget counts from here
cd "$(dirname "$0")/.."
py=${PYTHON:-python3}
note() { echo "[device_check.sh] $*" >&2; }
export PYTHONUNBUFFERED=1
. benchmarks/device_env.sh
exec $py benchmarks/device_check.py --started "$started" "$@"
