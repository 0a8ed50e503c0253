#!/usr/bin/env bash
# lkc set-up, build, demo and tests. Every command installs what is missing first (idempotent).
#
#   ./lkc.sh demo    build and run the dense large-kernel conv on an example, print result and speed
#   ./lkc.sh test    build and run the whole test suite (ctest)
#   ./lkc.sh build   install missing packages and build only
#   ./lkc.sh bench   run the kernel benchmark against oneDNN (full grid, ~20 min; BENCH_ARGS=...)
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
# onnx and onnxruntime (with numpy) for the ONNX export test (tests/graph/onnx_check.py).
pip_packages=("halide==21.0.0" "cmake>=3.28" "ninja" "onnx>=1.15" "onnxruntime>=1.17")

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
    local lkc="$build/tools/lkc"
    demo_tmp="$(mktemp -d)"
    trap 'rm -rf "$demo_tmp"' EXIT
    local tmp="$demo_tmp"
    export POCL_CACHE_DIR="$tmp/pocl"
    echo "== lkc demo: RepLKNet-31B's stage-1 large-kernel layer, 31x31 depth-wise, N1 C128 56x56"
    local wl
    for wl in dwconv2d:fwd:n1c128h56w56:k31x31:f32 dwconv2d:bwd_data:n1c128h56w56:k31x31:f32 \
        dwconv2d:bwd_weight:n1c128h56w56:k31x31:f32; do
        "$lkc" example "$wl" -o "$tmp/in.safetensors"
        "$lkc" op "$wl" --inputs "$tmp/in.safetensors" --outputs "$tmp/out.safetensors" \
            --repeat 20 --check
    done
    echo "== the same forward through OpenCL (PoCL runs it on this CPU; correctness, not speed)"
    wl=dwconv2d:fwd:n1c128h56w56:k31x31:f32
    "$lkc" example "$wl" -o "$tmp/in.safetensors"
    "$lkc" op "$wl" --inputs "$tmp/in.safetensors" --outputs "$tmp/out_cl.safetensors" \
        --device opencl --check || log "OpenCL device unavailable (see message above)"
    echo "== side by side with oneDNN in one process (median of repetitions, 2 threads)"
    if [ -x "$build/benchmarks/bench_dwconv2d" ]; then
        (cd "$tmp" && "$build/benchmarks/bench_dwconv2d" --shapes=quick \
            --benchmark_filter='k31x31' --csv="$tmp/demo.csv")
    else
        log "bench_dwconv2d not built (oneDNN or Google Benchmark missing)"
    fi
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
    setup) setup ;;
    *)
        sed -n '2,12p' "$0" | sed 's/^# \{0,1\}//'
        exit 2
        ;;
esac
