#!/usr/bin/env bash
# The GPU run, on a machine that has torch and torchvision but no network, no Ray, no
# torch-fidelity and no Fashion-MNIST (one H200 was the target), in under 8 minutes:
#   bash bench/gpu.sh --prepare      here, once: .whl/ (torch-fidelity's wheel) and .fmnist/ (the
#                                    IDX files), both git-ignored, to carry to the GPU machine
#   bash bench/gpu.sh                there, from the repo root: the CUDA tests (pytest -m gpu),
#                                    then python -m bench train fid mfu packing quality --quick;
#                                    the JSON and both logs land in $OUT (default bench/results/)
#   bash bench/gpu.sh --smoke        the same plumbing on a CPU, with the fid row only
# Nothing here needs Ray: trial packing runs plain processes, as Ray's fractional GPUs do.
set -euo pipefail
cd "$(dirname "$0")/.."

fmnist_src=${GAN_FMNIST_DIR:-/usr/share/datasets/fashion-mnist}
if [[ ${1:-} == --prepare ]]; then
  version=$(sed -n 's/^torch-fidelity==//p' constraints.txt)
  mkdir -p .whl .fmnist
  python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 \
    -d .whl "torch-fidelity==$version"
  cp "$fmnist_src"/*-ubyte.gz .fmnist/
  ls -l .whl .fmnist
  exit 0
fi

smoke=0
[[ ${1:-} == --smoke ]] && smoke=1
out=${OUT:-bench/results}
mkdir -p "$out"
site=$(mktemp -d /tmp/gan-site.XXXXXX)
data=$(mktemp -d /tmp/gan-data.XXXXXX)
trap 'rm -rf "$site" "$data"' EXIT
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target "$site" .whl/*.whl
export PYTHONPATH="$site:$PWD" PYTHONUNBUFFERED=1 GAN_FMNIST_DIR="$PWD/.fmnist"
python3 -c "import torch; print('torch', torch.__version__, 'cuda', torch.cuda.is_available())"
if [[ $smoke == 0 ]]; then
  python3 -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 'no CUDA GPU here')"
fi

# a random-weights Inception of the standard layout: the standard file cannot be downloaded here,
# times do not depend on the weights, and the JSON says which weights each FID used
mkdir -p "$data/cache"
export GAN_FID_WEIGHTS="$data/cache/random-inception.pth"
python3 -c "
import sys; from pathlib import Path
from bench.inception import build_random_inception
build_random_inception(Path(sys.argv[1]), Path(sys.argv[2]))" "$GAN_FID_WEIGHTS" "$GAN_FMNIST_DIR"

set +e
timeout 180 python3 -m pytest -q -m gpu tests/test_gpu.py 2>&1 | tee "$out/gpu-tests.log"
tests=${PIPESTATUS[0]}
rows=train,fid,mfu,packing,quality
[[ $smoke == 1 ]] && rows=fid
timeout 330 python3 -m bench --only "$rows" --quick --data-dir "$data" \
  --recipes fmnist,seed001-v2 2>&1 | tee "$out/gpu-bench.log"
bench=${PIPESTATUS[0]}
set -e
saved=$(sed -n 's/^saved //p' "$out/gpu-bench.log" | tail -1)
if [[ -n $saved && $out != bench/results ]]; then cp "$saved" "$out/"; fi
echo "tests exit $tests, bench exit $bench, results ${saved:-none}"
[[ $tests == 0 && $bench == 0 ]]
