// Schedules for the register-tiled whole-network ops: 1x1 conv / Linear as a GEMM
// (generators/ops_gemm_generators.cpp) and the dense k x k conv
// (generators/ops_conv_generators.cpp).
//
// Both compute a register tile acc(co lane, t, xt, cj, cbt, y, n) of `tile` output pixels along x
// times `cob` output-channel blocks of 16 lanes, reduced over input channels (and kernel taps):
// per input channel one broadcast input value per pixel times one weight vector per block, i.e.
// tile * cob FMAs for tile broadcasts + cob vector loads. The output stage applies the fused
// epilogue and writes the blocked output.
#pragma once

#include <vector>

#include "Halide.h"

namespace lkc::sched {

using namespace Halide;

struct GemmParams {
    int tile = 7;           // output pixels (along x) per register tile
    int cob = 2;            // output-channel blocks (16 lanes each) per register tile
    int rows_per_task = 8;  // CPU: output rows per parallel task
    int gpu_tiles = 8;      // GPU: register tiles along x per thread block (threads in x)
    int lanes = 16;         // conv: input lanes reduced (and staged) per input block
    // CPU: the output-block tiles loop inside the pixel tiles (each input tile is read once from
    // L1 by every output block; the whole weight matrix streams from L2) instead of outside
    // them (each co tile's weight panel stays in L1/L2; the input is re-read per co tile). For
    // large maps with small weights (56x56, 512 -> 128).
    bool co_inner = false;
};

struct GemmStages {
    Func output;              // (ci, x, y, cb, n) blocked output with the epilogue
    Func acc;                 // (ci, t, xt, cj, cbt, y, n) register tile
    std::vector<RVar> rvars;  // acc's update reduction variables, innermost first; the first
                              // (16 input lanes) is unrolled on the CPU
    Func xp;                  // conv: zero-extended input staged once per call (else undefined)
    // Run-time conditions the output is specialised on, level by level: every combination of one
    // condition per level gets its own code path (the last level's "else" path is the default).
    std::vector<std::vector<Expr>> specialize;
};

void schedule_gemm_cpu(GemmStages& s, const GemmParams& p, const Target& t);
void schedule_gemm_gpu(GemmStages& s, const GemmParams& p, const Target& t);

}  // namespace lkc::sched
