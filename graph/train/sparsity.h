// Dynamic sparsity (SLaK / ShiftwiseConv training, large_kernel_ops.md §2, §4): per-tensor 0/1
// masks on every conv and linear weight, initialised uniformly, by ERK or from SNIP scores,
// applied after every optimizer step, and every u steps pruned and regrown per layer.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <random>
#include <set>
#include <string>
#include <vector>

#include "graph/ir.h"

namespace lkc {
namespace train {

enum class MaskInit { Uniform, Erk, Snip };
MaskInit parse_mask_init(const std::string& s);  // "uniform" | "erk" | "snip"

// How depth-wise weights are masked:
//   Weight    every weight its own bit (SLaK). A 16-channel vector kernel cannot skip them.
//   LaneRows  one bit per (lane block of 16 channels, kernel row) of a depth-wise [C,1,kh,kw]
//             weight: the training kernels skip pruned rows (runtime/dw_train.h). Groups are
//             initialised, pruned (by L1 norm of the group) and regrown like single weights.
//             Under LaneRows, 1x1 convs / Linears ([Co, Ci] or [Co, Ci, 1, 1]) with at least
//             two lane blocks on their longer axis get one bit per 16-channel block of that
//             axis (output blocks when Co >= Ci, else input blocks): the trainer runs them as
//             dense GEMMs on the kept blocks (graph/train/trainer.cpp).
// Other masked tensors (k x k convs, Linears with one block on the longer axis, 1x1 convs the
// trainer does not run as a GEMM: stride or groups != 1) are per weight either way.
enum class MaskStructure { Weight, LaneRows };
// The blocked axis of a lane-block Linear mask.
enum class LaneAxis { Out, In };
// A [Co, Ci] or [Co, Ci, 1, 1] weight with at least two 16-channel blocks on its longer axis.
bool lane_blockable(const Shape& s);
MaskStructure parse_mask_structure(const std::string& s);  // "weight" | "lane-rows"
std::string mask_structure_name(MaskStructure s);

// The masked tensors of a train-form graph: every Conv2d / depth-wise / Linear "weight*"
// parameter with at least `min_elements` elements (the tiny 3x3 stems stay dense only when
// smaller).
std::vector<std::string> maskable_params(const graph::Graph& g, int64_t min_elements = 0);

// Per-layer densities for a global density d (fraction of weights kept):
//   uniform: d everywhere;
//   ERK (RigL): d_l proportional to (sum of the dims) / (product of the dims), scaled so the kept
//   total is d * total, layers that would exceed 1 set dense and the rest rescaled.
std::map<std::string, double> layer_densities(const graph::Graph& g,
                                              const std::vector<std::string>& keys, double d,
                                              MaskInit init);

class MaskSet {
  public:
    MaskSet() = default;
    // Keys whose masks are lane-row groups (depth-wise [C,1,kh,kw] weights); set before init.
    // Throws std::invalid_argument for a key of another shape.
    void set_lane_rows(const graph::Graph& g, const std::set<std::string>& keys);
    bool lane_rows(const std::string& key) const;
    // Keys whose masks are whole 16-channel blocks of a Linear / 1x1 conv weight ([Co, Ci] or
    // [Co, Ci, 1, 1]) along the longer axis; set before init. Throws std::invalid_argument for
    // another shape or fewer than two blocks on that axis.
    void set_lane_blocks(const graph::Graph& g, const std::set<std::string>& keys);
    bool lane_blocks(const std::string& key) const;
    LaneAxis lane_axis(const std::string& key) const;
    // A lane-block key's mask as one flag per block of its axis; throws std::runtime_error when
    // the mask is not uniform over a block.
    std::vector<uint8_t> block_flags(const std::string& key) const;
    // A lane-row key's mask as [ceil(C/16)][kh] flags; throws std::runtime_error when the mask
    // is not uniform over each group (e.g. a checkpoint written with per-weight masks).
    std::vector<uint8_t> row_flags(const std::string& key) const;
    // Random masks with the given per-layer densities (each output channel's kernel its own
    // pattern for depth-wise weights: the positions are drawn over the whole tensor; lane-row
    // and lane-block keys: whole groups are drawn).
    void init_random(const graph::Graph& g, const std::map<std::string, double>& density,
                     std::mt19937_64& rng);
    // SNIP: keeps the globally largest scores |w * dL/dw| (one entry per weight), total density d;
    // a lane-row / lane-block key keeps as many whole groups, those of largest summed score.
    void init_snip(const graph::Graph& g, const std::map<std::string, Tensor>& scores, double d);

    // w *= mask for every masked parameter value in g.
    void apply(graph::Graph& g) const;
    // Per layer: removes round(rate * nonzeros) kept weights of smallest |w| and regrows as many at
    // random positions that are zero in the mask (grown weights are set to 0 in g); lane-row and
    // lane-block keys move whole groups (smallest L1 norm). Returns the number of weights moved
    // (summed over layers).
    int64_t prune_and_regrow(graph::Graph& g, double rate, std::mt19937_64& rng);
    // Coarse ShiftwiseConv variant: masks whole k x k sub-kernels of the shift-wise weights
    // ([R*nk, 1, k, k] or [R, nk, k, k]): prune by L1 of the sub-kernel, regrow at random.
    int64_t prune_and_regrow_subkernels(graph::Graph& g, const std::string& key, int k, double rate,
                                        std::mt19937_64& rng);

    bool empty() const { return masks_.empty(); }
    const std::map<std::string, Tensor>& masks() const { return masks_; }
    std::map<std::string, Tensor>& masks() { return masks_; }
    int64_t kept(const std::string& key) const;
    int64_t total(const std::string& key) const;
    double density() const;  // over all masked tensors

  private:
    enum class Grouping { DwRows, OutBlocks, InBlocks };
    struct Groups {
        Grouping kind;
        Shape shape;
    };
    const Groups* groups(const std::string& key) const;  // null: per weight
    // Element -> group index of a grouped key; *count = number of groups.
    static std::vector<int64_t> group_map(const Groups& gr, int64_t* count);
    std::vector<uint8_t> group_flags(const std::string& key, const Groups& gr) const;

    std::map<std::string, Tensor> masks_;   // F32 0/1, the parameter's shape
    std::map<std::string, Groups> groups_;  // grouped keys (lane rows / lane blocks)
};

// Cosine-decayed rate: rate * (1 + cos(pi * step / total)) / 2 (large_kernel_ops.md §2).
double cosine_rate(double rate, int64_t step, int64_t total);

}  // namespace train
}  // namespace lkc
