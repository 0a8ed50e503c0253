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

// Element -> group of a lane-row [C,1,kh,kw] tensor: (c / 16) * kh + u; *count = groups.
std::vector<int64_t> lane_row_groups(const Shape& s, int64_t* count) {
    const int64_t C = s[0], kh = s[2], kw = s[3];
    *count = ((C + 15) / 16) * kh;
    std::vector<int64_t> grp(size_t(C * kh * kw));
    for (int64_t c = 0; c < C; ++c)
        for (int64_t u = 0; u < kh; ++u)
            for (int64_t v = 0; v < kw; ++v) grp[size_t((c * kh + u) * kw + v)] = (c / 16) * kh + u;
    return grp;
}

// Element -> group of a lane-block [Co, Ci(, 1, 1)] tensor: co / 16 (out) or ci / 16 (in).
std::vector<int64_t> lane_block_groups(const Shape& s, bool out, int64_t* count) {
    const int64_t Co = s[0], Ci = s[1];
    *count = ((out ? Co : Ci) + 15) / 16;
    std::vector<int64_t> grp(size_t(Co * Ci));
    for (int64_t o = 0; o < Co; ++o)
        for (int64_t i = 0; i < Ci; ++i) grp[size_t(o * Ci + i)] = (out ? o : i) / 16;
    return grp;
}

struct Moved {
    int64_t groups = 0, weights = 0;
};

// Prune-and-regrow over groups (grp: element -> group, count groups, a group's mask is its first
// element's): the round(rate * kept) kept groups of smallest L1 norm leave, as many groups that
// were zero before (drawn at random) come in with weights 0.
Moved prune_groups(float* mk, float* wv, const std::vector<int64_t>& grp, int64_t count,
                   double rate, std::mt19937_64& rng) {
    std::vector<double> l1(size_t(count), 0.0);
    std::vector<int8_t> state(size_t(count), -1);
    std::vector<int64_t> size(size_t(count), 0);
    for (size_t i = 0; i < grp.size(); ++i) {
        const size_t gi = size_t(grp[i]);
        l1[gi] += std::fabs(wv[i]);
        ++size[gi];
        if (state[gi] < 0) state[gi] = mk[i] != 0 ? 1 : 0;
    }
    std::vector<int64_t> on, off;
    for (int64_t gi = 0; gi < count; ++gi)
        if (state[size_t(gi)] >= 0) (state[size_t(gi)] ? on : off).push_back(gi);
    const int64_t n =
        std::min<int64_t>(int64_t(std::llround(rate * double(on.size()))), int64_t(off.size()));
    Moved mv;
    if (n <= 0) return mv;
    std::stable_sort(on.begin(), on.end(),
                     [&](int64_t a, int64_t b) { return l1[size_t(a)] < l1[size_t(b)]; });
    for (int64_t i = 0; i < n; ++i) {
        const int64_t j = i + int64_t(rng() % uint64_t(off.size() - size_t(i)));
        std::swap(off[size_t(i)], off[size_t(j)]);
    }
    std::vector<int8_t> change(size_t(count), 0);  // -1 pruned, +1 grown
    for (int64_t i = 0; i < n; ++i) {
        change[size_t(on[size_t(i)])] = -1;
        change[size_t(off[size_t(i)])] = 1;
        mv.weights += size[size_t(on[size_t(i)])];
    }
    for (size_t i = 0; i < grp.size(); ++i) {
        const int8_t c = change[size_t(grp[i])];
        if (c == 0) continue;
        mk[i] = c > 0 ? 1.0f : 0.0f;
        wv[i] = 0.0f;  // pruned, or grown (grown weights start at 0)
    }
    mv.groups = n;
    return mv;
}

bool pointwise_shape(const Shape& s) {
    return (s.size() == 2 || (s.size() == 4 && s[2] == 1 && s[3] == 1)) && s[0] > 0 && s[1] > 0;
}

}  // namespace

bool lane_blockable(const Shape& s) {
    return pointwise_shape(s) && (std::max(s[0], s[1]) + 15) / 16 >= 2;
}

MaskStructure parse_mask_structure(const std::string& s) {
    if (s == "weight") return MaskStructure::Weight;
    if (s == "lane-rows") return MaskStructure::LaneRows;
    throw std::invalid_argument("mask structure '" + s + "': expected weight or lane-rows");
}

std::string mask_structure_name(MaskStructure s) {
    return s == MaskStructure::LaneRows ? "lane-rows" : "weight";
}

void MaskSet::set_lane_rows(const graph::Graph& g, const std::set<std::string>& keys) {
    for (auto it = groups_.begin(); it != groups_.end();)
        it = it->second.kind == Grouping::DwRows ? groups_.erase(it) : std::next(it);
    for (const std::string& k : keys) {
        const Shape& s = g.param(k).shape;
        if (s.size() != 4 || s[1] != 1)
            throw std::invalid_argument("lane-row mask for '" + k +
                                        "': not a depth-wise [C,1,kh,kw] weight");
        groups_[k] = Groups{Grouping::DwRows, s};
    }
}

void MaskSet::set_lane_blocks(const graph::Graph& g, const std::set<std::string>& keys) {
    for (auto it = groups_.begin(); it != groups_.end();)
        it = it->second.kind != Grouping::DwRows ? groups_.erase(it) : std::next(it);
    for (const std::string& k : keys) {
        const Shape& s = g.param(k).shape;
        if (!pointwise_shape(s))
            throw std::invalid_argument("lane-block mask for '" + k + "': shape " +
                                        shape_to_string(s) +
                                        " is not a Linear / 1x1 conv weight [Co, Ci(, 1, 1)]");
        const bool out = s[0] >= s[1];
        if (!lane_blockable(s))
            throw std::invalid_argument("lane-block mask for '" + k + "': shape " +
                                        shape_to_string(s) +
                                        " has fewer than two 16-channel blocks on its longer axis");
        groups_[k] = Groups{out ? Grouping::OutBlocks : Grouping::InBlocks, s};
    }
}

const MaskSet::Groups* MaskSet::groups(const std::string& key) const {
    auto it = groups_.find(key);
    return it == groups_.end() ? nullptr : &it->second;
}

std::vector<int64_t> MaskSet::group_map(const Groups& gr, int64_t* count) {
    if (gr.kind == Grouping::DwRows) return lane_row_groups(gr.shape, count);
    return lane_block_groups(gr.shape, gr.kind == Grouping::OutBlocks, count);
}

bool MaskSet::lane_rows(const std::string& key) const {
    const Groups* gr = groups(key);
    return gr && gr->kind == Grouping::DwRows;
}

bool MaskSet::lane_blocks(const std::string& key) const {
    const Groups* gr = groups(key);
    return gr && gr->kind != Grouping::DwRows;
}

LaneAxis MaskSet::lane_axis(const std::string& key) const {
    if (!lane_blocks(key))
        throw std::invalid_argument("lane_axis: '" + key + "' is not a lane-block key");
    return groups(key)->kind == Grouping::OutBlocks ? LaneAxis::Out : LaneAxis::In;
}

std::vector<uint8_t> MaskSet::group_flags(const std::string& key, const Groups& gr) const {
    const Tensor& m = masks_.at(key);
    int64_t count = 0;
    const std::vector<int64_t> grp = group_map(gr, &count);
    std::vector<int8_t> f(size_t(count), -1);
    for (size_t i = 0; i < grp.size(); ++i) {
        const int8_t v = m.data<float>()[i] != 0 ? 1 : 0;
        int8_t& fg = f[size_t(grp[i])];
        if (fg >= 0 && fg != v) {
            const std::string where =
                gr.kind == Grouping::DwRows
                    ? "lane block " + std::to_string(grp[i] / gr.shape[2]) + ", kernel row " +
                          std::to_string(grp[i] % gr.shape[2]) +
                          " (a lane-rows mask keeps or prunes whole rows of 16 channels)"
                    : std::string(gr.kind == Grouping::OutBlocks ? "output" : "input") + " block " +
                          std::to_string(grp[i]) +
                          " (a lane-block mask keeps or prunes 16 channels at once)";
            throw std::runtime_error("mask of '" + key + "' is not uniform over " + where);
        }
        fg = v;
    }
    return std::vector<uint8_t>(f.begin(), f.end());
}

std::vector<uint8_t> MaskSet::row_flags(const std::string& key) const {
    if (!lane_rows(key))
        throw std::invalid_argument("row_flags: '" + key + "' is not a lane-row key");
    return group_flags(key, *groups(key));
}

std::vector<uint8_t> MaskSet::block_flags(const std::string& key) const {
    if (!lane_blocks(key))
        throw std::invalid_argument("block_flags: '" + key + "' is not a lane-block key");
    return group_flags(key, *groups(key));
}

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
        if (const Groups* gr = groups(key)) {
            int64_t count = 0;
            const std::vector<int64_t> grp = group_map(*gr, &count);
            const int64_t keep =
                std::clamp<int64_t>(int64_t(std::llround(d * double(count))), 1, count);
            const std::vector<uint8_t> pos = random_positions(count, keep, rng);
            Tensor m(DType::F32, p.shape);
            for (int64_t i = 0; i < n; ++i)
                m.data<float>()[i] = pos[size_t(grp[size_t(i)])] ? 1.0f : 0.0f;
            masks_[key] = m;
            continue;
        }
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
        if (const Groups* gr = groups(key)) {
            // As many whole groups as the layer's share of the global top-k, by summed score.
            int64_t count = 0;
            const std::vector<int64_t> grp = group_map(*gr, &count);
            std::vector<double> score(size_t(count), 0.0);
            for (int64_t i = 0; i < s.numel(); ++i)
                score[size_t(grp[size_t(i)])] += s.data<float>()[i];
            const int64_t keep_groups = std::clamp<int64_t>(
                int64_t(std::llround(double(kept) / double(s.numel()) * double(count))), 1, count);
            std::vector<int64_t> order(static_cast<size_t>(count));
            std::iota(order.begin(), order.end(), 0);
            std::stable_sort(order.begin(), order.end(), [&](int64_t a, int64_t b) {
                return score[size_t(a)] > score[size_t(b)];
            });
            std::vector<uint8_t> on(size_t(count), 0);
            for (int64_t i = 0; i < keep_groups; ++i) on[size_t(order[size_t(i)])] = 1;
            for (int64_t i = 0; i < s.numel(); ++i)
                m.data<float>()[i] = on[size_t(grp[size_t(i)])] ? 1.0f : 0.0f;
        }
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
        if (const Groups* gr = groups(key)) {
            int64_t count = 0;
            const std::vector<int64_t> grp = group_map(*gr, &count);
            moved += prune_groups(mk, wv, grp, count, rate, rng).weights;
            continue;
        }
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
    std::vector<int64_t> grp(size_t(m.numel()));
    for (size_t i = 0; i < grp.size(); ++i) grp[i] = int64_t(i) / sub;
    return prune_groups(m.data<float>(), w.data<float>(), grp, count, rate, rng).groups;
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
