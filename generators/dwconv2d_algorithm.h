// Dense depth-wise conv algorithms (math only; schedules live in schedules/).
//
// Internal activation layout is blocked channels, "NCHW16c": Halide dims
// (ci: 16 lanes, x: W, y: H, cb: ceil(C/16), n: N), i.e. 16 consecutive channels form one
// 64-byte vector. Why: one zmm holds one pixel's 16 channels, so a tap is one FMA with no
// broadcast, the x stride is a constant 16 floats (addresses fold into immediates), and channel
// counts that are not multiples of 16 (SLaK's 124, 249) only pad the last block. docs/kernels.md
// has the measured comparison with NHWC and NCHW.
//
// Weights and biases stay in the file layout ([C,1,Kh,Kw] is Halide (Kw, Kh, 1, C)); a small
// root stage repacks them per channel block, zero-padded to whole column chunks.
//
// Accumulation is fp32 whatever the storage type, so f16/bf16 storage only changes the Input
// types (set `input.type` etc. on the generator command line), not this file.
#pragma once

#include <functional>

#include "Halide.h"

namespace lkc::gen {

using namespace Halide;

constexpr int kLanes = 16;  // channels per block

// Shape and convolution parameters shared by every pass, as Halide Exprs.
struct ConvGeom {
    Expr kh, kw;       // kernel extent
    Expr stride, dil;  // runtime stride and dilation
    Expr ph, pw;       // "same" padding: dil * (k - 1) / 2
    Expr in_h, in_w;   // input (x) spatial extent
};

// Register-blocked correlation over an explicit tile dimension.
//
// acc(ci, t, jt, y, cb, n) = init + sum over kernel rows u, column chunks vc, chunk lanes vi of
//     wp(ci, vc*chunk + vi, u, cb) * xp(ci, (jt*tile + t)*s + (vc*chunk + vi)*d - pw, y*s + u*d -
//     ph, cb, n)
//
// The tile index jt is a pure dimension so the RDom predicate can name it: a kernel row whose
// input row is outside the image is skipped exactly, and a column chunk whose whole input range
// for this tile is padding is skipped. Partly-padded chunks read zeros from xp (a zero-extended
// input). wp must be zero for columns >= kw (chunk padding).
struct Correlation {
    Func acc;  // (ci, t, jt, y, cb, n)
    RDom r;    // (u, vc, vi)
};

// Optional row mask (lane-block row sparsity, the training kernels' `row_mask` variants):
// keep(u, cb) is true where kernel row u of channel block cb is kept; pruned rows are skipped.
// u is always within [0, kh) when keep is called.
using RowKeep = std::function<Expr(Expr u, Expr cb)>;

inline Correlation correlate(const Func& xp, const Func& wp, const ConvGeom& g, int tile, int chunk,
                             Expr init, const std::string& name, const RowKeep& keep = nullptr) {
    Var ci("ci"), t("t"), jt("jt"), y("y"), cb("cb"), n("n");
    Expr nchunks = (g.kw + (chunk - 1)) / chunk;
    RDom r(0, g.kh, 0, nchunks, 0, chunk, name + "_r");
    Expr u = r.x, vc = r.y, vi = r.z;
    Expr iy = y * g.stride + u * g.dil - g.ph;
    // Input column range touched by this chunk over the whole tile.
    Expr x_lo = jt * tile * g.stride + vc * chunk * g.dil - g.pw;
    Expr x_hi = (jt * tile + tile - 1) * g.stride + (vc * chunk + chunk - 1) * g.dil - g.pw;
    Expr ok = iy >= 0 && iy < g.in_h && x_hi >= 0 && x_lo < g.in_w;
    if (keep) ok = ok && keep(u, cb);
    r.where(ok);
    Func acc(name);
    acc(ci, t, jt, y, cb, n) = init;
    Expr ix = (jt * tile + t) * g.stride + (vc * chunk + vi) * g.dil - g.pw;
    acc(ci, t, jt, y, cb, n) += wp(ci, vc * chunk + vi, u, cb) * xp(ci, ix, iy, cb, n);
    return {acc, r};
}

// The same correlation reduced over *input* pixels instead of kernel taps (stride s, dilation 1):
//
// acc(ci, t, jt, y, cb, n) = init + sum over input rows p, input column chunks qc, lanes qi of
//     wp(ci, q - j*s + pw, p - y*s + ph, cb) * xp(ci, q, p, cb, n),   q = qc*chunk + qi, j =
//     jt*tile + t
//
// For kernels wider than the map (31x31 on 14x14) every tap it computes reads a real pixel; the
// tap form would compute whole kernel-column chunks, most of them padding. wp must be zero for
// columns outside [0, kw) (pack_weights does this). Per chunk: chunk input vectors and
// chunk + (tile - 1) * s weight vectors feed tile * chunk FMAs, the same ratio as the tap form.
inline Correlation correlate_pixels(const Func& xp, const Func& wp, const ConvGeom& g, int tile,
                                    int chunk, Expr init, const std::string& name,
                                    const RowKeep& keep = nullptr) {
    Var ci("ci"), t("t"), jt("jt"), y("y"), cb("cb"), n("n");
    Expr nchunks = (g.in_w + (chunk - 1)) / chunk;
    RDom r(0, g.in_h, 0, nchunks, 0, chunk, name + "_r");
    Expr p = r.x, qc = r.y, qi = r.z;
    Expr u = p - y * g.stride + g.ph;
    // Kernel columns this chunk meets over the whole tile: v = q - j*s + pw.
    Expr v_hi = qc * chunk + chunk - 1 - jt * tile * g.stride + g.pw;
    Expr v_lo = qc * chunk - (jt * tile + tile - 1) * g.stride + g.pw;
    Expr ok = u >= 0 && u < g.kh && v_hi >= 0 && v_lo < g.kw;
    if (keep) ok = ok && keep(clamp(u, 0, g.kh - 1), cb);
    r.where(ok);
    Func acc(name);
    acc(ci, t, jt, y, cb, n) = init;
    Expr q = qc * chunk + qi;
    Expr v = q - (jt * tile + t) * g.stride + g.pw;
    acc(ci, t, jt, y, cb, n) += wp(ci, v, u, cb) * xp(ci, q, p, cb, n);
    return {acc, r};
}

// Zero-extended fp32 view of a blocked activation buffer (x and y dims bounded).
template <typename B>
Func zero_extended(const B& in, const std::string& name) {
    Var ci("ci"), x("x"), y("y"), cb("cb"), n("n");
    Func bounded = BoundaryConditions::constant_exterior(
        in, cast(in.type(), 0), {Range(), {0, in.dim(1).extent()}, {0, in.dim(2).extent()}});
    Func f(name);
    f(ci, x, y, cb, n) = cast<float>(bounded(ci, x, y, cb, n));
    return f;
}

// Weights [C,1,Kh,Kw] (Halide (Kw, Kh, 1, C)) repacked to (ci, v, u, cb), zero for v >= Kw and
// for channels >= C. flip=true rotates the kernel by 180 degrees (backward data, stride 1).
template <typename B>
Func pack_weights(const B& w, int chunk, bool flip, const std::string& name) {
    Var ci("ci"), v("v"), u("u"), cb("cb");
    Expr kw = w.dim(0).extent(), kh = w.dim(1).extent(), c = w.dim(3).extent();
    Expr ch = cb * kLanes + ci;
    Expr vv = flip ? kw - 1 - v : v;
    Expr uu = flip ? kh - 1 - u : u;
    Expr ok = v >= 0 && v < kw && ch < c;
    Func f(name);
    f(ci, v, u, cb) = select(
        ok, cast<float>(w(clamp(vv, 0, kw - 1), clamp(uu, 0, kh - 1), 0, clamp(ch, 0, c - 1))),
        0.0f);
    (void)chunk;
    return f;
}

}  // namespace lkc::gen
