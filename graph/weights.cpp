#include "graph/weights.h"

#include <cmath>
#include <cstring>
#include <vector>

#include "graph/sha256.h"
#include "runtime/safetensors.h"

namespace lkc {
namespace graph {

namespace {

uint64_t splitmix64(uint64_t& s) {
    uint64_t z = (s += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

uint64_t fnv1a(const std::string& s) {
    uint64_t h = 0xcbf29ce484222325ULL;
    for (unsigned char c : s) {
        h ^= c;
        h *= 0x100000001b3ULL;
    }
    return h;
}

// Deterministic per-tensor stream (splitmix64), uniform doubles in [0, 1) from 53 bits.
class Stream {
  public:
    Stream(uint64_t seed, const std::string& name) : state_(seed ^ fnv1a(name)) {
        splitmix64(state_);
    }
    double uniform() { return static_cast<double>(splitmix64(state_) >> 11) * 0x1.0p-53; }
    double uniform(double lo, double hi) { return lo + (hi - lo) * uniform(); }
    // Box-Muller, one value per call.
    double normal() {
        double u1 = uniform(), u2 = uniform();
        if (u1 < 1e-300) u1 = 1e-300;
        return std::sqrt(-2.0 * std::log(u1)) * std::cos(6.283185307179586 * u2);
    }

  private:
    uint64_t state_;
};

double fan_in_of(const Param& p) {
    if (p.fan_in > 0) return p.fan_in;
    if (p.shape.size() < 2) return 1;
    double f = 1;
    for (size_t i = 1; i < p.shape.size(); ++i) f *= static_cast<double>(p.shape[i]);
    return f;
}

void fill(Param& p, const std::string& name, uint64_t seed, InitMode mode) {
    Tensor t(p.dtype, p.shape);
    if (p.dtype == DType::I64) {
        p.value = t;  // num_batches_tracked: 0
        return;
    }
    if (p.dtype != DType::F32) {
        throw GraphError("init_weights: parameter '" + name + "' has dtype " + dtype_name(p.dtype) +
                         ", expected F32 or I64");
    }
    float* v = t.data<float>();
    Stream rng(seed, name);
    const int64_t n = t.numel();
    const bool test = mode == InitMode::Test;
    for (int64_t i = 0; i < n; ++i) {
        double x = 0;
        switch (p.init) {
            case ParamInit::Weight:
                if (test) {
                    const double a = std::sqrt(3.0 / fan_in_of(p));
                    x = rng.uniform(-a, a);
                } else {
                    x = 0.02 * rng.normal();  // timm trunc_normal_(std=.02); bounds +-2 never bind
                }
                break;
            case ParamInit::Bias:
            case ParamInit::Zeros:
                x = test ? rng.uniform(-0.2, 0.2) : 0.0;
                break;
            case ParamInit::Ones:
            case ParamInit::RunningVar:
                x = test ? rng.uniform(0.5, 1.5) : 1.0;
                break;
            case ParamInit::LayerScale:
                x = test ? rng.uniform(0.5, 1.0) : 1e-6;
                break;
            case ParamInit::Count:
                x = 0;
                break;
        }
        v[i] = static_cast<float>(x);
    }
    p.value = t;
}

std::string describe(const Tensor& t) {
    return std::string(dtype_name(t.dtype())) + " " + shape_to_string(t.shape());
}

std::string describe(const Param& p) {
    return std::string(dtype_name(p.dtype)) + " " + shape_to_string(p.shape);
}

// Compares an index table from a file with the graph's; I32 or I64 values.
bool same_table(const Tensor& file, const Tensor& ours) {
    if (file.shape() != ours.shape()) return false;
    const int32_t* o = ours.data<int32_t>();
    for (int64_t i = 0; i < ours.numel(); ++i) {
        int64_t f = file.dtype() == DType::I32 ? file.data<int32_t>()[i] : file.data<int64_t>()[i];
        if (f != o[i]) return false;
    }
    return true;
}

bool ends_with(const std::string& s, const std::string& suffix) {
    return s.size() >= suffix.size() &&
           s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

}  // namespace

void init_weights(Graph& g, uint64_t seed, InitMode mode) {
    for (auto& kv : g.params) fill(kv.second, kv.first, seed, mode);
}

void load_state_dict(Graph& g, const std::map<std::string, Tensor>& tensors,
                     const std::string& source) {
    std::vector<std::string> missing, unexpected, mismatched, hints;
    for (const auto& kv : g.params) {
        if (!tensors.count(kv.first)) missing.push_back(kv.first + " " + describe(kv.second));
    }
    int prefixed = 0, deploy_like = 0, dw_bias = 0;
    std::string prefix_seen;
    for (const auto& kv : tensors) {
        const std::string& name = kv.first;
        const Tensor& t = kv.second;
        auto p = g.params.find(name);
        if (p != g.params.end()) {
            if (t.shape() != p->second.shape || t.dtype() != p->second.dtype) {
                std::string m = name + " is " + describe(t) + ", expected " + describe(p->second);
                if (name == "head.weight" && t.ndim() == 2 && p->second.shape.size() == 2 &&
                    t.dim(1) == p->second.shape[1]) {
                    m +=
                        " (the checkpoint's head has " + std::to_string(t.dim(0)) +
                        " classes: build the model with num_classes = " + std::to_string(t.dim(0)) +
                        ")";
                }
                mismatched.push_back(m);
            }
            continue;
        }
        auto c = g.constants.find(name);
        if (c != g.constants.end()) {
            const bool int_table = t.dtype() == DType::I32 || t.dtype() == DType::I64;
            if (!int_table || !same_table(t, c->second)) {
                mismatched.push_back(
                    name + " is " + describe(t) + ", expected the rebuilt index table (I32 " +
                    shape_to_string(c->second.shape()) +
                    ", official_param_names.md section 4.3): " +
                    (int_table ? "values or shape differ" : "not an integer table"));
            }
            continue;
        }
        unexpected.push_back(name + " " + describe(t));
        for (const char* pre : {"module.", "model.", "backbone."}) {
            const std::string ps(pre);
            if (name.compare(0, ps.size(), ps) == 0 && g.params.count(name.substr(ps.size()))) {
                ++prefixed;
                prefix_seen = ps;
            }
        }
        for (const char* d : {".lkb_reparam.weight", ".lk_origin.bias", ".pwconv2.0.bias",
                              ".large_kernel.LoRA.weight"}) {
            if (ends_with(name, d)) ++deploy_like;
        }
        if (ends_with(name, ".dwconv.bias")) ++dw_bias;
    }
    if (missing.empty() && unexpected.empty() && mismatched.empty()) {
        for (auto& kv : g.params) kv.second.value = tensors.at(kv.first);
        return;
    }
    if (prefixed > 0) {
        hints.push_back(std::to_string(prefixed) + " unexpected names are model names with a '" +
                        prefix_seen +
                        "' prefix; the official code never writes it (official_param_names.md "
                        "section 5): convert model.state_dict() of the unwrapped model, or strip "
                        "the prefix when converting");
    }
    if (deploy_like > 0) {
        hints.push_back(
            "unexpected names such as '*.lkb_reparam.weight', '*.lk_origin.bias', "
            "'*.pwconv2.0.bias', '*.LoRA.weight' belong to a re-parameterised (deploy) model; the "
            "released checkpoints are in train form; a deploy-form file loads into a graph built "
            "with ModelOptions::deploy");
    } else if (dw_bias > 0) {
        hints.push_back(
            "'*.dwconv.bias' on 3x3 / 5x5 depth-wise convs comes from older UniRepLKNet code "
            "(its issue #3); current train-form checkpoints have no such bias");
    }
    std::string msg = "weights '" + source + "' do not fit model '" + g.model +
                      "': " + std::to_string(missing.size()) + " missing, " +
                      std::to_string(unexpected.size()) + " unexpected, " +
                      std::to_string(mismatched.size()) + " mis-shaped or wrong dtype";
    const size_t cap = 20;
    size_t shown = 0, total = missing.size() + unexpected.size() + mismatched.size();
    auto list = [&](const char* kind, const std::vector<std::string>& items) {
        for (const std::string& s : items) {
            if (shown == cap) return;
            msg += std::string("\n  ") + kind + ": " + s;
            ++shown;
        }
    };
    list("mis-shaped", mismatched);
    list("missing", missing);
    list("unexpected", unexpected);
    if (total > shown) msg += "\n  ... and " + std::to_string(total - shown) + " more";
    for (const std::string& h : hints) msg += "\n  hint: " + h;
    throw WeightsError(msg);
}

void load_weights(Graph& g, const std::string& safetensors_path) {
    SafetensorsFile f = read_safetensors(safetensors_path);
    load_state_dict(g, f.tensors, safetensors_path);
}

std::map<std::string, Tensor> state_dict(const Graph& g) {
    std::map<std::string, Tensor> r;
    for (const auto& kv : g.params) {
        if (kv.second.value.empty()) {
            throw GraphError("state_dict: parameter '" + kv.first +
                             "' has no value (call init_weights or load_weights first)");
        }
        r.emplace(kv.first, kv.second.value);
    }
    return r;
}

std::string state_dict_names_sha256(const Graph& g) {
    std::string s;
    for (const auto& kv : g.params) s += kv.first + "\n";
    return sha256_hex(s);
}

std::string state_dict_shapes_sha256(const Graph& g) {
    std::string s;
    for (const auto& kv : g.params) {
        s += kv.first + "\t";
        for (size_t i = 0; i < kv.second.shape.size(); ++i) {
            if (i) s += ",";
            s += std::to_string(kv.second.shape[i]);
        }
        s += "\n";
    }
    return sha256_hex(s);
}

}  // namespace graph
}  // namespace lkc
