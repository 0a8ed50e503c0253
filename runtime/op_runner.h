// One interface for every op family's kernels (dwconv2d, dwconv2d_multi, dwconv2d_sparse,
// shiftwise): bind a workload to a kernel variant and device, set file-layout inputs, run, read
// file-layout outputs. `lkc op`, the tests and the benchmark use it; each family implements it in
// its own runtime/<family>.cpp.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <string>

#include "runtime/device.h"
#include "runtime/op_inputs.h"
#include "runtime/registry.h"
#include "runtime/tensor.h"
#include "runtime/workload.h"

namespace lkc {

class OpRunner {
  public:
    virtual ~OpRunner() = default;
    virtual const Workload& workload() const = 0;
    // The AOT variant that run() calls ("dwconv2d_fwd_t14c8_cpu", ...).
    virtual std::string kernel_name() const = 0;
    // Inputs in file layout, by the names of architecture.md (x, w, w0.., b, mask, dy, dyh..,
    // slot_h, slot_v, ident, ah, av, as). Throws std::invalid_argument naming the tensor and the
    // expected shape / values when one is missing, extra, mis-shaped or invalid.
    virtual void set_inputs(const std::map<std::string, Tensor>& inputs) = 0;
    // Deterministic pseudo-random inputs (benchmarks): floats in [-1, 1]; valid tables / masks.
    virtual void fill_random(uint32_t seed) = 0;
    // One kernel call (plus nothing the benchmark should not time); throws KernelError on failure.
    // On a GPU the call may return before the device finishes: sync() waits for it.
    virtual void run() = 0;
    virtual void sync() {}
    // How the kernel variant was chosen (named, tuned exact / nearest, hand default) and from
    // which records.
    virtual Selection selection() const = 0;
    // Outputs in file layout (y | yh, yv, ys | dx | dw, dw0.., db).
    virtual std::map<std::string, Tensor> outputs() = 0;
};

// The runner for w's op on device d; `kernel` names a variant (empty: the registry picks).
// Throws std::invalid_argument for a workload no compiled kernel covers.
std::unique_ptr<OpRunner> make_runner(const Workload& w, Device d, const std::string& kernel = "");

}  // namespace lkc
