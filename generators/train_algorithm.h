// Shared pieces of the training generators (generators/train_*_generators.cpp): derivatives of
// the activations of ops_algorithm.h, the per-channel / flat buffer constraints, and the codes
// shared with runtime/train_ops.h.
//
// Layouts are those of the forward ops (ops_algorithm.h): activations and their gradients are
// blocked (16 lanes, W, H, ceil(C/16), N) with zero padding lanes; per-channel parameters and
// their gradients are (16, ceil(C/16)); optimizer state is flat [numel].
#pragma once

#include "generators/ops_algorithm.h"

namespace lkc::gen::train {

using namespace Halide;
using ops::kLanes;

// Unary gradient codes; runtime/train_ops.h `UnaryGrad` has the same values.
constexpr int kGradRelu = 0;      // v = x or y (the same sign test)
constexpr int kGradGelu = 1;      // v = x
constexpr int kGradSigmoid = 2;   // v = y = sigmoid(x)
constexpr int kGradSigmoidX = 3;  // v = x

// Binary op codes (runtime/ops.h `Binary`).
constexpr int kBinaryAdd = 0;
constexpr int kBinaryMul = 1;

// d/dv GELU(v) for the erf form 0.5 v (1 + erf(v / sqrt 2)):
//   0.5 (1 + erf(v / sqrt 2)) + v exp(-v^2 / 2) / sqrt(2 pi),
// with the forward's rational erf (ops::erf_rational), so the pair is consistent to fp32.
inline Expr gelu_grad(const Expr& v) {
    Expr cdf = 0.5f * (1.0f + ops::erf_rational(v * 0.70710678118654752f));
    Expr pdf = exp(-0.5f * v * v) * 0.39894228040143268f;
    return cdf + v * pdf;
}

// (16, ceil(C/16)) per-channel buffers.
template <typename B>
void constrain_channels(B& b) {
    ops::constrain_channels(b);
}

// Flat [numel] f32 buffers (optimizer state).
template <typename B>
void constrain_flat(B& b) {
    b.dim(0).set_min(0).set_stride(1);
}

}  // namespace lkc::gen::train
