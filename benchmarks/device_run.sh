#!/usr/bin/env bash
# One prepared device check (GPU machine, no network): throughput with a stage breakdown and a
# device trace on a ~600k-model synthetic grid, a larger batch, group sizes and the serial star loop
# compared, then the BruteForce/sedfit tests on the GPU.  Writes logs to $OUT (default ./device_out).
# Usage: bash benchmarks/device_run.sh
OUT=${OUT:-device_out}
mkdir -p "$OUT"
export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH} PYTHONUNBUFFERED=1
nvidia-smi -L 2>&1 | tee "$OUT/env.log"
python3 -c "import jax; print(jax.__version__, jax.devices())" 2>&1 | tee -a "$OUT/env.log"
timeout ${T1:-200} python3 benchmarks/bench_fit_device.py --n-feh 72 --nstars 4096 --batch-size 512 --stages \
    --trace /tmp/bjtrace 2>&1 | grep -v "^WARNING\|^E0000\|^I0000" | tee "$OUT/bench512.log"
f=$(ls -t /tmp/bjtrace/plugins/profile/*/perfetto_trace.json.gz 2>/dev/null | head -1)
[ -n "$f" ] && cp "$f" "$OUT/perfetto512.json.gz"
timeout ${T2:-100} python3 benchmarks/bench_fit_device.py --n-feh 72 --nstars 4096 --batch-size 1024 2>&1 \
    | grep -v "^WARNING\|^E0000\|^I0000" | tee "$OUT/bench1024.log"
# the session-8 group size against the device default, and the CPU's serial star loop on the GPU
timeout ${T4:-200} python3 benchmarks/bench_fit_device.py --n-feh 72 --nstars 4096 --batch-size 512 \
    --group-bytes 2147483648 auto --serial off on 2>&1 | grep -v "^WARNING\|^E0000\|^I0000" | tee "$OUT/compare.log"
timeout ${T3:-150} python3 -m pytest -q -x -p no:cacheprovider tests/test_sedfit.py tests/test_bruteforce.py \
    -k "not killed" 2>&1 | tail -15 | tee "$OUT/tests.log"
