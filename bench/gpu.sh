#!/usr/bin/env bash
# The GPU run of bench/: on a machine with a CUDA GPU, a venv of its own with a CUDA build of torch, then
# on the GPU the explanation table (ours against pytorch-grad-cam and monai.visualize, bench_explain.py),
# the price of resolution (bench_resolution.py) and `cxrxai batch` throughput (bench_batch.py). Sized to
# finish within 5 minutes on one current data-centre GPU; each step is also bounded by `timeout`.
#
#   bench/gpu.sh [OUTPUT_FOLDER]         measure; each table also goes to OUTPUT_FOLDER (default build/gpu)
#   bench/gpu.sh --download WHEEL_FOLDER on a machine with PyPI: fetch the wheels an offline GPU machine
#                                        needs beside its own CUDA torch (Python 3.12, manylinux x86-64)
#
# The venv (.venv-gpu): where the machine's python3 already holds a CUDA torch (GPU images usually do), the
# venv sees it (--system-site-packages) and only the project's other needs are installed, from PyPI or,
# offline, from the folder in CXRXAI_WHEELS. Otherwise torch and torchvision come from PyPI, whose Linux
# x86-64 wheels are CUDA builds. Without a CUDA GPU the script says so and measures nothing (exit 2).
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
VENV="$ROOT/.venv-gpu"
STEP_SECONDS="${CXRXAI_GPU_STEP_SECONDS:-150}"
# What the benchmarks import beyond torch, torchvision and what a GPU image usually holds (numpy, scipy,
# pillow, matplotlib, scikit-image, scikit-learn, tqdm, pyyaml): the project's model and node needs.
OFFLINE_WHEELS=(
  monai==1.6.1 pydicom==3.0.2 highdicom==0.28.2 pynetdicom==3.0.4 captum==0.9.0 ttach==0.0.3
  pylibjpeg==2.1.0 pylibjpeg-openjpeg==2.6.0 pylibjpeg-libjpeg==2.5.0 pylibjpeg-rle==2.2.0 pyjpegls==1.5.1
  fire==0.7.1 termcolor==3.3.0 pytorch-ignite==0.5.5 pycocotools==2.0.11 sqlalchemy==2.1.9 alembic==1.20.1
  mako==1.4.3 greenlet==3.5.6 dicognito==0.19.0 prometheus-client==0.26.0 psycopg==3.3.9 psycopg-binary==3.3.9
  threadpoolctl==3.8.0
)

if [[ "${1:-}" == "--download" ]]; then
  folder="${2:?usage: bench/gpu.sh --download WHEEL_FOLDER}"
  mkdir -p "$folder"
  for wheel in "${OFFLINE_WHEELS[@]}"; do
    python3 -m pip download --quiet --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
      --platform manylinux_2_35_x86_64 --platform manylinux_2_34_x86_64 --platform manylinux_2_31_x86_64 \
      --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_24_x86_64 \
      --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 --platform any -d "$folder" "$wheel"
  done
  # pytorch-grad-cam is published as source only: built here into a pure-Python wheel
  python3 -m pip wheel --quiet --no-deps -w "$folder" grad-cam==1.5.7
  echo "wheels for an offline GPU machine in $folder; there: CXRXAI_WHEELS=$folder bench/gpu.sh"
  exit 0
fi

OUTPUT="${1:-$ROOT/build/gpu}"
mkdir -p "$OUTPUT"

has_cuda_torch() { "$1" -c 'import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)' 2>/dev/null; }

if ! command -v nvidia-smi >/dev/null 2>&1 || ! nvidia-smi -L >/dev/null 2>&1; then
  echo "bench/gpu.sh: no CUDA GPU on this machine (nvidia-smi finds none); nothing measured." >&2
  exit 2
fi

if [[ ! -x "$VENV/bin/python" ]]; then
  if has_cuda_torch python3; then
    python3 -m venv --system-site-packages "$VENV"
  else
    python3 -m venv "$VENV"
    "$VENV/bin/python" -m pip install --quiet torch==2.14.1 torchvision==0.29.1
  fi
fi
source_args=()
if [[ -n "${CXRXAI_WHEELS:-}" ]]; then
  source_args=(--no-index --find-links "$CXRXAI_WHEELS")
fi
# No build isolation: an offline machine cannot fetch setuptools into a build environment.
"$VENV/bin/python" -m pip install --quiet --no-build-isolation "${source_args[@]}" -e "$ROOT[model,node]"
# pytorch-grad-cam asks for opencv-python by name; the headless build gives the same cv2 without a display.
"$VENV/bin/python" -m pip install --quiet --no-deps "${source_args[@]}" grad-cam ttach opencv-python-headless
if ! has_cuda_torch "$VENV/bin/python"; then
  echo "bench/gpu.sh: torch in $VENV sees no CUDA GPU; nothing measured." >&2
  exit 2
fi

step() {  # step NAME COMMAND...: run one benchmark, its table on screen and in OUTPUT/NAME.md
  local name="$1"
  shift
  echo "## $name"
  timeout "$STEP_SECONDS" "$@" 2>&1 | tee "$OUTPUT/$name.md"
}

cd "$ROOT"
export PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee "$OUTPUT/machine.txt"
nproc | sed 's/$/ CPU cores/' | tee -a "$OUTPUT/machine.txt"
threads="$(nproc)"
step explain "$VENV/bin/python" bench/bench_explain.py --device cuda --threads "$threads" --bundle "$OUTPUT/bundle"
step resolution "$VENV/bin/python" bench/bench_resolution.py --device cuda
queue=(--no-queue)
if command -v redis-server >/dev/null 2>&1; then
  queue=(--queue)
fi
step batch "$VENV/bin/python" bench/bench_batch.py --device cuda --images 200 "${queue[@]}"
echo "tables in $OUTPUT"
