#!/usr/bin/env bash
# One prepared device check (GPU machine, no network), ~6 minutes: BruteForce.fit throughput on a
# ~600k-model synthetic grid with fit's GPU defaults (batch from the device's memory, 2 host
# threads) for 65,536 stars, with a device trace of one batch; the BruteForce/sedfit tests on the
# GPU in the background throughout.  Optional: STAGES=1 (per-stage times, one thread; +~2 min at
# this N), MAG=1 (the magnitude stage's layouts side by side, ~1 min).  Extra XLA flags to compare
# (e.g. XLA_FLAGS=--xla_gpu_enable_command_buffer=) go in the environment: each setting compiles
# anew (~140-250 s), so compare settings in separate leases or calls.  Logs go to $OUT
# (default ./device_out).  Session 15 (H100, before the sort-free top-k): 3,164 stars/s.
# Usage: bash benchmarks/device_run.sh   (smaller: NFEH=8 NSTARS=256 bash ...)
OUT=${OUT:-device_out}
NFEH=${NFEH:-72}; NSTARS=${NSTARS:-65536}
mkdir -p "$OUT"
export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH} PYTHONUNBUFFERED=1
quiet() { grep -v "^WARNING\|^E0000\|^I0000\|^W0000\|^W1[0-9]"; }
{ date; nvidia-smi -L; echo "XLA_FLAGS=$XLA_FLAGS"; python3 -c "import jax; print(jax.__version__, jax.devices())"; } 2>&1 | tee "$OUT/env.log"
# the tests allocate device memory on demand beside the benchmarks (their kernels are tiny)
XLA_PYTHON_CLIENT_PREALLOCATE=false timeout ${T3:-420} python3 -m pytest -q -p no:cacheprovider \
    tests/test_sedfit.py tests/test_bruteforce.py -k "not killed" > "$OUT/tests.log" 2>&1 &
XLA_PYTHON_CLIENT_MEM_FRACTION=.7 timeout ${T1:-400} python3 benchmarks/bench_fit_device.py --n-feh $NFEH \
    --nstars $NSTARS --batch-size auto --threads auto --trace /tmp/bjtrace ${STAGES:+--stages} \
    --budget $((${T1:-400} - 60)) 2>&1 | quiet | tee "$OUT/bench_auto.log"
f=$(ls -t /tmp/bjtrace/plugins/profile/*/perfetto_trace.json.gz 2>/dev/null | head -1)
[ -n "$f" ] && cp "$f" "$OUT/perfetto.json.gz"
[ -n "$MAG" ] && XLA_PYTHON_CLIENT_MEM_FRACTION=.7 timeout ${T2:-60} python3 benchmarks/bench_mag_stage.py \
    --n-feh $NFEH --batch 1024 --layouts vmap minor 2>&1 | quiet | tee "$OUT/mag.log"
wait
date >> "$OUT/env.log"
tail -15 "$OUT/tests.log"
