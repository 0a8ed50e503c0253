// Shared pieces of the whole-network op generators (generators/ops_*_generators.cpp): the blocked
// activation layout, activation functions, and the buffer constraints every op sets.
//
// Layout: every activation is blocked NCHW16c, Halide dims (ci: 16 lanes, x: W, y: H,
// cb: ceil(C/16), n: N), the same layout as the depth-wise kernels (dwconv2d_algorithm.h), so a
// network's activations stay blocked from the stem to the head. 2-D [N, F] tensors use the same
// layout with W = H = 1. Channels >= C in the last block are zero on input and every op writes
// them as zero (consumers rely on it: a GEMM sums them, LayerNorm divides by C, not 16 * cb).
//
// Per-channel parameters (bias, scale, LayerNorm / GRN weights, BatchNorm scale and shift) are
// passed blocked too, as (16, ceil(C/16)) buffers, zero-padded by the runner (runtime/ops.cpp).
#pragma once

#include "Halide.h"

namespace lkc::gen::ops {

using namespace Halide;

constexpr int kLanes = 16;  // channels per block (one zmm of fp32)

// Activation codes of the `act` inputs; runtime/ops.h `Act` has the same values.
constexpr int kActNone = 0;
constexpr int kActRelu = 1;
constexpr int kActGelu = 2;

// erf for fp32 as a rational function (the odd / even polynomial pair Eigen and XLA use): 12
// FMAs and one division, max abs error 4.2e-7 on [-4, 4] (|erf| rounds to 1 beyond).
inline Expr erf_rational(const Expr& a) {
    Expr x = clamp(a, -4.0f, 4.0f);
    Expr x2 = x * x;
    Expr p = x2 * -2.72614225801306e-10f + 2.77068142495902e-08f;
    p = x2 * p + -2.10102402082508e-06f;
    p = x2 * p + -5.69250639462346e-05f;
    p = x2 * p + -7.34990630326855e-04f;
    p = x2 * p + -2.95459980854025e-03f;
    p = x2 * p + -1.60960333262415e-02f;
    Expr q = x2 * -1.45660718464996e-05f + -2.13374055278905e-04f;
    q = x2 * q + -1.68282697438203e-03f;
    q = x2 * q + -7.37332916720468e-03f;
    q = x2 * q + -1.42647390514189e-02f;
    return x * p / q;
}

// GELU, erf form: 0.5 v (1 + erf(v / sqrt 2)).
inline Expr gelu(const Expr& v) {
#ifdef LKC_GELU_HALIDE_ERF
    return 0.5f * v * (1.0f + erf(v * 0.70710678118654752f));
#else
    return 0.5f * v * (1.0f + erf_rational(v * 0.70710678118654752f));
#endif
}
inline Expr sigmoid(const Expr& v) { return 1.0f / (1.0f + exp(-v)); }

// act(v) for a run-time code (the schedules specialise on the code, so in each specialisation
// this folds to one branch).
inline Expr apply_act(const Expr& act, const Expr& v) {
    return select(act == kActRelu, max(v, 0.0f), act == kActGelu, gelu(v), v);
}

// The 16-lane dim of every blocked buffer is dense and exactly 16 wide; the x stride is 16, so
// addresses inside a register tile fold into immediates.
template <typename B>
void constrain_blocked(B& b) {
    b.dim(0).set_min(0).set_extent(kLanes).set_stride(1);
    b.dim(1).set_min(0).set_stride(kLanes);
    b.dim(2).set_min(0);
    b.dim(3).set_min(0);
    b.dim(4).set_min(0);
}

// (16, ceil(C/16)) per-channel parameter buffers.
template <typename B>
void constrain_channels(B& b) {
    b.dim(0).set_min(0).set_extent(kLanes).set_stride(1);
    b.dim(1).set_min(0);
}

template <typename B>
void estimate_blocked(B& b, int w, int h, int cb, int n = 1) {
    b.set_estimates({{0, kLanes}, {0, w}, {0, h}, {0, cb}, {0, n}});
}

// Channel index of (lane, block) and whether it is a real channel (< c).
inline Expr channel_of(const Expr& ci, const Expr& cb) { return cb * kLanes + ci; }

}  // namespace lkc::gen::ops
