// Naive double-precision references for every op of runtime/op_inputs.h (large_kernel_ops.md
// sections 0-4). Plain loops, no shortcuts, for checking kernels; not for speed.
//
//   dwconv2d         ref::dwconv2d_reference (runtime/reference_dwconv.h).
//   dwconv2d_multi   y = b + sum_b dwconv(x, w_b; stride s, dilation d_b, "same" padding
//                    d_b*(Kh_b-1)/2, d_b*(Kw_b-1)/2); dx = sum_b of the branch adjoints;
//                    dw_b = branch weight gradient, db = sum dy.
//   dwconv2d_sparse  the dense op with w*mask; dw is the dense gradient times the mask.
//   shiftwise        section 4 literally, through the sub-kernel maps (no equivalent kernel):
//                    e = (k-1) - k/2, mid = K/2, rp[s] = mid - s*k - (k-1),
//                    z[c,j][p,q] = sum_{u,v<k} w[c,j,u,v] * x[c, p+u-(k-1), q+v-(k-1)],
//                                  p, q over the (H+2e) x (W+2e) map (zero padding k-1);
//                    yh[c,i,t] = sum_g sum_j z[c,j][i+e, t - rp[slot_h[g,c,j]]]
//                    yv[c,i,t] = sum_g sum_j z[c,j][i - rp[slot_v[g,c,j]], t+e]
//                    ys[c,i,t] = sum_g z[c,ident[g,c]][i+e, t+e]      (outside the map: 0)
//                    With ah, av, as, b: only y = ah*yh + av*yv + as*ys + b + x.
//                    bwd_data: dx = exact adjoint (dyh, dyv, dys scattered into dz, then the
//                    adjoint of the z conv); bwd_weight: dw[c,j,u,v] = sum_{n,p,q} dz[c,j][p,q] *
//                    x[c, p+u-(k-1), q+v-(k-1)].
#pragma once

#include <map>
#include <string>
#include <vector>

#include "runtime/tensor.h"
#include "runtime/workload.h"

namespace lkc {
namespace ref {

// Outputs by file name (op_output_shapes(w); shiftwise fwd with ah, av, as, b: only "y"), row-major
// in double. Validates with check_op_inputs, read_mask and read_shift_tables (throws
// std::invalid_argument). absolute=true runs on |float inputs| (masks and tables unchanged),
// giving per element the sum of |terms|, the scale of fp32 rounding error.
std::map<std::string, std::vector<double>> op_reference(const Workload& w,
                                                        const std::map<std::string, Tensor>& inputs,
                                                        bool absolute = false);

}  // namespace ref
}  // namespace lkc
