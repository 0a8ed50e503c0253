// Workload strings: the one canonical name of an op instance (architecture.md, "One workload
// string"), used as test name, benchmark row, tuning-record key and log tag.
//
//   <op>:<pass>:n<N>c<C>h<H>w<W>:<kernel>[:s<S>][:d<D>][:<dtype>]
//   op      dwconv2d | dwconv2d_multi | dwconv2d_sparse | shiftwise
//   pass    fwd | bwd_data | bwd_weight
//   kernel  dwconv2d, dwconv2d_sparse: k<Kh>x<Kw>
//           dwconv2d_multi:            b<Kh>x<Kw>d<D>(,<Kh>x<Kw>d<D>)*
//           shiftwise:                 K<K>k<k>g<G>
//   s, d    stride (1|2) and dilation (1..7), default 1; padding is always "same"
//   dtype   f32 (default) | f16 | bf16
//
// Limits: sizes 1..2^31-1; every kernel extent (Kh, Kw, branch extents, K, k) odd and in 1..63;
// dilation 1..7 (global for dwconv2d/sparse, per branch for multi); stride 1 or 2 (shiftwise is
// stride 1 only and takes neither :s nor :d; dwconv2d_multi takes no global :d).
#pragma once

#include <stdexcept>
#include <string>
#include <vector>

namespace lkc {

// Every malformed workload string is reported with this type. The message quotes the whole string,
// names the field at fault and says what was expected.
class WorkloadError : public std::invalid_argument {
  public:
    explicit WorkloadError(const std::string& msg) : std::invalid_argument(msg) {}
};

enum class Op { DwConv2d, DwConv2dMulti, DwConv2dSparse, ShiftWise };
enum class Pass { Fwd, BwdData, BwdWeight };
enum class ElemType { F32, F16, BF16 };

// Spellings used in workload strings: "dwconv2d", "bwd_data", "bf16", ...
const char* op_name(Op op);
const char* pass_name(Pass pass);
const char* elem_type_name(ElemType t);

// One branch of dwconv2d_multi: a Kh x Kw depth-wise kernel with its own dilation, "same" padding.
struct Branch {
    int kh, kw, dilation;
};
bool operator==(const Branch& a, const Branch& b);
inline bool operator!=(const Branch& a, const Branch& b) { return !(a == b); }

struct Workload {
    Op op = Op::DwConv2d;
    Pass pass = Pass::Fwd;
    int n = 0, c = 0, h = 0, w = 0;          // input activation NCHW
    int kh = 0, kw = 0;                      // dwconv2d / dwconv2d_sparse only
    std::vector<Branch> branches;            // dwconv2d_multi only
    int big_k = 0, small_k = 0, groups = 0;  // shiftwise only: K, k, G
    int stride = 1, dilation = 1;            // dilation: dwconv2d / dwconv2d_sparse only
    ElemType dtype = ElemType::F32;

    // Output map size: ceil(h / stride), ceil(w / stride).
    int out_h() const;
    int out_w() const;

    // Top / left padding.
    //   dwconv2d, sparse: dilation*(kh-1)/2 (and the same at the bottom / right).
    //   multi:            max over branches of d_b*(kh_b-1)/2 (the merged kernel's half extent).
    //   shiftwise:        K/2; the bottom / right reach is nk*k-1-K/2 (asymmetric if nk*k != K).
    int pad_h() const;
    int pad_w() const;

    // Shiftwise sub-kernels per channel: nk = ceil(K/k). 0 for the other ops.
    int num_sub_kernels() const;

    // Multiply-adds counted as 2 FLOPs. The same count is used for fwd, bwd_data and bwd_weight.
    //   dwconv2d, sparse: 2*N*C*OH*OW*Kh*Kw (sparse: the dense count; zero taps are not known
    //   here). multi:            sum over branches of 2*N*C*OH*OW*Kh_b*Kw_b (branches run
    //   unmerged). shiftwise:        the three equivalent depth-wise convs of large_kernel_ops.md
    //   section 4,
    //                     2*N*C*H*W*(k*(nk*k) + (nk*k)*k + k*k): horizontal k x nk*k strip,
    //                     vertical nk*k x k strip and the centred k x k identity path. The G shift
    //                     groups sum into the same footprints and add no multiply-adds.
    double nominal_flops() const;
    // As nominal_flops(), counting only taps that land inside the input map (exact).
    double useful_flops() const;
};
// A dwconv2d workload whose kernel reaches past the map: taps with offset d*|u - (k-1)/2| >
// extent - 1 never meet the image at any stride, so the centred sub-kernel of extent
// 2*min((k-1)/2, (extent-1)/d) + 1 per dimension gives the same outputs (and the outer taps'
// weight gradients are 0). Returns w itself when nothing is cropped or w is another op.
Workload cropped_to_map(const Workload& w);

bool operator==(const Workload& a, const Workload& b);
inline bool operator!=(const Workload& a, const Workload& b) { return !(a == b); }

// Parses a workload string; throws WorkloadError on any deviation from the grammar or limits.
Workload parse_workload(const std::string& s);

// Canonical string: dtype always printed, ":s<S>" only if S != 1, ":d<D>" only if D != 1.
// Throws WorkloadError if the workload is outside the limits or sets fields its op does not use,
// so every printed name parses back to an equal Workload.
std::string to_string(const Workload& w);

}  // namespace lkc
