# Sourced by the device scripts (device_check.sh, device_train.sh) on a lent machine, which has no
# network: installs what benchmarks/prepare_device_check.sh put in .whl/ (wheels, an xz-compressed
# ffmpeg) where present, then the project itself (--no-deps; or a linked copy of the tree where pip
# cannot install it). Expects the repository root as the working directory, $py and a note().
site=${GVJAX_DEVICE_SITE:-/tmp/gvjax-device-site}
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
