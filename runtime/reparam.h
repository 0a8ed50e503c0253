// Structural re-parameterisation of depth-wise convs (large_kernel_ops.md sections 0-4), graph
// independent: F32 tensors in file layout in, F32 tensors out. Arithmetic is done in double and
// rounded once on store. Every function throws std::invalid_argument naming the tensor or field
// that is wrong and what was expected.
//
// Conventions: DW kernels are [C,1,Kh,Kw], "same" padded, cross-correlation (section 0); a
// centred kernel of odd size S has its tap (u, v) at offset (u - (S-1)/2, v - (S-1)/2).
#pragma once

#include <vector>

#include "runtime/tensor.h"

namespace lkc {
namespace reparam {

// Inference BatchNorm: y = gamma * (x - mean) / sqrt(var + eps) + beta; each tensor [C].
struct BatchNorm {
    Tensor gamma, beta, mean, var;
    double eps = 1e-5;
};

// A conv's weight and bias (b [C]; empty = no bias).
struct ConvParams {
    Tensor w, b;
};

// Folds BN into the preceding conv, per leading channel c (section 0):
//   t[c] = gamma[c] / sqrt(var[c] + eps),  W'[c,...] = W[c,...] * t[c],
//   b'[c] = beta[c] + (b[c] - mean[c]) * t[c]   (b empty: b = 0).
// w has rank >= 1 with C = w.dim(0); the result's b is always [C].
ConvParams fold_bn(const Tensor& w, const Tensor& b, const BatchNorm& bn);

// Zero-pads a centred [C,1,a,b] kernel to [C,1,kh,kw] (section 0): W'[c,0,u+(kh-a)/2,v+(kw-b)/2]
// = W[c,0,u,v]. All sizes odd, kh >= a, kw >= b.
Tensor pad_centered(const Tensor& w, int kh, int kw);

// Dilated kernel -> dense (section 0): [C,1,a,b] with rate r >= 1 -> [C,1,(a-1)r+1,(b-1)r+1],
// W'[c,0,r*u,r*v] = W[c,0,u,v], zeros elsewhere.
Tensor dilate(const Tensor& w, int r);

// One parallel branch of a multi-branch DW layer: w [C,1,a,b] (odd a, b), bias [C] or empty,
// dilation >= 1, "same" padding.
struct Branch {
    Tensor w;
    Tensor b;
    int dilation = 1;
};

// Sum of parallel branches on the same input -> one DW conv (sections 1-3):
//   W = sum_i pad_centered(dilate(w_i, d_i), Kh, Kw),  b = sum_i b_i (empty b_i = 0),
//   Kh = max_i (a_i-1)d_i+1, Kw = max_i (b_i-1)d_i+1, each dimension separately
//   (51x5 + 5x51 + 5x5 gives 51x51). The result's b is always [C]. Fold BNs first (fold_bn).
ConvParams merge_branches(const std::vector<Branch>& branches);

// ShiftwiseConv (section 4) as three DW convs with offset origins:
//   yh[n,c,i,t] = sum_{u<k, v<nk*k} wh[c,0,u,v] * x[n,c, i+u+wh_row0, t+v+wh_col0]
//   yv[n,c,i,t] = sum_{u<nk*k, v<k} wv[c,0,u,v] * x[n,c, i+u+wv_row0, t+v+wv_col0]
//   ys[n,c,i,t] = sum_{u<k, v<k}    ws[c,0,u,v] * x[n,c, i+u+ws_row0, t+v+ws_col0]
// (x zero outside the image), with wh [C,1,k,nk*k], wv [C,1,nk*k,k], ws [C,1,k,k].
struct ShiftwiseKernels {
    Tensor wh, wv, ws;
    int wh_row0 = 0, wh_col0 = 0, wv_row0 = 0, wv_col0 = 0, ws_row0 = 0, ws_col0 = 0;
};

// w [C,nk,k,k] F32 with nk = ceil(big_k/k); slot_h, slot_v [G,C,nk] and ident [G,C] I32 (checked
// by read_shift_tables). With mid = big_k/2, h = (k-1)/2:
//   wh[c,0,u, s*k+v] = sum_g sum_{j: slot_h[g,c,j]=s} w[c,j,u,v],  origin (-h, -mid);
//   wv[c,0,s*k+u, v] = sum_g sum_{j: slot_v[g,c,j]=s} w[c,j,u,v],  origin (-mid, -h);
//   ws[c,0,u,v]      = sum_g w[c,ident[g,c],u,v],                  origin (-h, -h).
// Derivation: z[c,j][i+e, t-rp[s]] reads x at (i + u - h, t - mid + s*k + v); a tap inside the
// image always lies inside the z map, so the map clip removes only zero (padding) terms.
ShiftwiseKernels shiftwise_equivalent(const Tensor& w, const Tensor& slot_h, const Tensor& slot_v,
                                      const Tensor& ident, int big_k);

// The fused shiftwise inference op y = ah*yh + av*yv + as*ys + b + x as one centred DW conv
// [C,1,S,S], S = 2*max(mid, nk*k-1-mid) + 1: ah*wh, av*wv, as*ws placed at their offsets plus 1 at
// the centre (the +x identity); bias b. ah, av, as, b [C].
ConvParams shiftwise_to_cross(const Tensor& w, const Tensor& slot_h, const Tensor& slot_v,
                              const Tensor& ident, int big_k, const Tensor& ah, const Tensor& av,
                              const Tensor& as, const Tensor& b);

}  // namespace reparam
}  // namespace lkc
