#include "runtime/dwconv2d_taps.h"

#include <algorithm>
#include <cstdlib>
#include <limits>
#include <set>
#include <stdexcept>
#include <tuple>

#include "runtime/dwconv2d.h"
#include "runtime/kernel_abi.h"
#include "runtime/op_inputs.h"
#include "runtime/reparam.h"
#include "runtime/schedule_selection.h"

namespace lkc {

namespace {
using abi::kLanes;
using abi::TapsFwdFn;
using abi::TapsWgradFn;

int blocks(int64_t c) { return abi::lane_blocks(c); }

// Relative cost of one entry of class width c per output tile: c taps plus a fixed per-entry
// overhead (predicate, address set-up, the tile - 1 extra input loads), about 0.8 taps.
double entry_cost(int c) { return c + 0.8; }

}  // namespace

constexpr std::array<int, TapPlan::kClasses> TapPlan::kChunk;

TapPlan::TapPlan(const std::vector<TapKernel>& kernels, bool transpose, int map_h, int map_w)
    : kernels_(kernels) {
    // Distinct taps per row group (in, out, dy) -> sorted dx.
    using Row = std::tuple<int, int, int>;
    std::map<Row, std::set<int>> groups;
    auto offset = [&](const TapKernel& k, int u, int v) {
        int dy = k.row0 + u * k.dil, dx = k.col0 + v * k.dil;
        return transpose ? std::make_pair(-dy, -dx) : std::make_pair(dy, dx);
    };
    auto meets_map = [&](std::pair<int, int> o) {
        return (map_h <= 0 || std::abs(o.first) < map_h) &&
               (map_w <= 0 || std::abs(o.second) < map_w);
    };
    for (const TapKernel& k : kernels_) {
        if (k.kh < 1 || k.kw < 1 || k.dil < 1) throw std::invalid_argument("TapPlan: bad kernel");
        for (int u = 0; u < k.kh; ++u)
            for (int v = 0; v < k.kw; ++v) {
                const auto o = offset(k, u, v);
                if (meets_map(o)) groups[{k.in, k.out, o.first}].insert(o.second);
            }
    }
    // Cover each row's columns with runs of the width classes (DP over the sorted columns; a run
    // may span holes, which get zero weights).
    struct Piece {
        Row row;
        int dx, cls;
    };
    std::vector<Piece> pieces;
    for (const auto& [row, cols] : groups) {
        const std::vector<int> p(cols.begin(), cols.end());
        const int m = int(p.size());
        distinct_ += m;
        std::vector<double> f(m + 1, 0.0);
        std::vector<int> pick(m, 0);
        for (int i = m - 1; i >= 0; --i) {
            f[i] = std::numeric_limits<double>::infinity();
            for (int c = 0; c < kClasses; ++c) {
                int j = i;
                while (j < m && p[j] < p[i] + kChunk[c]) ++j;
                const double cost = entry_cost(kChunk[c]) + f[j];
                if (cost < f[i]) f[i] = cost, pick[i] = c;
            }
        }
        for (int i = 0; i < m;) {
            const int c = pick[i];
            pieces.push_back({row, p[i], c});
            int j = i;
            while (j < m && p[j] < p[i] + kChunk[c]) ++j;
            i = j;
        }
    }
    std::stable_sort(pieces.begin(), pieces.end(),
                     [](const Piece& a, const Piece& b) { return a.cls < b.cls; });
    // Entries, weight slots, and the lookup from (row, dx) to (entry, lane).
    std::map<std::tuple<int, int, int, int>, std::pair<int, int>> where;
    std::vector<int> woff;
    for (const Piece& pc : pieces) {
        const int e = int(entry_.size());
        entry_.push_back(
            {std::get<2>(pc.row), pc.dx, std::get<0>(pc.row), std::get<1>(pc.row), pc.cls});
        woff.push_back(slots_);
        for (int l = 0; l < kChunk[pc.cls]; ++l) {
            where[{std::get<0>(pc.row), std::get<1>(pc.row), std::get<2>(pc.row), pc.dx + l}] = {e,
                                                                                                 l};
        }
        slots_ += kChunk[pc.cls];
    }
    for (int k = 0, e = 0; k <= kClasses; ++k) {
        while (e < entries() && entry_[e].cls < k) ++e;
        seg_[k] = e;
    }
    for (const Entry& en : entry_) {
        left_ = std::max(left_, -en.dx);
        right_ = std::max(right_, en.dx);
        top_ = std::max(top_, -en.dy);
        bottom_ = std::max(bottom_, en.dy);
    }
    rows_ = Halide::Runtime::Buffer<int32_t, 2>(5, entries());
    for (int e = 0; e < entries(); ++e) {
        const Entry& en = entry_[e];
        const int v[5] = {en.dy, en.dx, en.in, en.out, woff[e]};
        for (int f = 0; f < 5; ++f) rows_(f, e) = v[f];
    }
    for (const TapKernel& k : kernels_) {
        std::vector<int> slot(k.kh * k.kw);
        std::vector<std::pair<int, int>> lane(k.kh * k.kw);
        for (int u = 0; u < k.kh; ++u)
            for (int v = 0; v < k.kw; ++v) {
                const auto o = offset(k, u, v);
                if (!meets_map(o)) {
                    lane[u * k.kw + v] = {-1, -1};
                    slot[u * k.kw + v] = -1;
                    continue;
                }
                const auto el = where.at({k.in, k.out, o.first, o.second});
                lane[u * k.kw + v] = el;
                slot[u * k.kw + v] = woff[el.first] + el.second;
            }
        slot_of_.push_back(std::move(slot));
        lane_of_.push_back(std::move(lane));
    }
}

void TapPlan::pack(const std::vector<const float*>& w, int channels,
                   const std::vector<const float*>& scale,
                   Halide::Runtime::Buffer<float, 3>& dst) const {
    dst.fill(0.0f);
    for (size_t i = 0; i < kernels_.size(); ++i) {
        const TapKernel& k = kernels_[i];
        const int taps = k.kh * k.kw;
        for (int c = 0; c < channels; ++c) {
            const float s = (i < scale.size() && scale[i]) ? scale[i][c] : 1.0f;
            const float* src = w[i] + int64_t(c) * taps;
            for (int t = 0; t < taps; ++t)
                if (slot_of_[i][t] >= 0) dst(c % kLanes, slot_of_[i][t], c / kLanes) += s * src[t];
        }
    }
}

void TapPlan::add_identity(int i, int u, int v, int channels,
                           Halide::Runtime::Buffer<float, 3>& dst) const {
    const int slot = slot_of_.at(i).at(u * kernels_[i].kw + v);
    if (slot < 0) throw std::logic_error("TapPlan::add_identity: the centre tap was dropped");
    for (int c = 0; c < channels; ++c) dst(c % kLanes, slot, c / kLanes) += 1.0f;
}

void TapPlan::unpack(const std::array<Halide::Runtime::Buffer<float, 4>, kClasses>& g, int i,
                     int channels, float* dst) const {
    const TapKernel& k = kernels_.at(i);
    const int taps = k.kh * k.kw;
    for (int c = 0; c < channels; ++c)
        for (int t = 0; t < taps; ++t) {
            const auto [e, l] = lane_of_[i][t];
            if (e < 0) {
                dst[int64_t(c) * taps + t] = 0.0f;  // never meets the image
                continue;
            }
            const int cls = entry_[e].cls;
            dst[int64_t(c) * taps + t] = g[cls](c % kLanes, l, e - seg_[cls], c / kLanes);
        }
}

double TapPlan::estimated_cost(int h, int w, bool wgrad, int tile) const {
    const int J = 8;  // wgrad output columns per step
    double cost = 0;
    for (int e = 0; e < entries(); ++e) {
        const Entry& en = entry_[e];
        const int c = kChunk[en.cls];
        const double rows = std::max(0, h - std::abs(en.dy)) / double(std::max(1, h));
        const int step = wgrad ? J : tile;
        double fmas = 0;
        for (int j0 = 0; j0 < w; j0 += step) {
            const int lo = j0 + en.dx, hi = j0 + step - 1 + en.dx + c - 1;
            if (hi >= 0 && lo < w) fmas += double(step) * c;
        }
        const double lpf =
            wgrad ? double(J + J + c - 1) / (J * c) : double(c + tile + c - 1) / (double(tile) * c);
        cost += rows * fmas * (1.0 + std::max(0.0, lpf - 0.5));
    }
    // Staging the zero-extended input once per task (~4 cycles per vector, per output row).
    cost += 4.0 * (w + left_ + right_ + 8) * (h + top_ + bottom_) / double(std::max(1, h));
    return cost;
}

// ---------------------------------------------------------------------------------------------

namespace {
Stacked make_stacked(int n, int c, int h, int w, int s) {
    Stacked b(kLanes, w, h, s, blocks(c), n);
    b.fill(0.0f);
    return b;
}

void put(const Tensor& t, Stacked& st, int s) {
    Blocked view = st.sliced(3, s);
    to_blocked_into(t, view);
}

Tensor get(Stacked& st, int s, int c) {
    Blocked view = st.sliced(3, s);
    return from_blocked(view, c);
}

const char* const kShiftOut[3] = {"yh", "yv", "ys"};
const char* const kShiftDy[3] = {"dyh", "dyv", "dys"};
}  // namespace

Stacked stacked_view(const Blocked& b) {
    halide_buffer_t raw = *b.raw_buffer();
    halide_dimension_t dims[6];
    for (int i = 0, j = 0; i < 6; ++i) {
        if (i == 3) {
            dims[i] = halide_dimension_t(0, 1, int32_t(b.number_of_elements()));
        } else {
            dims[i] = raw.dim[j++];
        }
    }
    raw.dimensions = 6;
    raw.dim = dims;
    return Stacked(raw);  // copies the shape; the device allocation stays b's (unmanaged)
}

TapsRunner::TapsRunner(const Workload& w, Device d, const std::string& kernel_name) : w_(w), d_(d) {
    install_halide_error_handler();
    if (w.op != Op::DwConv2dMulti && w.op != Op::ShiftWise) {
        throw std::invalid_argument("TapsRunner: workload '" + to_string(w) +
                                    "' is neither dwconv2d_multi nor shiftwise");
    }
    if (w.stride != 1) {
        throw std::invalid_argument("workload '" + to_string(w) +
                                    "': dwconv2d_multi kernels run stride 1 only");
    }
    // The merged dense alternative of a multi-branch op: one centred kernel of the largest
    // dilated extent per dimension (the dense kernels take up to 63).
    const bool merged_ok = w.op == Op::DwConv2dMulti && merged_dense_of(w, &merged_w_);
    const KernelInfo* named = kernel_name.empty() ? nullptr : find_kernel(kernel_name, d);
    const bool named_dense = merged_ok && named && kernel_supports(*named, merged_w_);
    // A tuned record may name the taps kernel or, for multi-branch ops, a dense one.
    Selection tuned;
    if (kernel_name.empty()) {
        tuned = select_tuned(w, d, [&](const KernelInfo& k) {
            return kernel_supports(k, w) || (merged_ok && kernel_supports(k, merged_w_));
        });
    }
    const bool tuned_dense = tuned.kernel && !kernel_supports(*tuned.kernel, w);
    if (tuned.kernel && !tuned_dense) {
        sel_ = tuned;
    } else if (named_dense || tuned_dense) {
        sel_ = {&hand_default_kernel(w, d), "", ""};
    } else {
        sel_ = select_kernel_explained(w, d, kernel_name);
    }
    k_ = sel_.kernel;
    if (!kernel_name.empty() && !named_dense && kernel_name != k_->name) {
        throw std::invalid_argument("kernel '" + kernel_name + "' does not exist or cannot run '" +
                                    to_string(w) + "' on " + device_name(d));
    }
    build_plan(false);
    if (named_dense || tuned_dense) {
        merged_ = std::make_unique<DwConv2dRunner>(merged_w_, d,
                                                   named_dense ? kernel_name : tuned.kernel->name);
        sel_ = named_dense ? Selection{named, "named (merged dense kernel)", ""} : tuned;
    } else if (merged_ok && kernel_name.empty() && !tuned.kernel) {
        const KernelInfo& dk = hand_default_kernel(merged_w_, d);
        const double dense = lkc::estimated_cost(dk, merged_w_);
        const double taps = plan_->estimated_cost(w.h, w.w, w.pass == Pass::BwdWeight);
        if (dense < taps) {
            merged_ = std::make_unique<DwConv2dRunner>(merged_w_, d, dk.name);
            sel_ = {&dk, "hand default (merged dense kernel)", ""};
        }
    }
}

void TapsRunner::sync() {
    if (merged_) return merged_->sync();
    if (out_.data()) check_halide(out_.device_sync(), "device sync", d_);
    for (auto& g : g_)
        if (g.data()) check_halide(g.device_sync(), "device sync", d_);
    if (db_.data()) check_halide(db_.device_sync(), "device sync", d_);
}

bool merged_dense_of(const Workload& w, Workload* merged) {
    if (w.op != Op::DwConv2dMulti) return false;
    Workload m = w;
    m.op = Op::DwConv2d;
    m.branches.clear();
    m.kh = m.kw = 1;
    for (const Branch& b : w.branches) {
        m.kh = std::max(m.kh, (b.kh - 1) * b.dilation + 1);
        m.kw = std::max(m.kw, (b.kw - 1) * b.dilation + 1);
    }
    if (m.kh > 63 || m.kw > 63) return false;
    *merged = m;
    return true;
}

std::vector<TapKernel> tap_kernels_of(const Workload& w, bool fused_inference) {
    std::vector<TapKernel> ks;
    if (w.op != Op::ShiftWise) {
        for (const Branch& b : w.branches) {
            ks.push_back({b.kh, b.kw, b.dilation, -b.dilation * (b.kh - 1) / 2,
                          -b.dilation * (b.kw - 1) / 2, 0, 0});
        }
        return ks;
    }
    const int k = w.small_k, nk = w.num_sub_kernels(), mid = w.big_k / 2, e = (k - 1) / 2;
    ks.push_back({k, nk * k, 1, -e, -mid, 0, 0});  // horizontal: yh
    ks.push_back({nk * k, k, 1, -mid, -e, 0, 1});  // vertical: yv
    ks.push_back({k, k, 1, -e, -e, 0, 2});         // identity path: ys
    for (int i = 0; i < 3; ++i) {
        if (w.pass == Pass::BwdData) std::swap(ks[i].in, ks[i].out);
        if (fused_inference) ks[i].out = 0;
    }
    return ks;
}

TapPlan tap_plan_of(const Workload& w) {
    return TapPlan(tap_kernels_of(w, false), /*transpose=*/w.pass == Pass::BwdData, w.h, w.w);
}

void TapsRunner::build_plan(bool fused_inference) {
    inference_ = fused_inference;
    kernels_ = tap_kernels_of(w_, fused_inference);
    const bool shift = w_.op == Op::ShiftWise;
    plan_ = std::make_unique<TapPlan>(kernels_, /*transpose=*/w_.pass == Pass::BwdData, w_.h, w_.w);

    const int n = w_.n, c = w_.c, h = w_.h, wd = w_.w;
    const int slots_io = shift && !fused_inference ? 3 : 1;
    x_ = Stacked();
    dy_ = Stacked();
    out_ = Stacked();
    switch (w_.pass) {
        case Pass::Fwd:
            x_ = make_stacked(n, c, h, wd, 1);
            out_ = make_stacked(n, c, h, wd, slots_io);
            bias_ = Halide::Runtime::Buffer<float, 3>(kLanes, slots_io, blocks(c));
            bias_.fill(0.0f);
            break;
        case Pass::BwdData:
            dy_ = make_stacked(n, c, h, wd, slots_io);
            out_ = make_stacked(n, c, h, wd, 1);
            bias_ = Halide::Runtime::Buffer<float, 3>(kLanes, 1, blocks(c));
            bias_.fill(0.0f);
            break;
        case Pass::BwdWeight:
            x_ = make_stacked(n, c, h, wd, 1);
            dy_ = make_stacked(n, c, h, wd, slots_io);
            for (int k = 0; k < TapPlan::kClasses; ++k) {
                const int cnt = std::max(1, plan_->seg(k + 1) - plan_->seg(k));
                g_[k] =
                    Halide::Runtime::Buffer<float, 4>(kLanes, TapPlan::kChunk[k], cnt, blocks(c));
            }
            db_ = Halide::Runtime::Buffer<float, 3>(kLanes, slots_io, blocks(c));
            break;
    }
    wt_ = Halide::Runtime::Buffer<float, 3>(kLanes, std::max(1, plan_->slots()), blocks(c));
}

void TapsRunner::prepare_weights() {
    if (w_.pass == Pass::BwdWeight) return;
    const int c = w_.c;
    std::vector<const float*> w, scale;
    Tensor wh, wv, ws;
    if (w_.op == Op::DwConv2dMulti) {
        for (size_t b = 0; b < w_.branches.size(); ++b)
            w.push_back(in_.at("w" + std::to_string(b)).data<float>());
    } else {
        const auto eq = reparam::shiftwise_equivalent(in_.at("w"), in_.at("slot_h"),
                                                      in_.at("slot_v"), in_.at("ident"), w_.big_k);
        wh = eq.wh, wv = eq.wv, ws = eq.ws;
        w = {wh.data<float>(), wv.data<float>(), ws.data<float>()};
        if (inference_)
            scale = {in_.at("ah").data<float>(), in_.at("av").data<float>(),
                     in_.at("as").data<float>()};
    }
    plan_->pack(w, c, scale, wt_);
    if (inference_) {
        const int e = (w_.small_k - 1) / 2;
        plan_->add_identity(2, e, e, c, wt_);  // + x
    }
    wt_.set_host_dirty();
    const char* bname = w_.op == Op::DwConv2dMulti ? "b" : (inference_ ? "b" : nullptr);
    if (bname && in_.count(bname) && w_.pass == Pass::Fwd) {
        const float* b = in_.at(bname).data<float>();
        for (int ch = 0; ch < c; ++ch) bias_(ch % kLanes, 0, ch / kLanes) = b[ch];
        bias_.set_host_dirty();
    }
}

void TapsRunner::set_inputs(const std::map<std::string, Tensor>& inputs) {
    check_op_inputs(w_, inputs);
    if (w_.op == Op::ShiftWise) {
        (void)read_shift_tables(w_, inputs.at("slot_h"), inputs.at("slot_v"), inputs.at("ident"));
    }
    in_ = inputs;
    if (merged_) {
        std::map<std::string, Tensor> m;
        for (const char* name : {"x", "dy"})
            if (inputs.count(name)) m[name] = inputs.at(name);
        if (w_.pass != Pass::BwdWeight) {
            std::vector<reparam::Branch> br;
            for (size_t b = 0; b < w_.branches.size(); ++b)
                br.push_back({inputs.at("w" + std::to_string(b)),
                              b == 0 && inputs.count("b") ? inputs.at("b") : Tensor(),
                              w_.branches[b].dilation});
            const reparam::ConvParams cp = reparam::merge_branches(br);
            m["w"] = cp.w;
            if (w_.pass == Pass::Fwd) m["b"] = cp.b;
        }
        merged_->set_inputs(m);
        return;
    }
    build_plan(w_.op == Op::ShiftWise && w_.pass == Pass::Fwd && inputs.count("ah"));
    const bool shift = w_.op == Op::ShiftWise;
    if (x_.data()) put(in_.at("x"), x_, 0);
    if (dy_.data()) {
        if (shift) {
            for (int s = 0; s < 3; ++s) put(in_.at(kShiftDy[s]), dy_, s);
        } else {
            put(in_.at("dy"), dy_, 0);
        }
    }
    for (auto* b : {&x_, &dy_})
        if (b->data()) b->set_host_dirty();
    prepare_weights();
}

void TapsRunner::fill_random(uint32_t seed) { set_inputs(make_example_inputs(w_, seed)); }

void TapsRunner::run() {
    if (merged_) return merged_->run();
    if (!plan_) throw std::logic_error("TapsRunner::run before set_inputs");
    Halide::Runtime::Buffer<int32_t, 2> rows = plan_->rows();
    rows.set_host_dirty();
    const TapPlan& p = *plan_;
    int rc = 0;
    if (k_->kind == KernelKind::TapsFwd) {
        Stacked& in = w_.pass == Pass::Fwd ? x_ : dy_;
        rc = reinterpret_cast<TapsFwdFn>(k_->fn)(
            in.raw_buffer(), rows.raw_buffer(), wt_.raw_buffer(), bias_.raw_buffer(), p.seg(1),
            p.seg(2), p.seg(3), p.left(), p.right(), p.top(), p.bottom(), out_.raw_buffer());
    } else if (k_->kind == KernelKind::TapsWgrad) {
        rc = reinterpret_cast<TapsWgradFn>(k_->fn)(
            x_.raw_buffer(), dy_.raw_buffer(), rows.raw_buffer(), p.seg(1), p.seg(2), p.seg(3),
            p.left(), p.right(), p.top(), p.bottom(), g_[0].raw_buffer(), g_[1].raw_buffer(),
            g_[2].raw_buffer(), g_[3].raw_buffer(), db_.raw_buffer());
    } else {
        throw std::logic_error(std::string("TapsRunner: ") + k_->name + " is not a taps kernel");
    }
    check_halide(rc, std::string("kernel ") + k_->name, d_);
}

std::map<std::string, Tensor> TapsRunner::outputs() {
    if (merged_) {
        auto r = merged_->outputs();
        if (w_.pass != Pass::BwdWeight) return r;
        // Each branch's gradient is the merged gradient at the branch's (dilated) tap offsets.
        const Tensor dw = r.at("dw");
        const int KH = merged_w_.kh, KW = merged_w_.kw, c = w_.c;
        const float* src = dw.data<float>();
        for (size_t b = 0; b < w_.branches.size(); ++b) {
            const Branch& br = w_.branches[b];
            Tensor t(DType::F32, {c, 1, br.kh, br.kw});
            float* o = t.data<float>();
            for (int ch = 0; ch < c; ++ch)
                for (int u = 0; u < br.kh; ++u)
                    for (int v = 0; v < br.kw; ++v) {
                        const int mu = (KH - 1) / 2 + (u - (br.kh - 1) / 2) * br.dilation;
                        const int mv = (KW - 1) / 2 + (v - (br.kw - 1) / 2) * br.dilation;
                        o[(size_t(ch) * br.kh + u) * br.kw + v] =
                            src[(size_t(ch) * KH + mu) * KW + mv];
                    }
            r["dw" + std::to_string(b)] = t;
        }
        r.erase("dw");
        return r;
    }
    std::map<std::string, Tensor> r;
    auto sync = [&](auto& b) { check_halide(b.copy_to_host(), "copy to host", d_); };
    const int c = w_.c;
    const bool shift = w_.op == Op::ShiftWise;
    switch (w_.pass) {
        case Pass::Fwd:
            sync(out_);
            if (shift && !inference_) {
                for (int s = 0; s < 3; ++s) r[kShiftOut[s]] = get(out_, s, c);
            } else {
                r["y"] = get(out_, 0, c);
            }
            break;
        case Pass::BwdData:
            sync(out_);
            r["dx"] = get(out_, 0, c);
            break;
        case Pass::BwdWeight: {
            for (auto& g : g_) sync(g);
            if (!shift) {
                for (size_t b = 0; b < kernels_.size(); ++b) {
                    Tensor dw(DType::F32, {c, 1, kernels_[b].kh, kernels_[b].kw});
                    plan_->unpack(g_, int(b), c, dw.data<float>());
                    r["dw" + std::to_string(b)] = dw;
                }
                sync(db_);
                Tensor db(DType::F32, {c});
                for (int ch = 0; ch < c; ++ch)
                    db.data<float>()[ch] = db_(ch % kLanes, 0, ch / kLanes);
                r["db"] = db;
            } else {
                // Adjoint of reparam::shiftwise_equivalent: each sub-kernel's gradient gathers the
                // equivalent kernels' gradients at the slots the tables place it in.
                const int k = w_.small_k, nk = w_.num_sub_kernels(), G = w_.groups;
                std::vector<float> gh(size_t(c) * k * nk * k), gv(gh.size()), gs(size_t(c) * k * k);
                plan_->unpack(g_, 0, c, gh.data());
                plan_->unpack(g_, 1, c, gv.data());
                plan_->unpack(g_, 2, c, gs.data());
                const ShiftTables t =
                    read_shift_tables(w_, in_.at("slot_h"), in_.at("slot_v"), in_.at("ident"));
                Tensor dw(DType::F32, {c, nk, k, k});
                float* o = dw.data<float>();
                const int wide = nk * k;
                for (int g = 0; g < G; ++g)
                    for (int ch = 0; ch < c; ++ch)
                        for (int j = 0; j < nk; ++j) {
                            const int sh = t.slot_h[(size_t(g) * c + ch) * nk + j];
                            const int sv = t.slot_v[(size_t(g) * c + ch) * nk + j];
                            const bool id = t.ident[size_t(g) * c + ch] == j;
                            for (int u = 0; u < k; ++u)
                                for (int v = 0; v < k; ++v) {
                                    float acc = gh[(size_t(ch) * k + u) * wide + sh * k + v] +
                                                gv[(size_t(ch) * wide + sv * k + u) * k + v];
                                    if (id) acc += gs[(size_t(ch) * k + u) * k + v];
                                    o[((size_t(ch) * nk + j) * k + u) * k + v] += acc;
                                }
                        }
                r["dw"] = dw;
            }
            break;
        }
    }
    return r;
}

}  // namespace lkc
