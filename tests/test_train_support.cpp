// Training support without kernels: the Fashion-MNIST loader on the real dataset package
// (counts, value ranges, label histogram) and on corrupt files; batches; dynamic-sparsity masks
// (ERK densities meet the global density, prune/regrow keeps counts and zeroes grown weights,
// masked weights stay zero); checkpoints round-trip every tensor and the RNG state exactly.
#include <gtest/gtest.h>
#include <zlib.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <set>

#include "graph/models/models.h"
#include "graph/train/checkpoint.h"
#include "graph/train/dataset.h"
#include "graph/train/sparsity.h"
#include "graph/weights.h"
#include "runtime/safetensors.h"

namespace lkc::train {
namespace {

namespace fs = std::filesystem;

TEST(FashionMnist, LoadsTheDebianPackage) {
    if (!fs::exists(kFashionMnistDir)) GTEST_SKIP() << "dataset-fashion-mnist is not installed";
    const Dataset d = load_idx_dataset(kFashionMnistDir);
    EXPECT_EQ(d.train.count, 60000);
    EXPECT_EQ(d.test.count, 10000);
    EXPECT_EQ(d.train.rows, 28);
    EXPECT_EQ(d.train.cols, 28);
    // Fashion-MNIST is balanced: 6000 / 1000 images per class.
    std::vector<int> h(10, 0);
    for (uint8_t l : d.train.labels) ++h[l];
    for (int c = 0; c < 10; ++c) EXPECT_EQ(h[size_t(c)], 6000) << "class " << c;
    double mean = 0;
    for (uint8_t p : d.train.images) mean += p / 255.0;
    mean /= double(d.train.images.size());
    EXPECT_NEAR(mean, 0.2860, 0.001);  // the published training-set mean
    const Tensor b = make_batch(d.train, {0, 1, 2}, 32, 1);
    EXPECT_EQ(b.shape(), (Shape{3, 1, 32, 32}));
    const Tensor b28 = make_batch(d.train, {5}, 28, 3);
    // At 28x28 the batch is the image itself, normalised, on every channel.
    const uint8_t* img = d.train.images.data() + 5 * 784;
    for (int i = 0; i < 784; ++i) {
        const float want = float((img[i] / 255.0 - 0.2860) / 0.3530);
        ASSERT_NEAR(b28.data<float>()[i], want, 1e-6);
        ASSERT_NEAR(b28.data<float>()[784 * 2 + i], want, 1e-6);
    }
}

void write_gz(const std::string& path, const std::vector<uint8_t>& bytes) {
    gzFile f = gzopen(path.c_str(), "wb");
    gzwrite(f, bytes.data(), unsigned(bytes.size()));
    gzclose(f);
}

std::vector<uint8_t> idx_header(uint32_t magic, std::vector<uint32_t> dims) {
    std::vector<uint8_t> b;
    for (uint32_t v : std::vector<uint32_t>{magic}) dims.insert(dims.begin(), v);
    for (uint32_t v : dims)
        for (int s = 24; s >= 0; s -= 8) b.push_back(uint8_t(v >> s));
    return b;
}

TEST(FashionMnist, CorruptFilesAreNamed) {
    const fs::path dir = fs::temp_directory_path() / ("lkc_idx_" + std::to_string(::getpid()));
    fs::create_directories(dir);
    auto img = idx_header(2051, {2, 28, 28});
    img.resize(img.size() + 2 * 784, 7);
    auto lab = idx_header(2049, {2});
    lab.push_back(3);
    lab.push_back(9);
    write_gz((dir / "i.gz").string(), img);
    write_gz((dir / "l.gz").string(), lab);
    EXPECT_EQ(read_idx_pair((dir / "i.gz").string(), (dir / "l.gz").string()).count, 2);
    // Truncated images.
    auto cut = img;
    cut.resize(cut.size() - 10);
    write_gz((dir / "cut.gz").string(), cut);
    try {
        read_idx_pair((dir / "cut.gz").string(), (dir / "l.gz").string());
        FAIL();
    } catch (const DatasetError& e) {
        EXPECT_NE(std::string(e.what()).find("truncated"), std::string::npos) << e.what();
    }
    // Wrong magic, label out of range, count mismatch, garbage compression, missing directory.
    auto bad = img;
    bad[3] = 0;
    write_gz((dir / "bad.gz").string(), bad);
    EXPECT_THROW(read_idx_pair((dir / "bad.gz").string(), (dir / "l.gz").string()), DatasetError);
    auto lab2 = lab;
    lab2.back() = 11;
    write_gz((dir / "l2.gz").string(), lab2);
    EXPECT_THROW(read_idx_pair((dir / "i.gz").string(), (dir / "l2.gz").string()), DatasetError);
    {
        std::ofstream f(dir / "junk.gz", std::ios::binary);
        f << "\x1f\x8b\x08 this is not deflate data at all";
    }
    EXPECT_THROW(read_idx_pair((dir / "junk.gz").string(), (dir / "l.gz").string()), DatasetError);
    EXPECT_THROW(load_idx_dataset((dir / "nope").string()), DatasetError);
    EXPECT_THROW(load_idx_dataset(dir.string()), DatasetError);  // files missing
    fs::remove_all(dir);
}

// The tiny SLaK family at 32x32, 10 classes, test weights (seed 2): the masks' test graph.
graph::Graph slak_test_graph() {
    graph::ModelOptions mo;
    mo.image_size = 32;
    mo.num_classes = 10;
    graph::Graph g = graph::build_model("slak-test", mo);
    graph::init_weights(g, 2, graph::InitMode::Test);
    return g;
}

// A fixed, non-constant score per weight of each key (SNIP tests).
std::map<std::string, Tensor> patterned_scores(const graph::Graph& g,
                                               const std::vector<std::string>& keys) {
    std::map<std::string, Tensor> scores;
    for (const auto& k : keys) {
        Tensor sc(DType::F32, g.param(k).shape);
        for (int64_t i = 0; i < sc.numel(); ++i) sc.data<float>()[i] = float((i * 7919) % 1000);
        scores[k] = sc;
    }
    return scores;
}

// fn (reading a grouped mask made non-uniform) must throw std::runtime_error naming `where`.
template <typename F>
void expect_non_uniform_refused(F fn, const std::string& where) {
    try {
        fn();
        ADD_FAILURE() << "a non-uniform mask was accepted";
    } catch (const std::runtime_error& e) {
        EXPECT_NE(std::string(e.what()).find(where), std::string::npos) << e.what();
    }
}

TEST(Sparsity, ErkMeetsTheGlobalDensityAndPruneRegrowKeepsCounts) {
    graph::Graph g = slak_test_graph();
    const auto keys = maskable_params(g);
    ASSERT_FALSE(keys.empty());
    for (MaskInit init : {MaskInit::Uniform, MaskInit::Erk}) {
        const auto dens = layer_densities(g, keys, 0.6, init);
        double kept = 0, total = 0;
        for (const auto& [k, d] : dens) {
            EXPECT_GE(d, 0.0);
            EXPECT_LE(d, 1.0);
            kept += d * double(shape_numel(g.param(k).shape));
            total += double(shape_numel(g.param(k).shape));
        }
        EXPECT_NEAR(kept / total, 0.6, 1e-6);
        std::mt19937_64 rng(5);
        MaskSet m;
        m.init_random(g, dens, rng);
        EXPECT_NEAR(m.density(), 0.6, 0.01);
        m.apply(g);
        std::map<std::string, int64_t> before;
        for (const auto& k : keys) before[k] = m.kept(k);
        const int64_t moved = m.prune_and_regrow(g, 0.3, rng);
        EXPECT_GT(moved, 0);
        for (const auto& k : keys) {
            EXPECT_EQ(m.kept(k), before[k]) << k;  // as many regrown as pruned
            const Tensor& w = g.params.at(k).value;
            const Tensor& mk = m.masks().at(k);
            for (int64_t i = 0; i < w.numel(); ++i)
                if (mk.data<float>()[i] == 0) ASSERT_EQ(w.data<float>()[i], 0.0f) << k;
        }
    }
    EXPECT_THROW(parse_mask_init("magic"), std::invalid_argument);
    EXPECT_NEAR(cosine_rate(0.5, 0, 100), 0.5, 1e-12);
    EXPECT_NEAR(cosine_rate(0.5, 100, 100), 0.0, 1e-12);
}

// Lane-row masks: whole (16-channel block, kernel row) groups are drawn, pruned by L1 and
// regrown; counts hold, every group stays uniform, masked weights stay 0; SNIP keeps whole
// groups too; a non-uniform mask is refused naming the group.
TEST(Sparsity, LaneRowGroupsStayWhole) {
    graph::Graph g = slak_test_graph();
    const auto keys = maskable_params(g);
    std::set<std::string> dw;
    for (const auto& n : g.nodes)
        if (n.op == graph::OpKind::DwConv2d && n.attrs.stride == 1) dw.insert(n.param("weight"));
    ASSERT_FALSE(dw.empty());
    MaskSet m;
    m.set_lane_rows(g, dw);
    std::mt19937_64 rng(3);
    m.init_random(g, layer_densities(g, keys, 0.6, MaskInit::Erk), rng);
    auto check_uniform = [&](const std::string& k) {
        const Shape& s = g.param(k).shape;
        const int64_t C = s[0], kh = s[2], kw = s[3];
        const std::vector<uint8_t> f = m.row_flags(k);
        EXPECT_EQ(f.size(), size_t((C + 15) / 16 * kh));
        const float* mk = m.masks().at(k).data<float>();
        for (int64_t c = 0; c < C; ++c)
            for (int64_t u = 0; u < kh; ++u)
                for (int64_t v = 0; v < kw; ++v)
                    ASSERT_EQ(mk[(c * kh + u) * kw + v] != 0, f[size_t((c / 16) * kh + u)] != 0)
                        << k << " channel " << c << " row " << u;
    };
    // Kept groups per key (groups differ in size: the last lane block may be partial).
    auto groups_kept = [&](const std::string& k) {
        const std::vector<uint8_t> f = m.row_flags(k);
        return std::count(f.begin(), f.end(), uint8_t(1));
    };
    std::map<std::string, int64_t> before;
    int sparse_keys = 0;
    for (const auto& k : dw) {
        check_uniform(k);
        before[k] = groups_kept(k);
        EXPECT_GT(before[k], 0);
        sparse_keys += m.kept(k) < m.total(k);
    }
    EXPECT_GT(sparse_keys, 0) << "no depth-wise layer pruned at density 0.6";
    m.apply(g);
    for (int round = 0; round < 3; ++round) {
        EXPECT_GT(m.prune_and_regrow(g, 0.5, rng), 0);
        for (const auto& k : dw) {
            check_uniform(k);
            EXPECT_EQ(groups_kept(k), before[k]) << k;  // as many groups regrown as pruned
            const Tensor& w = g.params.at(k).value;
            for (int64_t i = 0; i < w.numel(); ++i)
                if (m.masks().at(k).data<float>()[i] == 0) ASSERT_EQ(w.data<float>()[i], 0.0f);
        }
    }
    // The pruned groups are the kept ones of least L1: make one group large, it must survive.
    const std::string k0 = *dw.begin();
    const std::vector<uint8_t> f0 = m.row_flags(k0);
    size_t big = 0;
    while (!f0[big]) ++big;
    const Shape& s0 = g.param(k0).shape;
    float* w0 = g.params.at(k0).value.data<float>();
    for (int64_t c = int64_t(big / size_t(s0[2])) * 16;
         c < std::min<int64_t>(s0[0], int64_t(big / size_t(s0[2])) * 16 + 16); ++c)
        for (int64_t v = 0; v < s0[3]; ++v)
            w0[(c * s0[2] + int64_t(big % size_t(s0[2]))) * s0[3] + v] = 100.0f;
    m.prune_and_regrow(g, 0.9, rng);
    EXPECT_TRUE(m.row_flags(k0)[big]) << "the group of largest L1 was pruned";
    // SNIP with lane rows: whole groups.
    m.init_snip(g, patterned_scores(g, keys), 0.6);
    for (const auto& k : dw) check_uniform(k);
    // A per-weight mask under a lane-row key is refused, naming the group.
    m.masks().at(k0).data<float>()[0] = 1.0f - m.masks().at(k0).data<float>()[0];
    expect_non_uniform_refused([&] { m.row_flags(k0); }, "lane block 0, kernel row 0");
    std::string linear;
    for (const auto& n : g.nodes)
        if (n.op == graph::OpKind::Linear) linear = n.param("weight");
    ASSERT_FALSE(linear.empty());
    EXPECT_THROW(m.set_lane_rows(g, {linear}), std::invalid_argument);  // not depth-wise
    EXPECT_THROW(parse_mask_structure("blocks"), std::invalid_argument);
    EXPECT_EQ(parse_mask_structure("lane-rows"), MaskStructure::LaneRows);
}

// Lane-block masks of Linear weights: the longer axis is blocked (output blocks for [4C, C],
// input blocks for [C, 4C]); init, prune-and-regrow and SNIP keep whole blocks and the kept
// count; the block of largest L1 survives; non-uniform masks and unsuitable shapes are refused.
TEST(Sparsity, LaneBlockGroupsStayWhole) {
    graph::Graph g = slak_test_graph();
    const auto keys = maskable_params(g);
    std::set<std::string> lin;
    for (const auto& n : g.nodes)
        if (n.op == graph::OpKind::Linear) {
            const Shape& s = g.param(n.param("weight")).shape;
            if ((std::max(s[0], s[1]) + 15) / 16 >= 2) lin.insert(n.param("weight"));
        }
    ASSERT_GE(lin.size(), 2u);
    MaskSet m;
    m.set_lane_blocks(g, lin);
    bool out = false, in = false;
    for (const auto& k : lin) {
        const Shape& s = g.param(k).shape;
        EXPECT_EQ(m.lane_axis(k), s[0] >= s[1] ? LaneAxis::Out : LaneAxis::In) << k;
        (s[0] >= s[1] ? out : in) = true;
    }
    EXPECT_TRUE(out && in);
    std::mt19937_64 rng(5);
    m.init_random(g, layer_densities(g, keys, 0.6, MaskInit::Uniform), rng);
    auto check_uniform = [&](const std::string& k) {
        const Shape& s = g.param(k).shape;
        const bool o = m.lane_axis(k) == LaneAxis::Out;
        const std::vector<uint8_t> f = m.block_flags(k);
        EXPECT_EQ(f.size(), size_t(((o ? s[0] : s[1]) + 15) / 16));
        const float* mk = m.masks().at(k).data<float>();
        for (int64_t r = 0; r < s[0]; ++r)
            for (int64_t c = 0; c < s[1]; ++c)
                ASSERT_EQ(mk[r * s[1] + c] != 0, f[size_t((o ? r : c) / 16)] != 0)
                    << k << " [" << r << ", " << c << "]";
    };
    std::map<std::string, int64_t> kept, kept_blocks;
    auto blocks_on = [&](const std::string& k) {
        const std::vector<uint8_t> f = m.block_flags(k);
        return std::count(f.begin(), f.end(), uint8_t(1));
    };
    for (const auto& k : lin) {
        check_uniform(k);
        kept[k] = m.kept(k);
        kept_blocks[k] = blocks_on(k);
        EXPECT_LT(kept[k], m.total(k)) << k << " not pruned at density 0.6";
    }
    m.apply(g);
    for (int round = 0; round < 3; ++round) {
        EXPECT_GT(m.prune_and_regrow(g, 0.5, rng), 0);
        for (const auto& k : lin) {
            check_uniform(k);
            EXPECT_EQ(blocks_on(k), kept_blocks[k]) << k;  // as many regrown as pruned
            const Tensor& w = g.params.at(k).value;
            for (int64_t i = 0; i < w.numel(); ++i)
                if (m.masks().at(k).data<float>()[i] == 0) ASSERT_EQ(w.data<float>()[i], 0.0f);
        }
    }
    // Whole blocks move, so the kept count holds when every block is full (16 | the axis).
    for (const auto& k : lin) {
        const Shape& s = g.param(k).shape;
        if ((m.lane_axis(k) == LaneAxis::Out ? s[0] : s[1]) % 16 == 0)
            EXPECT_EQ(m.kept(k), kept[k]) << k;
    }
    // The block of largest L1 survives pruning half the kept blocks (of the key keeping most).
    std::string k0 = *lin.begin();
    for (const auto& k : lin)
        if (blocks_on(k) > blocks_on(k0)) k0 = k;
    ASSERT_GE(blocks_on(k0), 2);
    const std::vector<uint8_t> f0 = m.block_flags(k0);
    const int big = int(std::find(f0.begin(), f0.end(), uint8_t(1)) - f0.begin());
    const Shape& s0 = g.param(k0).shape;
    const bool o0 = m.lane_axis(k0) == LaneAxis::Out;
    float* w0 = g.params.at(k0).value.data<float>();
    for (int64_t r = 0; r < s0[0]; ++r)
        for (int64_t c = 0; c < s0[1]; ++c)
            if ((o0 ? r : c) / 16 == big) w0[r * s0[1] + c] = 100.0f;
    m.prune_and_regrow(g, 0.5, rng);
    EXPECT_TRUE(m.block_flags(k0)[size_t(big)]) << "the block of largest L1 was pruned";
    m.init_snip(g, patterned_scores(g, keys), 0.6);
    for (const auto& k : lin) check_uniform(k);
    m.masks().at(k0).data<float>()[0] = 1.0f - m.masks().at(k0).data<float>()[0];
    expect_non_uniform_refused([&] { m.block_flags(k0); },
                               std::string(o0 ? "output" : "input") + " block 0");
    std::string dw;
    for (const auto& n : g.nodes)
        if (n.op == graph::OpKind::DwConv2d) dw = n.param("weight");
    EXPECT_THROW(m.set_lane_blocks(g, {dw}), std::invalid_argument);  // not a Linear weight
    EXPECT_THROW(m.block_flags(dw), std::invalid_argument);
}

TEST(Checkpoint, RoundTripsTensorsAndRngExactly) {
    std::mt19937_64 rng(99);
    for (int i = 0; i < 1000; ++i) rng();
    CheckpointData c;
    Tensor w(DType::F32, {3, 4});
    for (int i = 0; i < 12; ++i) w.data<float>()[i] = float(i) * 0.25f - 1.0f;
    c.tensors["stem.weight"] = w;
    c.tensors["train.step"] = scalar_i64(1234);
    c.tensors["train.epoch"] = scalar_i64(2);
    c.tensors["train.batch_in_epoch"] = scalar_i64(17);
    c.tensors["train.rng.data"] = rng_tensor(rng);
    c.metadata["model"] = "slak-test";
    const std::string p =
        (fs::temp_directory_path() / ("lkc_ckpt_" + std::to_string(::getpid()) + ".safetensors"))
            .string();
    write_checkpoint(p, c);
    const CheckpointData r = read_checkpoint(p);
    EXPECT_EQ(scalar_value(r.tensors.at("train.step"), "step"), 1234);
    std::mt19937_64 back = rng_from_tensor(r.tensors.at("train.rng.data"), "rng");
    for (int i = 0; i < 100; ++i) ASSERT_EQ(back(), rng());
    EXPECT_EQ(std::memcmp(r.tensors.at("stem.weight").raw(), w.raw(), w.nbytes()), 0);
    EXPECT_EQ(r.metadata.at("model"), "slak-test");
    // Not a checkpoint: a plain weights file.
    write_safetensors(p, {{"stem.weight", w}});
    EXPECT_THROW(read_checkpoint(p), std::runtime_error);
    fs::remove(p);
}

}  // namespace
}  // namespace lkc::train
