// GPU schedule (CUDA and OpenCL) of the GEMM weight gradient (schedules/train_gemm_schedule.h).
//
// A thread owns one output lane (co) of `tile` input channels x `cob` output blocks of dW and
// loops over every pixel block serially, the tile in registers per block and added to dW in
// global memory after each block (no atomics: each dW element has one owner). A thread block is
// 16 lanes x `gpu_tiles` k tiles of one output-block tile: the 16 threads of a k tile read one
// 64-byte dy vector (coalesced), the x value they broadcast is the same address. Correctness is
// checked on PoCL (tests/test_train_ops_gpu.cpp); no GPU timings exist for this project.
#include "schedules/train_gemm_schedule.h"

namespace lkc::sched {

void schedule_wgrad_gpu(WgradStages& s, const WgradParams& p, const Target& t) {
    (void)t;
    Var l("l"), k("k"), ob("ob"), kto("kto"), ti("ti"), obto("obto"), cjo("cjo"), ktb("ktb"),
        ktt("ktt"), ko("ko"), ki("ki");
    Var tt("t"), cj("cj");
    Func out = s.output;
    out.split(k, ko, ki, 16, TailStrategy::GuardWithIf)
        .reorder(l, ki, ko, ob)
        .gpu_blocks(ko, ob)
        .gpu_threads(l, ki);
    Stage upd = out.update(0);
    upd.split(k, kto, ti, p.tile, TailStrategy::GuardWithIf)
        .split(ob, obto, cjo, p.cob, TailStrategy::GuardWithIf)
        .split(kto, ktb, ktt, p.gpu_tiles, TailStrategy::GuardWithIf)
        .reorder(ti, cjo, s.rb, l, ktt, ktb, obto)
        .unroll(ti)
        .unroll(cjo)
        .gpu_blocks(ktb, obto)
        .gpu_threads(l, ktt);
    s.acc.compute_at(out, s.rb).unroll(tt).unroll(cj);
    std::vector<VarOrRVar> order = {tt, cj};
    for (const RVar& r : s.rvars) order.push_back(r);
    for (const Var& v : {l, Var("kt"), Var("obt"), Var("b")}) order.push_back(v);
    s.acc.update().reorder(order).unroll(tt).unroll(cj);
}

}  // namespace lkc::sched
