#include "runtime/dwconv2d.h"

#include <random>
#include <stdexcept>

#include "runtime/kernel_abi.h"

namespace lkc {

namespace {
using abi::DenseBwdDataFn;
using abi::DenseBwdDataStridedFn;
using abi::DenseBwdWeightFn;
using abi::DenseFwdFn;
using abi::kLanes;

int blocks(int64_t c) { return abi::lane_blocks(c); }

void check_shape(const std::string& name, const Tensor& t, const Shape& want) {
    if (t.dtype() != DType::F32) {
        throw std::invalid_argument("tensor '" + name + "' has dtype " + dtype_name(t.dtype()) +
                                    ", expected F32");
    }
    if (t.shape() != want) {
        throw std::invalid_argument("tensor '" + name + "' has shape " +
                                    shape_to_string(t.shape()) + ", expected " +
                                    shape_to_string(want));
    }
}

void fill(float* p, size_t n, std::mt19937& g) {
    std::uniform_real_distribution<float> u(-1.0f, 1.0f);
    for (size_t i = 0; i < n; ++i) p[i] = u(g);
}
}  // namespace

void centred_weights(const float* w, int KH, int KW, Halide::Runtime::Buffer<float, 4>& dst) {
    const int kw = dst.dim(0).extent(), kh = dst.dim(1).extent(), c = dst.dim(3).extent();
    const int u0 = (KH - kh) / 2, v0 = (KW - kw) / 2;
    for (int ch = 0; ch < c; ++ch)
        for (int u = 0; u < kh; ++u)
            for (int v = 0; v < kw; ++v)
                dst(v, u, 0, ch) = w[(int64_t(ch) * KH + u0 + u) * KW + v0 + v];
    dst.set_host_dirty();
}

void add_centred(const Halide::Runtime::Buffer<float, 4>& src, int KH, int KW, float* dw) {
    const int kw = src.dim(0).extent(), kh = src.dim(1).extent(), c = src.dim(3).extent();
    const int u0 = (KH - kh) / 2, v0 = (KW - kw) / 2;
    for (int ch = 0; ch < c; ++ch)
        for (int u = 0; u < kh; ++u)
            for (int v = 0; v < kw; ++v)
                dw[(int64_t(ch) * KH + u0 + u) * KW + v0 + v] += src(v, u, 0, ch);
}

Blocked make_blocked(int n, int c, int h, int w) {
    Blocked b(kLanes, w, h, blocks(c), n);
    b.fill(0.0f);
    return b;
}

Blocked to_blocked(const Tensor& t) {
    if (t.ndim() != 4) throw std::invalid_argument("to_blocked: expected an NCHW tensor");
    Blocked b = make_blocked(int(t.dim(0)), int(t.dim(1)), int(t.dim(2)), int(t.dim(3)));
    to_blocked_into(t, b);
    return b;
}

void to_blocked_into(const Tensor& t, Blocked& b) {
    if (t.ndim() != 4) throw std::invalid_argument("to_blocked: expected an NCHW tensor");
    const int n = int(t.dim(0)), c = int(t.dim(1)), h = int(t.dim(2)), w = int(t.dim(3));
    if (b.dim(4).extent() != n || b.dim(3).extent() != blocks(c) || b.dim(2).extent() != h ||
        b.dim(1).extent() != w) {
        throw std::invalid_argument("to_blocked: tensor " + shape_to_string(t.shape()) +
                                    " does not fit the blocked buffer");
    }
    const float* src = t.data<float>();
    for (int in = 0; in < n; ++in)
        for (int ic = 0; ic < c; ++ic)
            for (int iy = 0; iy < h; ++iy) {
                const float* row = src + ((int64_t(in) * c + ic) * h + iy) * w;
                for (int ix = 0; ix < w; ++ix) b(ic % kLanes, ix, iy, ic / kLanes, in) = row[ix];
            }
}

Tensor from_blocked(const Blocked& b, int64_t c) {
    const int n = b.dim(4).extent(), h = b.dim(2).extent(), w = b.dim(1).extent();
    Tensor t(DType::F32, {n, c, h, w});
    float* dst = t.data<float>();
    for (int in = 0; in < n; ++in)
        for (int ic = 0; ic < c; ++ic)
            for (int iy = 0; iy < h; ++iy) {
                float* row = dst + ((int64_t(in) * c + ic) * h + iy) * w;
                for (int ix = 0; ix < w; ++ix) row[ix] = b(ic % kLanes, ix, iy, ic / kLanes, in);
            }
    return t;
}

std::map<std::string, Shape> dwconv2d_input_shapes(const Workload& w) {
    const Shape x{w.n, w.c, w.h, w.w}, y{w.n, w.c, w.out_h(), w.out_w()}, k{w.c, 1, w.kh, w.kw};
    switch (w.pass) {
        case Pass::Fwd:
            return {{"x", x}, {"w", k}, {"b", {w.c}}};
        case Pass::BwdData:
            return {{"dy", y}, {"w", k}};
        case Pass::BwdWeight:
            return {{"x", x}, {"dy", y}};
    }
    return {};
}

std::map<std::string, Shape> dwconv2d_output_shapes(const Workload& w) {
    switch (w.pass) {
        case Pass::Fwd:
            return {{"y", {w.n, w.c, w.out_h(), w.out_w()}}};
        case Pass::BwdData:
            return {{"dx", {w.n, w.c, w.h, w.w}}};
        case Pass::BwdWeight:
            return {{"dw", {w.c, 1, w.kh, w.kw}}, {"db", {w.c}}};
    }
    return {};
}

DwConv2dRunner::DwConv2dRunner(const Workload& w, Device d, const std::string& kernel_name)
    : w_(w), d_(d) {
    install_halide_error_handler();
    if (w.op != Op::DwConv2d) {
        throw std::invalid_argument("DwConv2dRunner: workload '" + to_string(w) +
                                    "' is not a dwconv2d workload");
    }
    // A kernel reaching past the map runs its centred sub-kernel that can meet it (51x51 on 14x14:
    // 27x27; runtime/workload.h): same outputs, the outer taps' weight gradients 0.
    kw_ = cropped_to_map(w);
    sel_ = select_kernel_explained(kw_, d, kernel_name);
    k_ = sel_.kernel;
    if (!kernel_name.empty() && kernel_name != k_->name) {
        throw std::invalid_argument("kernel '" + kernel_name + "' does not exist or cannot run '" +
                                    to_string(w) + "' on " + device_name(d));
    }
    const int oh = w.out_h(), ow = w.out_w();
    switch (w.pass) {
        case Pass::Fwd:
            x_ = make_blocked(w.n, w.c, w.h, w.w);
            wt_ = Halide::Runtime::Buffer<float, 4>(kw_.kw, kw_.kh, 1, w.c);
            wt_.fill(0.0f);
            b_ = Halide::Runtime::Buffer<float, 1>(w.c);
            b_.fill(0.0f);
            out_ = make_blocked(w.n, w.c, oh, ow);
            break;
        case Pass::BwdData:
            y_ = make_blocked(w.n, w.c, oh, ow);
            wt_ = Halide::Runtime::Buffer<float, 4>(kw_.kw, kw_.kh, 1, w.c);
            wt_.fill(0.0f);
            out_ = make_blocked(w.n, w.c, w.h, w.w);
            break;
        case Pass::BwdWeight:
            x_ = make_blocked(w.n, w.c, w.h, w.w);
            y_ = make_blocked(w.n, w.c, oh, ow);
            dwt_ = Halide::Runtime::Buffer<float, 4>(kw_.kw, kw_.kh, 1, w.c);
            db_ = Halide::Runtime::Buffer<float, 1>(w.c);
            break;
    }
}

void DwConv2dRunner::set_inputs(const std::map<std::string, Tensor>& in) {
    const auto shapes = dwconv2d_input_shapes(w_);
    for (const auto& [name, t] : in) {
        if (!shapes.count(name)) {
            std::string valid;
            for (const auto& [n, s] : shapes) valid += (valid.empty() ? "" : ", ") + n;
            throw std::invalid_argument("unexpected tensor '" + name + "' for " + to_string(w_) +
                                        " (expected: " + valid + ")");
        }
    }
    for (const auto& [name, shape] : shapes) {
        auto it = in.find(name);
        if (it == in.end()) {
            if (name == "b") continue;  // optional bias: zeros
            throw std::invalid_argument("missing input tensor '" + name + "' " +
                                        shape_to_string(shape) + " for " + to_string(w_));
        }
        check_shape(name, it->second, shape);
        const Tensor& t = it->second;
        if (name == "x") x_ = to_blocked(t);
        if (name == "dy") y_ = to_blocked(t);
        if (name == "w") centred_weights(t.data<float>(), w_.kh, w_.kw, wt_);
        if (name == "b") std::copy(t.data<float>(), t.data<float>() + t.numel(), b_.data());
    }
    for (auto* b : {&x_, &y_}) {
        if (b->data()) b->set_host_dirty();
    }
    if (wt_.data()) wt_.set_host_dirty();
    if (b_.data()) b_.set_host_dirty();
}

void DwConv2dRunner::fill_random(uint32_t seed) {
    std::mt19937 g(seed);
    // Only the real channels: padding channels of the blocked layout stay zero.
    auto fill_blocked = [&](Blocked& b) {
        if (!b.data()) return;
        b.for_each_element([&](int ci, int x, int y, int cb, int n) {
            (void)x, (void)y, (void)n;
            b(ci, x, y, cb, n) =
                (cb * kLanes + ci < w_.c) ? std::uniform_real_distribution<float>(-1, 1)(g) : 0.0f;
        });
        b.set_host_dirty();
    };
    fill_blocked(x_);
    fill_blocked(y_);
    if (wt_.data()) {
        fill(wt_.data(), wt_.number_of_elements(), g);
        wt_.set_host_dirty();
    }
    if (b_.data()) {
        fill(b_.data(), b_.number_of_elements(), g);
        b_.set_host_dirty();
    }
}

void DwConv2dRunner::run() {
    int rc = 0;
    switch (k_->kind) {
        case KernelKind::DwFwd:
            rc = reinterpret_cast<DenseFwdFn>(k_->fn)(x_.raw_buffer(), wt_.raw_buffer(),
                                                      b_.raw_buffer(), w_.stride, w_.dilation,
                                                      out_.raw_buffer());
            break;
        case KernelKind::DwBwdData:
            rc = reinterpret_cast<DenseBwdDataFn>(k_->fn)(y_.raw_buffer(), wt_.raw_buffer(),
                                                          w_.dilation, out_.raw_buffer());
            break;
        case KernelKind::DwBwdDataStrided:
            rc = reinterpret_cast<DenseBwdDataStridedFn>(k_->fn)(
                y_.raw_buffer(), wt_.raw_buffer(), w_.stride, w_.dilation, out_.raw_buffer());
            break;
        case KernelKind::DwBwdWeight:
            rc = reinterpret_cast<DenseBwdWeightFn>(k_->fn)(x_.raw_buffer(), y_.raw_buffer(),
                                                            kw_.kh, kw_.kw, w_.stride, w_.dilation,
                                                            dwt_.raw_buffer(), db_.raw_buffer());
            break;
        default:
            throw std::logic_error(std::string("DwConv2dRunner: ") + k_->name +
                                   " is not a dense kernel");
    }
    check_halide(rc, std::string("kernel ") + k_->name, d_);
}

void DwConv2dRunner::sync() {
    if (out_.data()) check_halide(out_.device_sync(), "device sync", d_);
    if (dwt_.data()) check_halide(dwt_.device_sync(), "device sync", d_);
    if (db_.data()) check_halide(db_.device_sync(), "device sync", d_);
}

std::map<std::string, Tensor> DwConv2dRunner::outputs() {
    std::map<std::string, Tensor> r;
    auto sync = [&](auto& b) { check_halide(b.copy_to_host(), "copy to host", d_); };
    switch (w_.pass) {
        case Pass::Fwd:
            sync(out_);
            r["y"] = from_blocked(out_, w_.c);
            break;
        case Pass::BwdData:
            sync(out_);
            r["dx"] = from_blocked(out_, w_.c);
            break;
        case Pass::BwdWeight: {
            sync(dwt_);
            sync(db_);
            Tensor dw(DType::F32, {w_.c, 1, w_.kh, w_.kw});  // outer taps (never meet): 0
            add_centred(dwt_, w_.kh, w_.kw, dw.data<float>());
            r["dw"] = dw;
            Tensor db(DType::F32, {w_.c});
            std::copy(db_.data(), db_.data() + w_.c, db.data<float>());
            r["db"] = db;
            break;
        }
    }
    return r;
}

std::map<std::string, Tensor> run_dwconv2d(const Workload& w, Device d,
                                           const std::map<std::string, Tensor>& inputs,
                                           const std::string& kernel_name,
                                           std::string* used_kernel) {
    DwConv2dRunner r(w, d, kernel_name);
    r.set_inputs(inputs);
    r.run();
    if (used_kernel) *used_kernel = r.kernel().name;
    return r.outputs();
}

}  // namespace lkc
