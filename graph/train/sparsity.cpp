#include "graph/train/sparsity.h"

#include <algorithm>
#include <cmath>
#include <numeric>
#include <set>
#include <stdexcept>

namespace lkc {
namespace train {

namespace {

bool masked_op(graph::OpKind op) {
    using graph::OpKind;
    return op == OpKind::Conv2d || op == OpKind::DwConv2d || op == OpKind::DwConv2dMulti ||
           op == OpKind::DwConv2dSparse || op == OpKind::ShiftWise || op == OpKind::Linear;
}

// Draws exactly `keep` of `n` positions (uniform, without replacement).
std::vector<uint8_t> random_positions(int64_t n, int64_t keep, std::mt19937_64& rng) {
    std::vector<uint8_t> m(static_cast<size_t>(n), 0);
    std::vector<int64_t> idx(static_cast<size_t>(n));
    std::iota(idx.begin(), idx.end(), 0);
    for (int64_t i = 0; i < keep; ++i) {
        const int64_t j = i + int64_t(rng() % uint64_t(n - i));
        std::swap(idx[size_t(i)], idx[size_t(j)]);
        m[size_t(idx[size_t(i)])] = 1;
    }
    return m;
}

}  // namespace

MaskInit parse_mask_init(const std::string& s) {
    if (s == "uniform") return MaskInit::Uniform;
    if (s == "erk") return MaskInit::Erk;
    if (s == "snip") return MaskInit::Snip;
    throw std::invalid_argument("mask initialisation '" + s + "': expected uniform, erk or snip");
}

double cosine_rate(double rate, int64_t step, int64_t total) {
    if (total <= 0) return rate;
    const double t = std::min(1.0, double(step) / double(total));
    return rate * 0.5 * (1.0 + std::cos(M_PI * t));
}

std::vector<std::string> maskable_params(const graph::Graph& g, int64_t min_elements) {
    std::set<std::string> keys;
    for (const graph::Node& n : g.nodes) {
        if (!masked_op(n.op)) continue;
        for (const auto& [role, key] : n.params) {
            if (role.rfind("weight", 0) != 0) continue;
            const graph::Param& p = g.param(key);
            if (p.shape.size() < 2 || shape_numel(p.shape) < min_elements) continue;
            keys.insert(key);
        }
    }
    return std::vector<std::string>(keys.begin(), keys.end());
}

std::map<std::string, double> layer_densities(const graph::Graph& g,
                                              const std::vector<std::string>& keys, double d,
                                              MaskInit init) {
    if (!(d > 0 && d <= 1))
        throw std::invalid_argument("density " + std::to_string(d) + " must be in (0, 1]");
    std::map<std::string, double> out;
    if (init != MaskInit::Erk) {
        for (const std::string& k : keys) out[k] = d;
        return out;
    }
    // ERK: raw_l = sum(dims) / prod(dims); find eps with sum_l min(1, eps * raw_l) * n_l = d * N,
    // dense layers fixed at 1 (the RigL procedure, iterated until no layer exceeds 1).
    std::map<std::string, double> raw;
    std::map<std::string, double> n;
    double total = 0;
    for (const std::string& k : keys) {
        const Shape& s = g.param(k).shape;
        double sum = 0, prod = 1;
        for (int64_t v : s) {
            sum += double(v);
            prod *= double(v);
        }
        raw[k] = sum / prod;
        n[k] = prod;
        total += prod;
    }
    std::set<std::string> dense;
    for (int iter = 0; iter < 100; ++iter) {
        double budget = d * total, denom = 0;
        for (const std::string& k : keys) {
            if (dense.count(k)) {
                budget -= n[k];
            } else {
                denom += raw[k] * n[k];
            }
        }
        const double eps = denom > 0 ? budget / denom : 0;
        bool changed = false;
        for (const std::string& k : keys)
            if (!dense.count(k) && eps * raw[k] > 1) {
                dense.insert(k);
                changed = true;
            }
        if (!changed) {
            for (const std::string& k : keys)
                out[k] = dense.count(k) ? 1.0 : std::max(0.0, eps * raw[k]);
            return out;
        }
    }
    throw std::runtime_error("ERK densities did not converge for density " + std::to_string(d));
}

void MaskSet::init_random(const graph::Graph& g, const std::map<std::string, double>& density,
                          std::mt19937_64& rng) {
    masks_.clear();
    for (const auto& [key, d] : density) {
        const graph::Param& p = g.param(key);
        const int64_t n = shape_numel(p.shape);
        const int64_t keep = std::clamp<int64_t>(int64_t(std::llround(d * double(n))), 1, n);
        const std::vector<uint8_t> pos = random_positions(n, keep, rng);
        Tensor m(DType::F32, p.shape);
        for (int64_t i = 0; i < n; ++i) m.data<float>()[i] = pos[size_t(i)] ? 1.0f : 0.0f;
        masks_[key] = m;
    }
}

void MaskSet::init_snip(const graph::Graph& g, const std::map<std::string, Tensor>& scores,
                        double d) {
    std::vector<float> all;
    for (const auto& [key, s] : scores)
        all.insert(all.end(), s.data<float>(), s.data<float>() + s.numel());
    if (all.empty()) throw std::invalid_argument("init_snip: no scores");
    const int64_t keep =
        std::clamp<int64_t>(int64_t(std::llround(d * double(all.size()))), 1, int64_t(all.size()));
    std::nth_element(all.begin(), all.begin() + (all.size() - size_t(keep)), all.end());
    const float thr = all[all.size() - size_t(keep)];
    masks_.clear();
    for (const auto& [key, s] : scores) {
        if (s.shape() != g.param(key).shape)
            throw std::invalid_argument("init_snip: score '" + key + "' has the wrong shape");
        Tensor m(DType::F32, s.shape());
        int64_t kept = 0;
        for (int64_t i = 0; i < s.numel(); ++i) {
            const bool on = s.data<float>()[i] >= thr;
            m.data<float>()[i] = on ? 1.0f : 0.0f;
            kept += on;
        }
        if (kept == 0) m.data<float>()[0] = 1.0f;  // never an empty layer
        masks_[key] = m;
    }
}

void MaskSet::apply(graph::Graph& g) const {
    for (const auto& [key, m] : masks_) {
        Tensor& w = g.params.at(key).value;
        float* p = w.data<float>();
        const float* q = m.data<float>();
        for (int64_t i = 0; i < w.numel(); ++i) p[i] *= q[i];
    }
}

int64_t MaskSet::prune_and_regrow(graph::Graph& g, double rate, std::mt19937_64& rng) {
    int64_t moved = 0;
    for (auto& [key, m] : masks_) {
        Tensor& w = g.params.at(key).value;
        float* mk = m.data<float>();
        float* wv = w.data<float>();
        const int64_t n = m.numel();
        std::vector<int64_t> on, off;
        for (int64_t i = 0; i < n; ++i) (mk[i] != 0 ? on : off).push_back(i);
        const int64_t k =
            std::min<int64_t>(int64_t(std::llround(rate * double(on.size()))), int64_t(off.size()));
        if (k <= 0) continue;
        // Prune the k kept weights of smallest magnitude (ties: lower index).
        std::stable_sort(on.begin(), on.end(),
                         [&](int64_t a, int64_t b) { return std::fabs(wv[a]) < std::fabs(wv[b]); });
        // Regrow k positions that were zero before this prune (never the ones just pruned).
        std::vector<int64_t> grow = off;
        for (int64_t i = 0; i < k; ++i) {
            const int64_t j = i + int64_t(rng() % uint64_t(grow.size() - size_t(i)));
            std::swap(grow[size_t(i)], grow[size_t(j)]);
        }
        for (int64_t i = 0; i < k; ++i) {
            mk[on[size_t(i)]] = 0.0f;
            wv[on[size_t(i)]] = 0.0f;
            mk[grow[size_t(i)]] = 1.0f;
            wv[grow[size_t(i)]] = 0.0f;  // grown weights start at 0
        }
        moved += k;
    }
    return moved;
}

int64_t MaskSet::prune_and_regrow_subkernels(graph::Graph& g, const std::string& key, int k,
                                             double rate, std::mt19937_64& rng) {
    auto it = masks_.find(key);
    if (it == masks_.end())
        throw std::invalid_argument("prune_and_regrow_subkernels: '" + key + "' has no mask");
    Tensor& m = it->second;
    Tensor& w = g.params.at(key).value;
    const int64_t sub = int64_t(k) * k, count = m.numel() / sub;
    if (m.numel() % sub != 0)
        throw std::invalid_argument("'" + key + "' is not a stack of " + std::to_string(k) + "x" +
                                    std::to_string(k) + " sub-kernels");
    float* mk = m.data<float>();
    float* wv = w.data<float>();
    std::vector<int64_t> on, off;
    std::vector<double> l1(static_cast<size_t>(count), 0.0);
    for (int64_t s = 0; s < count; ++s) {
        for (int64_t i = 0; i < sub; ++i) l1[size_t(s)] += std::fabs(wv[s * sub + i]);
        (mk[s * sub] != 0 ? on : off).push_back(s);
    }
    const int64_t n =
        std::min<int64_t>(int64_t(std::llround(rate * double(on.size()))), int64_t(off.size()));
    std::stable_sort(on.begin(), on.end(),
                     [&](int64_t a, int64_t b) { return l1[size_t(a)] < l1[size_t(b)]; });
    for (int64_t i = 0; i < n; ++i) {
        const int64_t j = i + int64_t(rng() % uint64_t(off.size() - size_t(i)));
        std::swap(off[size_t(i)], off[size_t(j)]);
    }
    for (int64_t i = 0; i < n; ++i)
        for (int64_t e = 0; e < sub; ++e) {
            mk[on[size_t(i)] * sub + e] = 0.0f;
            wv[on[size_t(i)] * sub + e] = 0.0f;
            mk[off[size_t(i)] * sub + e] = 1.0f;
            wv[off[size_t(i)] * sub + e] = 0.0f;
        }
    return n;
}

int64_t MaskSet::kept(const std::string& key) const {
    const Tensor& m = masks_.at(key);
    int64_t c = 0;
    for (int64_t i = 0; i < m.numel(); ++i) c += m.data<float>()[i] != 0;
    return c;
}

int64_t MaskSet::total(const std::string& key) const { return masks_.at(key).numel(); }

double MaskSet::density() const {
    int64_t k = 0, n = 0;
    for (const auto& [key, m] : masks_) {
        k += kept(key);
        n += m.numel();
    }
    return n ? double(k) / double(n) : 1.0;
}

}  // namespace train
}  // namespace lkc
