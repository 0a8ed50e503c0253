// Model builders: the train form (the form of the released checkpoints) of RepLKNet, SLaK,
// UniRepLKNet and ShiftwiseConv (ShiftWise_v2), with the official PyTorch state_dict keys and
// shapes (shared/reference/official_param_names.md), plus one tiny "-test" variant per family.
//
// Graph input: tensor "x" [batch, in_chans, image_size, image_size] NCHW. Output: "head"
// [batch, num_classes] NC (logits). Parameters have no values; call init_weights or load_weights
// (graph/weights.h).
#pragma once

#include <string>
#include <vector>

#include "graph/ir.h"

namespace lkc {
namespace graph {

struct ModelOptions {
    int num_classes = 1000;  // 21841 for the ImageNet-22K checkpoints
    int image_size = 224;
    int batch = 1;
    int in_chans = 3;
    // The official inference form instead of the train form: RepLKNet small_kernel_merged=True
    // (lkb_reparam), UniRepLKNet deploy=True, ShiftWise_v2 after Block.reparameterize() (one
    // LoRA path). SLaK has none (official_param_names.md section 2): GraphError.
    bool deploy = false;
};

struct ModelInfo {
    std::string name;      // canonical, e.g. "unireplknet-t"
    std::string family;    // "replknet" | "slak" | "unireplknet" | "shiftwise"
    std::string official;  // the official constructor, e.g. "unireplknet_t"
    std::string summary;   // depths, dims, kernels in one line
};

// Canonical names of every model, families in the order RepLKNet, SLaK, UniRepLKNet, ShiftWise.
std::vector<std::string> model_names();
std::vector<ModelInfo> model_infos();

// Canonical name for `name`: case-insensitive, '_' and '-' equivalent ("UniRepLKNet_T" ->
// "unireplknet-t"). Throws GraphError listing the known names.
std::string canonical_model_name(const std::string& name);
const ModelInfo& model_info(const std::string& name);

// The residual adds "<block>.residual" (= x + branch, same shapes) in drop-path order: entry k
// holds the adds sharing the k-th rate of the official schedule (linspace over the blocks). One
// add per entry, except RepLKNet, whose RepLKBlock (blocks.2j) and ConvFFN (blocks.2j+1) share
// the rate of stage block j. Any graph: adds of other names are not residuals here.
std::vector<std::vector<int>> drop_path_blocks(const Graph& g);

// Builds the train-form graph (options.deploy: the official inference form). Throws GraphError for
// an unknown name (listing the known ones) or options out of range.
Graph build_model(const std::string& name, const ModelOptions& options = {});

// Family builders (graph/models/*.cpp). Configurations as the official constructors.
struct RepLKNetConfig {
    std::vector<int> kernels;   // large kernel per stage
    std::vector<int> depths;    // RepLK block + ConvFFN units per stage
    std::vector<int> channels;  // per stage
    int small_kernel = 5;       // 0: none (XL)
    double dw_ratio = 1.0;
    double ffn_ratio = 4.0;
};
Graph build_replknet(const std::string& name, const RepLKNetConfig& c, const ModelOptions& o);

struct SLaKConfig {
    std::vector<int> depths, dims;  // dims before width_factor
    std::vector<int> kernels;       // large kernel per stage
    int small_kernel = 5;           // N
    double width_factor = 1.3;
};
Graph build_slak(const std::string& name, const SLaKConfig& c, const ModelOptions& o);

struct UniRepLKNetConfig {
    std::vector<int> dims;
    std::vector<std::vector<int>> kernels;  // per stage, per block (3/5: plain DW; >= 7: DRB)
    double ffn_factor = 4.0;
};
Graph build_unireplknet(const std::string& name, const UniRepLKNetConfig& c, const ModelOptions& o);

struct ShiftWiseConfig {
    std::vector<int> depths, dims;
    std::vector<int> kernels;  // big kernel K per stage
    int small_kernel = 3;
    double ghost_ratio = 0.23;
    int n_path = 2;  // parallel sub-kernel sets (LoRAs.0, LoRAs.1)
    int n_rep = 4;   // shift groups Q
    double width_factor = 1.0;
};
Graph build_shiftwise(const std::string& name, const ShiftWiseConfig& c, const ModelOptions& o);

// DRB branch set of UniRepLKNet for large kernel K (kernel sizes and dilations);
// throws GraphError for K without a default set (5, 7, 9, 11, 13, 15, 17).
void drb_branches(int K, std::vector<int>* kernels, std::vector<int>* dilations);

}  // namespace graph
}  // namespace lkc
