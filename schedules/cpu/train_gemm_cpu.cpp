// x86 CPU schedule of the GEMM weight gradient (schedules/train_gemm_schedule.h).
//
// Loop nest (AVX-512):
//   for b in pixel blocks (~`pixels` pixels, whole rows):       serial
//     parallel for obt in output-block tiles (cob blocks each):  the block's dy tile stays in L1
//       for kt in input-channel tiles (tile channels each):      x of the block from L2
//         acc = 0; for row, for px: tile x cob FMAs              registers (16 zmm at 8 x 2)
//         dW tile += acc                                          16 vector loads + stores
// Per pixel `cob` dy vectors are loaded and `tile` x values broadcast; the dW read-modify-write
// costs 2 * tile * cob vector accesses per block (~1 % of the FMAs at 128 pixels).
//
// AVX2 / SSE: 16-lane vectors take 2 / 4 registers; the tile shrinks (generator) to fit 16.
#include "schedules/train_gemm_schedule.h"

namespace lkc::sched {

void schedule_wgrad_cpu(WgradStages& s, const WgradParams& p, const Target& t) {
    (void)t;
    Var l("l"), k("k"), ob("ob"), kto("kto"), ti("ti"), obto("obto"), cjo("cjo");
    Var tt("t"), cj("cj"), kt("kt"), obt("obt"), b("b");
    Func out = s.output;
    out.vectorize(l, 16).parallel(ob);
    Stage upd = out.update(0);
    upd.split(k, kto, ti, p.tile, TailStrategy::GuardWithIf)
        .split(ob, obto, cjo, p.cob, TailStrategy::GuardWithIf)
        .reorder(l, ti, cjo, kto, obto, s.rb)
        .vectorize(l, 16)
        .unroll(ti)
        .unroll(cjo)
        .parallel(obto);

    // One tile per realisation: bound_extent keeps its storage constant-size (registers).
    s.acc.compute_at(out, kto)
        .bound_extent(kt, 1)
        .bound_extent(obt, 1)
        .bound_extent(b, 1)
        .vectorize(l, 16)
        .unroll(tt)
        .unroll(cj);
    std::vector<VarOrRVar> order = {l, tt, cj};
    for (const RVar& r : s.rvars) order.push_back(r);
    for (const Var& v : {kt, obt, b}) order.push_back(v);
    s.acc.update().reorder(order).vectorize(l, 16).unroll(tt).unroll(cj);
}

}  // namespace lkc::sched
