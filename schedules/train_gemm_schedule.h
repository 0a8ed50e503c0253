// Schedule of the GEMM weight gradient (generators/train_gemm_generators.cpp, train_gemm_wgrad):
//
//   dW[co, k] (+)= sum over every pixel p of all images  dy[co, p] * x[k, p]
//
// the backward of a 1x1 conv / Linear (k = input channel) and, on im2col columns, of the dense
// k x k conv (k = (tap, input channel)). Output in the forward GEMM's packed weight layout
// (co lane 16, k 16*ceil(K/16), ceil(Co/16)).
//
// A register tile acc(co lane, t, cj, kt, obt, b) holds `tile` input channels k times `cob`
// output-channel blocks of 16 lanes (8 x 2 = 16 zmm by default). Per pixel: `cob` vector loads of
// dy, `tile` broadcasts of x (from one cache line), tile * cob FMAs. The pixels are reduced in
// blocks b of ~`pixels` pixels (whole rows, across images): per block every tile of dW is read,
// the block's contribution added in registers, and written back (8 / block bytes per FMA: the
// partial sums live in dW itself; there is no per-task copy and no final sum).
#pragma once

#include <vector>

#include "Halide.h"

namespace lkc::sched {

using namespace Halide;

struct WgradParams {
    int tile = 8;       // input channels k per register tile (divides 16)
    int cob = 2;        // output-channel blocks per register tile
    int gpu_tiles = 8;  // GPU: k tiles per thread block (threads along y)
};

struct WgradStages {
    Func output;              // (l, k, ob): pure init (zero or the prior), one update over `rb`
    RDom rb;                  // pixel blocks
    Func acc;                 // (l, t, cj, kt, obt, b) register tile of one pixel block
    std::vector<RVar> rvars;  // acc's update: (pixel x, row in block)
};

void schedule_wgrad_cpu(WgradStages& s, const WgradParams& p, const Target& t);
void schedule_wgrad_gpu(WgradStages& s, const WgradParams& p, const Target& t);

}  // namespace lkc::sched
