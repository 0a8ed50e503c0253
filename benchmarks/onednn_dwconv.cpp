#include "benchmarks/onednn_dwconv.h"

#include <algorithm>
#include <cstdint>
#include <numeric>
#include <stdexcept>
#include <unordered_map>
#include <utility>

#include "oneapi/dnnl/dnnl.hpp"

namespace lkc::bench {

namespace {

using dnnl::memory;
using Tag = memory::format_tag;

// splitmix64 finaliser: deterministic on every platform (unlike std distributions).
uint64_t mix64(uint64_t z) {
    z += 0x9E3779B97F4A7C15ull;
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

std::vector<float> random_vector(size_t n, uint64_t seed) {
    std::vector<float> v(n);
    for (size_t i = 0; i < n; ++i) {
        // Top 24 bits -> [0, 1) -> [-1, 1).
        const uint64_t r = mix64(seed * 0x100000001B3ull + i) >> 40;
        v[i] = static_cast<float>(r) * (2.0f / 16777216.0f) - 1.0f;
    }
    return v;
}

size_t numel(const memory::dims& d) {
    return static_cast<size_t>(
        std::accumulate(d.begin(), d.end(), memory::dim{1}, std::multiplies<memory::dim>()));
}

// oneDNN-style layout tag from a blocked desc: outer dims by decreasing stride (blocked ones
// upper-case), then inner blocks, e.g. "acdb" (NHWC) or "Abcde16a" (Goihw16g).
std::string layout_str(const memory::desc& md) {
    const dnnl_memory_desc_t& d = md.data;
    if (d.format_kind != dnnl_blocked) return "non-blocked";
    const auto& blk = d.format_desc.blocking;
    std::vector<int> order(static_cast<size_t>(d.ndims));
    std::iota(order.begin(), order.end(), 0);
    std::stable_sort(order.begin(), order.end(),
                     [&](int a, int b) { return blk.strides[a] > blk.strides[b]; });
    std::vector<bool> blocked(static_cast<size_t>(d.ndims), false);
    for (int i = 0; i < blk.inner_nblks; ++i)
        blocked[static_cast<size_t>(blk.inner_idxs[i])] = true;
    std::string s;
    for (int i : order) s += static_cast<char>((blocked[static_cast<size_t>(i)] ? 'A' : 'a') + i);
    for (int i = 0; i < blk.inner_nblks; ++i) {
        s += std::to_string(blk.inner_blks[i]);
        s += static_cast<char>('a' + blk.inner_idxs[i]);
    }
    return s;
}

}  // namespace

const char* dw_pass_name(DwProblem::Pass pass) {
    switch (pass) {
        case DwProblem::Fwd:
            return "fwd";
        case DwProblem::BwdData:
            return "bwd_data";
        case DwProblem::BwdWeight:
            return "bwd_weight";
    }
    return "?";
}

struct OnednnDwconv::Impl {
    DwProblem p;
    int oh = 0, ow = 0;
    dnnl::engine eng;
    dnnl::stream strm;
    dnnl::primitive prim;
    std::string impl_name;
    std::string layouts;
    // Plain (NCHW / goihw) descs of the two inputs and the output, and the primitive's memories.
    memory::desc a_user, b_user, out_user;
    memory a_mem, b_mem, out_mem;
    std::unordered_map<int, memory> args;

    explicit Impl(const DwProblem& prob);
    // memory is a shared handle: copies refer to the same buffer.
    void reorder(memory from, memory to) {
        dnnl::reorder(from, to).execute(strm, from, to);
        strm.wait();
    }
    void load(const memory::desc& user_md, const std::vector<float>& src, const memory& dst) {
        // The user memory only serves as reorder source; oneDNN does not write to it.
        memory user(user_md, eng, const_cast<float*>(src.data()));
        reorder(user, dst);
    }
};

OnednnDwconv::Impl::Impl(const DwProblem& prob) : p(prob) {
    if (p.n <= 0 || p.c <= 0 || p.h <= 0 || p.w <= 0 || p.kh <= 0 || p.kw <= 0 || p.stride <= 0 ||
        p.dilation <= 0) {
        throw std::invalid_argument("OnednnDwconv: non-positive problem size");
    }
    const int s = p.stride, d = p.dilation;
    oh = (p.h + s - 1) / s;
    ow = (p.w + s - 1) / s;
    // "Same" padding; padding_r is whatever makes oneDNN's floor formula give ceil(H/s):
    // OH = (H + pl + pr − (d·(Kh−1) + 1)) / s + 1. For stride 1 it equals pl; for stride 2 it is
    // usually smaller than pl (it may be negative, e.g. K=1 on even H, which oneDNN accepts).
    const int ph = d * (p.kh - 1) / 2, pw = d * (p.kw - 1) / 2;
    const int prh = (oh - 1) * s + d * (p.kh - 1) - ph - (p.h - 1);
    const int prw = (ow - 1) * s + d * (p.kw - 1) - pw - (p.w - 1);
    if ((p.h + ph + prh - (d * (p.kh - 1) + 1)) / s + 1 != oh ||
        (p.w + pw + prw - (d * (p.kw - 1) + 1)) / s + 1 != ow) {
        throw std::logic_error("OnednnDwconv: padding does not give ceil(H/s)");
    }

    eng = dnnl::engine(dnnl::engine::kind::cpu, 0);
    strm = dnnl::stream(eng);

    const memory::dims x_dims = {p.n, p.c, p.h, p.w};
    const memory::dims y_dims = {p.n, p.c, oh, ow};
    const memory::dims w_dims = {p.c, 1, 1, p.kh, p.kw};  // groups = C, OC/g = IC/g = 1
    const memory::dims strides = {s, s};
    const memory::dims dilates = {d - 1, d - 1};  // oneDNN: 0 = dense
    const memory::dims pad_l = {ph, pw};
    const memory::dims pad_r = {prh, prw};
    const auto f32 = memory::data_type::f32;
    const memory::desc x_any(x_dims, f32, Tag::any);
    const memory::desc y_any(y_dims, f32, Tag::any);
    const memory::desc w_any(w_dims, f32, Tag::any);
    const memory::desc x_plain(x_dims, f32, Tag::nchw);
    const memory::desc y_plain(y_dims, f32, Tag::nchw);
    const memory::desc w_plain(w_dims, f32, Tag::goihw);
    const auto direct = dnnl::algorithm::convolution_direct;

    // Checks oneDNN agrees on the output size (it validates desc consistency too).
    auto check_dims = [&](const memory::desc& md) {
        if (md.dims() != y_dims) throw std::logic_error("OnednnDwconv: output dims mismatch");
    };

    memory::desc a_md, b_md, out_md;
    int a_arg = 0, b_arg = 0, out_arg = 0;
    if (p.pass == DwProblem::Fwd) {
        dnnl::convolution_forward::desc desc(dnnl::prop_kind::forward_inference, direct, x_any,
                                             w_any, y_any, strides, dilates, pad_l, pad_r);
        dnnl::convolution_forward::primitive_desc pd(desc, eng);
        check_dims(pd.dst_desc());
        prim = dnnl::convolution_forward(pd);
        impl_name = pd.impl_info_str();
        a_md = pd.src_desc(), b_md = pd.weights_desc(), out_md = pd.dst_desc();
        a_arg = DNNL_ARG_SRC, b_arg = DNNL_ARG_WEIGHTS, out_arg = DNNL_ARG_DST;
        a_user = x_plain, b_user = w_plain, out_user = y_plain;
    } else {
        dnnl::convolution_forward::desc fwd_desc(dnnl::prop_kind::forward_training, direct, x_any,
                                                 w_any, y_any, strides, dilates, pad_l, pad_r);
        dnnl::convolution_forward::primitive_desc hint(fwd_desc, eng);
        if (p.pass == DwProblem::BwdData) {
            dnnl::convolution_backward_data::desc desc(direct, x_any, w_any, y_any, strides,
                                                       dilates, pad_l, pad_r);
            dnnl::convolution_backward_data::primitive_desc pd(desc, eng, hint);
            check_dims(pd.diff_dst_desc());
            prim = dnnl::convolution_backward_data(pd);
            impl_name = pd.impl_info_str();
            a_md = pd.diff_dst_desc(), b_md = pd.weights_desc(), out_md = pd.diff_src_desc();
            a_arg = DNNL_ARG_DIFF_DST, b_arg = DNNL_ARG_WEIGHTS, out_arg = DNNL_ARG_DIFF_SRC;
            a_user = y_plain, b_user = w_plain, out_user = x_plain;
        } else {
            dnnl::convolution_backward_weights::desc desc(direct, x_any, w_any, y_any, strides,
                                                          dilates, pad_l, pad_r);
            dnnl::convolution_backward_weights::primitive_desc pd(desc, eng, hint);
            check_dims(pd.diff_dst_desc());
            prim = dnnl::convolution_backward_weights(pd);
            impl_name = pd.impl_info_str();
            a_md = pd.src_desc(), b_md = pd.diff_dst_desc(), out_md = pd.diff_weights_desc();
            a_arg = DNNL_ARG_SRC, b_arg = DNNL_ARG_DIFF_DST, out_arg = DNNL_ARG_DIFF_WEIGHTS;
            a_user = x_plain, b_user = y_plain, out_user = w_plain;
        }
    }
    a_mem = memory(a_md, eng);
    b_mem = memory(b_md, eng);
    out_mem = memory(out_md, eng);
    args = {{a_arg, a_mem}, {b_arg, b_mem}, {out_arg, out_mem}};

    const char* names[3][3] = {
        {"src", "wei", "dst"}, {"diff_dst", "wei", "diff_src"}, {"src", "diff_dst", "diff_wei"}};
    const auto& nm = names[p.pass];
    layouts = std::string(nm[0]) + ":" + layout_str(a_md) + " " + nm[1] + ":" + layout_str(b_md) +
              " " + nm[2] + ":" + layout_str(out_md);

    // Inputs: deterministic data reordered from NCHW (keeps blocked padding zero).
    load(a_user, random_vector(numel(a_user.dims()), 1 + 3 * static_cast<uint64_t>(p.pass)), a_mem);
    load(b_user, random_vector(numel(b_user.dims()), 2 + 3 * static_cast<uint64_t>(p.pass)), b_mem);
}

OnednnDwconv::OnednnDwconv(const DwProblem& p) : impl_(std::make_unique<Impl>(p)) {}
OnednnDwconv::~OnednnDwconv() = default;
OnednnDwconv::OnednnDwconv(OnednnDwconv&&) noexcept = default;
OnednnDwconv& OnednnDwconv::operator=(OnednnDwconv&&) noexcept = default;

void OnednnDwconv::run() {
    impl_->prim.execute(impl_->strm, impl_->args);
    impl_->strm.wait();
}

std::string OnednnDwconv::impl_name() const { return impl_->impl_name; }

std::vector<float> OnednnDwconv::run_nchw(const std::vector<float>& a,
                                          const std::vector<float>& b) {
    Impl& m = *impl_;
    if (a.size() != numel(m.a_user.dims()) || b.size() != numel(m.b_user.dims())) {
        throw std::invalid_argument("OnednnDwconv::run_nchw: input size mismatch");
    }
    m.load(m.a_user, a, m.a_mem);
    m.load(m.b_user, b, m.b_mem);
    run();
    std::vector<float> out(numel(m.out_user.dims()));
    memory user(m.out_user, m.eng, out.data());
    m.reorder(m.out_mem, user);
    return out;
}

const DwProblem& OnednnDwconv::problem() const { return impl_->p; }
int OnednnDwconv::out_h() const { return impl_->oh; }
int OnednnDwconv::out_w() const { return impl_->ow; }

double OnednnDwconv::nominal_flops() const {
    const DwProblem& p = impl_->p;
    return 2.0 * p.n * p.c * impl_->oh * impl_->ow * p.kh * p.kw;
}

std::string OnednnDwconv::layouts() const { return impl_->layouts; }

// ---- multi-branch: one primitive per branch plus a sum -----------------------------------------

struct OnednnMultiDw::Impl {
    dnnl::engine eng;
    dnnl::stream strm;
    std::vector<dnnl::primitive> prims;
    std::vector<std::unordered_map<int, memory>> args;
    std::string impl_name;

    void load(const memory::desc& user_md, const std::vector<float>& src, const memory& dst) {
        memory user(user_md, eng, const_cast<float*>(src.data()));
        memory to = dst;  // a shared handle to the same buffer
        dnnl::reorder(user, to).execute(strm, user, to);
        strm.wait();
    }
};

namespace {

// One branch's primitive and the layouts it chose.
struct BranchPd {
    dnnl::primitive prim;
    std::string name;
    memory::desc a, w, y, out;  // src / diff_src, weights / diff_weights, dst / diff_dst, output
};

BranchPd make_branch(const dnnl::engine& eng, DwProblem::Pass pass, const memory::desc& a_md,
                     const memory::desc& y_md, const memory::desc& w_any,
                     const memory::dims& dilates, const memory::dims& pad) {
    const auto direct = dnnl::algorithm::convolution_direct;
    const memory::dims strides = {1, 1};
    BranchPd r;
    if (pass == DwProblem::Fwd) {
        dnnl::convolution_forward::desc desc(dnnl::prop_kind::forward_inference, direct, a_md,
                                             w_any, y_md, strides, dilates, pad, pad);
        dnnl::convolution_forward::primitive_desc pd(desc, eng);
        r.prim = dnnl::convolution_forward(pd);
        r.name = pd.impl_info_str();
        r.a = pd.src_desc(), r.w = pd.weights_desc(), r.y = pd.dst_desc(), r.out = r.y;
        return r;
    }
    dnnl::convolution_forward::desc fwd(dnnl::prop_kind::forward_training, direct, a_md, w_any,
                                        y_md, strides, dilates, pad, pad);
    dnnl::convolution_forward::primitive_desc hint(fwd, eng);
    if (pass == DwProblem::BwdData) {
        dnnl::convolution_backward_data::desc desc(direct, a_md, w_any, y_md, strides, dilates, pad,
                                                   pad);
        dnnl::convolution_backward_data::primitive_desc pd(desc, eng, hint);
        r.prim = dnnl::convolution_backward_data(pd);
        r.name = pd.impl_info_str();
        r.a = pd.diff_src_desc(), r.w = pd.weights_desc(), r.y = pd.diff_dst_desc(), r.out = r.a;
        return r;
    }
    dnnl::convolution_backward_weights::desc desc(direct, a_md, w_any, y_md, strides, dilates, pad,
                                                  pad);
    dnnl::convolution_backward_weights::primitive_desc pd(desc, eng, hint);
    r.prim = dnnl::convolution_backward_weights(pd);
    r.name = pd.impl_info_str();
    r.a = pd.src_desc(), r.w = pd.diff_weights_desc(), r.y = pd.diff_dst_desc(), r.out = r.w;
    return r;
}

}  // namespace

OnednnMultiDw::OnednnMultiDw(int n, int c, int h, int w, const std::vector<DwBranch>& branches,
                             DwProblem::Pass pass)
    : impl_(std::make_unique<Impl>()) {
    Impl& m = *impl_;
    if (branches.empty()) throw std::invalid_argument("OnednnMultiDw: no branches");
    if (n <= 0 || c <= 0 || h <= 0 || w <= 0)
        throw std::invalid_argument("OnednnMultiDw: non-positive problem size");
    m.eng = dnnl::engine(dnnl::engine::kind::cpu, 0);
    m.strm = dnnl::stream(m.eng);
    const auto f32 = memory::data_type::f32;
    const memory::dims x_dims = {n, c, h, w};  // stride 1, "same": output = input size
    const memory::desc act_any(x_dims, f32, Tag::any), act_plain(x_dims, f32, Tag::nchw);
    // Shared activation layouts: what branch 0 chose with `any`.
    memory::desc a_md = act_any, y_md = act_any;
    memory a_mem, y_mem;       // the shared inputs: x (fwd, bwd_weight), dy (bwd_data, bwd_weight)
    std::vector<memory> outs;  // branch outputs in the shared layout (summed)
    auto add = [&](dnnl::primitive p, std::unordered_map<int, memory> arg) {
        m.prims.push_back(std::move(p));
        m.args.push_back(std::move(arg));
    };
    auto reorder_step = [&](const memory& from, const memory& to) {
        add(dnnl::reorder(from, to), {{DNNL_ARG_FROM, from}, {DNNL_ARG_TO, to}});
    };
    for (size_t i = 0; i < branches.size(); ++i) {
        const DwBranch& b = branches[i];
        if (b.kh <= 0 || b.kw <= 0 || b.dilation <= 0 || b.kh % 2 == 0 || b.kw % 2 == 0)
            throw std::invalid_argument("OnednnMultiDw: branch kernels must be odd and positive");
        const int d = b.dilation;
        const memory::dims w_dims = {c, 1, 1, b.kh, b.kw};
        const memory::desc w_any(w_dims, f32, Tag::any), w_plain(w_dims, f32, Tag::goihw);
        const memory::dims dilates = {d - 1, d - 1};
        const memory::dims pad = {d * (b.kh - 1) / 2, d * (b.kw - 1) / 2};
        BranchPd bp = make_branch(m.eng, pass, a_md, y_md, w_any, dilates, pad);
        std::string note;
        if (i > 0 && bp.name.rfind("ref", 0) == 0) {
            // The shared layouts only have oneDNN's reference path for this branch: let it pick
            // its own layouts and pay for the reorders in and out instead (timed).
            BranchPd own = make_branch(m.eng, pass, act_any, act_any, w_any, dilates, pad);
            if (own.name.rfind("ref", 0) != 0) bp = own, note = " (own layout, reordered)";
        }
        if (i == 0) {
            a_md = bp.a, y_md = bp.y;
            if (pass != DwProblem::BwdData) {
                a_mem = memory(a_md, m.eng);
                m.load(act_plain, random_vector(numel(x_dims), 1 + 3 * uint64_t(pass)), a_mem);
            }
            if (pass != DwProblem::Fwd) {
                y_mem = memory(y_md, m.eng);
                m.load(act_plain, random_vector(numel(x_dims), 2 + 3 * uint64_t(pass)), y_mem);
            }
        }
        // Inputs in the branch's layouts (reordered per call when they differ).
        auto input = [&](const memory& shared, const memory::desc& want) {
            if (want == shared.get_desc()) return shared;
            memory own(want, m.eng);
            reorder_step(shared, own);
            return own;
        };
        std::unordered_map<int, memory> arg;
        memory out(bp.out, m.eng);
        const uint64_t seed = 100 + 7 * i + 3 * static_cast<uint64_t>(pass);
        if (pass == DwProblem::Fwd) {
            memory wm(bp.w, m.eng);
            m.load(w_plain, random_vector(numel(w_dims), seed), wm);
            arg = {{DNNL_ARG_SRC, input(a_mem, bp.a)}, {DNNL_ARG_WEIGHTS, wm}, {DNNL_ARG_DST, out}};
        } else if (pass == DwProblem::BwdData) {
            memory wm(bp.w, m.eng);
            m.load(w_plain, random_vector(numel(w_dims), seed), wm);
            arg = {{DNNL_ARG_DIFF_DST, input(y_mem, bp.y)},
                   {DNNL_ARG_WEIGHTS, wm},
                   {DNNL_ARG_DIFF_SRC, out}};
        } else {
            arg = {{DNNL_ARG_SRC, input(a_mem, bp.a)},
                   {DNNL_ARG_DIFF_DST, input(y_mem, bp.y)},
                   {DNNL_ARG_DIFF_WEIGHTS, out}};
        }
        add(bp.prim, std::move(arg));
        if (pass != DwProblem::BwdWeight) {
            const memory::desc& shared_out = pass == DwProblem::Fwd ? y_md : a_md;
            if (bp.out == shared_out) {
                outs.push_back(out);
            } else {
                memory conv(shared_out, m.eng);
                reorder_step(out, conv);
                outs.push_back(conv);
            }
        }
        m.impl_name += (i ? " + " : "") + bp.name + note;
    }
    if (pass != DwProblem::BwdWeight && branches.size() > 1) {
        std::vector<memory::desc> mds;
        for (const memory& o : outs) mds.push_back(o.get_desc());
        dnnl::sum::primitive_desc pd(mds[0], std::vector<float>(outs.size(), 1.0f), mds, m.eng);
        memory dst(pd.dst_desc(), m.eng);
        std::unordered_map<int, memory> arg{{DNNL_ARG_DST, dst}};
        for (size_t i = 0; i < outs.size(); ++i)
            arg.insert({DNNL_ARG_MULTIPLE_SRC + static_cast<int>(i), outs[i]});
        add(dnnl::sum(pd), std::move(arg));
        m.impl_name += " + sum:" + std::string(pd.impl_info_str());
    }
}

OnednnMultiDw::~OnednnMultiDw() = default;

void OnednnMultiDw::run() {
    Impl& m = *impl_;
    for (size_t i = 0; i < m.prims.size(); ++i) m.prims[i].execute(m.strm, m.args[i]);
    m.strm.wait();
}

std::string OnednnMultiDw::impl_name() const { return impl_->impl_name; }

}  // namespace lkc::bench
