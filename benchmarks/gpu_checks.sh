#!/usr/bin/env bash
# The checks that need a GPU, in one command, for a CUDA machine that reaches no package index (its Python 3.12 has
# torch, transformers, accelerate, peft, httpx and uvloop, not the server's packages nor diffusers):
#
#   bash benchmarks/gpu_checks.sh prepare   # on a machine with pip's index: those wheels, into .whl/ (gitignored)
#   bash benchmarks/gpu_checks.sh run       # on the GPU machine, with .whl/ copied along
#
# `run` installs the wheels under /tmp/site, imports diffblocks from this checkout, then runs, each under its own
# time limit so that one hang leaves the others' results (about 9 minutes at most): the tests marked gpu;
# bench_server.py on cuda:0 with 512 px images, in one process and with --engine-process (issue 19: is the server
# within 5 % of the engine there?); bench_lora.py. Each log lands in $OUT (or out/ without it).
set -u
cd "$(dirname "$0")/.."
WHEELS=(fastapi==0.165.0 starlette==1.10.0 uvicorn==0.54.0 httptools==0.9.0 websockets==17.4
        python-multipart==0.0.34 pydantic==2.13.4 pydantic-core==2.46.4 annotated-types==0.7.0
        typing-inspection==0.4.2 diffusers==0.42.1 importlib-metadata==10.2.0)

case "${1:-}" in
prepare)
  platforms=()
  for n in 17 24 27 28 31 34; do platforms+=(--platform "manylinux_2_${n}_x86_64"); done
  python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    "${platforms[@]}" --platform manylinux2014_x86_64 -d .whl "${WHEELS[@]}" || exit
  du -sh .whl
  ;;
run)
  out="${OUT:-out}"
  mkdir -p "$out" /tmp/pkg
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
    || exit
  ln -sfn "$PWD" /tmp/pkg/diffblocks
  export PYTHONPATH=/tmp/pkg:/tmp/site PYTHONUNBUFFERED=1
  { nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader
    python3 -c "import torch, transformers; print('torch', torch.__version__, 'transformers', transformers.__version__)"
  } > "$out/machine.txt" 2>&1
  timeout 150 python3 -m pytest -m gpu -p no:cacheprovider tests/components tests/nodes tests/presets \
    > "$out/pytest_gpu.log" 2>&1
  echo "pytest -m gpu: exit $?" >> "$out/summary.txt"
  for mode in "" --engine-process; do
    timeout 140 python3 benchmarks/bench_server.py --device cuda:0 --size 512 --sessions 2 --rounds 10 $mode \
      > "$out/bench_server${mode:+_engine_process}.log" 2>&1
    echo "bench_server ${mode:-in one process}: exit $?" >> "$out/summary.txt"
  done
  timeout 80 python3 benchmarks/bench_lora.py > "$out/bench_lora.log" 2>&1
  echo "bench_lora: exit $?" >> "$out/summary.txt"
  cat "$out/summary.txt"
  ;;
*)
  echo "usage: bash benchmarks/gpu_checks.sh prepare|run" >&2
  exit 2
  ;;
esac
