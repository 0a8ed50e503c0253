// The model registry: canonical names, official constructors and configurations.
#include "graph/models/models.h"

#include <cctype>
#include <functional>

namespace lkc {
namespace graph {

namespace {

using Builder = std::function<Graph(const std::string&, const ModelOptions&)>;

struct Entry {
    ModelInfo info;
    Builder build;
};

Builder replknet(RepLKNetConfig c) {
    return [c](const std::string& n, const ModelOptions& o) { return build_replknet(n, c, o); };
}
Builder slak(SLaKConfig c) {
    return [c](const std::string& n, const ModelOptions& o) { return build_slak(n, c, o); };
}
Builder unireplknet(UniRepLKNetConfig c) {
    return [c](const std::string& n, const ModelOptions& o) { return build_unireplknet(n, c, o); };
}
Builder shiftwise(ShiftWiseConfig c) {
    return [c](const std::string& n, const ModelOptions& o) { return build_shiftwise(n, c, o); };
}

// unireplknet.py default kernel sizes per depth setting.
std::vector<std::vector<int>> uni_kernels(const std::vector<int>& depths) {
    std::vector<std::vector<int>> k(4);
    k[0].assign(static_cast<size_t>(depths[0]), 3);
    k[1].assign(static_cast<size_t>(depths[1]), 13);
    k[3].assign(static_cast<size_t>(depths[3]), 13);
    for (int j = 0; j < depths[2]; ++j) {
        if (depths[2] == 18) {
            k[2].push_back(j % 2 == 0 ? 13 : 3);  // T: 13, 3, 13, 3, ...
        } else if (depths[2] == 27) {
            k[2].push_back(j % 3 == 0 ? 13 : 3);  // S/B/L/XL: 13, 3, 3, 13, 3, 3, ...
        } else {
            k[2].push_back(13);  // A/F/P (6) and N (8): all 13
        }
    }
    return k;
}

UniRepLKNetConfig uni(std::vector<int> depths, std::vector<int> dims) {
    UniRepLKNetConfig c;
    c.dims = std::move(dims);
    c.kernels = uni_kernels(depths);
    return c;
}

const std::vector<Entry>& registry() {
    static const std::vector<Entry> entries = [] {
        std::vector<Entry> e;
        auto add = [&](std::string name, std::string family, std::string official,
                       std::string summary, Builder b) {
            e.push_back(
                {{std::move(name), std::move(family), std::move(official), std::move(summary)},
                 std::move(b)});
        };
        // RepLKNet (create_RepLKNet31B / 31L / XL)
        add("replknet-31b", "replknet", "create_RepLKNet31B",
            "depths 2,2,18,2; channels 128,256,512,1024; kernels 31,29,27,13 + 5x5",
            replknet({{31, 29, 27, 13}, {2, 2, 18, 2}, {128, 256, 512, 1024}, 5, 1.0}));
        add("replknet-31l", "replknet", "create_RepLKNet31L",
            "depths 2,2,18,2; channels 192,384,768,1536; kernels 31,29,27,13 + 5x5",
            replknet({{31, 29, 27, 13}, {2, 2, 18, 2}, {192, 384, 768, 1536}, 5, 1.0}));
        add("replknet-xl", "replknet", "create_RepLKNetXL",
            "depths 2,2,18,2; channels 256,512,1024,2048; kernels 27,27,27,13, no small kernel; "
            "dw_ratio 1.5",
            replknet({{27, 27, 27, 13}, {2, 2, 18, 2}, {256, 512, 1024, 2048}, 0, 1.5}));
        add("replknet-test", "replknet", "(test variant)",
            "depths 1,1; channels 16,32; kernels 13,7 + 5x5",
            replknet({{13, 7}, {1, 1}, {16, 32}, 5, 1.0}));
        // RepLKNet's block (13x13 + 5x5) for `lkc train` on Fashion-MNIST.
        add("replknet-fmnist", "replknet", "(Fashion-MNIST net)",
            "depths 1,1; channels 32,64; kernels 13,13 + 5x5",
            replknet({{13, 13}, {1, 1}, {32, 64}, 5, 1.0}));
        // SLaK (SLaK_tiny / small / base with --width_factor 1.3 --kernel_size 51 49 47 13 5
        // --Decom True)
        add("slak-t", "slak", "SLaK_tiny",
            "depths 3,3,9,3; dims 124,249,499,998; kernels 51,49,47,13 as Kx5 + 5xK + 5x5",
            slak({{3, 3, 9, 3}, {96, 192, 384, 768}, {51, 49, 47, 13}, 5, 1.3}));
        add("slak-s", "slak", "SLaK_small",
            "depths 3,3,27,3; dims 124,249,499,998; kernels 51,49,47,13 as Kx5 + 5xK + 5x5",
            slak({{3, 3, 27, 3}, {96, 192, 384, 768}, {51, 49, 47, 13}, 5, 1.3}));
        add("slak-b", "slak", "SLaK_base",
            "depths 3,3,27,3; dims 166,332,665,1331; kernels 51,49,47,13 as Kx5 + 5xK + 5x5",
            slak({{3, 3, 27, 3}, {128, 256, 512, 1024}, {51, 49, 47, 13}, 5, 1.3}));
        add("slak-test", "slak", "(test variant)",
            "depths 1,1; dims 15,31; kernels 13,7 as Kx5 + 5xK + 5x5",
            slak({{1, 1}, {12, 24}, {13, 7}, 5, 1.3}));
        // The Fashion-MNIST net of `lkc train` (docs/training.md): SLaK's block (13x5 + 5x13 +
        // 5x5 with BNs, LayerNorm, MLP, layer scale) at 32x32 (stages at 8x8 and 4x4).
        add("slak-fmnist", "slak", "(Fashion-MNIST net)",
            "depths 2,2; dims 48,96; kernels 13,13 as Kx5 + 5xK + 5x5",
            slak({{2, 2}, {48, 96}, {13, 13}, 5, 1.0}));
        // UniRepLKNet (unireplknet_a ... unireplknet_xl)
        add("unireplknet-a", "unireplknet", "unireplknet_a", "depths 2,2,6,2; dims 40,80,160,320",
            unireplknet(uni({2, 2, 6, 2}, {40, 80, 160, 320})));
        add("unireplknet-f", "unireplknet", "unireplknet_f", "depths 2,2,6,2; dims 48,96,192,384",
            unireplknet(uni({2, 2, 6, 2}, {48, 96, 192, 384})));
        add("unireplknet-p", "unireplknet", "unireplknet_p", "depths 2,2,6,2; dims 64,128,256,512",
            unireplknet(uni({2, 2, 6, 2}, {64, 128, 256, 512})));
        add("unireplknet-n", "unireplknet", "unireplknet_n", "depths 2,2,8,2; dims 80,160,320,640",
            unireplknet(uni({2, 2, 8, 2}, {80, 160, 320, 640})));
        add("unireplknet-t", "unireplknet", "unireplknet_t", "depths 3,3,18,3; dims 80,160,320,640",
            unireplknet(uni({3, 3, 18, 3}, {80, 160, 320, 640})));
        add("unireplknet-s", "unireplknet", "unireplknet_s", "depths 3,3,27,3; dims 96,192,384,768",
            unireplknet(uni({3, 3, 27, 3}, {96, 192, 384, 768})));
        add("unireplknet-b", "unireplknet", "unireplknet_b",
            "depths 3,3,27,3; dims 128,256,512,1024",
            unireplknet(uni({3, 3, 27, 3}, {128, 256, 512, 1024})));
        add("unireplknet-l", "unireplknet", "unireplknet_l",
            "depths 3,3,27,3; dims 192,384,768,1536",
            unireplknet(uni({3, 3, 27, 3}, {192, 384, 768, 1536})));
        add("unireplknet-xl", "unireplknet", "unireplknet_xl",
            "depths 3,3,27,3; dims 256,512,1024,2048",
            unireplknet(uni({3, 3, 27, 3}, {256, 512, 1024, 2048})));
        {
            UniRepLKNetConfig t;
            t.dims = {16, 32};
            t.kernels = {{3, 13}, {7}};
            add("unireplknet-test", "unireplknet", "(test variant)",
                "dims 16,32; kernels (3, 13 DRB), (7 DRB)", unireplknet(t));
        }
        // ShiftWise_v2 (--kernel_size 51 49 47 13 3 --ghost_ratio 0.23, N_path 2, N_rep 4)
        add("shiftwise-t", "shiftwise", "ShiftWise_v2_tiny",
            "depths 3,3,18,3; dims 80,160,320,640; K 51,49,47,13, k 3, ghost 0.23, 2 paths, 4 "
            "groups",
            shiftwise({{3, 3, 18, 3}, {80, 160, 320, 640}, {51, 49, 47, 13}, 3, 0.23, 2, 4, 1.0}));
        add("shiftwise-s", "shiftwise", "ShiftWise_v2_small",
            "depths 3,3,27,3; dims 96,192,384,768; K 51,49,47,13, k 3, ghost 0.23, 2 paths, 4 "
            "groups",
            shiftwise({{3, 3, 27, 3}, {96, 192, 384, 768}, {51, 49, 47, 13}, 3, 0.23, 2, 4, 1.0}));
        add("shiftwise-test", "shiftwise", "(test variant)",
            "depths 1,1; dims 16,32; K 13,7, k 3, ghost 0.23, 2 paths, 4 groups",
            shiftwise({{1, 1}, {16, 32}, {13, 7}, 3, 0.23, 2, 4, 1.0}));
        return e;
    }();
    return entries;
}

std::string normalise(const std::string& s) {
    std::string r;
    for (char ch : s) {
        r.push_back(ch == '_' ? '-'
                              : static_cast<char>(std::tolower(static_cast<unsigned char>(ch))));
    }
    return r;
}

const Entry& find(const std::string& name) {
    const std::string n = normalise(name);
    for (const Entry& e : registry()) {
        if (e.info.name == n) return e;
    }
    std::string known;
    for (const Entry& e : registry()) known += (known.empty() ? "" : ", ") + e.info.name;
    throw GraphError("unknown model '" + name + "'; known models: " + known);
}

}  // namespace

std::vector<std::string> model_names() {
    std::vector<std::string> r;
    for (const Entry& e : registry()) r.push_back(e.info.name);
    return r;
}

std::vector<ModelInfo> model_infos() {
    std::vector<ModelInfo> r;
    for (const Entry& e : registry()) r.push_back(e.info);
    return r;
}

std::string canonical_model_name(const std::string& name) { return find(name).info.name; }

const ModelInfo& model_info(const std::string& name) { return find(name).info; }

std::vector<std::vector<int>> drop_path_blocks(const Graph& g) {
    bool replknet = false;
    try {
        replknet = find(g.model).info.family == "replknet";
    } catch (const GraphError&) {  // a graph of no known model: one rate per residual add
    }
    const std::string suffix = ".residual";
    std::vector<std::vector<int>> blocks;
    std::string last_key;
    for (size_t i = 0; i < g.nodes.size(); ++i) {
        const Node& n = g.nodes[i];
        if (n.op != OpKind::Add || n.name.size() <= suffix.size() ||
            n.name.compare(n.name.size() - suffix.size(), suffix.size(), suffix) != 0 ||
            g.tensor(n.inputs[0]).shape != g.tensor(n.inputs[1]).shape)
            continue;
        std::string key = n.name;
        // RepLKNet: "stages.S.blocks.B.residual" -> the stage block B / 2.
        const size_t at = n.name.rfind(".blocks.");
        if (replknet && at != std::string::npos) {
            const std::string b = n.name.substr(at + 8, n.name.size() - suffix.size() - at - 8);
            if (!b.empty() && b.find_first_not_of("0123456789") == std::string::npos)
                key = n.name.substr(0, at) + "/" + std::to_string(std::stoi(b) / 2);
        }
        if (blocks.empty() || key != last_key) blocks.emplace_back();
        blocks.back().push_back(int(i));
        last_key = key;
    }
    return blocks;
}

Graph build_model(const std::string& name, const ModelOptions& options) {
    const Entry& e = find(name);
    if (options.num_classes < 1 || options.batch < 1 || options.in_chans < 1 ||
        options.image_size < 1) {
        throw GraphError("model '" + e.info.name + "': num_classes " +
                         std::to_string(options.num_classes) + ", batch " +
                         std::to_string(options.batch) + ", in_chans " +
                         std::to_string(options.in_chans) + ", image_size " +
                         std::to_string(options.image_size) + ": all must be >= 1");
    }
    return e.build(e.info.name, options);
}

}  // namespace graph
}  // namespace lkc
