// Sparse depth-wise conv algorithms (SLaK-style per-channel unstructured masks; math only,
// schedules live in schedules/). Semantics: ../shared/reference/large_kernel_ops.md §0, §2.
//
// Every channel has its own pattern, so channels cannot share a vector the way the dense kernel's
// NCHW16c blocks do. Activations stay plain NCHW (Halide (W, H, C, N)) and vectors run along
// output columns (kVec = 8 lanes). A preparation step in the runtime (runtime/dwconv2d_sparse.cpp)
// turns weights + mask into per-channel tap lists, sorted by (segment, row, column), padded to the
// longest list:
//   starts  int32 (2*pad_y + 2, 2M + 1, Q, C): per column-skip segment of channel c and output
//           phase q, the first entry at each row offset (see tap_correlate)
//   taps    int32 (4, T, Q, C): per list entry: off0, off1 (offsets into the staged plane for
//           even / odd output vectors: oy * row_pitch + staged column, see "copies"), oy, plane
//   weights f32 (T, Q, C): the entry's weight (w * mask, folded)
// Per tap, one weight broadcast feeds a register tile of output vectors, one FMA each with the
// input vector at the tap's offset as memory operand; the kernels do work proportional to the
// listed taps. Taps whose input rows are padding for a whole register tile are skipped, and (one
// tile per output row) so are output vectors that read only padding.
//
// Loads that never cross a cache line ("copies"). A 32-byte load that crosses a 64-byte line costs
// Zen 4 two load slots: in a probe, FMAs fed by loads at random column offsets ran at 50-62 % of
// the FMA peak, at 99 % when no load crossed a line (whatever its offset inside the line). So each
// staged input row can hold copies of the image row side by side, copy b shifted left by 8*b
// columns and starting b*pitch columns after the first (pitch a multiple of 16, rows 64-byte
// aligned). The vector of output columns [j0, j0 + 8) of a tap at column offset ox reads copy
// b = (j0/8 + floor(ox/8)) mod 2 at staged column j0 + ox + b*(pitch - 8), which is (ox mod 8)
// modulo 16, i.e. the load starts in the first half of a line. With two copies a tap has two
// offsets, off0 for even vectors and off1 for odd ones (the table holds both). With three copies
// (copy 2 has copy 0's alignment), odd vectors read copy b0 + 1 where even ones read copy b0
// (b0 = floor(ox/8) mod 2), so the odd offset is always off0 + pitch - 8: one offset per tap, and
// the odd vectors' loads use a second row pointer (backward-weight, where a block of taps keeps
// its offsets in registers).
//
// The staged planes are flat: element (x, y) of a plane is at z = y * row_pitch + x (row_pitch a
// multiple of 16, long enough that a row's reads never reach a neighbour row's data: the zero
// padding between rows is shared). A tap's two offsets off_b = oy * row_pitch + ox + b*(pitch - 8)
// are precomputed by the runtime, so a tap costs the kernel two table loads and no arithmetic, and
// the register tile's rows are fixed pointers.
//
// Strides are handled by phases, so the inner loop always sees a stride-1 correlation:
//  - forward with stride S reads S*S input phase planes
//    xs(x, y, py*S + px) = x(S*x + px, S*y + py); a tap (u, v) with input offset
//    (ey, ex) = (u*d - ph, v*d - pw) reads phase
//    (ey mod S, ex mod S) at offset (floor(ey / S), floor(ex / S));
//  - backward-data with stride S computes S*S output phases dx(S*a + qy, S*b + qx) separately;
//    phase q lists only the taps with e = q (mod S), at offset ((q - e) / S) (the transposed conv
//    as S*S stride-1 correlations; the runtime interleaves the phases).
#pragma once

#include <string>

#include "Halide.h"

namespace lkc::gen::sparse {

using namespace Halide;

constexpr int kVec = 8;  // fp32 lanes per vector along output columns (one ymm)

// Table fields of a list entry.
// (A fifth field, 20-byte entries, made the forward 10-13 % slower than 16-byte entries.)
enum TapField { kOff0 = 0, kOff1 = 1, kOy = 2, kPlane = 3, kTapFields = 4 };

// The S*S zero-extended phase planes of a plain (W, H, C, N) input, flat (z = y * row_pitch + x),
// with `copies` copies per row (see above), staged as zeros plus an update that copies the image in
// (a plain vector fill and a plain vector copy; a select-based boundary condition cost a gather
// per border vector):
//   xs(y * row_pitch + x + b*(pitch - 8), ph, c, n) = in(S*x + ph % S, S*y + ph / S, c, n) inside
//   the image, else 0, for copies b < `copies`.
struct Planes {
    Func f;  // (z, ph, c, n)
    RDom r;  // the update's domain: (x, y, ph, b) of the image
};

template <typename B>
Planes staged_planes(const B& in, Expr S, int copies, Expr pitch, Expr row_pitch,
                     const std::string& name) {
    Var z("z"), p("p"), c("c"), n("n");
    Expr W = in.dim(0).extent(), H = in.dim(1).extent();
    Func f(name);
    f(z, p, c, n) = 0.0f;
    RDom r(0, (W + S - 1) / S, 0, (H + S - 1) / S, 0, S * S, 0, copies, name + "_r");
    Expr ix = S * r.x + r.z % S, iy = S * r.y + r.z / S;
    f(r.y * row_pitch + r.x + r.w * (pitch - kVec), r.z, c, n) =
        select(ix < W && iy < H, cast<float>(in(min(ix, W - 1), min(iy, H - 1), c, n)), 0.0f);
    return {f, r};
}

// The same single-copy staging as one pure definition (GPUs, where the update's loops over the
// image could not be spread over threads): row y = floor(z / row_pitch), column x = z - y *
// row_pitch; the left padding of a row is the previous row's zero tail (row_pitch exceeds the
// image width plus both pads).
template <typename B>
Func staged_planes_pure(const B& in, Expr S, Expr row_pitch, const std::string& name) {
    Var z("z"), p("p"), c("c"), n("n");
    Expr W = in.dim(0).extent(), H = in.dim(1).extent();
    Expr y = z / row_pitch, x = z - y * row_pitch;  // Halide's division rounds down
    Expr ix = S * x + p % S, iy = S * y + p / S;
    Func f(name);
    f(z, p, c, n) = select(iy >= 0 && ix < W && iy < H,
                           cast<float>(in(clamp(ix, 0, W - 1), clamp(iy, 0, H - 1), c, n)), 0.0f);
    return f;
}

// The smallest copy pitch and row pitch (multiples of 16) for which no read of a staged row
// reaches the other copy's or a neighbour row's data, for outputs up to out_w columns (rounded to
// whole vectors) and column offsets in [-pad_x, pad_x]. The runtime passes pitches >= these.
inline Expr min_copy_pitch(Expr out_w, Expr pad_x) {
    return ((out_w + 2 * pad_x + 2 * kVec + 15) / 16) * 16;
}
inline Expr min_row_pitch(int copies, Expr pitch, Expr out_w, Expr pad_x) {
    return (((copies - 1) * pitch + out_w + 2 * pad_x + 3 * kVec + 15) / 16) * 16;
}

// Zero-extended fp32 view of a plain (W, H, C, N) buffer.
template <typename B>
Func zero_extended_plain(const B& in, const std::string& name) {
    Var x("x"), y("y"), c("c"), n("n");
    Func bounded = BoundaryConditions::constant_exterior(
        in, cast(in.type(), 0),
        {{0, in.dim(0).extent()}, {0, in.dim(1).extent()}, Range(), Range()});
    Func f(name);
    f(x, y, c, n) = cast<float>(bounded(x, y, c, n));
    return f;
}

// Table values are promised (not clamped: the runtime builds the tables and derives the bounds
// from them) to lie in the given ranges, so bounds inference can size the staged input.
inline Expr promised(Expr v, Expr lo, Expr hi) { return unsafe_promise_clamped(v, lo, hi); }

// Geometry shared by the tap loops.
struct TapGeom {
    int copies = 1;     // copies per staged row
    Expr pitch;         // column pitch between the copies
    Expr row_pitch;     // pitch between staged rows
    Expr pad_x, pad_y;  // |column offset| <= pad_x, |row offset| <= pad_y
    Expr planes;        // phase planes (S*S)
    Expr plane_h;       // rows of a phase plane
};

// Staged-plane offset of list entry t for the vector starting at output column j0 (a multiple of
// 8): off0 for even vectors, off1 for odd ones.
template <typename TB>
Expr tap_offset(const TB& taps, Expr t, Expr q, Expr c, Expr j0, const TapGeom& g) {
    Expr lo = -g.pad_y * g.row_pitch - g.pad_x;
    Expr hi = g.pad_y * g.row_pitch + g.pad_x + (g.copies - 1) * (g.pitch - kVec);
    Expr o0 = promised(taps(kOff0, t, q, c), lo, hi);
    if (g.copies == 1) return o0;
    Expr even = (j0 / kVec) % 2 == 0;
    if (g.copies == 3) return select(even, o0, o0 + (g.pitch - kVec));
    Expr o1 = promised(taps(kOff1, t, q, c), lo, hi);
    return select(even, o0, o1);
}

template <typename TB>
Expr tap_plane(const TB& taps, Expr t, Expr q, Expr c, const TapGeom& g) {
    return select(g.planes == 1, 0, promised(taps(kPlane, t, q, c), 0, g.planes - 1));
}

// Forward-type correlation over a tap list, register-blocked over an explicit tile of
// V = tc/8 vectors x `rows` rows:
//
// acc(lane, v, il, jt, it, q, c, n) = init + sum over list entries t of (q, c) of
//     weights(t, q, c) * xs((it*rows + il) * row_pitch + j0 + lane + off_t(j0), plane_t, c, n),
//     j0 = jt*tc + 8v
//
// The list of (q, c) is sorted by (segment, oy, ox); starts(i, s, q, c) is the first entry of
// segment s with oy + pad_y >= i (i in [0, 2*pad_y + 1]; i = 2*pad_y + 1 gives the segment's end).
// The taps whose input rows meet the plane for a tile's rows are then one index range per
// segment, so a tile runs one loop per segment with no per-tap test (the tile indices jt, it are
// pure dimensions so the RDom predicate can name them; Halide turns the predicate on the entry
// index into loop bounds). Partly padded taps read zeros from xs.
//
// Column skipping: segment s < M holds taps whose M - s leading output vectors read only padding,
// s > M taps whose s - M trailing vectors do, when an output row is one tile (`single`). The
// segment and vector loops are unrolled, so each segment runs its own FMA block without those
// vectors. With several tiles per row every segment runs all vectors.
struct TapCorrelation {
    Func acc;  // (lane, v, il, jt, it, q, c, n)
    RDom r;    // (vector, list entry, segment)
};

template <typename SB, typename TB, typename WB>
TapCorrelation tap_correlate(const Func& xs, const TapGeom& g, const SB& starts, const TB& taps,
                             const WB& weights, Expr init, int tc, int rows, int M, Expr single,
                             const std::string& name) {
    Var lane("lane"), v("v"), il("il"), jt("jt"), it("it"), q("q"), c("c"), n("n");
    const int V = tc / kVec;
    Expr T = taps.dim(1).extent();
    RDom r(0, V, 0, T, 0, 2 * M + 1, name + "_r");
    Expr rv = r.x, k = r.y, seg = r.z;
    Expr last = 2 * g.pad_y + 1;
    Expr i_lo = clamp(g.pad_y - (it * rows + rows - 1), 0, last);
    Expr i_hi = clamp(g.pad_y + g.plane_h - it * rows, 0, last);
    Expr skip_lead = select(single, max(0, M - seg), 0);
    Expr skip_trail = select(single, max(0, seg - M), 0);
    r.where(k >= starts(i_lo, seg, q, c) && k < starts(i_hi, seg, q, c) && rv >= skip_lead &&
            rv < V - skip_trail);
    Expr t = promised(k, 0, T - 1);
    Expr j0 = jt * tc + rv * kVec;
    Expr z = (it * rows + il) * g.row_pitch + j0 + lane + tap_offset(taps, t, q, c, j0, g);
    Func acc(name);
    acc(lane, v, il, jt, it, q, c, n) = init;
    acc(lane, rv, il, jt, it, q, c, n) +=
        weights(t, q, c) * xs(z, tap_plane(taps, t, q, c, g), c, n);
    return {acc, r};
}

// The same correlation with one accumulator per output pixel (GPUs: one thread each), for one
// staged copy and no column-skip segments (M = 0): pixel (j, i) runs exactly the taps whose input
// row i + oy lies in the plane, starts(pad_y - i, 0) .. starts(pad_y + plane_h - i, 0).
//
// acc(j, i, q, c, n) = init + sum over those entries t of weights(t, q, c) *
//     xs(i * row_pitch + j + off_t, plane_t, c, n)
template <typename SB, typename TB, typename WB>
TapCorrelation tap_correlate_pixels(const Func& xs, const TapGeom& g, const SB& starts,
                                    const TB& taps, const WB& weights, Expr init,
                                    const std::string& name) {
    Var j("j"), i("i"), q("q"), c("c"), n("n");
    Expr T = taps.dim(1).extent();
    RDom r(0, T, name + "_r");
    Expr last = 2 * g.pad_y + 1;
    Expr i_lo = clamp(g.pad_y - i, 0, last), i_hi = clamp(g.pad_y + g.plane_h - i, 0, last);
    r.where(r >= starts(i_lo, 0, q, c) && r < starts(i_hi, 0, q, c));
    Expr t = promised(r, 0, T - 1);
    Expr z = i * g.row_pitch + j + tap_offset(taps, t, q, c, j, g);
    Func acc(name);
    acc(j, i, q, c, n) = init;
    acc(j, i, q, c, n) += weights(t, q, c) * xs(z, tap_plane(taps, t, q, c, g), c, n);
    return {acc, r};
}

}  // namespace lkc::gen::sparse
