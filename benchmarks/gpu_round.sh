#!/usr/bin/env bash
# The GPU figures of docs/performance.md in one run (a few minutes on one GPU): the trainer's
# epoch vs a bare loop on the device, device tensors vs a DataLoader, and small trials sharing
# the GPU (what fractional `resources.gpu` packs). Run from the repository root with a Python
# that has torch and torchvision (PYTHON, default python3); figures go to ${OUT:-gpu-out}/,
# one file per benchmark. A benchmark that fails is reported and the others still run.
#
# Fashion-MNIST comes from the Debian package's files; where the package is not installed
# (a bare GPU machine), copy /usr/share/datasets/fashion-mnist/*.gz into .devdata/fashion-mnist/
# (ignored by .gitignore) and bring that folder along.
set -uo pipefail
out=${OUT:-gpu-out}
py=${PYTHON:-python3}
device=${DEVICE:-cuda}
mkdir -p "$out"
export PYTHONUNBUFFERED=1 PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
debian=/usr/share/datasets/fashion-mnist
if [ ! -d "$debian" ] && [ -d .devdata/fashion-mnist ]; then
    mkdir -p "$debian" && cp .devdata/fashion-mnist/*.gz "$debian/"
fi
failed=0
step() {  # step NAME ARGS...: python -m ARGS, its output to $out/NAME.txt
    local name=$1
    shift
    echo "== $name"
    if ! "$py" -m "$@" 2>&1 | tee "$out/$name.txt"; then
        echo "== $name FAILED" | tee -a "$out/$name.txt"
        failed=1
    fi
}
{ nvidia-smi -L || true
  "$py" -c "import torch; print('torch', torch.__version__, torch.cuda.is_available() and torch.cuda.get_device_name())"
} 2>&1 | tee "$out/device.txt"
step trainer_vs_bare benchmarks.bench_trainer_vs_bare --device "$device" \
    --models lenet_300_100 conv2 --epochs 3
step data_path benchmarks.bench_data_path --device "$device"
step gpu_sharing benchmarks.bench_gpu_sharing --device "$device" --procs 1 2 4 8 --trials 16
exit "$failed"
