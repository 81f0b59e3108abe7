#!/usr/bin/env bash
# The GPU figures of docs/performance.md in one run (a few minutes on one GPU): the trainer's
# epoch vs a bare loop on the device, device tensors vs a DataLoader, and small trials sharing
# the GPU (what fractional `resources.gpu` packs). Run from the repository root with a Python
# that has torch and torchvision (PYTHON, default python3); figures go to ${OUT:-gpu-out}/.
#
# Fashion-MNIST comes from the Debian package's files; where the package is not installed
# (a bare GPU machine), copy /usr/share/datasets/fashion-mnist/*.gz into .devdata/fashion-mnist/
# (ignored by .gitignore) and bring that folder along.
set -euo pipefail
out=${OUT:-gpu-out}
py=${PYTHON:-python3}
mkdir -p "$out"
export PYTHONUNBUFFERED=1 PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
debian=/usr/share/datasets/fashion-mnist
if [ ! -d "$debian" ] && [ -d .devdata/fashion-mnist ]; then
    mkdir -p "$debian" && cp .devdata/fashion-mnist/*.gz "$debian/"
fi
{ nvidia-smi -L || true
  "$py" -c "import torch; print('torch', torch.__version__, torch.cuda.get_device_name())"
} | tee "$out/device.txt"
"$py" -m benchmarks.bench_trainer_vs_bare --device cuda --models lenet_300_100 conv2 \
    --epochs 3 | tee "$out/trainer_vs_bare.txt"
"$py" -m benchmarks.bench_data_path --device cuda | tee "$out/data_path.txt"
"$py" -m benchmarks.bench_gpu_sharing --device cuda --procs 1 2 4 8 --trials 16 \
    | tee "$out/gpu_sharing.txt"
