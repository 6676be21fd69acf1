#!/bin/bash
# The GPU path's check, as one script for a lent GPU machine with a short lease: a gpu-tier run of
# kd with r2plus1d-18 on synth at 112 px x 16 frames (STUDENT_STEPS and teacher steps, default
# 600), eager and compiled (torch.compile), each through benchmarks/perf/gpu_busy.py (busy
# fraction, samples/s, peak memory per stage). Generating the data at 112 px takes minutes.
#   bash benchmarks/perf/gpu_check.sh OUTDIR [STUDENT_STEPS] [PHASES]
# PHASES (default data,eager,compiled) lets a short lease split the work over calls to one warm
# machine: generating the data at 112 px took more than 150 s on 16 cores (an H200 machine), so
# `... 600 data` in one call, then `... 600 eager,compiled` in the next (within the warm window).
# Wheels of xbench, its plugins and what the machine lacks may lie in .whl/ (installed into
# /tmp/site); elsewhere xbench must be installed. Each step has its own time limit, so what ran
# is reported even when a later step does not finish.
set -u
out=${1:?OUTDIR}
steps=${2:-600}
phases=${3:-data,eager,compiled}
mkdir -p "$out"
export PYTHONUNBUFFERED=1 XBENCH_DATA=${XBENCH_DATA:-/tmp/xbench-data} XBENCH_HOME=${XBENCH_HOME:-/tmp/xbench-home}
if ls .whl/*.whl >/dev/null 2>&1; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
    && export PYTHONPATH=/tmp/site || { echo "install failed"; exit 1; }
fi
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$out/gpu.txt"
python3 -c "import torch, xbench; print('torch', torch.__version__, 'cuda', torch.version.cuda, torch.cuda.get_device_name())" \
  | tee -a "$out/gpu.txt"
# the data once, with every core (a run's own generation uses at most 4 processes)
if [[ ,$phases, == *,data,* ]]; then
  timeout 400 python3 -c "
from xbench.data.synth import SynthDataset, SynthOptions
SynthDataset(SynthOptions(resolution=112, frames=16), workers=16, log=print)" 2>&1 | tail -3
fi
common=(--method kd --task recognition --student r2plus1d-18 --set dataset.resolution=112 --set dataset.frames=16
        --set budget.student_steps=$steps --set budget.teacher_steps=$steps)
if [[ ,$phases, == *,eager,* ]]; then
  timeout 250 python3 benchmarks/perf/gpu_busy.py "${common[@]}" --warmup-steps 5 --json "$out/eager.json" 2>&1 \
    | grep -v Warning | tee "$out/eager.txt" | tail -12
fi
if [[ ,$phases, == *,compiled,* ]]; then
  timeout 250 python3 benchmarks/perf/gpu_busy.py "${common[@]}" --set student.compile=true --warmup-steps 5 \
    --json "$out/compiled.json" 2>&1 | grep -v Warning | tee "$out/compiled.txt" | tail -12
fi
