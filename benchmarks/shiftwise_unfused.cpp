#include "benchmarks/shiftwise_unfused.h"

#include <immintrin.h>

#include <algorithm>
#include <cstring>
#include <stdexcept>

#include "runtime/op_inputs.h"

namespace lkc::bench {

namespace {

constexpr int kLanes = 16;

#define LKC_CLONES __attribute__((target_clones("avx512f", "avx2", "default")))

// dst[r][0..len) += src[r][0..len) for `rows` rows (strides in floats).
LKC_CLONES void add_rect(float* __restrict dst, int64_t dst_stride, const float* __restrict src,
                         int64_t src_stride, int rows, int len) {
    for (int r = 0; r < rows; ++r) {
        float* __restrict d = dst + r * dst_stride;
        const float* __restrict s = src + r * src_stride;
        for (int i = 0; i < len; ++i) d[i] += s[i];
    }
}

// 16 x 16 transpose: row i of dst (16 floats at dst + i*ds) = column i of src (rows at
// src + i*ss); only the first `rows` rows of dst are stored. AVX-512: 64 shuffles per tile.
__attribute__((target("avx512f"))) void transpose16_avx512(const float* src, int64_t ss, float* dst,
                                                           int64_t ds, int rows) {
    __m512 r[16], t[16];
    for (int i = 0; i < 16; ++i) r[i] = _mm512_loadu_ps(src + i * ss);
    for (int i = 0; i < 16; i += 2) {
        t[i] = _mm512_unpacklo_ps(r[i], r[i + 1]);
        t[i + 1] = _mm512_unpackhi_ps(r[i], r[i + 1]);
    }
    for (int i = 0; i < 16; i += 4) {
        const __m512d t0 = _mm512_castps_pd(t[i]), t1 = _mm512_castps_pd(t[i + 1]);
        const __m512d t2 = _mm512_castps_pd(t[i + 2]), t3 = _mm512_castps_pd(t[i + 3]);
        r[i] = _mm512_castpd_ps(_mm512_unpacklo_pd(t0, t2));
        r[i + 1] = _mm512_castpd_ps(_mm512_unpackhi_pd(t0, t2));
        r[i + 2] = _mm512_castpd_ps(_mm512_unpacklo_pd(t1, t3));
        r[i + 3] = _mm512_castpd_ps(_mm512_unpackhi_pd(t1, t3));
    }
    for (int i = 0; i < 4; ++i) {
        t[i] = _mm512_shuffle_f32x4(r[i], r[i + 4], 0x88);
        t[i + 4] = _mm512_shuffle_f32x4(r[i], r[i + 4], 0xdd);
        t[i + 8] = _mm512_shuffle_f32x4(r[i + 8], r[i + 12], 0x88);
        t[i + 12] = _mm512_shuffle_f32x4(r[i + 8], r[i + 12], 0xdd);
    }
    for (int i = 0; i < 8; ++i) {
        r[i] = _mm512_shuffle_f32x4(t[i], t[i + 8], 0x88);
        r[i + 8] = _mm512_shuffle_f32x4(t[i], t[i + 8], 0xdd);
    }
    for (int i = 0; i < rows; ++i) _mm512_storeu_ps(dst + i * ds, r[i]);
}

void transpose16_generic(const float* src, int64_t ss, float* dst, int64_t ds, int rows) {
    for (int i = 0; i < rows; ++i)
        for (int j = 0; j < 16; ++j) dst[i * ds + j] = src[j * ss + i];
}

const bool kHaveAvx512 = __builtin_cpu_supports("avx512f");

void transpose16(const float* src, int64_t ss, float* dst, int64_t ds, int rows) {
    if (kHaveAvx512) {
        transpose16_avx512(src, ss, dst, ds, rows);
    } else {
        transpose16_generic(src, ss, dst, ds, rows);
    }
}

// Blocked (16 lanes x npix pixels, lane fastest) -> planar planes P[l][0..npix) (plane stride ps)
// for lanes l < nc, one 16-pixel x 16-lane tile at a time.
void blocked_to_planar(const float* b, int64_t npix, int nc, float* p, int64_t ps) {
    int64_t q0 = 0;
    for (; q0 + kLanes <= npix; q0 += kLanes) transpose16(b + q0 * kLanes, kLanes, p + q0, ps, nc);
    for (; q0 < npix; ++q0)
        for (int l = 0; l < nc; ++l) p[l * ps + q0] = b[q0 * kLanes + l];
}

// Planar planes P[l][0..npix) for all 16 lanes -> blocked (lane fastest).
void planar_to_blocked(const float* p, int64_t ps, int64_t npix, float* b) {
    int64_t q0 = 0;
    for (; q0 + kLanes <= npix; q0 += kLanes) transpose16(p + q0, ps, b + q0 * kLanes, kLanes, 16);
    for (; q0 < npix; ++q0)
        for (int l = 0; l < kLanes; ++l) b[q0 * kLanes + l] = p[l * ps + q0];
}

// dst[0..len) = sum_k src[k][0..len)
LKC_CLONES void sum_rows(float* __restrict dst, const float* const* src, int nsrc, int len) {
    const float* __restrict s0 = src[0];
    for (int i = 0; i < len; ++i) dst[i] = s0[i];
    for (int k = 1; k < nsrc; ++k) {
        const float* __restrict s = src[k];
        for (int i = 0; i < len; ++i) dst[i] += s[i];
    }
}

// Per-thread scratch of at least n floats (the Halide pool's workers are long-lived threads).
float* scratch(size_t n) {
    thread_local std::vector<float> buf;
    if (buf.size() < n) buf.resize(n);
    return buf.data();
}

Blocked make_blocked6_slice(Halide::Runtime::Buffer<float, 6>& b, int j) { return b.sliced(3, j); }

}  // namespace

struct ShiftwiseUnfused::State {
    int n = 0, c = 0, h = 0, w = 0, k = 0, nk = 0, g = 0, e = 0, hp = 0, wp = 0, cbs = 0;
    std::vector<int> rp;  // rp[s] = mid - s*k - (k-1)
    ShiftTables tables;
    std::unique_ptr<DenseDw> dense;  // k x k on the (H+2e) x (W+2e) maps, the workload's pass

    Tensor wfile;                              // w [C,nk,k,k] (fwd, bwd_data)
    std::vector<Weights> wj;                   // views of wfile: sub-kernel j as (k, k, 1, C)
    Tensor dwfile;                             // dw [C,nk,k,k] (bwd_weight)
    std::vector<Weights> dwj;                  // views of dwfile
    Vec bias0, db;                             // zero bias (fwd), scratch db (bwd_weight)
    Blocked xin, xp;                           // x and its zero-padded copy (fwd, bwd_weight)
    Halide::Runtime::Buffer<float, 6> z, dxp;  // (16, W', H', nk, Cb, N): z or dz; dx_j
    std::vector<Blocked> zj, dxpj;             // slices along nk
    Blocked dx;                                // bwd_data output
    Tensor p0, p1, p2;  // planar yh, yv, ys (fwd outputs) or dyh, dyv, dys (bwd inputs)

    float* plane(Tensor& t, int in, int ch) {
        return t.data<float>() + (int64_t(in) * c + ch) * h * w;
    }
    int slot_h(int gi, int ch, int j) const {
        return tables.slot_h[(size_t(gi) * c + ch) * nk + j];
    }
    int slot_v(int gi, int ch, int j) const {
        return tables.slot_v[(size_t(gi) * c + ch) * nk + j];
    }
    int ident(int gi, int ch) const { return tables.ident[size_t(gi) * c + ch]; }

    void shift_add();  // fwd: z -> yh, yv, ys
    void gather_dz();  // bwd: dyh, dyv, dys -> dz
    void sum_dx();     // bwd_data: dx = sum_j dx_j cropped
};

void ShiftwiseUnfused::State::shift_add() {
    const int64_t ps = int64_t(hp) * wp, hw = int64_t(h) * w;
    auto task = [&](int t) {
        const int cb = t % cbs, in = t / cbs, c0 = cb * kLanes, nc = std::min(kLanes, c - c0);
        float* pl = scratch(size_t(kLanes) * ps);
        for (int l = 0; l < nc; ++l)
            for (Tensor* o : {&p0, &p1, &p2})
                std::memset(plane(*o, in, c0 + l), 0, sizeof(float) * hw);
        for (int j = 0; j < nk; ++j) {
            blocked_to_planar(&z(0, 0, 0, j, cb, in), ps, nc, pl, ps);
            for (int l = 0; l < nc; ++l) {
                const int ch = c0 + l;
                const float* src = pl + l * ps;
                float *yh = plane(p0, in, ch), *yv = plane(p1, in, ch), *ys = plane(p2, in, ch);
                for (int gi = 0; gi < g; ++gi) {
                    // yh[i][t] += z[i+e][t-s], 0 <= t-s < W'
                    const int s = rp[slot_h(gi, ch, j)];
                    const int t0 = std::max(0, s), t1 = std::min(w, wp + s);
                    if (t0 < t1) add_rect(yh + t0, w, src + e * wp + t0 - s, wp, h, t1 - t0);
                    // yv[i][t] += z[i-s][t+e], 0 <= i-s < H'
                    const int sv = rp[slot_v(gi, ch, j)];
                    const int i0 = std::max(0, sv), i1 = std::min(h, hp + sv);
                    if (i0 < i1)
                        add_rect(yv + int64_t(i0) * w, w, src + int64_t(i0 - sv) * wp + e, wp,
                                 i1 - i0, w);
                    // ys[i][t] += z[i+e][t+e] for the identity sub-kernel
                    if (ident(gi, ch) == j) add_rect(ys, w, src + e * wp + e, wp, h, w);
                }
            }
        }
    };
    par_for(n * cbs, task);
}

void ShiftwiseUnfused::State::gather_dz() {
    const int64_t ps = int64_t(hp) * wp;
    auto task = [&](int t) {
        const int cb = t % cbs, in = t / cbs, c0 = cb * kLanes, nc = std::min(kLanes, c - c0);
        float* pl = scratch(size_t(kLanes) * ps);
        for (int j = 0; j < nk; ++j) {
            std::memset(pl, 0, sizeof(float) * kLanes * ps);
            for (int l = 0; l < nc; ++l) {
                const int ch = c0 + l;
                float* dst = pl + l * ps;
                const float *dyh = plane(p0, in, ch), *dyv = plane(p1, in, ch),
                            *dys = plane(p2, in, ch);
                for (int gi = 0; gi < g; ++gi) {
                    // adjoint of yh[i][t] += z[i+e][t-s]: dz[i+e][q] += dyh[i][q+s], 0 <= q+s < W
                    const int s = rp[slot_h(gi, ch, j)];
                    const int q0 = std::max(0, -s), q1 = std::min(wp, w - s);
                    if (q0 < q1) add_rect(dst + e * wp + q0, wp, dyh + q0 + s, w, h, q1 - q0);
                    // adjoint of yv[i][t] += z[i-s][t+e]: dz[p][t+e] += dyv[p+s][t], 0 <= p+s < H
                    const int sv = rp[slot_v(gi, ch, j)];
                    const int r0 = std::max(0, -sv), r1 = std::min(hp, h - sv);
                    if (r0 < r1)
                        add_rect(dst + int64_t(r0) * wp + e, wp, dyv + int64_t(r0 + sv) * w, w,
                                 r1 - r0, w);
                    if (ident(gi, ch) == j) add_rect(dst + e * wp + e, wp, dys, w, h, w);
                }
            }
            planar_to_blocked(pl, ps, ps, &z(0, 0, 0, j, cb, in));
        }
    };
    par_for(n * cbs, task);
}

void ShiftwiseUnfused::State::sum_dx() {
    // dx(:, t, i, cb, n) = sum_j dx_j(:, t+e, i+e, cb, n): rows of 16*W contiguous floats.
    auto task = [&](int t) {
        const int cb = t % cbs, in = t / cbs;
        const float* src[64];
        const int ns = std::min(nk, 64);
        for (int i = 0; i < h; ++i) {
            for (int j = 0; j < ns; ++j) src[j] = &dxp(0, e, i + e, j, cb, in);
            sum_rows(&dx(0, 0, i, cb, in), src, ns, kLanes * w);
        }
    };
    par_for(n * cbs, task);
}

ShiftwiseUnfused::ShiftwiseUnfused(const Workload& w) : w_(w), s_(std::make_unique<State>()) {
    if (w.op != Op::ShiftWise || w.dtype != ElemType::F32)
        throw std::invalid_argument("ShiftwiseUnfused: '" + to_string(w) +
                                    "' is not an f32 shiftwise workload");
    State& s = *s_;
    s.n = w.n, s.c = w.c, s.h = w.h, s.w = w.w, s.k = w.small_k, s.g = w.groups;
    s.nk = w.num_sub_kernels();
    if (s.nk > 64) throw std::invalid_argument("ShiftwiseUnfused: nk > 64");
    s.e = (s.k - 1) - s.k / 2;
    s.hp = s.h + 2 * s.e, s.wp = s.w + 2 * s.e;
    s.cbs = (s.c + kLanes - 1) / kLanes;
    const int mid = w.big_k / 2;
    for (int j = 0; j < s.nk; ++j) s.rp.push_back(mid - j * s.k - (s.k - 1));

    Workload d;
    d.op = Op::DwConv2d;
    d.pass = w.pass;
    d.n = s.n, d.c = s.c, d.h = s.hp, d.w = s.wp, d.kh = s.k, d.kw = s.k;
    s.dense = std::make_unique<DenseDw>(d);

    // Sub-kernel j of a [C,nk,k,k] tensor as the dense kernels' (Kw, Kh, 1, C) buffer.
    auto views = [&](Tensor& t, std::vector<Weights>& out) {
        const int k = s.k;
        for (int j = 0; j < s.nk; ++j) {
            halide_dimension_t dims[4] = {
                {0, k, 1, 0}, {0, k, k, 0}, {0, 1, k * k, 0}, {0, s.c, s.nk * k * k, 0}};
            out.emplace_back(t.data<float>() + int64_t(j) * k * k, 4, dims);
        }
    };
    const Shape wshape{s.c, s.nk, s.k, s.k}, plane{s.n, s.c, s.h, s.w};
    s.z = Halide::Runtime::Buffer<float, 6>(kLanes, s.wp, s.hp, s.nk, s.cbs, s.n);
    s.z.fill(0.0f);
    for (int j = 0; j < s.nk; ++j) s.zj.push_back(make_blocked6_slice(s.z, j));
    if (w.pass != Pass::BwdData) {
        s.xin = make_blocked(s.n, s.c, s.h, s.w);
        s.xp = make_blocked(s.n, s.c, s.hp, s.wp);
    }
    s.p0 = Tensor(DType::F32, plane);
    s.p1 = Tensor(DType::F32, plane);
    s.p2 = Tensor(DType::F32, plane);
    switch (w.pass) {
        case Pass::Fwd:
            s.wfile = Tensor(DType::F32, wshape);
            views(s.wfile, s.wj);
            s.bias0 = Vec(s.c);
            s.bias0.fill(0.0f);
            break;
        case Pass::BwdData:
            s.wfile = Tensor(DType::F32, wshape);
            views(s.wfile, s.wj);
            s.dxp = Halide::Runtime::Buffer<float, 6>(kLanes, s.wp, s.hp, s.nk, s.cbs, s.n);
            s.dxp.fill(0.0f);
            for (int j = 0; j < s.nk; ++j) s.dxpj.push_back(make_blocked6_slice(s.dxp, j));
            s.dx = make_blocked(s.n, s.c, s.h, s.w);
            break;
        case Pass::BwdWeight:
            s.dwfile = Tensor(DType::F32, wshape);
            views(s.dwfile, s.dwj);
            s.db = Vec(s.c);
            break;
    }
}

ShiftwiseUnfused::~ShiftwiseUnfused() = default;

std::string ShiftwiseUnfused::detail() const {
    return "unfused: " + std::to_string(s_->nk) + " x " + s_->dense->kernel().name +
           (w_.pass == Pass::Fwd ? " + shift-add" : " + dz gather") +
           (w_.pass == Pass::BwdData ? " + sum" : "");
}

void ShiftwiseUnfused::set_inputs(const std::map<std::string, Tensor>& in) {
    State& s = *s_;
    check_op_inputs(w_, in);
    for (const char* opt : {"ah", "av", "as", "b"})
        if (in.count(opt))
            throw std::invalid_argument(std::string("ShiftwiseUnfused: optional input '") + opt +
                                        "' (inference form) is not supported");
    s.tables = read_shift_tables(w_, in.at("slot_h"), in.at("slot_v"), in.at("ident"));
    auto copy = [](const Tensor& from, Tensor& to) {
        std::memcpy(to.raw(), from.raw(), from.nbytes());
    };
    if (in.count("x")) to_blocked_into(in.at("x"), s.xin);
    if (in.count("w")) copy(in.at("w"), s.wfile);
    if (in.count("dyh")) {
        copy(in.at("dyh"), s.p0);
        copy(in.at("dyv"), s.p1);
        copy(in.at("dys"), s.p2);
    }
}

void ShiftwiseUnfused::fill_random(uint32_t seed) { set_inputs(make_example_inputs(w_, seed)); }

void ShiftwiseUnfused::run() {
    State& s = *s_;
    switch (w_.pass) {
        case Pass::Fwd:
            copy_into_padded(s.xin, s.xp, s.e);
            for (int j = 0; j < s.nk; ++j) s.dense->fwd(s.xp, s.wj[j], s.bias0, s.zj[j]);
            s.shift_add();
            break;
        case Pass::BwdData:
            s.gather_dz();
            for (int j = 0; j < s.nk; ++j) s.dense->bwd_data(s.zj[j], s.wj[j], s.dxpj[j]);
            s.sum_dx();
            break;
        case Pass::BwdWeight:
            copy_into_padded(s.xin, s.xp, s.e);
            s.gather_dz();
            for (int j = 0; j < s.nk; ++j) s.dense->bwd_weight(s.xp, s.zj[j], s.dwj[j], s.db);
            break;
    }
}

std::map<std::string, Tensor> ShiftwiseUnfused::outputs() const {
    const State& s = *s_;
    auto clone = [](const Tensor& t) {
        Tensor r(t.dtype(), t.shape());
        std::memcpy(r.raw(), t.raw(), t.nbytes());
        return r;
    };
    switch (w_.pass) {
        case Pass::Fwd:
            return {{"yh", clone(s.p0)}, {"yv", clone(s.p1)}, {"ys", clone(s.p2)}};
        case Pass::BwdData:
            return {{"dx", from_blocked(s.dx, s.c)}};
        case Pass::BwdWeight:
            return {{"dw", clone(s.dwfile)}};
    }
    return {};
}

}  // namespace lkc::bench
