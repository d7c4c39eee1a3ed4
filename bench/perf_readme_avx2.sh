#!/usr/bin/env bash
# The README's second performance table: bench/perf_readme.py with every library held to AVX2
# (no AVX-512) on an AVX-512 machine — an EMULATION of an AVX2-only CPU, not one:
#   nnfast's Cython kernels  the portable build (pip install ., no NNFAST_NATIVE): baseline x86-64
#   nnfast's Numba kernels   NUMBA_CPU_NAME=haswell + Haswell's feature list (LLVM emits no zmm)
#   NumPy's own SIMD loops   NPY_DISABLE_CPU_FEATURES: no X86_V4 / AVX512_* dispatch
#   OpenBLAS (GEMMs)         OPENBLAS_CORETYPE=Haswell
#   torch / XLA (peers)      ATEN_CPU_CAPABILITY=avx2 / XLA_FLAGS=--xla_cpu_max_isa=AVX2
# What stays this machine's: its caches, memory bandwidth, clock and core count.
#
#   bash bench/perf_readme_avx2.sh [--json run.json]
set -euo pipefail
cd "$(dirname "$0")/.."
haswell="+64bit,+avx,+avx2,+bmi,+bmi2,+cmov,+cx16,+f16c,+fma,+fsgsbase,+fxsr,+lzcnt,+mmx,+movbe"
haswell+=",+pclmul,+popcnt,+rdrnd,+sahf,+sse,+sse2,+sse3,+sse4.1,+sse4.2,+ssse3,+xsave,+xsaveopt"
exec env -u OPENBLAS_L2_SIZE OPENBLAS_CORETYPE=Haswell \
  NUMBA_CPU_NAME=haswell NUMBA_CPU_FEATURES="$haswell" \
  NPY_DISABLE_CPU_FEATURES="X86_V4 AVX512_ICL AVX512_SPR" \
  ATEN_CPU_CAPABILITY=avx2 XLA_FLAGS=--xla_cpu_max_isa=AVX2 \
  python bench/perf_readme.py "$@" --label "AVX2 EMULATED on this AVX-512 CPU \
(bench/perf_readme_avx2.sh: Numba for Haswell, NumPy/OpenBLAS/torch/XLA held to AVX2, portable \
Cython build); not a real AVX2 machine."
