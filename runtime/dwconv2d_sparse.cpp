#include "runtime/dwconv2d_sparse.h"

#include <algorithm>
#include <cstdlib>
#include <stdexcept>

#include "runtime/kernel_abi.h"
#include "runtime/op_inputs.h"

namespace lkc {

namespace {

constexpr int kVec = 8;     // = generators/dwconv2d_sparse_algorithm.h kVec
constexpr int kFields = 4;  // = kTapFields: off0, off1, oy, plane

using FwdFn = abi::SparseFwdFn;
using WgradFn = int (*)(halide_buffer_t* input, halide_buffer_t* dy, halide_buffer_t* taps,
                        halide_buffer_t* count, int in_stride, int pad_x, int pad_y, int pitch,
                        int row_pitch, halide_buffer_t* dwt, halide_buffer_t* db);

int floor_div(int a, int b) { return a >= 0 ? a / b : -((-a + b - 1) / b); }
int floor_mod(int a, int b) { return a - floor_div(a, b) * b; }
int round_up(int a, int b) { return (a + b - 1) / b * b; }

// One listed tap: offsets in input-plane pixels, phase plane, kernel position, weight, class.
struct Entry {
    int ox, oy, plane, pos;
    float w;
    int seg;
};

// Geometry of the stride-1 correlation a pass runs (see dwconv2d_sparse_algorithm.h).
struct Geom {
    bool transposed;   // backward-data (output phases)
    int S;             // stride
    int Q;             // output phases
    int in_stride;     // input phase planes S_in (S_in^2 planes)
    int out_w, out_h;  // kernel output extents before tile rounding (per phase)
    int plane_w;       // widest input plane (column-skip classes)
};

Geom geom_of(const Workload& w) {
    Geom g;
    g.transposed = w.pass == Pass::BwdData;
    g.S = w.stride;
    g.Q = g.transposed ? g.S * g.S : 1;
    g.in_stride = g.transposed ? 1 : g.S;
    if (g.transposed) {
        g.out_w = (w.w + g.S - 1) / g.S;
        g.out_h = (w.h + g.S - 1) / g.S;
        g.plane_w = w.out_w();
    } else {
        g.out_w = w.out_w();
        g.out_h = w.out_h();
        g.plane_w = (w.w + g.S - 1) / g.S;
    }
    return g;
}

// The taps of w (mask non-zeros, or all positions) as per-(channel, phase) lists, without those
// that read only padding for every output of this map size.
std::vector<std::vector<Entry>> tap_lists(const Workload& w, const Geom& g,
                                          const std::vector<uint8_t>* mask, const float* weights,
                                          int channels) {
    const int S = g.S, d = w.dilation, Kh = w.kh, Kw = w.kw, H = w.h, W = w.w;
    const int ph = d * (Kh - 1) / 2, pw = d * (Kw - 1) / 2;
    const int OH = w.out_h(), OW = w.out_w();
    std::vector<std::vector<Entry>> lists(size_t(channels) * g.Q);
    for (int c = 0; c < channels; ++c)
        for (int u = 0; u < Kh; ++u)
            for (int v = 0; v < Kw; ++v) {
                const size_t idx = (size_t(c) * Kh + u) * Kw + v;
                if (mask && !(*mask)[idx]) continue;
                const int ey = u * d - ph, ex = v * d - pw;
                const float wt = weights ? weights[idx] : 0.0f;
                if (!g.transposed) {
                    // y[i, j] += w * x[S*i + ey, S*j + ex] = plane (ey mod S, ex mod S) at
                    // (i + floor(ey / S), j + floor(ex / S)).
                    const int py = floor_mod(ey, S), px = floor_mod(ex, S);
                    const Entry e{
                        floor_div(ex, S), floor_div(ey, S), py * S + px, u * Kw + v, wt, 0};
                    const int PH = (H - py + S - 1) / S, PW = (W - px + S - 1) / S;
                    if (e.oy >= PH || e.oy + OH - 1 < 0 || e.ox >= PW || e.ox + OW - 1 < 0)
                        continue;
                    lists[size_t(c) * g.Q].push_back(e);
                } else {
                    // dx[S*a + qy, S*b + qx] += w * dy[a + (qy - ey) / S, b + (qx - ex) / S] for
                    // the phase q = (ey mod S, ex mod S).
                    const int qy = floor_mod(ey, S), qx = floor_mod(ex, S);
                    const Entry e{(qx - ex) / S, (qy - ey) / S, 0, u * Kw + v, wt, 0};
                    const int AH = (H - qy + S - 1) / S, AW = (W - qx + S - 1) / S;
                    if (e.oy >= OH || e.oy + AH - 1 < 0 || e.ox >= OW || e.ox + AW - 1 < 0)
                        continue;
                    lists[size_t(c) * g.Q + size_t(qy * S + qx)].push_back(e);
                }
            }
    return lists;
}

// Column-skip class of a tap (see tap_correlate): M - m for m leading vectors that read only
// padding, M + m for m trailing ones, M for none. out_w: the tile-rounded output width.
int segment_of(int ox, int M, int out_w, int plane_w) {
    const int lead = ox < 0 ? std::min(M, (-ox) / kVec) : 0;
    const int trail = std::min(M, std::max(0, floor_div(out_w + ox - plane_w, kVec)));
    return lead >= trail ? M - lead : M + trail;
}

int tile_rounded_width(const Workload& w, const Geom& g, const SparseLayout& L) {
    return round_up(w.pass == Pass::BwdWeight ? w.out_w() : g.out_w, L.tile);
}

}  // namespace

SparseLayout sparse_layout(const KernelInfo& k) {
    if (k.kind != KernelKind::SparseFwd && k.kind != KernelKind::SparseWgrad) {
        throw std::logic_error(std::string("sparse_layout: ") + k.name + " is not a sparse kernel");
    }
    SparseLayout L;
    L.tile = k.tile > 0 ? k.tile : 56;
    L.chunk = k.chunk > 0 ? k.chunk : (k.kind == KernelKind::SparseFwd ? 4 : 8);
    const bool fwd = k.kind == KernelKind::SparseFwd;
    L.copies = k.stage ? (fwd ? 2 : 3) : 1;
    L.segments = 0;
    if (fwd) {
        // segments < 0: as many as the tile allows, up to 3 (the generator's rule).
        const int m = space::int_param(kernel_schedule(k), "segments");
        L.segments = std::max(0, std::min(L.tile / kVec - 1, m < 0 ? 3 : m));
    }
    return L;
}

SparseTables build_sparse_tables(const Workload& w, const SparseLayout& L,
                                 const std::vector<uint8_t>& mask, const float* weights,
                                 bool all_taps) {
    if (w.op != Op::DwConv2dSparse) {
        throw std::invalid_argument("build_sparse_tables: '" + to_string(w) +
                                    "' is not a dwconv2d_sparse workload");
    }
    const size_t taps_per_channel = size_t(w.kh) * w.kw;
    if (!all_taps && mask.size() != size_t(w.c) * taps_per_channel) {
        throw std::invalid_argument(
            "build_sparse_tables: mask has " + std::to_string(mask.size()) +
            " entries, expected C*Kh*Kw = " + std::to_string(size_t(w.c) * taps_per_channel));
    }
    const Geom g = geom_of(w);
    const bool wgrad = w.pass == Pass::BwdWeight;
    SparseTables t;
    t.phases = g.Q;
    t.in_stride = g.in_stride;
    t.segments = wgrad ? 0 : L.segments;
    t.out_w = tile_rounded_width(w, g, L);
    t.out_h = wgrad ? w.out_h() : round_up(g.out_h, L.chunk);
    const int M = t.segments;

    auto lists = tap_lists(w, g, all_taps ? nullptr : &mask, weights, w.c);
    // Order (segment, oy, ox). tap_lists emits (u, v) order: (oy, ox) ascending for stride-1
    // forward, descending for stride-1 backward-data; otherwise sort. Then a stable bucket pass
    // by segment (O(n): the tables are rebuilt whenever weights or masks change).
    const auto by_offset = [](const Entry& a, const Entry& b) {
        return a.oy != b.oy ? a.oy < b.oy : a.ox < b.ox;
    };
    size_t longest = 0;
    std::vector<Entry> tmp;
    std::vector<size_t> fill(size_t(2 * M + 2));
    for (auto& l : lists) {
        if (g.transposed && g.S == 1) std::reverse(l.begin(), l.end());
        if (!std::is_sorted(l.begin(), l.end(), by_offset))
            std::sort(l.begin(), l.end(), by_offset);
        std::fill(fill.begin(), fill.end(), 0);
        for (Entry& e : l) {
            e.seg = segment_of(e.ox, M, t.out_w, g.plane_w);
            t.pad_x = std::max(t.pad_x, std::abs(e.ox));
            t.pad_y = std::max(t.pad_y, std::abs(e.oy));
            ++fill[size_t(e.seg) + 1];
        }
        for (size_t k = 1; k < fill.size(); ++k) fill[k] += fill[k - 1];
        tmp.resize(l.size());
        for (const Entry& e : l) tmp[fill[size_t(e.seg)]++] = e;
        l.swap(tmp);
        longest = std::max(longest, l.size());
        t.listed += int64_t(l.size());
    }
    const int align = wgrad ? std::max(1, L.chunk) : 1;
    t.max_taps = round_up(std::max<int>(1, int(longest)), align);
    // Staged layout (min_copy_pitch / min_row_pitch of the generators).
    t.pitch = round_up(t.out_w + 2 * t.pad_x + 2 * kVec, 16);
    t.row_pitch = round_up((L.copies - 1) * t.pitch + t.out_w + 2 * t.pad_x + 3 * kVec, 16);

    const size_t T = size_t(t.max_taps), Q = size_t(g.Q), C = size_t(w.c);
    const int NS = 2 * M + 1, SX = 2 * t.pad_y + 2;
    t.taps.assign(kFields * T * Q * C, 0);
    t.weights.assign(T * Q * C, 0.0f);
    t.position.assign(T * Q * C, -1);
    t.count.assign(Q * C, 0);
    if (!wgrad) t.starts.assign(size_t(SX) * NS * Q * C, 0);
    for (size_t li = 0; li < lists.size(); ++li) {
        const auto& l = lists[li];
        t.count[li] = int32_t(l.size());
        for (size_t k = 0; k < l.size(); ++k) {
            const Entry& e = l[k];
            const size_t at = li * T + k;
            // Copy of even output vectors b0 (and of odd ones 1 - b0 with two copies, b0 + 1
            // with three): see "copies" in dwconv2d_sparse_algorithm.h.
            const int b0 = L.copies > 1 ? (floor_div(e.ox, kVec) & 1) : 0;
            const int b1 = L.copies == 2 ? 1 - b0 : b0;
            const int base = e.oy * t.row_pitch + e.ox;
            int32_t* f = &t.taps[kFields * at];
            f[0] = base + b0 * (t.pitch - kVec);
            f[1] = base + b1 * (t.pitch - kVec);
            f[2] = e.oy;
            f[3] = e.plane;
            t.weights[at] = e.w;
            t.position[at] = e.pos;
        }
        if (wgrad) continue;
        // starts(i, s) = first entry of segment s with oy + pad_y >= i.
        for (int s = 0; s < NS; ++s) {
            size_t k = 0;
            for (int i = 0; i < SX; ++i) {
                while (k < l.size() && (l[k].seg < s || (l[k].seg == s && l[k].oy + t.pad_y < i)))
                    ++k;
                t.starts[(li * NS + size_t(s)) * SX + size_t(i)] = int32_t(k);
            }
        }
    }
    return t;
}

// Estimated cost of running w with the sparse variant k, for ranking variants of one kind on one
// device (arbitrary units): the FMAs the variant computes for a dense pattern (the mask is not
// known when a variant is chosen; density scales all variants alike), per register tile and with
// its row / column skipping, plus per-tap overhead and the staging copies.
double sparse_estimated_cost(const KernelInfo& k, const Workload& w) {
    const SparseLayout L = sparse_layout(k);
    const Geom g = geom_of(w);
    const bool wgrad = w.pass == Pass::BwdWeight;
    const int out_w = tile_rounded_width(w, g, L);
    const auto lists = tap_lists(w, g, nullptr, nullptr, 1);
    int pad_x = 0, pad_y = 0;
    for (const auto& l : lists)
        for (const Entry& e : l) {
            pad_x = std::max(pad_x, std::abs(e.ox));
            pad_y = std::max(pad_y, std::abs(e.oy));
        }
    const double split = L.copies == 1 ? 1.45 : 1.0;  // line-crossing loads (probe: 62 % vs 89 %)
    const int V = L.tile / kVec, plane_h = wgrad
                                               ? (w.h + g.S - 1) / g.S
                                               : (g.transposed ? w.out_h() : (w.h + g.S - 1) / g.S);
    double fmas = 0, visits = 0;
    if (!wgrad) {
        const int R = L.chunk, ntr = round_up(g.out_h, R) / R, ntc = out_w / L.tile;
        const bool single = ntc == 1;
        const int M = L.segments;
        for (const auto& l : lists)
            for (const Entry& e : l) {
                const int seg = segment_of(e.ox, M, out_w, g.plane_w);
                const int vecs = single ? V - std::max(0, M - seg) - std::max(0, seg - M) : V * ntc;
                for (int it = 0; it < ntr; ++it) {
                    const int y0 = it * R + e.oy;
                    if (y0 + R - 1 < 0 || y0 >= plane_h) continue;
                    fmas += double(vecs) * R;
                    visits += ntc;  // one pass over the tap per register tile
                }
            }
    } else {
        const int B = L.chunk, OH = w.out_h(), vecs = (w.out_w() + kVec - 1) / kVec;
        for (const auto& l : lists)
            for (const Entry& e : l) {
                const int rows = std::max(0, std::min(OH, plane_h - e.oy) - std::max(0, -e.oy));
                fmas += double(rows) * vecs * (1.0 + 1.0 / B);
                visits += 1.0 / B * rows;
            }
    }
    const double rows_staged = plane_h + 2.0 * pad_y;
    const double row_len = (L.copies - 1) * double(out_w + 2 * pad_x + 16) + out_w + 2 * pad_x;
    const double staging = 2.0 * rows_staged * row_len / kVec * g.in_stride * g.in_stride;
    return fmas * split + 6.0 * visits + staging;
}

SparseDwConv2dRunner::SparseDwConv2dRunner(const Workload& w, Device d,
                                           const std::string& kernel_name)
    : w_(w), d_(d) {
    install_halide_error_handler();
    if (w.op != Op::DwConv2dSparse) {
        throw std::invalid_argument("SparseDwConv2dRunner: workload '" + to_string(w) +
                                    "' is not a dwconv2d_sparse workload");
    }
    sel_ = select_kernel_explained(w, d, kernel_name);
    k_ = sel_.kernel;
    if (!kernel_name.empty() && kernel_name != k_->name) {
        throw std::invalid_argument("kernel '" + kernel_name + "' does not exist or cannot run '" +
                                    to_string(w) + "' on " + device_name(d));
    }
    layout_ = sparse_layout(*k_);
    const int W = w.w, H = w.h, C = w.c, N = w.n, OW = w.out_w(), OH = w.out_h();
    switch (w.pass) {
        case Pass::Fwd:
            in_ = Halide::Runtime::Buffer<float, 4>(W, H, C, N);
            break;
        case Pass::BwdData:
            in_ = Halide::Runtime::Buffer<float, 4>(OW, OH, C, N);
            break;
        case Pass::BwdWeight:
            in_ = Halide::Runtime::Buffer<float, 4>(W, H, C, N);
            dy_ = Halide::Runtime::Buffer<float, 4>(OW, OH, C, N);
            dy_.fill(0.0f);
            db_ = Halide::Runtime::Buffer<float, 1>(C);
            break;
    }
    in_.fill(0.0f);
    bias_ = Halide::Runtime::Buffer<float, 1>(C);
    bias_.fill(0.0f);
}

void SparseDwConv2dRunner::set_inputs(const std::map<std::string, Tensor>& inputs) {
    check_op_inputs(w_, inputs);
    mask_ = read_mask(w_, inputs.at("mask"));
    auto load = [](Halide::Runtime::Buffer<float, 4>& dst, const Tensor& t) {
        std::copy(t.data<float>(), t.data<float>() + t.numel(), dst.data());
        dst.set_host_dirty();
    };
    switch (w_.pass) {
        case Pass::Fwd:
            load(in_, inputs.at("x"));
            break;
        case Pass::BwdData:
            load(in_, inputs.at("dy"));
            break;
        case Pass::BwdWeight:
            load(in_, inputs.at("x"));
            load(dy_, inputs.at("dy"));
            break;
    }
    if (w_.pass != Pass::BwdWeight) {
        const Tensor& wt = inputs.at("w");
        wts_.assign(wt.data<float>(), wt.data<float>() + wt.numel());
    }
    bias_.fill(0.0f);
    auto b = inputs.find("b");
    if (b != inputs.end()) {
        std::copy(b->second.data<float>(), b->second.data<float>() + w_.c, bias_.data());
    }
    bias_.set_host_dirty();
    have_inputs_ = true;
    prepare();
}

void SparseDwConv2dRunner::fill_random(uint32_t seed) {
    set_inputs(
        make_example_inputs(w_, seed, /*small_int=*/false, density_, /*with_optional=*/true));
}

void SparseDwConv2dRunner::set_all_taps(bool all) {
    if (all && w_.pass != Pass::BwdWeight) {
        throw std::invalid_argument("set_all_taps: only backward-weight computes gradients ('" +
                                    to_string(w_) + "' is not bwd_weight)");
    }
    all_taps_ = all;
    if (have_inputs_) prepare();
}

void SparseDwConv2dRunner::set_density(double density) {
    if (!(density >= 0.0 && density <= 1.0)) {
        throw std::invalid_argument("set_density: density " + std::to_string(density) +
                                    " must be in [0, 1]");
    }
    density_ = density;
}

void SparseDwConv2dRunner::prepare() {
    tables_ = build_sparse_tables(w_, layout_, mask_,
                                  w_.pass == Pass::BwdWeight ? nullptr : wts_.data(), all_taps_);
    const SparseTables& t = tables_;
    const int T = t.max_taps, Q = t.phases, C = w_.c, N = w_.n;
    taps_ = Halide::Runtime::Buffer<int32_t, 4>(kFields, T, Q, C);
    std::copy(t.taps.begin(), t.taps.end(), taps_.data());
    taps_.set_host_dirty();
    count_ = Halide::Runtime::Buffer<int32_t, 2>(Q, C);
    std::copy(t.count.begin(), t.count.end(), count_.data());
    count_.set_host_dirty();
    if (w_.pass == Pass::BwdWeight) {
        dwt_ = Halide::Runtime::Buffer<float, 2>(T, C);
        return;
    }
    weights_ = Halide::Runtime::Buffer<float, 3>(T, Q, C);
    std::copy(t.weights.begin(), t.weights.end(), weights_.data());
    weights_.set_host_dirty();
    starts_ = Halide::Runtime::Buffer<int32_t, 4>(2 * t.pad_y + 2, 2 * t.segments + 1, Q, C);
    std::copy(t.starts.begin(), t.starts.end(), starts_.data());
    starts_.set_host_dirty();
    if (!out_.data() || out_.dim(0).extent() != t.out_w || out_.dim(1).extent() != t.out_h ||
        out_.dim(2).extent() != Q) {
        out_ = Halide::Runtime::Buffer<float, 5>(t.out_w, t.out_h, Q, C, N);
    }
}

void SparseDwConv2dRunner::run() {
    if (!have_inputs_) {
        throw std::logic_error("SparseDwConv2dRunner::run: call set_inputs or fill_random first");
    }
    const SparseTables& t = tables_;
    int rc = 0;
    switch (k_->kind) {
        case KernelKind::SparseFwd:
            rc = reinterpret_cast<FwdFn>(k_->fn)(in_.raw_buffer(), starts_.raw_buffer(),
                                                 taps_.raw_buffer(), weights_.raw_buffer(),
                                                 bias_.raw_buffer(), t.in_stride, t.pad_x, t.pad_y,
                                                 t.pitch, t.row_pitch, out_.raw_buffer());
            break;
        case KernelKind::SparseWgrad:
            rc = reinterpret_cast<WgradFn>(k_->fn)(
                in_.raw_buffer(), dy_.raw_buffer(), taps_.raw_buffer(), count_.raw_buffer(),
                t.in_stride, t.pad_x, t.pad_y, t.pitch, t.row_pitch, dwt_.raw_buffer(),
                db_.raw_buffer());
            break;
        default:
            throw std::logic_error(std::string("SparseDwConv2dRunner: ") + k_->name +
                                   " is not a sparse kernel");
    }
    check_halide(rc, std::string("kernel ") + k_->name, d_);
}

void SparseDwConv2dRunner::sync() {
    if (out_.data()) check_halide(out_.device_sync(), "device sync", d_);
    if (dwt_.data()) check_halide(dwt_.device_sync(), "device sync", d_);
    if (db_.data()) check_halide(db_.device_sync(), "device sync", d_);
}

std::map<std::string, Tensor> SparseDwConv2dRunner::outputs() {
    if (!have_inputs_) {
        throw std::logic_error("SparseDwConv2dRunner::outputs: no inputs were set");
    }
    std::map<std::string, Tensor> r;
    auto sync = [&](auto& b) { check_halide(b.copy_to_host(), "copy to host", d_); };
    const int C = w_.c, N = w_.n;
    switch (w_.pass) {
        case Pass::Fwd: {
            sync(out_);
            const int OH = w_.out_h(), OW = w_.out_w();
            Tensor y(DType::F32, {N, C, OH, OW});
            float* p = y.data<float>();
            for (int n = 0; n < N; ++n)
                for (int c = 0; c < C; ++c)
                    for (int i = 0; i < OH; ++i)
                        for (int j = 0; j < OW; ++j) *p++ = out_(j, i, 0, c, n);
            r["y"] = y;
            break;
        }
        case Pass::BwdData: {
            sync(out_);
            const int S = w_.stride, H = w_.h, W = w_.w;
            Tensor dx(DType::F32, {N, C, H, W});
            float* p = dx.data<float>();
            for (int n = 0; n < N; ++n)
                for (int c = 0; c < C; ++c)
                    for (int m = 0; m < H; ++m)
                        for (int k = 0; k < W; ++k)
                            *p++ = out_(k / S, m / S, (m % S) * S + k % S, c, n);
            r["dx"] = dx;
            break;
        }
        case Pass::BwdWeight: {
            sync(dwt_);
            sync(db_);
            const int K = w_.kh * w_.kw, T = tables_.max_taps;
            Tensor dw(DType::F32, {C, 1, w_.kh, w_.kw});
            float* p = dw.data<float>();
            for (int c = 0; c < C; ++c)
                for (int e = 0; e < tables_.count[size_t(c)]; ++e) {
                    const int pos = tables_.position[size_t(c) * T + size_t(e)];
                    p[size_t(c) * K + size_t(pos)] = dwt_(e, c);
                }
            Tensor db(DType::F32, {C});
            std::copy(db_.data(), db_.data() + C, db.data<float>());
            r["dw"] = dw;
            r["db"] = db;
            break;
        }
    }
    return r;
}

std::unique_ptr<OpRunner> make_sparse_runner(const Workload& w, Device d,
                                             const std::string& kernel) {
    return std::make_unique<SparseDwConv2dRunner>(w, d, kernel);
}

}  // namespace lkc
