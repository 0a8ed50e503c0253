// Naive double-precision depth-wise conv reference (large_kernel_ops.md section 0). Plain loops,
// no shortcuts, for checking kernels; not for speed.
//
// Layouts: activations NCHW, weights [C, 1, Kh, Kw] stored as C*Kh*Kw, bias C (or empty = none).
// Cross-correlation with zero padding, "same" padding ph = d*(Kh-1)/2, pw = d*(Kw-1)/2, stride s,
// dilation d; output OH = ceil(H/s), OW = ceil(W/s):
//   y[n,c,i,j] = b[c] + sum_{u<Kh, v<Kw} w[c,u,v] * x[n,c, i*s + u*d - ph, j*s + v*d - pw]
// All functions throw std::invalid_argument on non-positive sizes or mismatched vector lengths.
#pragma once

#include <map>
#include <string>
#include <vector>

#include "runtime/tensor.h"
#include "runtime/workload.h"

namespace lkc {
namespace ref {

// x: N*C*H*W, w: C*Kh*Kw, b: C or empty. Returns y: N*C*OH*OW.
std::vector<double> dwconv_fwd(const std::vector<double>& x, const std::vector<double>& w,
                               const std::vector<double>& b, int N, int C, int H, int W, int Kh,
                               int Kw, int s, int d);

// dy: N*C*OH*OW, w: C*Kh*Kw. Returns dx: N*C*H*W (H, W are the input sizes). Computed as the
// exact adjoint of dwconv_fwd (scatter over outputs and taps), not via a rotated kernel.
std::vector<double> dwconv_bwd_data(const std::vector<double>& dy, const std::vector<double>& w,
                                    int N, int C, int H, int W, int Kh, int Kw, int s, int d);

// x: N*C*H*W, dy: N*C*OH*OW. Writes dw: C*Kh*Kw with
// dw[c,u,v] = sum_{n,i,j} x[n,c, i*s+u*d-ph, j*s+v*d-pw] * dy[n,c,i,j], and db: C with
// db[c] = sum_{n,i,j} dy[n,c,i,j]. Either pointer may be null to skip that output.
void dwconv_bwd_weight(const std::vector<double>& x, const std::vector<double>& dy, int N, int C,
                       int H, int W, int Kh, int Kw, int s, int d, std::vector<double>* dw,
                       std::vector<double>* db);

// Tensor-level entry for a dwconv2d workload: inputs by file name (x, w, b, dy; F32), outputs by
// name (y | dx | dw, db) in double. absolute=true runs on |inputs|, giving per element the sum of
// |terms|, the scale of fp32 rounding error.
std::map<std::string, std::vector<double>> dwconv2d_reference(
    const Workload& w, const std::map<std::string, Tensor>& inputs, bool absolute = false);

}  // namespace ref
}  // namespace lkc
