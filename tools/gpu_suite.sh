#!/usr/bin/env bash
# The GPU half of the suite, as run on a lent GPU machine (no network there): from the checkout,
# with Keras and its two missing dependencies carried as wheels in .whl/ (tools/gpu_suite.sh
# documents the download). Writes under $OUT (default ./gpu-out):
#   cuda/           adamw-conformance run --device cuda --distributed (NCCL at the world sizes
#                   the GPUs allow, gloo at 2 and 4 ranks, JAX sharding, FedAvg)
#   cpu-same-host/  adamw-conformance run --device cpu on the same host
#   cpu-vs-cuda/    adamw-conformance compare of the two
#   env.txt, *.log  what ran where
# Download the wheels here first (Python 3.12 on the GPU image):
#   pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
#     --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 -d .whl \
#     keras==3.15.1 namex optree
set -u
OUT=${OUT:-$PWD/gpu-out}
mkdir -p "$OUT"
if ls .whl/*.whl >/dev/null 2>&1; then
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
        --target /tmp/site .whl/*.whl || exit 1
    export PYTHONPATH=/tmp/site:$PWD
else
    export PYTHONPATH=$PWD
fi
export PYTHONUNBUFFERED=1 NVIDIA_TF32_OVERRIDE=0
AC="python3 -m conformance.cli"
JOBS=${JOBS:-6}
{
    date -u; nvidia-smi -L; python3 -V
    KERAS_BACKEND=jax python3 -c 'import torch, jax, optax, keras; print("torch", torch.__version__, "cuda", torch.version.cuda,
"jax", jax.__version__, jax.devices(), "optax", optax.__version__, "keras", keras.__version__)'
} > "$OUT/env.txt" 2>&1
t0=$(date +%s)
timeout "${CUDA_LIMIT:-330}" $AC run --device cuda --distributed --jobs "$JOBS" --no-progress --no-render \
    --out "$OUT/cuda" > "$OUT/cuda.log" 2>&1 &
cuda=$!
timeout "${CPU_LIMIT:-300}" $AC run --device cpu --jobs "$JOBS" --no-progress --no-render \
    --out "$OUT/cpu-same-host" > "$OUT/cpu.log" 2>&1 &
cpu=$!
wait $cuda; echo "cuda run exit $? after $(( $(date +%s) - t0 )) s" | tee -a "$OUT/env.txt"
wait $cpu; echo "cpu run exit $? after $(( $(date +%s) - t0 )) s" | tee -a "$OUT/env.txt"
$AC compare "$OUT/cpu-same-host" "$OUT/cuda" --out "$OUT/cpu-vs-cuda" > "$OUT/compare.log" 2>&1
echo "compare exit $? after $(( $(date +%s) - t0 )) s" | tee -a "$OUT/env.txt"
tail -n 5 "$OUT"/*.log
