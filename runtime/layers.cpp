#include "runtime/layers.h"

#include <algorithm>
#include <stdexcept>

#include "HalideRuntimeCuda.h"
#include "HalideRuntimeOpenCL.h"
#include "runtime/kernel_abi.h"
#include "runtime/op_inputs.h"
#include "runtime/reparam.h"

namespace lkc {

namespace {

using abi::DenseFwdFn;
using abi::kLanes;
using abi::SparseFwdFn;
using abi::TapsFwdFn;
int blocks(int64_t c) { return abi::lane_blocks(c); }

// Validates the non-activation params against op_inputs' shapes (required and optional).
void check_params(const Workload& w, const std::map<std::string, Tensor>& p) {
    const auto req = op_input_shapes(w), opt = op_optional_inputs(w);
    for (const auto& [name, shape] : req) {
        if (name == "x") continue;
        auto it = p.find(name);
        if (it == p.end()) {
            throw std::invalid_argument("layer " + to_string(w) + ": parameter '" + name +
                                        "' is missing (expected " + shape_to_string(shape) + ")");
        }
        if (it->second.shape() != shape) {
            throw std::invalid_argument("layer " + to_string(w) + ": parameter '" + name +
                                        "' has shape " + shape_to_string(it->second.shape()) +
                                        ", expected " + shape_to_string(shape));
        }
    }
    for (const auto& [name, t] : p) {
        if (req.count(name)) continue;
        auto o = opt.find(name);
        if (o == opt.end()) {
            throw std::invalid_argument("layer " + to_string(w) + ": unknown parameter '" + name +
                                        "'");
        }
        if (t.shape() != o->second) {
            throw std::invalid_argument("layer " + to_string(w) + ": parameter '" + name +
                                        "' has shape " + shape_to_string(t.shape()) +
                                        ", expected " + shape_to_string(o->second));
        }
    }
}

void check_io(const Workload& w, const Blocked& x, const Blocked& y) {
    auto bad = [&](const Blocked& b, int wd, int h) {
        return b.dimensions() != 5 || b.dim(0).extent() != kLanes || b.dim(1).extent() != wd ||
               b.dim(2).extent() != h || b.dim(3).extent() != blocks(w.c) ||
               b.dim(4).extent() != w.n;
    };
    if (bad(x, w.w, w.h) || bad(y, w.out_w(), w.out_h())) {
        auto ext = [](int a, int b, int c, int d) {
            return "(16, " + std::to_string(a) + ", " + std::to_string(b) + ", " +
                   std::to_string(c) + ", " + std::to_string(d) + ")";
        };
        throw std::invalid_argument("layer " + to_string(w) + ": blocked buffers must be x " +
                                    ext(w.w, w.h, blocks(w.c), w.n) + " and y " +
                                    ext(w.out_w(), w.out_h(), blocks(w.c), w.n));
    }
}

// On a GPU, a view made of a buffer (sliced(), cropped()) shares its device allocation only if
// the buffer has one first: give x and y theirs before making views, so the kernel reads x's
// device copy and writes y's (ops.h, "Devices").
void device_alloc(Blocked& b, Device d) {
    if (d == Device::Cpu) return;
    const halide_device_interface_t* iface =
        d == Device::Cuda ? halide_cuda_device_interface() : halide_opencl_device_interface();
    if (!b.has_device_allocation()) check_halide(b.device_malloc(iface), "device malloc", d);
    if (b.host_dirty()) check_halide(b.copy_to_device(iface), "copy to device", d);
}

void check_kernel(const Workload& w, Device d, const std::string& kernel, const KernelInfo* k) {
    if (!kernel.empty() && kernel != k->name) {
        throw std::invalid_argument("kernel '" + kernel + "' does not exist or cannot run '" +
                                    to_string(w) + "' on " + device_name(d));
    }
}

// ---- dense ----------------------------------------------------------------------------------

class DenseLayer : public DwLayer {
  public:
    DenseLayer(const Workload& w, Device d, const std::map<std::string, Tensor>& p,
               const std::string& kernel)
        : w_(w), d_(d) {
        check_params(w, p);
        // A kernel reaching past the map runs its centred sub-kernel that can meet it
        // (runtime/workload.h): same outputs, fewer taps for the kernels that do not skip them.
        const Workload k = cropped_to_map(w);
        sel_ = select_kernel_explained(k, d, kernel);
        check_kernel(w, d, kernel, sel_.kernel);
        wt_ = Halide::Runtime::Buffer<float, 4>(k.kw, k.kh, 1, w.c);
        centred_weights(p.at("w").data<float>(), w.kh, w.kw, wt_);
        b_ = Halide::Runtime::Buffer<float, 1>(w.c);
        b_.fill(0.0f);
        if (p.count("b"))
            std::copy(p.at("b").data<float>(), p.at("b").data<float>() + w.c, b_.data());
        b_.set_host_dirty();
    }
    void run(const Blocked& x, Blocked& y) override {
        check_io(w_, x, y);
        const int rc = reinterpret_cast<DenseFwdFn>(sel_.kernel->fn)(
            const_cast<Blocked&>(x).raw_buffer(), wt_.raw_buffer(), b_.raw_buffer(), w_.stride,
            w_.dilation, y.raw_buffer());
        check_halide(rc, std::string("kernel ") + sel_.kernel->name, d_);
    }
    const Workload& workload() const override { return w_; }
    std::string kernel_name() const override { return sel_.kernel->name; }
    Selection selection() const override { return sel_; }

  private:
    Workload w_;
    Device d_;
    Selection sel_;
    Halide::Runtime::Buffer<float, 4> wt_;
    Halide::Runtime::Buffer<float, 1> b_;
};

// ---- row tables: multi-branch, shift-wise ---------------------------------------------------

class TapsLayer : public DwLayer {
  public:
    TapsLayer(const Workload& w, Device d, const std::map<std::string, Tensor>& p,
              const std::string& kernel)
        : w_(w), d_(d) {
        check_params(w, p);
        const bool shift = w.op == Op::ShiftWise;
        fused_ = shift && p.count("ah");
        sel_ = select_kernel_explained(w, d, kernel);
        check_kernel(w, d, kernel, sel_.kernel);
        if (sel_.kernel->kind != KernelKind::TapsFwd) {
            throw std::invalid_argument("layer " + to_string(w) + ": " + sel_.kernel->name +
                                        " is not a row-table kernel");
        }
        plan_ = std::make_unique<TapPlan>(tap_kernels_of(w, fused_), false, w.h, w.w);
        outs_ = shift && !fused_ ? 3 : 1;
        const int c = w.c;
        wt_ = Halide::Runtime::Buffer<float, 3>(kLanes, std::max(1, plan_->slots()), blocks(c));
        wt_.fill(0.0f);
        std::vector<const float*> ws, scale;
        Tensor wh, wv, wsm;
        if (!shift) {
            for (size_t b = 0; b < w.branches.size(); ++b)
                ws.push_back(p.at("w" + std::to_string(b)).data<float>());
        } else {
            (void)read_shift_tables(w, p.at("slot_h"), p.at("slot_v"), p.at("ident"));
            const auto eq = reparam::shiftwise_equivalent(p.at("w"), p.at("slot_h"), p.at("slot_v"),
                                                          p.at("ident"), w.big_k);
            wh = eq.wh, wv = eq.wv, wsm = eq.ws;
            ws = {wh.data<float>(), wv.data<float>(), wsm.data<float>()};
            if (fused_)
                scale = {p.at("ah").data<float>(), p.at("av").data<float>(),
                         p.at("as").data<float>()};
        }
        plan_->pack(ws, c, scale, wt_);
        if (fused_) {
            const int e = (w.small_k - 1) / 2;
            plan_->add_identity(2, e, e, c, wt_);  // + x
        }
        wt_.set_host_dirty();
        bias_ = Halide::Runtime::Buffer<float, 3>(kLanes, outs_, blocks(c));
        bias_.fill(0.0f);
        if (p.count("b")) {
            const float* b = p.at("b").data<float>();
            for (int ch = 0; ch < c; ++ch) bias_(ch % kLanes, 0, ch / kLanes) = b[ch];
        }
        bias_.set_host_dirty();
        rows_ = plan_->rows();
        rows_.set_host_dirty();
        if (outs_ > 1) {
            out3_ = Stacked(kLanes, w.w, w.h, outs_, blocks(c), w.n);
        }
    }
    void run(const Blocked& x, Blocked& y) override {
        if (outs_ != 1) {
            throw std::invalid_argument("layer " + to_string(w_) +
                                        " has three outputs (yh, yv, ys): pass three buffers");
        }
        check_io(w_, x, y);
        device_alloc(const_cast<Blocked&>(x), d_);
        device_alloc(y, d_);
        Stacked xs = stacked_view(x);
        Stacked ys = stacked_view(y);
        call(xs, ys);
        if (d_ != Device::Cpu) y.set_device_dirty(true);
    }
    void run(const Blocked& x, const std::vector<Blocked*>& ys) override {
        if (ys.size() != size_t(outs_)) {
            throw std::invalid_argument("layer " + to_string(w_) + " has " + std::to_string(outs_) +
                                        " outputs, got " + std::to_string(ys.size()));
        }
        if (outs_ == 1) return run(x, *ys[0]);
        for (Blocked* b : ys) check_io(w_, x, *b);
        device_alloc(const_cast<Blocked&>(x), d_);
        Stacked xs = stacked_view(x);
        call(xs, out3_);
        if (d_ != Device::Cpu) check_halide(out3_.copy_to_host(), "copy to host", d_);
        for (int s = 0; s < outs_; ++s) {
            Blocked src = out3_.sliced(3, s);
            ys[size_t(s)]->copy_from(src);
            ys[size_t(s)]->set_host_dirty();
        }
    }
    const Workload& workload() const override { return w_; }
    std::string kernel_name() const override { return sel_.kernel->name; }
    Selection selection() const override { return sel_; }

  private:
    void call(Stacked& in, Stacked& out) {
        const TapPlan& p = *plan_;
        const int rc = reinterpret_cast<TapsFwdFn>(sel_.kernel->fn)(
            in.raw_buffer(), rows_.raw_buffer(), wt_.raw_buffer(), bias_.raw_buffer(), p.seg(1),
            p.seg(2), p.seg(3), p.left(), p.right(), p.top(), p.bottom(), out.raw_buffer());
        check_halide(rc, std::string("kernel ") + sel_.kernel->name, d_);
    }

    Workload w_;
    Device d_;
    Selection sel_;
    bool fused_ = false;
    int outs_ = 1;
    std::unique_ptr<TapPlan> plan_;
    Halide::Runtime::Buffer<int32_t, 2> rows_;
    Halide::Runtime::Buffer<float, 3> wt_, bias_;
    Stacked out3_;
};

// ---- sparse (plain NCHW kernels) ------------------------------------------------------------

class SparseLayer : public DwLayer {
  public:
    SparseLayer(const Workload& w, Device d, const std::map<std::string, Tensor>& p,
                const std::string& kernel)
        : w_(w), d_(d) {
        check_params(w, p);
        sel_ = select_kernel_explained(w, d, kernel);
        check_kernel(w, d, kernel, sel_.kernel);
        const std::vector<uint8_t> mask = read_mask(w, p.at("mask"));
        t_ = build_sparse_tables(w, sparse_layout(*sel_.kernel), mask, p.at("w").data<float>());
        const int T = t_.max_taps, Q = t_.phases, C = w.c;
        taps_ = Halide::Runtime::Buffer<int32_t, 4>(4, T, Q, C);
        std::copy(t_.taps.begin(), t_.taps.end(), taps_.data());
        weights_ = Halide::Runtime::Buffer<float, 3>(T, Q, C);
        std::copy(t_.weights.begin(), t_.weights.end(), weights_.data());
        starts_ = Halide::Runtime::Buffer<int32_t, 4>(2 * t_.pad_y + 2, 2 * t_.segments + 1, Q, C);
        std::copy(t_.starts.begin(), t_.starts.end(), starts_.data());
        bias_ = Halide::Runtime::Buffer<float, 1>(C);
        bias_.fill(0.0f);
        if (p.count("b"))
            std::copy(p.at("b").data<float>(), p.at("b").data<float>() + C, bias_.data());
        for (auto* b : {&taps_, &starts_}) b->set_host_dirty();
        weights_.set_host_dirty();
        bias_.set_host_dirty();
        in_ = Halide::Runtime::Buffer<float, 4>(w.w, w.h, C, w.n);
        out_ = Halide::Runtime::Buffer<float, 5>(t_.out_w, t_.out_h, 1, C, w.n);
    }
    void run(const Blocked& x, Blocked& y) override {
        check_io(w_, x, y);
        Blocked& xm = const_cast<Blocked&>(x);
        if (d_ != Device::Cpu) check_halide(xm.copy_to_host(), "copy to host", d_);
        const int C = w_.c;
        // Blocked -> plain (W, H, C, N) for the per-channel kernels, and back.
        in_.for_each_element([&](int ix, int iy, int c, int n) {
            in_(ix, iy, c, n) = xm(c % kLanes, ix, iy, c / kLanes, n);
        });
        in_.set_host_dirty();
        const int rc = reinterpret_cast<SparseFwdFn>(sel_.kernel->fn)(
            in_.raw_buffer(), starts_.raw_buffer(), taps_.raw_buffer(), weights_.raw_buffer(),
            bias_.raw_buffer(), t_.in_stride, t_.pad_x, t_.pad_y, t_.pitch, t_.row_pitch,
            out_.raw_buffer());
        check_halide(rc, std::string("kernel ") + sel_.kernel->name, d_);
        if (d_ != Device::Cpu) check_halide(out_.copy_to_host(), "copy to host", d_);
        const int OH = w_.out_h(), OW = w_.out_w();
        for (int n = 0; n < w_.n; ++n)
            for (int c = 0; c < blocks(C) * kLanes; ++c)
                for (int i = 0; i < OH; ++i)
                    for (int j = 0; j < OW; ++j)
                        y(c % kLanes, j, i, c / kLanes, n) = c < C ? out_(j, i, 0, c, n) : 0.0f;
        y.set_host_dirty();
    }
    const Workload& workload() const override { return w_; }
    std::string kernel_name() const override { return sel_.kernel->name; }
    Selection selection() const override { return sel_; }

  private:
    Workload w_;
    Device d_;
    Selection sel_;
    SparseTables t_;
    Halide::Runtime::Buffer<int32_t, 4> taps_, starts_;
    Halide::Runtime::Buffer<float, 3> weights_;
    Halide::Runtime::Buffer<float, 1> bias_;
    Halide::Runtime::Buffer<float, 4> in_;
    Halide::Runtime::Buffer<float, 5> out_;
};

}  // namespace

void DwLayer::run(const Blocked& x, const std::vector<Blocked*>& ys) {
    if (ys.size() != 1) {
        throw std::invalid_argument("layer " + to_string(workload()) + " has one output, got " +
                                    std::to_string(ys.size()));
    }
    run(x, *ys[0]);
}

std::unique_ptr<DwLayer> make_dw_layer(const Workload& w, Device d,
                                       const std::map<std::string, Tensor>& params,
                                       const std::string& kernel) {
    install_halide_error_handler();
    if (w.pass != Pass::Fwd) {
        throw std::invalid_argument("make_dw_layer: '" + to_string(w) +
                                    "' is not a forward workload");
    }
    switch (w.op) {
        case Op::DwConv2d:
            return std::make_unique<DenseLayer>(w, d, params, kernel);
        case Op::DwConv2dMulti:
        case Op::ShiftWise:
            return std::make_unique<TapsLayer>(w, d, params, kernel);
        case Op::DwConv2dSparse:
            return std::make_unique<SparseLayer>(w, d, params, kernel);
    }
    throw std::invalid_argument("make_dw_layer: unknown op");
}

}  // namespace lkc
