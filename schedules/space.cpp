#include "schedules/space.h"

#include <algorithm>
#include <cctype>
#include <stdexcept>

namespace lkc::space {

namespace {

const std::vector<std::string> kBool = {"false", "true"};

bool is_bool_word(const std::string& v) { return v == "true" || v == "false"; }
bool is_bool_param(const ParamSpec& s) {
    return is_bool_word(s.def) && std::all_of(s.values.begin(), s.values.end(), is_bool_word);
}

// CPU spaces. Register budgets (32 zmm with AVX-512): dense fwd tile <= 16 accumulators plus
// chunk weights and tile + chunk - 1 inputs in flight; wgrad tile x 1 accumulators per chunk.
std::vector<GeneratorSpace> cpu_spaces() {
    const ParamSpec fwd_tile{"tile", "t", {"4", "6", "7", "8", "10", "12", "14", "16"}, "14"};
    const ParamSpec fwd_chunk{"chunk", "c", {"1", "3", "5", "7", "8"}, "8"};
    const ParamSpec pixels{"pixels", "px", kBool, "false"};
    const ParamSpec stage{"stage", "st", kBool, "true"};
    const ParamSpec par_rows{"par_rows", "pr", kBool, "true"};
    const ParamSpec rows{"rows_per_task", "r", {"2", "4", "8", "16"}, "8"};
    std::vector<GeneratorSpace> v;
    for (const char* g : {"dwconv2d_fwd", "dwconv2d_bwd_data"})
        v.push_back({g, {fwd_tile, fwd_chunk, pixels, stage, par_rows, rows}});
    v.push_back({"dwconv2d_bwd_data_strided", {}});
    v.push_back({"dwconv2d_bwd_weight",
                 {{"tile", "t", {"1", "3", "5", "7", "8", "10", "12"}, "12"},
                  {"chunk", "c", {"4", "6", "8", "10", "12"}, "8"},
                  {"par_rows", "pr", kBool, "false"}}});
    // Row-mask variants (training): the same spaces with row_mask fixed on. Never candidates for
    // a workload (autotune/candidates.cpp lists no workload they run); described for the registry.
    const ParamSpec row_mask{"row_mask", "rm", {"true"}, "true"};
    for (const char* g : {"dwconv2d_fwd_rows", "dwconv2d_bwd_data_rows"})
        v.push_back({g, {fwd_tile, fwd_chunk, pixels, stage, par_rows, rows, row_mask}});
    v.push_back({"dwconv2d_bwd_weight_rows",
                 {{"tile", "t", {"1", "3", "5", "7", "8", "10", "12"}, "12"},
                  {"chunk", "c", {"4", "6", "8", "10", "12"}, "8"},
                  {"par_rows", "pr", kBool, "false"},
                  row_mask}});
    v.push_back({"dwconv2d_taps_fwd",
                 {{"tile", "t", {"7", "8", "10", "12", "14", "16"}, "14"},
                  {"rows_per_task", "r", {"2", "4", "8", "16"}, "8"}}});
    v.push_back({"dwconv2d_taps_wgrad", {{"wcols", "wc", {"4", "6", "8", "12", "16"}, "8"}}});
    v.push_back({"dwconv2d_sparse_fwd",
                 {{"tile", "t", {"8", "16", "24", "32", "40", "48", "56"}, "56"},
                  {"chunk", "c", {"1", "2", "3", "4", "5", "6", "7"}, "4"},
                  {"segments", "m", {"0", "1", "2", "3"}, "-1"},
                  {"stage", "st", kBool, "true"}}});
    v.push_back({"dwconv2d_sparse_wgrad",
                 {{"tile", "t", {"8", "16", "24", "32", "40", "48", "56"}, "56"},
                  {"chunk", "c", {"4", "6", "8", "10", "12", "14"}, "8"},
                  {"stage", "st", kBool, "true"}}});
    // Whole-network ops (runtime/ops.h). GEMM and dense conv: a register tile of `tile` output
    // pixels x `cob` output blocks (tile * cob + cob + 1 <= 32 zmm); conv `lanes`: input lanes
    // reduced per block (4: the 3-channel image). The memory-bound ops have one schedule each.
    const ParamSpec ops_tile{"tile", "t", {"1", "4", "6", "7", "8"}, "7"};
    const std::vector<std::string> ops_cobs = {"1", "2", "3", "4", "6", "8"};
    v.push_back({"ops_gemm",
                 {ops_tile,
                  {"cob", "c", ops_cobs, "2"},
                  {"rows_per_task", "r", {"2", "4", "8", "16"}, "8"},
                  {"co_inner", "ci", kBool, "false"}}});
    v.push_back({"ops_conv2d",
                 {ops_tile,
                  {"cob", "c", ops_cobs, "3"},
                  {"rows_per_task", "r", {"2", "4", "8", "16"}, "4"},
                  {"lanes", "l", {"4", "16"}, "16"}}});
    for (const char* g : {"ops_affine", "ops_unary", "ops_binary", "ops_select", "ops_concat",
                          "ops_layernorm", "ops_softmax", "ops_grn", "ops_avgpool"})
        v.push_back({g, {}});
    // Training kernels (runtime/train_ops.h). GEMM weight gradient: a register tile of `tile`
    // input channels x `cob` output blocks (tile * cob + cob + tile <= 32 zmm), pixels reduced
    // in blocks of ~`pixels`. The other training kernels have one schedule each.
    v.push_back({"train_gemm_wgrad",
                 {{"tile", "t", {"4", "8", "16"}, "8"},
                  {"cob", "c", {"1", "2", "3", "4"}, "2"},
                  {"pixels", "p", {"64", "128", "256", "512"}, "128"}}});
    for (const char* g : {"train_linear_transpose",
                          "train_im2col",
                          "train_col2im",
                          "train_conv_wgrad_unpack",
                          "train_unary_bwd",
                          "train_binary_bwd",
                          "train_channel_reduce",
                          "train_avgpool_bwd",
                          "train_select_bwd",
                          "train_channel_slice",
                          "train_bn_fwd",
                          "train_bn_bwd",
                          "train_layernorm_bwd",
                          "train_grn_bwd",
                          "train_xent",
                          "train_adamw",
                          "train_sgd",
                          "train_ema",
                          "train_axpby",
                          "train_mask_mul"})
        v.push_back({g, {}});
    return v;
}

// GPU spaces (CUDA and OpenCL share them): thread-block shapes. tile = threads along x,
// gpu_rows = threads along y (dense, taps); sparse: tile x chunk threads.
std::vector<GeneratorSpace> gpu_spaces() {
    const ParamSpec gtile{"tile", "t", {"8", "14", "16", "32"}, "14"};
    const ParamSpec grows{"gpu_rows", "g", {"1", "2", "4", "8"}, "4"};
    const ParamSpec chunk{"chunk", "c", {"8"}, "8"};
    const ParamSpec pixels{"pixels", "px", {"false"}, "false"};
    const ParamSpec stage{"stage", "st", {"true"}, "true"};
    std::vector<GeneratorSpace> v;
    for (const char* g : {"dwconv2d_fwd", "dwconv2d_bwd_data"})
        v.push_back({g, {gtile, chunk, grows, pixels, stage}});
    v.push_back({"dwconv2d_bwd_data_strided", {grows}});
    v.push_back(
        {"dwconv2d_bwd_weight", {{"tile", "t", {"4", "8", "12", "16"}, "12"}, chunk, grows}});
    v.push_back({"dwconv2d_taps_fwd", {gtile, grows}});
    v.push_back({"dwconv2d_taps_wgrad", {grows}});
    v.push_back({"dwconv2d_sparse_fwd",
                 {{"tile", "t", {"8", "16", "32"}, "8"},
                  {"chunk", "c", {"4", "8", "16", "32"}, "32"},
                  {"segments", "m", {"0"}, "0"},
                  {"stage", "st", {"false"}, "false"}}});
    v.push_back({"dwconv2d_sparse_wgrad",
                 {{"tile", "t", {"16", "32", "56"}, "32"},
                  {"chunk", "c", {"8", "16", "32"}, "32"},
                  {"stage", "st", {"false"}, "false"}}});
    // Whole-network ops: GEMM / conv threads own tile x cob outputs, gpu_tiles threads along x.
    v.push_back({"ops_gemm",
                 {{"tile", "t", {"7"}, "7"},
                  {"cob", "c", {"2"}, "2"},
                  {"gpu_tiles", "g", {"4", "8", "16"}, "8"}}});
    v.push_back({"ops_conv2d",
                 {{"tile", "t", {"7"}, "7"},
                  {"cob", "c", {"3"}, "3"},
                  {"gpu_tiles", "g", {"4", "8", "16"}, "8"}}});
    for (const char* g : {"ops_affine", "ops_unary", "ops_binary", "ops_select", "ops_concat",
                          "ops_layernorm", "ops_softmax", "ops_grn", "ops_avgpool"})
        v.push_back({g, {}});
    // Training kernels: the weight-gradient thread owns tile x cob outputs, gpu_tiles k tiles
    // per thread block.
    v.push_back({"train_gemm_wgrad",
                 {{"tile", "t", {"8"}, "8"},
                  {"cob", "c", {"2"}, "2"},
                  {"gpu_tiles", "g", {"4", "8", "16"}, "8"}}});
    for (const char* g : {"train_linear_transpose",
                          "train_im2col",
                          "train_col2im",
                          "train_conv_wgrad_unpack",
                          "train_unary_bwd",
                          "train_binary_bwd",
                          "train_channel_reduce",
                          "train_avgpool_bwd",
                          "train_select_bwd",
                          "train_channel_slice",
                          "train_bn_fwd",
                          "train_bn_bwd",
                          "train_layernorm_bwd",
                          "train_grn_bwd",
                          "train_xent",
                          "train_adamw",
                          "train_sgd",
                          "train_ema",
                          "train_axpby",
                          "train_mask_mul"})
        v.push_back({g, {}});
    return v;
}

const std::vector<GeneratorSpace>& spaces(Family f) {
    static const std::vector<GeneratorSpace> cpu = cpu_spaces();
    static const std::vector<GeneratorSpace> gpu = gpu_spaces();
    return f == Family::Cpu ? cpu : gpu;
}

bool is_integer(const std::string& s) {
    if (s.empty()) return false;
    size_t i = s[0] == '-' ? 1 : 0;
    if (i == s.size()) return false;
    for (; i < s.size(); ++i)
        if (!std::isdigit(static_cast<unsigned char>(s[i]))) return false;
    return true;
}

std::string normal_bool(const std::string& s) {
    if (s == "true" || s == "1") return "true";
    if (s == "false" || s == "0") return "false";
    return "";
}

}  // namespace

const char* family_name(Family f) {
    switch (f) {
        case Family::Cpu:
            return "cpu";
        case Family::OpenCL:
            return "opencl";
        case Family::Cuda:
            return "cuda";
    }
    return "?";
}

const GeneratorSpace& generator_space(const std::string& generator, Family f) {
    for (const GeneratorSpace& g : spaces(f))
        if (g.generator == generator) return g;
    throw std::invalid_argument("no schedule space for generator '" + generator + "' on " +
                                family_name(f));
}

std::vector<std::string> generator_names() {
    std::vector<std::string> v;
    for (const GeneratorSpace& g : spaces(Family::Cpu)) v.push_back(g.generator);
    return v;
}

Params canonical(const std::string& generator, Family f, const Params& p) {
    const GeneratorSpace& g = generator_space(generator, f);
    Params out;
    for (const auto& [key, value] : p) {
        auto it = std::find_if(g.params.begin(), g.params.end(),
                               [&](const ParamSpec& s) { return s.name == key; });
        if (it == g.params.end()) {
            // GeneratorParams outside the tuned space (e.g. the taps width classes) keep their
            // generator default in every variant the registry can match.
            // So do the autoscheduler estimates (est_*), which leave hand schedules unchanged.
            if (key == "storage" || key.rfind("chunk", 0) == 0 || key.rfind("est_", 0) == 0)
                continue;
            throw std::invalid_argument("generator '" + generator +
                                        "' has no schedule parameter '" + key + "'");
        }
        std::string v = value;
        if (is_bool_param(*it)) {
            v = normal_bool(value);
            if (v.empty()) {
                throw std::invalid_argument("schedule parameter '" + key + "' of '" + generator +
                                            "' must be true or false, got '" + value + "'");
            }
        } else if (!is_integer(value)) {
            throw std::invalid_argument("schedule parameter '" + key + "' of '" + generator +
                                        "' must be an integer, got '" + value + "'");
        }
        out[key] = v;
    }
    for (const ParamSpec& s : g.params)
        if (!out.count(s.name)) out[s.name] = s.def;
    return out;
}

Params parse_param_list(const std::string& s) {
    Params p;
    std::string item;
    auto flush = [&] {
        if (item.empty()) return;
        const size_t eq = item.find('=');
        if (eq == std::string::npos || eq == 0) {
            throw std::invalid_argument("schedule parameter '" + item + "' is not key=value");
        }
        p[item.substr(0, eq)] = item.substr(eq + 1);
        item.clear();
    };
    for (char ch : s) {
        if (ch == ';' || ch == ' ' || ch == ',') {
            flush();
        } else {
            item += ch;
        }
    }
    flush();
    return p;
}

std::string schedule_name(const std::string& generator, Family f, const Params& canonical_params) {
    const GeneratorSpace& g = generator_space(generator, f);
    std::string name = generator + "__";
    for (const ParamSpec& s : g.params) {
        auto it = canonical_params.find(s.name);
        const std::string v = it == canonical_params.end() ? s.def : it->second;
        name += s.code;
        if (is_bool_param(s)) {
            name += v == "true" ? "1" : "0";
        } else {
            name += v[0] == '-' ? "n" + v.substr(1) : v;
        }
    }
    if (g.params.empty()) name += "default";
    return name;
}

int int_param(const Params& p, const std::string& name) {
    auto it = p.find(name);
    if (it == p.end() || !is_integer(it->second)) {
        throw std::invalid_argument("schedule has no integer parameter '" + name + "'");
    }
    return std::stoi(it->second);
}

bool bool_param(const Params& p, const std::string& name) {
    auto it = p.find(name);
    const std::string v = it == p.end() ? "" : normal_bool(it->second);
    if (v.empty()) throw std::invalid_argument("schedule has no bool parameter '" + name + "'");
    return v == "true";
}

}  // namespace lkc::space
