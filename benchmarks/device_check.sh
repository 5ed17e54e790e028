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
site=${GVJAX_DEVICE_SITE:-/tmp/gvjax-device-site}
note() { echo "[device_check.sh] $*" >&2; }
export PYTHONUNBUFFERED=1
mkdir -p "$site"
if compgen -G ".whl/*.whl" >/dev/null; then
  if $py -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target "$site" .whl/*.whl; then
    export PYTHONPATH="$site${PYTHONPATH:+:$PYTHONPATH}"
  else
    note "installing .whl/*.whl failed: the parts that need them will say so"
  fi
else
  note "no wheels in .whl/ (run benchmarks/prepare_device_check.sh first, where pip works): using what is installed"
fi
if [ -f .whl/ffmpeg.xz ] && [ -z "${IMAGEIO_FFMPEG_EXE:-}" ]; then
  $py -c 'import lzma, shutil, sys; shutil.copyfileobj(lzma.open(sys.argv[1]), open(sys.argv[2], "wb"))' \
    .whl/ffmpeg.xz "$site/ffmpeg" && chmod +x "$site/ffmpeg" && export IMAGEIO_FFMPEG_EXE="$site/ffmpeg"
fi
if ! $py -m pip install -q --no-index --no-deps --no-build-isolation -e . >"$site/pip-e.log" 2>&1; then
  note "pip install -e . failed ($(tail -n 1 "$site/pip-e.log")): gvjax from a linked copy of the tree"
  rm -rf "$site/src" && mkdir -p "$site/src/gvjax"
  ln -s "$PWD"/gvjax/* "$site/src/gvjax/" && for d in convert render train; do ln -s "$PWD/$d" "$site/src/gvjax/$d"; done
  export PYTHONPATH="$site/src:${PYTHONPATH:-}"
fi
exec $py benchmarks/device_check.py --started "$started" "$@"
