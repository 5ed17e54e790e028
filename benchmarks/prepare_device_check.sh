#!/usr/bin/env bash
# Prepare the device check (issue 12), here, where pip works: everything the lent machine lacks
# goes into the git-ignored folder .whl/, which the device `run` call carries (64 MiB in all,
# with the working tree). Prints that call last.
#   bash benchmarks/prepare_device_check.sh [GIT_DIR of NVlabs/stylegan2-ada-pytorch]
#
# - Wheels for the device's python3 (3.12, KINDS.md; DEVICE_PYTHON=3.x for another) of what
#   gvjax needs and the image lacks: librosa and its missing dependencies (numba, llvmlite,
#   scikit-learn, scipy, joblib, msgpack, lazy-loader are in the image), soundfile (with
#   libsndfile), soxr, cffi. The versions are the ones tested here.
# - ffmpeg: imageio-ffmpeg 0.7.0's wheel without its 80 MB binary (0.8's is 173 MB), and that
#   binary (ffmpeg 7.0.2) xz-compressed, ~21 MB; device_check.sh unpacks it (IMAGEIO_FFMPEG_EXE).
# - NVIDIA's stylegan2-ada-pytorch code (dnnlib, torch_utils, training; never committed), from a
#   git mirror: in this workplace the `fetch` tool's github:NVlabs/stylegan2-ada-pytorch.
# - The device check song's audio features, analysed here: used only where librosa fails there.
set -euo pipefail
cd "$(dirname "$0")/.."
py=${PYTHON:-$( [ -x .venv/bin/python ] && echo .venv/bin/python || echo python3 )}
pyver=${DEVICE_PYTHON:-3.12}
nvidia_git=${1:-${NVIDIA_GIT_DIR:-/work/.mirror/NVlabs+stylegan2-ada-pytorch/repo}}
wheels=(librosa==0.11.0 soxr==1.1.0 soundfile==0.14.0 audioread==3.1.0 decorator==5.3.1 pooch==1.9.0
        platformdirs==4.14.9 cffi==2.1.1 pycparser==3.12)
ffmpeg_wheel=imageio-ffmpeg==0.7.0
download() {
  "$py" -m pip download -q --no-deps --only-binary=:all: --python-version "$pyver" --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_17_x86_64 \
    --platform manylinux2014_x86_64 --platform manylinux2010_x86_64 --platform manylinux1_x86_64 -d "$@"
}

mkdir -p .whl
rm -f .whl/*.whl .whl/ffmpeg.xz
download .whl "${wheels[@]}"

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
download "$tmp" "$ffmpeg_wheel"
"$py" - "$tmp"/imageio_ffmpeg-*.whl .whl <<'EOF'
"""Split imageio-ffmpeg's wheel: the package without its ffmpeg binary (a py3-none-any wheel),
and the binary, xz-compressed, as .whl/ffmpeg.xz."""
import lzma, pathlib, shutil, subprocess, sys, zipfile

src, dst = pathlib.Path(sys.argv[1]), pathlib.Path(sys.argv[2])
name, version = src.name.split("-")[:2]
binary = None
with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dst / f"{name}-{version}-py3-none-any.whl", "w", zipfile.ZIP_DEFLATED) as zout:
    for info in zin.infolist():
        data = zin.read(info)
        if "/binaries/ffmpeg-" in info.filename:
            binary = data
            continue
        if info.filename.endswith(".dist-info/RECORD"):
            data = b"".join(line for line in data.splitlines(True) if b"/binaries/ffmpeg-" not in line)
        if info.filename.endswith(".dist-info/WHEEL"):  # one tag: what the wheel now is
            lines = [line for line in data.splitlines(True) if not line.startswith(b"Tag:")]
            data = b"".join(lines) + b"Tag: py3-none-any\n"
        zout.writestr(info, data)
out = dst / "ffmpeg.xz"
raw = dst / "ffmpeg.raw"
raw.write_bytes(binary)
if shutil.which("xz"):
    subprocess.run(["xz", "-9e", "-T0", "-f", "-k", "-c", str(raw)], stdout=open(out, "wb"), check=True)
else:
    out.write_bytes(lzma.compress(binary, preset=9 | lzma.PRESET_EXTREME))
raw.unlink()
EOF

if [ -d "$nvidia_git" ]; then
  rm -rf .whl/stylegan2-ada-pytorch && mkdir -p .whl/stylegan2-ada-pytorch
  git --git-dir="$nvidia_git" archive --format=tar HEAD dnnlib torch_utils training LICENSE.txt | tar -x -C .whl/stylegan2-ada-pytorch
else
  echo "no git mirror of NVlabs/stylegan2-ada-pytorch at $nvidia_git (fetch github:NVlabs/stylegan2-ada-pytorch);" \
       "the check's nvidia part will record a skip" >&2
fi

JAX_PLATFORMS=cpu "$py" benchmarks/device_check.py --save-features .whl/device_check_features.npz
echo "$(git rev-parse --short HEAD)$( [ -z "$(git status --porcelain --untracked-files=no)" ] || echo '+changes')" >.whl/commit.txt

echo "carried in .whl/ (bytes):"
(cd .whl && du -b ./*.whl ffmpeg.xz device_check_features.npz commit.txt && { [ ! -d stylegan2-ada-pytorch ] || du -sb stylegan2-ada-pytorch; }) | sort -n
{ git ls-files -z; git ls-files -z -o --exclude-standard; } | "$py" -c '
import os, sys
tree = sum(os.path.getsize(p) for p in sys.stdin.read().split("\0") if p and os.path.isfile(p))
whl = sum(os.path.getsize(os.path.join(d, f)) for d, _, fs in os.walk(".whl") for f in fs)
mib = 1 << 20
print(f"working tree {tree / mib:.1f} MiB + .whl {whl / mib:.1f} MiB = {(tree + whl) / mib:.1f} MiB of the 64 MiB a device call carries")
if tree + whl >= 64 * mib:
    sys.exit("OVER THE LIMIT: ignore or carry less")
'
cat <<'EOF'

The device call (tool `run`), once, when `status` says this task has a machine:
  command:   bash benchmarks/device_check.sh
  carry:     [".whl"]
  timeout_s: 540
Its table ends the output; device_check.json, device_check.md and device_check.log come back from $OUT.
EOF
