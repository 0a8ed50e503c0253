#include "runtime/dw_train.h"

#include <algorithm>
#include <array>
#include <chrono>
#include <cstdio>
#include <stdexcept>

#include "runtime/kernel_abi.h"

namespace lkc {

namespace {

using abi::DenseBwdDataFn;
using abi::DenseBwdDataStridedFn;
using abi::DenseBwdWeightFn;
using abi::DenseFwdFn;
using abi::kLanes;
using abi::RowsBwdDataFn;
using abi::RowsBwdWeightFn;
using abi::RowsFwdFn;
using abi::TapsFwdFn;
using abi::TapsWgradFn;
int blocks(int64_t c) { return abi::lane_blocks(c); }

halide_buffer_t* raw(const Blocked& b) { return const_cast<Blocked&>(b).raw_buffer(); }
halide_buffer_t* raw(const Stacked& b) { return const_cast<Stacked&>(b).raw_buffer(); }

std::string shape_of(const Halide::Runtime::Buffer<float>& b) {
    std::string s = "(";
    for (int i = 0; i < b.dimensions(); ++i)
        s += (i ? ", " : "") + std::to_string(b.dim(i).extent());
    return s + ")";
}

}  // namespace

struct DwTrainLayer::Impl {
    Device d = Device::Cpu;
    int n = 0, c = 0, h = 0, w = 0, stride = 1, oh = 0, ow = 0;
    // B == 1: dense kernels.
    Workload fwd, bd, bw;
    Selection sf, sd, sw;
    Halide::Runtime::Buffer<float, 4> wt, dwt;  // (kw, kh, 1, C)
    Halide::Runtime::Buffer<float, 1> b, db;
    Selection hand[3];  // the registry's choices (fwd, bwd_data, bwd_weight)
    Halide::Runtime::Buffer<uint8_t, 2> row_mask;  // (kh of the cropped kernel, CB), or none
    // B > 1: row tables (forward / backward-weight plan, transposed plan for backward-data).
    std::vector<TapKernel> kernels;
    std::unique_ptr<TapPlan> plan, plan_t;
    Halide::Runtime::Buffer<int32_t, 2> rows, rows_t;
    Halide::Runtime::Buffer<float, 3> slots, slots_t, bias, bias_t, dbias;
    std::array<Halide::Runtime::Buffer<float, 4>, TapPlan::kClasses> g;
    std::vector<float> tmp;

    bool dense() const { return kernels.empty(); }

    void check(const char* what, const Halide::Runtime::Buffer<float>& buf, int wd, int ht,
               int s) const {
        const bool five = buf.dimensions() == 5;
        bool ok =
            buf.dim(0).extent() == kLanes && buf.dim(1).extent() == wd && buf.dim(2).extent() == ht;
        if (five) {
            ok = ok && s == 1 && buf.dim(3).extent() == blocks(c) && buf.dim(4).extent() == n;
        } else {
            ok = ok && buf.dimensions() == 6 && buf.dim(3).extent() == s &&
                 buf.dim(4).extent() == blocks(c) && buf.dim(5).extent() == n;
        }
        if (!ok) {
            std::string want = "(16, " + std::to_string(wd) + ", " + std::to_string(ht) + ", ";
            if (!five) want += std::to_string(s) + ", ";
            want += std::to_string(blocks(c)) + ", " + std::to_string(n) + ")";
            throw std::invalid_argument(std::string("DwTrainLayer: ") + what + " is " +
                                        shape_of(buf) + ", expected " + want);
        }
    }
};

DwTrainLayer::DwTrainLayer(int n, int c, int h, int w, int stride,
                           const std::vector<Branch>& branches, Device d)
    : br_(branches), impl_(std::make_unique<Impl>()) {
    install_halide_error_handler();
    if (d != Device::Cpu)
        throw std::invalid_argument("DwTrainLayer: the training layers run on the CPU only");
    if (branches.empty()) throw std::invalid_argument("DwTrainLayer: no branches");
    if (n < 1 || c < 1 || h < 1 || w < 1 || stride < 1)
        throw std::invalid_argument("DwTrainLayer: non-positive extent or stride");
    for (const Branch& b : branches) {
        if (b.kh % 2 == 0 || b.kw % 2 == 0 || b.kh < 1 || b.kw < 1 || b.kh > 63 || b.kw > 63 ||
            b.dilation < 1)
            throw std::invalid_argument("DwTrainLayer: kernel " + std::to_string(b.kh) + "x" +
                                        std::to_string(b.kw) + " dilation " +
                                        std::to_string(b.dilation) +
                                        ": extents must be odd, 1..63, dilation >= 1");
    }
    if (branches.size() > 1 && stride != 1)
        throw std::invalid_argument("DwTrainLayer: several branches run stride 1 only");
    Impl& m = *impl_;
    m.d = d;
    m.n = n, m.c = c, m.h = h, m.w = w, m.stride = stride;
    m.oh = (h + stride - 1) / stride;
    m.ow = (w + stride - 1) / stride;
    if (branches.size() == 1) {
        m.fwd.op = Op::DwConv2d;
        m.fwd.n = n, m.fwd.c = c, m.fwd.h = h, m.fwd.w = w;
        m.fwd.kh = branches[0].kh, m.fwd.kw = branches[0].kw;
        m.fwd.dilation = branches[0].dilation;
        m.fwd.stride = stride;
        // A kernel reaching past the map runs its centred sub-kernel that can meet it (13x13 on
        // 4x4: 7x7; runtime/workload.h).
        m.fwd = cropped_to_map(m.fwd);
        m.bd = m.fwd, m.bw = m.fwd;
        m.bd.pass = Pass::BwdData;
        m.bw.pass = Pass::BwdWeight;
        m.sf = select_kernel_explained(m.fwd, d);
        m.sd = select_kernel_explained(m.bd, d);
        m.sw = select_kernel_explained(m.bw, d);
        m.hand[0] = m.sf, m.hand[1] = m.sd, m.hand[2] = m.sw;
        m.wt = Halide::Runtime::Buffer<float, 4>(m.fwd.kw, m.fwd.kh, 1, c);
        m.wt.fill(0.0f);
        m.dwt = Halide::Runtime::Buffer<float, 4>(m.fwd.kw, m.fwd.kh, 1, c);
        m.b = Halide::Runtime::Buffer<float, 1>(c);
        m.b.fill(0.0f);
        m.db = Halide::Runtime::Buffer<float, 1>(c);
        return;
    }
    Workload mw;
    mw.op = Op::DwConv2dMulti;
    mw.n = n, mw.c = c, mw.h = h, mw.w = w;
    mw.branches = branches;
    m.fwd = mw;
    m.bd = mw, m.bw = mw;
    m.bd.pass = Pass::BwdData;
    m.bw.pass = Pass::BwdWeight;
    m.sf = select_kernel_explained(m.fwd, d);
    m.sd = select_kernel_explained(m.bd, d);
    m.sw = select_kernel_explained(m.bw, d);
    if (m.sf.kernel->kind != KernelKind::TapsFwd || m.sd.kernel->kind != KernelKind::TapsFwd ||
        m.sw.kernel->kind != KernelKind::TapsWgrad)
        throw std::logic_error("DwTrainLayer: no row-table kernels for " + to_string(mw));
    // Branch b reads x and writes output slot b; transposed, it reads dy slot b and adds to dx.
    m.kernels = tap_kernels_of(mw, false);
    for (size_t b = 0; b < m.kernels.size(); ++b) m.kernels[b].out = int(b);
    std::vector<TapKernel> kt = m.kernels;
    for (TapKernel& k : kt) std::swap(k.in, k.out);
    m.plan = std::make_unique<TapPlan>(m.kernels, false, h, w);
    m.plan_t = std::make_unique<TapPlan>(kt, true, h, w);
    m.rows = m.plan->rows();
    m.rows_t = m.plan_t->rows();
    m.rows.set_host_dirty();
    m.rows_t.set_host_dirty();
    const int B = int(branches.size());
    m.slots = Halide::Runtime::Buffer<float, 3>(kLanes, std::max(1, m.plan->slots()), blocks(c));
    m.slots_t =
        Halide::Runtime::Buffer<float, 3>(kLanes, std::max(1, m.plan_t->slots()), blocks(c));
    m.bias = Halide::Runtime::Buffer<float, 3>(kLanes, B, blocks(c));
    m.bias.fill(0.0f);
    m.bias_t = Halide::Runtime::Buffer<float, 3>(kLanes, 1, blocks(c));
    m.bias_t.fill(0.0f);
    m.dbias = Halide::Runtime::Buffer<float, 3>(kLanes, B, blocks(c));
    for (int k = 0; k < TapPlan::kClasses; ++k) {
        const int cnt = std::max(1, m.plan->seg(k + 1) - m.plan->seg(k));
        m.g[size_t(k)] =
            Halide::Runtime::Buffer<float, 4>(kLanes, TapPlan::kChunk[size_t(k)], cnt, blocks(c));
    }
}

DwTrainLayer::~DwTrainLayer() = default;

int DwTrainLayer::out_h() const { return impl_->oh; }
int DwTrainLayer::out_w() const { return impl_->ow; }

Stacked DwTrainLayer::make_outputs() const {
    const Impl& m = *impl_;
    Stacked s(kLanes, m.ow, m.oh, branches(), blocks(m.c), m.n);
    s.fill(0.0f);
    return s;
}

void DwTrainLayer::set_weights(const std::vector<const float*>& w,
                               const std::vector<const float*>& b) {
    Impl& m = *impl_;
    if (w.size() != br_.size() || (!b.empty() && b.size() != br_.size()))
        throw std::invalid_argument("DwTrainLayer::set_weights: " + std::to_string(w.size()) +
                                    " weights / " + std::to_string(b.size()) + " biases for " +
                                    std::to_string(br_.size()) + " branches");
    if (m.dense()) {
        centred_weights(w[0], br_[0].kh, br_[0].kw, m.wt);
        m.wt.set_host_dirty();
        m.b.fill(0.0f);
        if (!b.empty() && b[0]) std::copy(b[0], b[0] + m.c, m.b.data());
        m.b.set_host_dirty();
        return;
    }
    m.plan->pack(w, m.c, {}, m.slots);
    m.plan_t->pack(w, m.c, {}, m.slots_t);
    m.slots.set_host_dirty();
    m.slots_t.set_host_dirty();
    m.bias.fill(0.0f);
    for (size_t i = 0; i < b.size(); ++i)
        if (b[i])
            for (int ch = 0; ch < m.c; ++ch) m.bias(ch % kLanes, int(i), ch / kLanes) = b[i][ch];
    m.bias.set_host_dirty();
}

void DwTrainLayer::forward(const Blocked& x, Stacked& ys) {
    Impl& m = *impl_;
    m.check("x", x, m.w, m.h, 1);
    m.check("outputs", ys, m.ow, m.oh, branches());
    int rc;
    if (m.dense()) {
        Blocked y = ys.sliced(3, 0);
        if (m.sf.kernel->kind == KernelKind::DwFwdRows) {
            rc = reinterpret_cast<RowsFwdFn>(m.sf.kernel->fn)(
                raw(x), m.wt.raw_buffer(), m.b.raw_buffer(), m.stride, br_[0].dilation,
                m.row_mask.raw_buffer(), y.raw_buffer());
        } else {
            rc = reinterpret_cast<DenseFwdFn>(m.sf.kernel->fn)(raw(x), m.wt.raw_buffer(),
                                                               m.b.raw_buffer(), m.stride,
                                                               br_[0].dilation, y.raw_buffer());
        }
    } else {
        const TapPlan& p = *m.plan;
        Stacked xs = stacked_view(x);
        rc = reinterpret_cast<TapsFwdFn>(m.sf.kernel->fn)(
            xs.raw_buffer(), m.rows.raw_buffer(), m.slots.raw_buffer(), m.bias.raw_buffer(),
            p.seg(1), p.seg(2), p.seg(3), p.left(), p.right(), p.top(), p.bottom(), raw(ys));
    }
    check_halide(rc, std::string("kernel ") + m.sf.kernel->name, m.d);
}

void DwTrainLayer::backward_data(const Stacked& dys, Blocked& dx) {
    Impl& m = *impl_;
    m.check("dy", dys, m.ow, m.oh, branches());
    m.check("dx", dx, m.w, m.h, 1);
    int rc;
    if (m.dense()) {
        Blocked dy = const_cast<Stacked&>(dys).sliced(3, 0);
        if (m.sd.kernel->kind == KernelKind::DwBwdDataRows) {
            rc = reinterpret_cast<RowsBwdDataFn>(m.sd.kernel->fn)(
                dy.raw_buffer(), m.wt.raw_buffer(), br_[0].dilation, m.row_mask.raw_buffer(),
                dx.raw_buffer());
        } else if (m.sd.kernel->kind == KernelKind::DwBwdDataStrided) {
            rc = reinterpret_cast<DenseBwdDataStridedFn>(m.sd.kernel->fn)(
                dy.raw_buffer(), m.wt.raw_buffer(), m.stride, br_[0].dilation, dx.raw_buffer());
        } else {
            rc = reinterpret_cast<DenseBwdDataFn>(m.sd.kernel->fn)(
                dy.raw_buffer(), m.wt.raw_buffer(), br_[0].dilation, dx.raw_buffer());
        }
    } else {
        const TapPlan& p = *m.plan_t;
        Stacked dxs = stacked_view(dx);
        rc = reinterpret_cast<TapsFwdFn>(m.sd.kernel->fn)(
            raw(dys), m.rows_t.raw_buffer(), m.slots_t.raw_buffer(), m.bias_t.raw_buffer(),
            p.seg(1), p.seg(2), p.seg(3), p.left(), p.right(), p.top(), p.bottom(),
            dxs.raw_buffer());
    }
    check_halide(rc, std::string("kernel ") + m.sd.kernel->name, m.d);
}

void DwTrainLayer::backward_weight(const Blocked& x, const Stacked& dys,
                                   const std::vector<float*>& dw, const std::vector<float*>& db) {
    Impl& m = *impl_;
    m.check("x", x, m.w, m.h, 1);
    m.check("dy", dys, m.ow, m.oh, branches());
    if (dw.size() != br_.size() || (!db.empty() && db.size() != br_.size()))
        throw std::invalid_argument("DwTrainLayer::backward_weight: gradient count != branches");
    int rc;
    if (m.dense()) {
        Blocked dy = const_cast<Stacked&>(dys).sliced(3, 0);
        if (m.sw.kernel->kind == KernelKind::DwBwdWeightRows) {
            rc = reinterpret_cast<RowsBwdWeightFn>(m.sw.kernel->fn)(
                raw(x), dy.raw_buffer(), m.fwd.kh, m.fwd.kw, m.stride, br_[0].dilation,
                m.row_mask.raw_buffer(), m.dwt.raw_buffer(), m.db.raw_buffer());
        } else {
            rc = reinterpret_cast<DenseBwdWeightFn>(m.sw.kernel->fn)(
                raw(x), dy.raw_buffer(), m.fwd.kh, m.fwd.kw, m.stride, br_[0].dilation,
                m.dwt.raw_buffer(), m.db.raw_buffer());
        }
        check_halide(rc, std::string("kernel ") + m.sw.kernel->name, m.d);
        add_centred(m.dwt, br_[0].kh, br_[0].kw, dw[0]);
        if (!db.empty() && db[0])
            for (int ch = 0; ch < m.c; ++ch) db[0][ch] += m.db(ch);
        return;
    }
    const TapPlan& p = *m.plan;
    Stacked xs = stacked_view(x);
    rc = reinterpret_cast<TapsWgradFn>(m.sw.kernel->fn)(
        xs.raw_buffer(), raw(dys), m.rows.raw_buffer(), p.seg(1), p.seg(2), p.seg(3), p.left(),
        p.right(), p.top(), p.bottom(), m.g[0].raw_buffer(), m.g[1].raw_buffer(),
        m.g[2].raw_buffer(), m.g[3].raw_buffer(), m.dbias.raw_buffer());
    check_halide(rc, std::string("kernel ") + m.sw.kernel->name, m.d);
    for (size_t i = 0; i < br_.size(); ++i) {
        const size_t taps = size_t(m.c) * br_[i].kh * br_[i].kw;
        m.tmp.resize(taps);
        m.plan->unpack(m.g, int(i), m.c, m.tmp.data());
        for (size_t t = 0; t < taps; ++t) dw[i][t] += m.tmp[t];
        if (!db.empty() && db[i])
            for (int ch = 0; ch < m.c; ++ch) db[i][ch] += m.dbias(ch % kLanes, int(i), ch / kLanes);
    }
}

std::string DwTrainLayer::measure_variants(const Blocked& x, int reps) {
    Impl& m = *impl_;
    if (!m.dense()) return "one row-table variant";
    m.check("x", x, m.w, m.h, 1);
    Stacked y = make_outputs();
    Blocked dx = make_blocked(m.n, m.c, m.h, m.w);
    std::vector<float> dw(size_t(m.c) * br_[0].kh * br_[0].kw), db(size_t(m.c));
    const Selection keep[3] = {m.hand[0], m.hand[1], m.hand[2]};
    Selection* sel[3] = {&m.sf, &m.sd, &m.sw};
    const Workload* wl[3] = {&m.fwd, &m.bd, &m.bw};
    std::string summary;
    for (int p = 0; p < 3; ++p) {
        std::vector<const KernelInfo*> cands;
        for (const KernelInfo& k : all_kernels())
            if (k.device == m.d && k.fn &&
                (kernel_supports(k, *wl[p]) || (m.row_mask.data() && row_mask_supports(k, *wl[p]))))
                cands.push_back(&k);
        std::vector<double> best(cands.size(), 1e30);
        for (int r = 0; r <= reps; ++r)
            for (size_t i = 0; i < cands.size(); ++i) {
                sel[p]->kernel = cands[i];
                const auto t0 = std::chrono::steady_clock::now();
                if (p == 0) forward(x, y);
                if (p == 1) backward_data(y, dx);
                if (p == 2) backward_weight(x, y, {dw.data()}, {db.data()});
                const double ms =
                    std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0)
                        .count();
                if (r > 0) best[i] = std::min(best[i], ms);  // r == 0: warm-up
            }
        size_t b = 0;
        for (size_t i = 0; i < cands.size(); ++i)
            if (best[i] < best[b]) b = i;
        if (cands.empty()) {
            *sel[p] = keep[p];
            continue;
        }
        *sel[p] = keep[p];
        if (cands[b] != keep[p].kernel) {
            sel[p]->kernel = cands[b];
            sel[p]->how = "measured";
        }
        double chosen_default = 1e30;
        for (size_t i = 0; i < cands.size(); ++i)
            if (cands[i] == keep[p].kernel) chosen_default = best[i];
        char buf[160];
        std::snprintf(buf, sizeof buf, "%s%s %.3f ms (default %s %.3f ms, %zu variants)",
                      p ? "; " : "", cands[b]->name, best[b], keep[p].kernel->name, chosen_default,
                      cands.size());
        summary += buf;
    }
    return summary;
}

void DwTrainLayer::use_variants(const std::string& fwd, const std::string& bwd_data,
                                const std::string& bwd_weight) {
    Impl& m = *impl_;
    const std::string names[3] = {fwd, bwd_data, bwd_weight};
    Selection* sel[3] = {&m.sf, &m.sd, &m.sw};
    const Workload* wl[3] = {&m.fwd, &m.bd, &m.bw};
    for (int p = 0; p < 3; ++p) {
        if (names[p] == sel[p]->kernel->name) continue;
        const KernelInfo* k = find_kernel(names[p], m.d);
        if (k && !m.row_mask.data() && row_mask_supports(*k, *wl[p]))
            throw std::invalid_argument("DwTrainLayer: '" + names[p] +
                                        "' is a row-mask variant and the layer has no row mask");
        if (!k || !(kernel_supports(*k, *wl[p]) || row_mask_supports(*k, *wl[p])))
            throw std::invalid_argument("DwTrainLayer: '" + names[p] +
                                        "' is not a compiled variant for " + to_string(*wl[p]));
        if (m.dense() == (k->kind == KernelKind::TapsFwd || k->kind == KernelKind::TapsWgrad))
            throw std::invalid_argument("DwTrainLayer: '" + names[p] + "' is not a " +
                                        (m.dense() ? "dense" : "row-table") + " variant");
        sel[p]->kernel = k;
        sel[p]->how = "named";
    }
}

void DwTrainLayer::set_row_mask(const std::vector<uint8_t>& rows) {
    Impl& m = *impl_;
    if (rows.empty()) {
        m.row_mask = Halide::Runtime::Buffer<uint8_t, 2>();
        Selection* sel[3] = {&m.sf, &m.sd, &m.sw};
        for (int p = 0; p < 3; ++p) {
            const KernelKind k = sel[p]->kernel->kind;
            if (k == KernelKind::DwFwdRows || k == KernelKind::DwBwdDataRows ||
                k == KernelKind::DwBwdWeightRows)
                *sel[p] = m.hand[p];
        }
        return;
    }
    if (!m.dense() || m.stride != 1)
        throw std::invalid_argument(
            "DwTrainLayer::set_row_mask: row masks need one kernel and stride 1");
    const int CB = blocks(m.c), kh = br_[0].kh;
    if (rows.size() != size_t(CB) * kh)
        throw std::invalid_argument("DwTrainLayer::set_row_mask: " + std::to_string(rows.size()) +
                                    " flags, expected " + std::to_string(CB * kh) + " (" +
                                    std::to_string(CB) + " lane blocks x " + std::to_string(kh) +
                                    " kernel rows)");
    // The kernels see the centred rows of the cropped kernel (cropped_to_map).
    const int kc = m.fwd.kh, off = (kh - kc) / 2;
    m.row_mask = Halide::Runtime::Buffer<uint8_t, 2>(kc, CB);
    for (int cb = 0; cb < CB; ++cb)
        for (int u = 0; u < kc; ++u) m.row_mask(u, cb) = rows[size_t(cb * kh + off + u)] ? 1 : 0;
    m.row_mask.set_host_dirty();
}

bool DwTrainLayer::has_row_mask() const { return impl_->row_mask.data() != nullptr; }

std::vector<std::string> DwTrainLayer::variant_names() const {
    const Impl& m = *impl_;
    return {m.sf.kernel->name, m.sd.kernel->name, m.sw.kernel->name};
}

std::string DwTrainLayer::kernel_names() const {
    const Impl& m = *impl_;
    return std::string(m.sf.kernel->name) + " / " + m.sd.kernel->name + " / " + m.sw.kernel->name;
}

}  // namespace lkc
