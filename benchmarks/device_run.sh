#!/usr/bin/env bash
# One prepared device check (GPU machine, no network), ~9 minutes: BruteForce.fit throughput on a
# ~600k-model synthetic grid with batches of 512 stars and 1, 2 or 3 host threads feeding the one
# device (per-stage times and a device trace for 1 thread), then batches of 1024 stars while the
# BruteForce/sedfit tests run on the GPU in the background.  Logs go to $OUT (default ./device_out).
# Usage: bash benchmarks/device_run.sh   (smaller: NFEH=8 NSTARS=256 B1=64 B2=128 bash ...)
OUT=${OUT:-device_out}
NFEH=${NFEH:-72}; NSTARS=${NSTARS:-4096}; B1=${B1:-512}; B2=${B2:-1024}
mkdir -p "$OUT"
export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH} PYTHONUNBUFFERED=1
quiet() { grep -v "^WARNING\|^E0000\|^I0000\|^W0000"; }
{ date; nvidia-smi -L; python3 -c "import jax; print(jax.__version__, jax.devices())"; } 2>&1 | tee "$OUT/env.log"
timeout ${T1:-300} python3 benchmarks/bench_fit_device.py --n-feh $NFEH --nstars $NSTARS --batch-size $B1 \
    --threads 1 2 3 --stages --trace /tmp/bjtrace --budget $((${T1:-300} - 40)) 2>&1 | quiet | tee "$OUT/bench_b1.log"
f=$(ls -t /tmp/bjtrace/plugins/profile/*/perfetto_trace.json.gz 2>/dev/null | head -1)
[ -n "$f" ] && cp "$f" "$OUT/perfetto_b1.json.gz"
# the tests allocate device memory on demand beside the benchmark (their kernels are tiny)
XLA_PYTHON_CLIENT_PREALLOCATE=false timeout ${T3:-220} python3 -m pytest -q -x -p no:cacheprovider \
    tests/test_sedfit.py tests/test_bruteforce.py -k "not killed" > "$OUT/tests.log" 2>&1 &
XLA_PYTHON_CLIENT_MEM_FRACTION=.7 timeout ${T2:-220} python3 benchmarks/bench_fit_device.py --n-feh $NFEH \
    --nstars $NSTARS --batch-size $B2 --threads 2 1 --budget $((${T2:-220} - 30)) 2>&1 | quiet | tee "$OUT/bench_b2.log"
wait
date >> "$OUT/env.log"
tail -15 "$OUT/tests.log"
