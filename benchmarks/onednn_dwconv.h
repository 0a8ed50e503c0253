// oneDNN 2.6 depth-wise convolution baseline (fp32, CPU). Builds the primitive with memory format
// `any` so oneDNN picks its preferred layouts (channels-last brdgmm_dw for forward on AVX-512),
// reorders NCHW inputs into them once at setup, and times only the primitive in run().
// Semantics are lkc's (docs: large_kernel_ops.md §0): cross-correlation, zero "same" padding
// ph = d·(Kh−1)/2, output ceil(H/s). oneDNN itself needs dilation d−1 and an explicit padding_r.
#pragma once

#include <memory>
#include <string>
#include <vector>

namespace lkc::bench {

struct DwProblem {
    int n, c, h, w, kh, kw, stride, dilation;
    enum Pass { Fwd, BwdData, BwdWeight } pass;
};

// "fwd", "bwd_data", "bwd_weight".
const char* dw_pass_name(DwProblem::Pass pass);

class OnednnDwconv {
  public:
    // Creates engine(cpu, 0), stream, the primitive desc (formats `any`; backward passes use a
    // forward_training desc as hint), the memories, and fills the inputs with deterministic
    // pseudo-random data in [-1, 1). Throws dnnl::error / std::invalid_argument on failure.
    explicit OnednnDwconv(const DwProblem& p);
    ~OnednnDwconv();
    OnednnDwconv(OnednnDwconv&&) noexcept;
    OnednnDwconv& operator=(OnednnDwconv&&) noexcept;
    OnednnDwconv(const OnednnDwconv&) = delete;
    OnednnDwconv& operator=(const OnednnDwconv&) = delete;

    // Executes the primitive once and waits. No reorders.
    void run();
    // pd.impl_info_str(), e.g. "brdgmm_dw:avx512_core".
    std::string impl_name() const;

    // Correctness path: reorders the NCHW inputs in, runs once, returns the output in NCHW.
    //   fwd:        (x [N,C,H,W],   w [C,1,Kh,Kw]) -> y  [N,C,OH,OW]
    //   bwd_data:   (dy [N,C,OH,OW], w [C,1,Kh,Kw]) -> dx [N,C,H,W]
    //   bwd_weight: (x [N,C,H,W],   dy [N,C,OH,OW]) -> dw [C,1,Kh,Kw]
    // The given inputs replace the benchmark inputs for later run() calls.
    std::vector<float> run_nchw(const std::vector<float>& a, const std::vector<float>& b);

    const DwProblem& problem() const;
    int out_h() const;  // ceil(H / s)
    int out_w() const;  // ceil(W / s)
    // Nominal FLOPs of one run: 2·N·C·OH·OW·Kh·Kw (same for all three passes).
    double nominal_flops() const;
    // oneDNN's chosen layouts as "src:<tag> wei:<tag> dst:<tag>" (dims/strides summary).
    std::string layouts() const;

  private:
    struct Impl;
    std::unique_ptr<Impl> impl_;
};

// The branches of a multi-branch depth-wise layer (dwconv2d_multi: "same" padded DW convs of
// different shapes and dilations on one input, stride 1), run by oneDNN as one primitive per
// branch plus a sum primitive: fwd y = sum_b conv_b(x, w_b); bwd_data dx = sum_b of the branch
// data gradients; bwd_weight every branch's weight gradient (no sum). Branch 0 is created with
// formats `any` exactly as OnednnDwconv; the other branches are created with branch 0's
// activation layouts (so x / dy are shared and the sum adds like layouts), weights `any`. Inputs
// are deterministic pseudo-random data reordered in once; run() executes only the primitives.
struct DwBranch {
    int kh, kw, dilation;
};

class OnednnMultiDw {
  public:
    OnednnMultiDw(int n, int c, int h, int w, const std::vector<DwBranch>& branches,
                  DwProblem::Pass pass);
    ~OnednnMultiDw();
    OnednnMultiDw(const OnednnMultiDw&) = delete;
    OnednnMultiDw& operator=(const OnednnMultiDw&) = delete;

    // Executes the branch primitives and the sum once, then waits.
    void run();
    // "<branch 0 impl> + <branch 1 impl> + ... + sum:<impl>".
    std::string impl_name() const;

  private:
    struct Impl;
    std::unique_ptr<Impl> impl_;
};

}  // namespace lkc::bench
