// Halide generators for the sparse (per-channel tap list) depth-wise conv: forward and
// backward-data (one generator, dwconv2d_sparse_fwd) and backward-weight (dwconv2d_sparse_wgrad).
// Layouts and tables: generators/dwconv2d_sparse_algorithm.h; the tables are built by
// runtime/dwconv2d_sparse.cpp.
#include <algorithm>

#include "generators/dwconv2d_sparse_algorithm.h"
#include "schedules/dwconv2d_sparse_schedule.h"

namespace lkc::gen::sparse {
namespace {

// Vector registers a register tile may use next to the loads and temporaries: 32 ymm with
// AVX-512VL, 16 ymm with AVX2, 16 xmm (8 pairs) on baseline SSE.
int acc_budget(const Target& t) {
    if (t.has_gpu_feature() || t.has_feature(Target::AVX512)) return 28;
    return t.has_feature(Target::AVX2) ? 12 : 6;
}

// Largest divisor of v that is <= limit (>= 1).
int divisor_at_most(int v, int limit) {
    for (int d = std::min(v, std::max(1, limit)); d > 1; --d)
        if (v % d == 0) return d;
    return 1;
}

// Shrinks a tile of `a` x `b` vectors (a must stay a divisor of the nominal a, b of b, so the
// runtime's rounding to the nominal tile stays valid) until a * b fits the budget: b first.
void fit_tile(int& a, int& b, int budget) {
    if (a * b <= budget) return;
    b = divisor_at_most(b, budget / a);
    if (a * b > budget) a = divisor_at_most(a, budget / b);
}

// Column-skip segments per side (see tap_correlate): `segments` when given (>= 0), else up to 3
// leading or trailing vectors of a `tile`-column tile (column offsets up to 31 past the edge).
int segments_for(int tile, int segments) {
    return std::min(segments >= 0 ? segments : 3, tile / kVec - 1);
}

template <typename B>
void constrain_plain(B& b) {
    b.dim(0).set_min(0).set_stride(1);
    for (int d = 1; d < b.dimensions(); ++d) b.dim(d).set_min(0);
}

// Integer tables (fields, entries, Q, C), fields innermost and dense.
template <typename B>
void constrain_table(B& tab, int fields) {
    tab.dim(0).set_min(0).set_extent(fields).set_stride(1);
    tab.dim(1).set_min(0).set_stride(fields);
    tab.dim(2).set_min(0);
    tab.dim(3).set_min(0);
}

// starts (2*pad_y + 2, 2M + 1, Q, C).
template <typename B>
void constrain_starts(B& starts, int M) {
    starts.dim(0).set_min(0).set_stride(1);
    starts.dim(1).set_min(0).set_extent(2 * M + 1);
    starts.dim(2).set_min(0);
    starts.dim(3).set_min(0);
}

// The copy / row pitches the runtime passes must satisfy min_copy_pitch / min_row_pitch for
// outputs of out_w columns (a runtime check on an extent the pipeline uses anyway).
Expr checked_extent(Expr extent, int copies, Expr pitch, Expr row_pitch, Expr out_w, Expr pad_x,
                    const char* gen) {
    return require((copies == 1 || (pitch % 16 == 0 && pitch >= min_copy_pitch(out_w, pad_x))) &&
                       row_pitch % 16 == 0 &&
                       row_pitch >= min_row_pitch(copies, pitch, out_w, pad_x),
                   extent, gen,
                   ": pitch / row_pitch must be multiples of 16 and >= min_copy_pitch / "
                   "min_row_pitch for the output width and pad_x; got pitch, row_pitch, width",
                   pitch, row_pitch, out_w);
}

// Forward (stride S through S*S input planes) and backward-data (stride 1, or S*S output phases),
// selected by the tables the runtime passes; see dwconv2d_sparse_algorithm.h.
//   out(j, i, q, c, n) = bias(c) + sum over the list of (q, c) of weights(t, q, c) *
//                        x(j + ox_t, i + oy_t) of input phase plane_t (zero outside the image)
class DwConv2dSparseFwd : public Generator<DwConv2dSparseFwd> {
  public:
    // Register tile: `tile` output columns (a multiple of 8) x `chunk` output rows. The output
    // buffer's width and height must be multiples of them (the runtime rounds up and crops).
    GeneratorParam<int> tile{"tile", 56, kVec, 256};
    GeneratorParam<int> chunk{"chunk", 4, 1, 64};
    // Column-skip segments per side (-1: as many as the tile allows, up to 3). The runtime reads
    // it from the variant name (suffix m<M>).
    GeneratorParam<int> segments{"segments", -1, -1, 7};
    // Two copies per staged row, so that no load crosses a cache line (see
    // dwconv2d_sparse_algorithm.h); false: one copy.
    GeneratorParam<bool> stage{"stage", true};

    Input<Buffer<float, 4>> input{"input"};      // x (fwd) or dy (bwd_data): NCHW = (W, H, C, N)
    Input<Buffer<int32_t, 4>> starts{"starts"};  // (2*pad_y + 2, 2M + 1, Q, C): segment starts
    Input<Buffer<int32_t, 4>> taps{"taps"};      // (4, T, Q, C): off0, off1, oy, plane
    Input<Buffer<float, 3>> weights{"weights"};  // (T, Q, C)
    Input<Buffer<float, 1>> bias{"bias"};        // (C); zeros for "no bias"
    Input<int> in_stride{"in_stride", 1, 1, 2};  // S: the input is read as S*S phase planes
    Input<int> pad_x{"pad_x", 0, 0, 4096};       // |column offsets| <= pad_x (promised)
    Input<int> pad_y{"pad_y", 0, 0, 4096};       // |row offsets| <= pad_y (promised)
    Input<int> pitch{"pitch", 16, 16, 1 << 20};  // copy pitch: 16k >= min_copy_pitch
    Input<int> row_pitch{"row_pitch", 16, 16, 1 << 20};  // 16k >= min_row_pitch
    Output<Buffer<float, 5>> output{"output"};           // (OWr, OHr, Q, C, N), tile multiples

    void generate() {
        _halide_user_assert(tile % kVec == 0)
            << "dwconv2d_sparse_fwd: tile must be a multiple of " << kVec;
        sched::SparseParams p;
        int vecs = tile / kVec, rows = chunk;
        if (!get_target().has_gpu_feature()) fit_tile(vecs, rows, acc_budget(get_target()));
        p.tile = vecs * kVec;
        p.rows = rows;
        p.vec = kVec;
        p.copies = stage ? 2 : 1;
        // The table layout follows the nominal tile (the runtime's view); a tile shrunk for this
        // ISA never covers a whole row of a nominal-tile multiple, so it never uses the segments.
        const int M = segments_for(tile, segments);

        Var j("j"), i("i"), q("q"), c("c"), n("n");
        Expr S = in_stride;
        TapGeom g;
        g.copies = p.copies;
        g.pitch = pitch;
        g.row_pitch = row_pitch;
        g.pad_x = pad_x;
        g.pad_y = pad_y;
        g.planes = S * S;
        g.plane_h = (input.dim(1).extent() + S - 1) / S;

        sched::SparseCorrStages s;
        if (get_target().has_gpu_feature()) {
            _halide_user_assert(p.copies == 1 && M == 0)
                << "dwconv2d_sparse_fwd: GPU variants take stage=false and segments=0";
            s.xs = staged_planes_pure(input, S, row_pitch, "xs");
        } else {
            const Planes xs = staged_planes(input, S, p.copies, pitch, row_pitch, "xs");
            s.xs = xs.f;
            s.xs_r = xs.r;
        }
        Expr single = output.dim(0).extent() == p.tile;
        if (get_target().has_gpu_feature()) {
            // One thread per output pixel: per-pixel accumulators (a register tile's index
            // arithmetic would make each thread's bounds the whole tile).
            TapCorrelation corr =
                tap_correlate_pixels(s.xs, g, starts, taps, weights, bias(c), "acc");
            s.acc = corr.acc;
            s.r = corr.r;
            output(j, i, q, c, n) = s.acc(j, i, q, c, n);
        } else {
            TapCorrelation corr = tap_correlate(s.xs, g, starts, taps, weights, bias(c), p.tile,
                                                p.rows, M, single, "acc");
            s.acc = corr.acc;
            s.r = corr.r;
            output(j, i, q, c, n) =
                s.acc(j % kVec, (j % p.tile) / kVec, i % p.rows, j / p.tile, i / p.rows, q, c, n);
        }
        s.output = output;
        s.in_stride = in_stride;
        s.single = single;

        constrain_plain(input);
        constrain_plain(output);
        constrain_starts(starts, M);
        constrain_table(taps, kTapFields);
        constrain_plain(weights);
        constrain_plain(bias);
        Expr ow = output.dim(0).extent();
        output.dim(0).set_extent(
            checked_extent(ow, p.copies, pitch, row_pitch, ow, pad_x, "dwconv2d_sparse_fwd"));
        input.set_estimates({{0, 56}, {0, 56}, {0, 128}, {0, 1}});
        output.set_estimates({{0, 56}, {0, 56}, {0, 1}, {0, 128}, {0, 1}});
        starts.set_estimates({{0, 32}, {0, 2 * M + 1}, {0, 1}, {0, 128}});
        taps.set_estimates({{0, kTapFields}, {0, 300}, {0, 1}, {0, 128}});
        weights.set_estimates({{0, 300}, {0, 1}, {0, 128}});
        bias.set_estimates({{0, 128}});
        in_stride.set_estimate(1);
        pad_x.set_estimate(15);
        pad_y.set_estimate(15);
        pitch.set_estimate(112);
        row_pitch.set_estimate(176);

        if (using_autoscheduler()) return;
        if (get_target().has_gpu_feature()) {
            sched::schedule_sparse_corr_gpu(s, p, get_target());
        } else {
            sched::schedule_sparse_corr_cpu(s, p, get_target());
        }
    }
};

// Backward-weight at the listed taps:
//   dwt(t, c) = sum_{n, i, j} x(j + ox_t, i + oy_t) of input phase plane_t * dy(j, i, c, n)
//   db(c)     = sum_{n, i, j} dy(j, i, c, n)
//
// A block of `chunk` consecutive taps (the list is sorted by (column-skip class, oy, ox) and
// padded to whole blocks) keeps two partial-sum vectors per tap in registers and one staged-plane
// offset per tap in a general register (three staged copies, see dwconv2d_sparse_algorithm.h),
// and sweeps the output plane row by row: per row, each of the `tile`/8 dy vectors is loaded once
// and feeds one FMA per tap (1 + 1/chunk loads per FMA, no line-crossing loads). The block skips
// the rows and the column vectors where all its taps read padding (tested per block, so the
// branches are predictable). CPU and GPU run the same algorithm with different schedules.
class DwConv2dSparseWgrad : public Generator<DwConv2dSparseWgrad> {
  public:
    // Output columns swept per row step (a multiple of 8; rows wider than this take several
    // steps), and taps per block (the list length must be a multiple of it; the runtime pads).
    GeneratorParam<int> tile{"tile", 56, kVec, 256};
    GeneratorParam<int> chunk{"chunk", 8, 1, 64};
    // Three copies per staged row (no line-crossing loads); false: one copy.
    GeneratorParam<bool> stage{"stage", true};

    Input<Buffer<float, 4>> input{"input"};      // x: NCHW = (W, H, C, N)
    Input<Buffer<float, 4>> dy{"dy"};            // (OW, OH, C, N)
    Input<Buffer<int32_t, 4>> taps{"taps"};      // (4, T, 1, C): off0, off1, oy, plane
    Input<Buffer<int32_t, 2>> count{"count"};    // (1, C): entries in use
    Input<int> in_stride{"in_stride", 1, 1, 2};  // S
    Input<int> pad_x{"pad_x", 0, 0, 4096};
    Input<int> pad_y{"pad_y", 0, 0, 4096};
    Input<int> pitch{"pitch", 16, 16, 1 << 20};          // for OW rounded up to `tile`
    Input<int> row_pitch{"row_pitch", 16, 16, 1 << 20};  // for OW rounded up to `tile`
    Output<Buffer<float, 2>> dwt{"dwt"};  // (T, C): gradient per list entry (junk beyond count)
    Output<Buffer<float, 1>> db{"db"};    // (C)

    void generate() {
        _halide_user_assert(tile % kVec == 0)
            << "dwconv2d_sparse_wgrad: tile must be a multiple of " << kVec;
        const bool gpu = get_target().has_gpu_feature();
        sched::SparseParams p;
        // Two accumulators per tap; on AVX2 / SSE the block shrinks (the list length stays a
        // multiple of it).
        int B = chunk, two = 2;
        if (!gpu) fit_tile(two, B, acc_budget(get_target()) + 2);
        p.tile = tile;
        p.rows = B;
        p.vec = kVec;
        p.copies = stage ? 3 : 1;
        const int V = p.tile / kVec;

        Var lane("lane"), e("e"), b("b"), tb("tb"), c("c"), n("n"), t("t");
        Expr S = in_stride;
        Expr OW = dy.dim(0).extent(), OH = dy.dim(1).extent(), N = dy.dim(3).extent();
        TapGeom g;
        g.copies = p.copies;
        g.pitch = pitch;
        g.row_pitch = row_pitch;
        g.pad_x = pad_x;
        g.pad_y = pad_y;
        g.planes = S * S;
        g.plane_h = (input.dim(1).extent() + S - 1) / S;

        sched::SparseWgradStages s;
        s.in_stride = in_stride;
        // dy staged flat, rows a multiple of 16 apart, zero beyond OW and OH.
        Expr owr = ((OW + p.tile - 1) / p.tile) * p.tile;
        Expr dy_pitch = ((owr + 15) / 16) * 16;
        if (gpu) {
            _halide_user_assert(p.copies == 1)
                << "dwconv2d_sparse_wgrad: GPU variants take stage=false";
            s.xs = staged_planes_pure(input, S, row_pitch, "xs");
            s.dys = staged_planes_pure(dy, 1, dy_pitch, "dys");
        } else {
            const Planes xs = staged_planes(input, S, p.copies, pitch, row_pitch, "xs");
            s.xs = xs.f;
            s.xs_r = xs.r;
            const Planes dys = staged_planes(dy, 1, 1, 0, dy_pitch, "dys");
            s.dys = dys.f;
            s.dys_r = dys.r;
        }

        // Offset range of each block of B consecutive taps (for the skip predicates).
        RDom rb(0, B, "rb");
        auto field = [&](int f, Expr tt, Expr pad) {
            return promised(taps(f, tt, 0, c), -pad, pad);
        };
        s.oy_lo = Func("oy_lo");
        s.oy_hi = Func("oy_hi");
        s.oy_lo(tb, c) = minimum(field(kOy, tb * B + rb, pad_y));
        s.oy_hi(tb, c) = maximum(field(kOy, tb * B + rb, pad_y));

        // Two passes pv over the output vectors of parity pv (so a tap's offset is the same for
        // all vectors of a pass: one general register per tap); per pass the domain is (vector
        // within the step, column step, output row). `single` is specialised on: the row is one
        // step, so every vector's accumulator and copy parity are static.
        Expr single = OW <= p.tile;
        RDom r({{0, (V + 1) / 2}, {0, select(single, 1, owr / p.tile)}, {0, OH}}, "r");
        Var pv("pv");
        Expr j0 = r[1] * p.tile + (2 * r[0] + pv) * kVec, i = r[2];
        r.where(2 * r[0] + pv < V && tb * B < count(0, c) && i + s.oy_hi(tb, c) >= 0 &&
                i + s.oy_lo(tb, c) < g.plane_h);
        Expr tt = tb * B + b;
        Expr z = i * row_pitch + j0 + lane + tap_offset(taps, tt, 0, c, j0, g);
        s.acc = Func("acc");
        s.acc(lane, e, b, pv, tb, c, n) = 0.0f;
        s.acc(lane, r[0] % 2, b, pv, tb, c, n) +=
            s.xs(z, tap_plane(taps, tt, 0, c, g), c, n) * s.dys(i * dy_pitch + j0 + lane, 0, c, n);
        s.r = r;
        s.single = single;
        s.acc_out = Func("acc_out");
        s.acc_out(lane, e, b, pv, tb, c, n) = s.acc(lane, e, b, pv, tb, c, n);

        // Sum of the lanes and the partial sums: the per-image gradient of each listed tap.
        s.part = Func("part");
        Expr sum = 0.0f;
        for (int h = 0; h < 2; ++h)
            for (int q = 0; q < 2; ++q)
                for (int l = 0; l < kVec; ++l) sum += s.acc_out(l, h, t % B, q, t / B, c, n);
        s.part(t, c, n) = sum;

        RDom rn(0, N, "rn");
        s.rn = rn;
        dwt(t, c) = 0.0f;
        dwt(t, c) += s.part(t, c, rn);
        s.dwt = dwt;

        Func dyz = zero_extended_plain(dy, "dyz");
        Expr nv = (OW + kVec - 1) / kVec;
        RDom rdb(0, nv, 0, OH, 0, N, "rdb");
        s.rdb = rdb;
        s.dbacc = Func("dbacc");
        s.dbacc(lane, c) = 0.0f;
        s.dbacc(lane, c) += dyz(rdb.x * kVec + lane, rdb.y, c, rdb.z);
        Expr sum_db = 0.0f;
        for (int l = 0; l < kVec; ++l) sum_db += s.dbacc(l, c);
        db(c) = sum_db;
        s.db = db;

        constrain_plain(input);
        constrain_plain(dy);
        constrain_table(taps, kTapFields);
        constrain_plain(count);
        constrain_plain(dwt);
        constrain_plain(db);
        dwt.dim(0).set_extent(checked_extent(dwt.dim(0).extent(), p.copies, pitch, row_pitch, owr,
                                             pad_x, "dwconv2d_sparse_wgrad"));
        input.set_estimates({{0, 56}, {0, 56}, {0, 128}, {0, 1}});
        dy.set_estimates({{0, 56}, {0, 56}, {0, 128}, {0, 1}});
        taps.set_estimates({{0, kTapFields}, {0, 296}, {0, 1}, {0, 128}});
        count.set_estimates({{0, 1}, {0, 128}});
        dwt.set_estimates({{0, 296}, {0, 128}});
        db.set_estimates({{0, 128}});
        in_stride.set_estimate(1);
        pad_x.set_estimate(15);
        pad_y.set_estimate(15);
        pitch.set_estimate(112);
        row_pitch.set_estimate(176);

        if (using_autoscheduler()) return;
        if (gpu) {
            sched::schedule_sparse_wgrad_gpu(s, p, get_target());
        } else {
            sched::schedule_sparse_wgrad_cpu(s, p, get_target());
        }
    }
};

}  // namespace
}  // namespace lkc::gen::sparse

HALIDE_REGISTER_GENERATOR(lkc::gen::sparse::DwConv2dSparseFwd, dwconv2d_sparse_fwd)
HALIDE_REGISTER_GENERATOR(lkc::gen::sparse::DwConv2dSparseWgrad, dwconv2d_sparse_wgrad)
