#include "autotune/candidates.h"

#include <algorithm>
#include <cmath>
#include <functional>
#include <stdexcept>

#include "runtime/dwconv2d_taps.h"

namespace lkc::tune {

namespace {

KernelKind kind_of(const std::string& gen) {
    static const std::pair<const char*, KernelKind> kinds[] = {
        {"dwconv2d_fwd", KernelKind::DwFwd},
        {"dwconv2d_bwd_data", KernelKind::DwBwdData},
        {"dwconv2d_bwd_data_strided", KernelKind::DwBwdDataStrided},
        {"dwconv2d_bwd_weight", KernelKind::DwBwdWeight},
        {"dwconv2d_taps_fwd", KernelKind::TapsFwd},
        {"dwconv2d_taps_wgrad", KernelKind::TapsWgrad},
        {"dwconv2d_sparse_fwd", KernelKind::SparseFwd},
        {"dwconv2d_sparse_wgrad", KernelKind::SparseWgrad},
    };
    for (const auto& [name, kind] : kinds)
        if (gen == name) return kind;
    throw std::invalid_argument("unknown generator '" + gen + "'");
}

bool is_dense(const std::string& gen) {
    return gen.rfind("dwconv2d_", 0) == 0 && gen.find("taps") == std::string::npos &&
           gen.find("sparse") == std::string::npos;
}

// A KernelInfo describing (gen, p) for the registry's cost and support functions (no entry
// point). `storage` keeps the params string alive.
KernelInfo describe(const std::string& gen, Device d, const space::Params& p,
                    std::string& storage) {
    storage.clear();
    for (const auto& [k, v] : p) storage += (storage.empty() ? "" : " ") + k + "=" + v;
    auto num = [&](const char* key) {
        auto it = p.find(key);
        return it == p.end() ? 0 : std::stoi(it->second);
    };
    auto flag = [&](const char* key, bool def) {
        auto it = p.find(key);
        return it == p.end() ? def : it->second == "true";
    };
    return KernelInfo{kind_of(gen),
                      gen.c_str(),
                      "",
                      d,
                      num("tile"),
                      num("chunk"),
                      flag("pixels", false),
                      flag("stage", true),
                      nullptr,
                      storage.c_str(),
                      nullptr,
                      ""};
}

// Enumerates the cartesian product of the space's value lists.
void for_each_point(const space::GeneratorSpace& g,
                    const std::function<void(const space::Params&)>& f) {
    space::Params p;
    std::function<void(size_t)> rec = [&](size_t i) {
        if (i == g.params.size()) return f(p);
        for (const std::string& v : g.params[i].values) {
            p[g.params[i].name] = v;
            rec(i + 1);
        }
    };
    rec(0);
}

int get(const space::Params& p, const char* k, int def = 0) {
    auto it = p.find(k);
    return it == p.end() ? def : std::stoi(it->second);
}
bool flag(const space::Params& p, const char* k) {
    auto it = p.find(k);
    return it != p.end() && it->second == "true";
}

// Parallel tasks the CPU schedule of (gen, p) splits w into.
double cpu_tasks(const Workload& w, const std::string& gen, const space::Params& p) {
    const double cb = (w.c + 15) / 16, n = w.n;
    if (gen == "dwconv2d_fwd" || gen == "dwconv2d_bwd_data" || gen == "dwconv2d_taps_fwd") {
        const bool par = gen == "dwconv2d_taps_fwd" || flag(p, "par_rows");
        const int rows = std::max(1, get(p, "rows_per_task", 8));
        return n * cb * (par ? std::ceil(double(w.out_h()) / rows) : 1.0);
    }
    if (gen == "dwconv2d_bwd_weight") return n * cb * (flag(p, "par_rows") ? w.kh : 1);
    if (gen.find("sparse") != std::string::npos) return n * w.c;
    return n * cb;
}

}  // namespace

Workload merged_dense_workload(const Workload& w) {
    Workload m;
    if (!merged_dense_of(w, &m)) {
        throw std::invalid_argument("workload '" + to_string(w) + "' has no merged dense kernel");
    }
    return m;
}

std::vector<std::string> generators_for(const Workload& w) {
    switch (w.op) {
        case Op::DwConv2d:
            if (w.pass == Pass::Fwd) return {"dwconv2d_fwd"};
            if (w.pass == Pass::BwdWeight) return {"dwconv2d_bwd_weight"};
            if (w.stride == 1) return {"dwconv2d_bwd_data", "dwconv2d_bwd_data_strided"};
            return {"dwconv2d_bwd_data_strided"};
        case Op::DwConv2dMulti: {
            std::vector<std::string> g = {w.pass == Pass::BwdWeight ? "dwconv2d_taps_wgrad"
                                                                    : "dwconv2d_taps_fwd"};
            Workload m;
            if (merged_dense_of(w, &m)) {
                for (const std::string& d : generators_for(m)) g.push_back(d);
            }
            return g;
        }
        case Op::ShiftWise:
            return {w.pass == Pass::BwdWeight ? "dwconv2d_taps_wgrad" : "dwconv2d_taps_fwd"};
        case Op::DwConv2dSparse:
            return {w.pass == Pass::BwdWeight ? "dwconv2d_sparse_wgrad" : "dwconv2d_sparse_fwd"};
    }
    return {};
}

std::string invalid_reason(const Workload& w0, Device d, const std::string& gen,
                           const space::Params& p0) {
    space::Params p;
    try {
        p = space::canonical(gen, family_of(d), p0);
    } catch (const std::exception& e) {
        return e.what();
    }
    const std::vector<std::string> gens = generators_for(w0);
    if (std::find(gens.begin(), gens.end(), gen) == gens.end()) {
        return "generator " + gen + " cannot run " + to_string(w0);
    }
    const Workload w =
        (w0.op == Op::DwConv2dMulti && is_dense(gen)) ? merged_dense_workload(w0) : w0;
    std::string storage;
    const KernelInfo k = describe(gen, d, p, storage);
    if (!kernel_supports(k, w)) return "the registry's support rules reject it";
    const bool cpu = d == Device::Cpu;
    const int tile = get(p, "tile"), chunk = get(p, "chunk");
    const int OW = w.out_w(), OH = w.out_h();
    if (gen == "dwconv2d_fwd" || gen == "dwconv2d_bwd_data") {
        if (cpu && tile > std::max(4, OW)) return "tile wider than the output row";
        if (cpu && !flag(p, "pixels") && chunk > std::max(1, w.kw))
            return "chunk wider than the kernel";
        if (cpu && flag(p, "pixels") && chunk > std::max(1, w.w))
            return "chunk wider than the input";
        if (cpu && !flag(p, "par_rows") && get(p, "rows_per_task") != 8) {
            return "rows_per_task without par_rows";
        }
        if (cpu && flag(p, "par_rows") && get(p, "rows_per_task") >= 2 * std::max(1, OH)) {
            return "rows_per_task taller than the output";
        }
    } else if (gen == "dwconv2d_bwd_weight") {
        if (cpu && tile > std::max(1, w.kw)) return "tile wider than the kernel";
        if (cpu && chunk > std::max(4, OW)) return "chunk wider than the output row";
    } else if (gen == "dwconv2d_taps_fwd") {
        if (cpu && tile > std::max(7, OW)) return "tile wider than the output row";
        if (cpu && get(p, "rows_per_task") >= 2 * std::max(1, OH))
            return "rows_per_task taller than the output";
    } else if (gen == "dwconv2d_taps_wgrad") {
        if (cpu && get(p, "wcols") > std::max(4, OW)) return "wcols wider than the output row";
    } else if (gen == "dwconv2d_sparse_fwd") {
        const int ow = w.pass == Pass::BwdData ? (w.w + w.stride - 1) / w.stride : OW;
        const int oh = w.pass == Pass::BwdData ? (w.h + w.stride - 1) / w.stride : OH;
        if (cpu && tile / 8 * chunk > 28) return "register tile over 28 vector accumulators";
        if (tile > ((ow + 7) / 8) * 8) return "tile wider than the output row";
        if (chunk > std::max(1, oh)) return "chunk taller than the output";
        const int m = get(p, "segments", -1);
        if (m > tile / 8 - 1) return "more column-skip segments than the tile has vectors";
    } else if (gen == "dwconv2d_sparse_wgrad") {
        if (tile > ((OW + 7) / 8) * 8) return "tile wider than the output row";
    }
    return "";
}

double model_cost(const Workload& w0, Device d, const std::string& gen, const space::Params& p,
                  int threads) {
    const Workload w =
        (w0.op == Op::DwConv2dMulti && is_dense(gen)) ? merged_dense_workload(w0) : w0;
    std::string storage;
    const KernelInfo k = describe(gen, d, space::canonical(gen, family_of(d), p), storage);
    double per_row = 0;  // the registry's units: per output row and channel block
    if (k.kind == KernelKind::TapsFwd || k.kind == KernelKind::TapsWgrad) {
        per_row = tap_plan_of(w).estimated_cost(w.h, w.w, k.kind == KernelKind::TapsWgrad,
                                                std::max(1, k.tile > 0 ? k.tile : 14));
    } else if (k.kind == KernelKind::DwBwdDataStrided) {
        per_row = double(w.kh) * w.kw * w.out_w() * 2.0;  // one gather per tap, two loads per FMA
    } else {
        per_row = estimated_cost(k, w);
    }
    double total = per_row;
    if (k.kind != KernelKind::SparseFwd && k.kind != KernelKind::SparseWgrad) {
        total *= double(w.out_h()) * ((w.c + 15) / 16) * w.n;
    } else {
        total *= double(w.c) * w.n / 16.0;  // per channel, 8-lane vectors vs 16-lane blocks
    }
    // Parallel efficiency: the last wave of tasks leaves threads idle; ~2 us per task (in FMA
    // units at ~3.5 GHz: 7000).
    const double tasks = std::max(1.0, cpu_tasks(w, gen, p));
    const double waves = std::ceil(tasks / threads);
    const double efficiency = tasks / (waves * threads);
    return total / (threads * efficiency) + 7000.0 * waves;
}

Candidate make_candidate(const Workload& w, Device d, const std::string& gen,
                         const space::Params& p, int threads, bool check) {
    const std::string why = check ? invalid_reason(w, d, gen, p) : "";
    if (!why.empty()) {
        throw std::invalid_argument("schedule " + gen + " is not valid for " + to_string(w) + ": " +
                                    why);
    }
    Candidate c;
    c.generator = gen;
    c.params = space::canonical(gen, family_of(d), p);
    c.name = space::schedule_name(gen, family_of(d), c.params) + "_" + device_name(d);
    c.runs = (w.op == Op::DwConv2dMulti && is_dense(gen)) ? merged_dense_workload(w) : w;
    for (const KernelInfo& k : all_kernels())
        if (k.device == d && gen == k.generator && kernel_schedule(k) == c.params) c.builtin = &k;
    c.model_cost = model_cost(w, d, gen, c.params, threads);
    return c;
}

std::vector<Candidate> enumerate_candidates(const Workload& w, Device d, int threads) {
    std::vector<Candidate> out;
    for (const std::string& gen : generators_for(w)) {
        const space::GeneratorSpace& g = space::generator_space(gen, family_of(d));
        for_each_point(g, [&](const space::Params& p) {
            if (invalid_reason(w, d, gen, p).empty())
                out.push_back(make_candidate(w, d, gen, p, threads));
        });
    }
    // Compiled-in variants outside the search lists (hand variants) are candidates too.
    for (const KernelInfo& k : all_kernels()) {
        if (k.device != d) continue;
        const space::Params p = kernel_schedule(k);
        if (!invalid_reason(w, d, k.generator, p).empty()) continue;
        const bool listed = std::any_of(out.begin(), out.end(), [&](const Candidate& c) {
            return c.generator == k.generator && c.params == p;
        });
        if (!listed) out.push_back(make_candidate(w, d, k.generator, p, threads));
    }
    std::stable_sort(out.begin(), out.end(), [](const Candidate& a, const Candidate& b) {
        if (a.model_cost != b.model_cost) return a.model_cost < b.model_cost;
        if (a.generator != b.generator) return a.generator < b.generator;
        return a.name < b.name;
    });
    return out;
}

Candidate default_candidate(const Workload& w, Device d) {
    const KernelInfo* k = &hand_default_kernel(w, d);
    if (w.op == Op::DwConv2dMulti) {
        // TapsRunner's own choice between the taps plan and the merged dense kernel.
        Workload m;
        if (merged_dense_of(w, &m)) {
            const KernelInfo& dk = hand_default_kernel(m, d);
            const double dense = estimated_cost(dk, m);
            const double taps = tap_plan_of(w).estimated_cost(w.h, w.w, w.pass == Pass::BwdWeight);
            if (dense < taps) k = &dk;
        }
    }
    return make_candidate(w, d, k->generator, kernel_schedule(*k), 2, /*check=*/false);
}

}  // namespace lkc::tune
