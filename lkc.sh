#!/usr/bin/env bash
# lkc set-up, build, demo and tests. Every command installs what is missing first (idempotent).
#
#   ./lkc.sh demo    tune a large-kernel network's layers, compile it AOT, run it on an image,
#                    and time it next to ONNX Runtime (LKC_DEMO_MODEL, LKC_DEMO_BUDGET)
#   ./lkc.sh test    build and run the whole test suite (ctest)
#   ./lkc.sh build   install missing packages and build only
#   ./lkc.sh bench   run the kernel benchmark against oneDNN (full grid, ~20 min; BENCH_ARGS=...)
#   ./lkc.sh report  regenerate docs/report.md and its plots from the recorded benchmark CSVs
#   ./lkc.sh setup   install missing packages only
#
# Environment: LKC_BUILD_DIR (default ./build), LKC_JOBS (default: nproc).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
build="${LKC_BUILD_DIR:-$here/build}"
jobs="${LKC_JOBS:-$(nproc)}"

# Debian packages (see docs/dependencies.md for why each is here).
apt_packages=(
    g++ git python3 python3-pip
    libdnnl-dev nlohmann-json3-dev libcli11-dev libpng-dev
    libgtest-dev libgmock-dev libbenchmark-dev
    pocl-opencl-icd ocl-icd-opencl-dev opencl-headers clinfo
    clang libclang-rt-14-dev
    dataset-fashion-mnist
)
# PyPI packages: Halide's wheel (C++ headers, libHalide, CMake package), CMake >= 3.28, Ninja;
# onnx and onnxruntime (with numpy) for the ONNX export test (tests/graph/onnx_check.py);
# matplotlib for the report's plots (benchmarks/report.py).
pip_packages=("halide==21.0.0" "cmake>=3.28" "ninja" "onnx>=1.15" "onnxruntime>=1.17" "matplotlib")

log() { echo "lkc.sh: $*" >&2; }

setup_apt() {
    local missing=()
    for p in "${apt_packages[@]}"; do
        if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
            missing+=("$p")
        fi
    done
    if ((${#missing[@]})); then
        log "installing Debian packages: ${missing[*]}"
        local sudo=""
        [ "$(id -u)" -ne 0 ] && sudo="sudo"
        $sudo apt-get update -qq
        DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}" >/dev/null
    fi
}

setup_pip() {
    if ! python3 - <<'EOF' 2>/dev/null
import importlib.metadata as m
assert m.version("halide") == "21.0.0"
def at_least(p, v):
    assert tuple(int(x) for x in m.version(p).split(".")[:2]) >= v
at_least("cmake", (3, 28))
m.version("ninja")
at_least("onnx", (1, 15))
at_least("onnxruntime", (1, 17))
m.version("numpy")
m.version("matplotlib")
EOF
    then
        log "installing PyPI packages: ${pip_packages[*]}"
        # A Debian system Python refuses user installs (PEP 668); the machine's own pyenv Python
        # does not. Retry with the override only in the first case.
        python3 -m pip install -q --disable-pip-version-check "${pip_packages[@]}" ||
            python3 -m pip install -q --disable-pip-version-check --break-system-packages \
                "${pip_packages[@]}"
    fi
}

setup() {
    setup_apt
    setup_pip
    # Use the PyPI CMake and Ninja whatever else is on PATH.
    cmake_bin="$(python3 -c 'import cmake; print(cmake.CMAKE_BIN_DIR)')/cmake"
    ninja_bin="$(python3 -c 'import ninja, os; print(os.path.join(ninja.BIN_DIR, "ninja"))')"
    halide_root="$(python3 -c 'import halide; print(halide.install_dir())')"
    export PATH="$(dirname "$ninja_bin"):$PATH"
}

build() {
    setup
    if [ ! -f "$build/CMakeCache.txt" ]; then
        log "configuring in $build"
        "$cmake_bin" -S "$here" -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=Release \
            -DCMAKE_MAKE_PROGRAM="$ninja_bin" -DHalide_ROOT="$halide_root" >/dev/null
    fi
    log "building (Halide generators compile every kernel variant for CPU, OpenCL and CUDA; the first build takes several minutes)"
    "$cmake_bin" --build "$build" -j "$jobs"
}

demo() {
    build
    local lkc="$build/tools/lkc" model="${LKC_DEMO_MODEL:-replknet-31b}" budget="${LKC_DEMO_BUDGET:-15}"
    demo_tmp="$(mktemp -d)"
    trap 'rm -rf "$demo_tmp"' EXIT
    local tmp="$demo_tmp"
    export POCL_CACHE_DIR="$tmp/pocl" HL_NUM_THREADS="${HL_NUM_THREADS:-2}"
    echo "== lkc demo: $model, 224x224, batch 1, this machine's CPU (2 threads)"
    echo "== 1. tune the depth-wise layers it runs (${budget} s each; records in $tmp/records.jsonl)"
    "$lkc" inspect --model "$model" --workloads > "$tmp/workloads.txt"
    cat "$tmp/workloads.txt"
    "$lkc" tune --shapes "$tmp/workloads.txt" --budget "$budget" --records "$tmp/records.jsonl" -q
    echo "== 2. compile it ahead of time (standalone binary, no libHalide) with the tuned kernels"
    "$lkc" compile --model "$model" --records "$tmp/records.jsonl" -o "$tmp/aot"
    echo "== 3. an image: the first Fashion-MNIST test image (Debian dataset-fashion-mnist) as PPM"
    python3 - "$tmp/img.ppm" <<'PY'
import gzip, sys
d = gzip.open("/usr/share/datasets/fashion-mnist/t10k-images-idx3-ubyte.gz").read()[16:16 + 784]
with open(sys.argv[1], "wb") as f:
    f.write(b"P6\n28 28\n255\n" + bytes(v for p in d for v in (p, p, p)))
PY
    echo "== 4. run the AOT binary (no checkpoint given: weights from a seed, so the classes mean nothing)"
    "$tmp/aot/$model" --input "$tmp/img.ppm" --repeat 10
    echo "== 5. the same model through ONNX Runtime (CPU, all graph optimisations, 2 threads)"
    "$lkc" export --onnx --model "$model" -o "$tmp/$model.onnx"
    python3 - "$tmp/$model.onnx" <<'PY' || log "ONNX Runtime is not available (pip install onnxruntime)"
import statistics, sys, time
import numpy as np
import onnxruntime as ort
so = ort.SessionOptions()
so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
so.intra_op_num_threads = 2
s = ort.InferenceSession(sys.argv[1], so, providers=["CPUExecutionProvider"])
x = np.random.default_rng(0).standard_normal((1, 3, 224, 224)).astype(np.float32)
s.run(None, {"x": x})
ms = []
for _ in range(5):
    t = time.perf_counter(); s.run(None, {"x": x}); ms.append((time.perf_counter() - t) * 1e3)
print(f"ONNX Runtime {ort.__version__}: median {statistics.median(ms):.2f} ms over 5 runs")
PY
    echo "== lkc demo done: compare the AOT binary's median above with ONNX Runtime's"
}

run_tests() {
    build
    log "running the test suite (ctest)"
    cd "$build"
    local ctest_bin
    ctest_bin="$(dirname "$cmake_bin")/ctest"
    "$ctest_bin" --output-on-failure -j "$jobs" --timeout 1800
}

bench() {
    build
    cd "$build"
    "$build/benchmarks/bench_dwconv2d" ${BENCH_ARGS:-}
}

case "${1:-}" in
    demo) demo ;;
    test) run_tests ;;
    build) build ;;
    bench) bench ;;
    report) setup_pip && python3 "$(dirname "$0")/benchmarks/report.py" ;;
    setup) setup ;;
    *)
        sed -n '2,12p' "$0" | sed 's/^# \{0,1\}//'
        exit 2
        ;;
esac
