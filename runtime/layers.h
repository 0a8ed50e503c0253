// Depth-wise layers for the graph executor: the forward kernels of every depth-wise family run
// on caller-owned blocked activations (NCHW16c, runtime/dwconv2d.h), weights packed once at model
// load. The OpRunner classes (one workload, file-layout tensors in and out) are for `lkc op`,
// tests and benchmarks; these are for whole networks, where activations stay blocked in the
// executor's arena.
//
// Kernel choice is select_kernel's (named, tuned records, hand default); selection() says which.
#pragma once

#include <map>
#include <memory>
#include <string>
#include <vector>

#include "runtime/device.h"
#include "runtime/dwconv2d.h"
#include "runtime/dwconv2d_sparse.h"
#include "runtime/dwconv2d_taps.h"
#include "runtime/registry.h"
#include "runtime/tensor.h"
#include "runtime/workload.h"

namespace lkc {

class DwLayer {
  public:
    virtual ~DwLayer() = default;
    // x (16, W, H, ceil(C/16), N) -> y (16, OW, OH, ceil(C/16), N); y's padding lanes are
    // written (zero weights and bias there). Throws std::invalid_argument naming the buffer and
    // the expected extents when a shape differs from the workload's.
    virtual void run(const Blocked& x, Blocked& y) = 0;
    // Several outputs (shift-wise train form: yh, yv, ys); one-output layers take one.
    virtual void run(const Blocked& x, const std::vector<Blocked*>& ys);
    virtual const Workload& workload() const = 0;
    virtual std::string kernel_name() const = 0;
    virtual Selection selection() const = 0;
};

// A forward workload's layer:
//   dwconv2d        params w [C,1,Kh,Kw], optional b [C]
//   dwconv2d_multi  params w0.. (one per branch), optional b
//   shiftwise       params w [C,nk,k,k], slot_h, slot_v, ident and for the fused inference form
//                   ah, av, as, b (y = ah*yh + av*yv + as*ys + b + x: one output); without them
//                   the three outputs yh, yv, ys (train form; run with three buffers)
//   dwconv2d_sparse params w, mask, optional b (converts to the sparse kernels' plain layout)
// The params are validated as runtime/op_inputs.h does for `lkc op`. `kernel`: a variant name
// (tests); empty: select_kernel.
std::unique_ptr<DwLayer> make_dw_layer(const Workload& w, Device d,
                                       const std::map<std::string, Tensor>& params,
                                       const std::string& kernel = "");

}  // namespace lkc
