#include "benchmarks/dense_pass.h"

#include <algorithm>
#include <cstring>
#include <stdexcept>
#include <string>

#include "runtime/device.h"

namespace lkc::bench {

namespace {

constexpr int kLanes = 16;

// Signatures of the dense generators' AOT entry points (as in runtime/dwconv2d.cpp).
using FwdFn = int (*)(halide_buffer_t*, halide_buffer_t*, halide_buffer_t*, int, int,
                      halide_buffer_t*);
using BwdDataFn = int (*)(halide_buffer_t*, halide_buffer_t*, int, halide_buffer_t*);
using BwdDataStridedFn = int (*)(halide_buffer_t*, halide_buffer_t*, int, int, halide_buffer_t*);
using BwdWeightFn = int (*)(halide_buffer_t*, halide_buffer_t*, int, int, int, int,
                            halide_buffer_t*, halide_buffer_t*);

// Host loops compiled for AVX-512, AVX2 and baseline, picked at load time (the build does not
// assume -march): the same vector width the kernels use.
#define LKC_CLONES __attribute__((target_clones("avx512f", "avx2", "default")))

LKC_CLONES void sum_row(float* __restrict dst, const float* const* src, int nsrc, int64_t len) {
    const float* s0 = src[0];
    for (int64_t i = 0; i < len; ++i) dst[i] = s0[i];
    for (int k = 1; k < nsrc; ++k) {
        const float* __restrict s = src[k];
        for (int64_t i = 0; i < len; ++i) dst[i] += s[i];
    }
}

}  // namespace

DenseDw::DenseDw(const Workload& w) : w_(w) {
    install_halide_error_handler();
    if (w.op != Op::DwConv2d)
        throw std::invalid_argument("DenseDw: '" + to_string(w) + "' is not a dwconv2d workload");
    k_ = &select_kernel(w, Device::Cpu);
}

void DenseDw::fwd(Blocked& x, Weights& w, Vec& b, Blocked& y) const {
    if (k_->kind != KernelKind::DwFwd) throw std::logic_error("DenseDw::fwd: not a fwd kernel");
    const int rc = reinterpret_cast<FwdFn>(k_->fn)(x.raw_buffer(), w.raw_buffer(), b.raw_buffer(),
                                                   w_.stride, w_.dilation, y.raw_buffer());
    check_halide(rc, std::string("kernel ") + k_->name, Device::Cpu);
}

void DenseDw::bwd_data(Blocked& dy, Weights& w, Blocked& dx) const {
    int rc = 0;
    if (k_->kind == KernelKind::DwBwdData) {
        rc = reinterpret_cast<BwdDataFn>(k_->fn)(dy.raw_buffer(), w.raw_buffer(), w_.dilation,
                                                 dx.raw_buffer());
    } else if (k_->kind == KernelKind::DwBwdDataStrided) {
        rc = reinterpret_cast<BwdDataStridedFn>(k_->fn)(dy.raw_buffer(), w.raw_buffer(), w_.stride,
                                                        w_.dilation, dx.raw_buffer());
    } else {
        throw std::logic_error("DenseDw::bwd_data: not a bwd_data kernel");
    }
    check_halide(rc, std::string("kernel ") + k_->name, Device::Cpu);
}

void DenseDw::bwd_weight(Blocked& x, Blocked& dy, Weights& dw, Vec& db) const {
    if (k_->kind != KernelKind::DwBwdWeight)
        throw std::logic_error("DenseDw::bwd_weight: not a bwd_weight kernel");
    const int rc = reinterpret_cast<BwdWeightFn>(k_->fn)(x.raw_buffer(), dy.raw_buffer(), w_.kh,
                                                         w_.kw, w_.stride, w_.dilation,
                                                         dw.raw_buffer(), db.raw_buffer());
    check_halide(rc, std::string("kernel ") + k_->name, Device::Cpu);
}

void sum_blocked(const std::vector<Blocked*>& srcs, Blocked& dst) {
    if (srcs.empty()) throw std::invalid_argument("sum_blocked: no inputs");
    const int h = dst.dim(2).extent(), cbs = dst.dim(3).extent(), n = dst.dim(4).extent();
    const int64_t row = int64_t(kLanes) * dst.dim(1).extent();  // one row: 16 x W, contiguous
    for (const Blocked* s : srcs) {
        for (int d = 0; d < 5; ++d)
            if (s->dim(d).extent() != dst.dim(d).extent() ||
                s->dim(d).stride() != dst.dim(d).stride())
                throw std::invalid_argument("sum_blocked: buffers differ in shape or strides");
    }
    // Tasks of a few rows each: enough tasks to balance 2 threads, long enough rows to stream.
    const int rows_per_task = std::max(1, std::min(h, int(8192 / row) + 1));
    const int tasks_per_plane = (h + rows_per_task - 1) / rows_per_task;
    std::vector<const float*> base(srcs.size());
    for (size_t k = 0; k < srcs.size(); ++k) base[k] = srcs[k]->data();
    float* out = dst.data();
    const int64_t sy = dst.dim(2).stride(), sc = dst.dim(3).stride(), sn = dst.dim(4).stride();
    auto task = [&](int t) {
        const int plane = t / tasks_per_plane, y0 = (t % tasks_per_plane) * rows_per_task;
        const int cb = plane % cbs, in = plane / cbs;
        const int y1 = std::min(h, y0 + rows_per_task);
        const float* src[64];
        const int ns = int(std::min<size_t>(base.size(), 64));
        for (int y = y0; y < y1; ++y) {
            const int64_t off = in * sn + cb * sc + y * sy;
            for (int k = 0; k < ns; ++k) src[k] = base[k] + off;
            sum_row(out + off, src, ns, row);
        }
    };
    par_for(n * cbs * tasks_per_plane, task);
}

void copy_into_padded(const Blocked& src, Blocked& dst, int pad) {
    const int w = src.dim(1).extent(), h = src.dim(2).extent(), cbs = src.dim(3).extent(),
              n = src.dim(4).extent();
    if (dst.dim(1).extent() != w + 2 * pad || dst.dim(2).extent() != h + 2 * pad ||
        dst.dim(3).extent() != cbs || dst.dim(4).extent() != n)
        throw std::invalid_argument("copy_into_padded: shapes do not match");
    auto task = [&](int t) {
        const int cb = t % cbs, in = t / cbs;
        for (int y = 0; y < h; ++y) {
            const float* s = &src(0, 0, y, cb, in);
            float* d = &dst(0, pad, y + pad, cb, in);
            std::memcpy(d, s, sizeof(float) * kLanes * w);
        }
    };
    par_for(n * cbs, task);
}

}  // namespace lkc::bench
