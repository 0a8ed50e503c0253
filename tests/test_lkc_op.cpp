// `lkc op` end to end: a good run reproduces the reference, and every kind of bad input exits
// non-zero with a message naming the problem (never an abort or a silent success).
#include <gtest/gtest.h>
#include <sys/wait.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "runtime/op_inputs.h"
#include "runtime/safetensors.h"
#include "tests/cli_harness.h"
#include "tests/kernel_harness.h"

namespace lkc::test {
namespace {

namespace fs = std::filesystem;

using LkcOp = CliTest;

const char* kWl = "dwconv2d:fwd:n2c20h9w11:k7x7:f32";

TEST_F(LkcOp, ForwardMatchesReference) {
    const Workload w = parse_workload(kWl);
    const auto in = make_inputs(w, Data::SmallInt, 2);
    write_safetensors(path("in.safetensors"), in);
    const Result r = lkc(std::string("op ") + kWl + " --inputs " + path("in.safetensors") +
                         " --outputs " + path("out.safetensors") + " --verbose");
    ASSERT_EQ(r.code, 0) << r.err;
    EXPECT_NE(r.err.find("kernel dwconv2d_fwd"), std::string::npos) << r.err;
    const SafetensorsFile out = read_safetensors(path("out.safetensors"));
    ASSERT_TRUE(out.tensors.count("y"));
    EXPECT_EQ(out.tensors.at("y").shape(), (Shape{2, 20, 9, 11}));
    const Mismatch m = compare(out.tensors.at("y"), reference(w, in).at("y"), nullptr, 0);
    EXPECT_EQ(m.count, 0u);
}

TEST_F(LkcOp, BackwardWeightWritesDwAndDb) {
    const std::string wl = "dwconv2d:bwd_weight:n1c17h10w9:k5x5:s2";
    const Workload w = parse_workload(wl);
    const auto in = make_inputs(w, Data::SmallInt, 4);
    write_safetensors(path("in.safetensors"), in);
    const Result r = lkc("op " + wl + " --inputs " + path("in.safetensors") + " --outputs " +
                         path("out.safetensors"));
    ASSERT_EQ(r.code, 0) << r.err;
    const SafetensorsFile out = read_safetensors(path("out.safetensors"));
    const auto want = reference(w, in);
    EXPECT_EQ(compare(out.tensors.at("dw"), want.at("dw"), nullptr, 0).count, 0u);
    EXPECT_EQ(compare(out.tensors.at("db"), want.at("db"), nullptr, 0).count, 0u);
}

TEST_F(LkcOp, MissingTensorIsNamed) {
    const Workload w = parse_workload(kWl);
    auto in = make_inputs(w, Data::SmallInt, 2);
    in.erase("w");
    write_safetensors(path("in.safetensors"), in);
    const Result r = lkc(std::string("op ") + kWl + " --inputs " + path("in.safetensors") +
                         " --outputs " + path("out.safetensors"));
    EXPECT_EQ(r.code, 1);
    EXPECT_NE(r.err.find("missing input tensor 'w'"), std::string::npos) << r.err;
    EXPECT_FALSE(fs::exists(path("out.safetensors")));
}

TEST_F(LkcOp, WrongShapeIsNamed) {
    const Workload w = parse_workload(kWl);
    auto in = make_inputs(w, Data::SmallInt, 2);
    in["x"] = Tensor(DType::F32, {2, 20, 9, 12});
    write_safetensors(path("in.safetensors"), in);
    const Result r = lkc(std::string("op ") + kWl + " --inputs " + path("in.safetensors") +
                         " --outputs " + path("out.safetensors"));
    EXPECT_EQ(r.code, 1);
    EXPECT_NE(r.err.find("'x' has shape [2, 20, 9, 12], expected [2, 20, 9, 11]"),
              std::string::npos)
        << r.err;
}

TEST_F(LkcOp, TruncatedFileIsRejected) {
    const Workload w = parse_workload(kWl);
    write_safetensors(path("in.safetensors"), make_inputs(w, Data::SmallInt, 2));
    fs::resize_file(path("in.safetensors"), fs::file_size(path("in.safetensors")) - 100);
    const Result r = lkc(std::string("op ") + kWl + " --inputs " + path("in.safetensors") +
                         " --outputs " + path("out.safetensors"));
    EXPECT_EQ(r.code, 1);
    EXPECT_NE(r.err.find("in.safetensors"), std::string::npos) << r.err;
    EXPECT_FALSE(fs::exists(path("out.safetensors")));
}

TEST_F(LkcOp, CorruptHeaderIsRejected) {
    std::ofstream f(path("bad.safetensors"), std::ios::binary);
    const uint64_t n = 16;
    f.write(reinterpret_cast<const char*>(&n), 8);
    f << "{\"x\": {\"dtype\":";  // 16 bytes of broken JSON
    f.close();
    const Result r = lkc(std::string("op ") + kWl + " --inputs " + path("bad.safetensors") +
                         " --outputs " + path("out.safetensors"));
    EXPECT_EQ(r.code, 1);
    EXPECT_NE(r.err.find("bad.safetensors"), std::string::npos) << r.err;
}

TEST_F(LkcOp, MissingFileIsNamed) {
    const Result r = lkc(std::string("op ") + kWl + " --inputs " + path("nope.safetensors") +
                         " --outputs " + path("out.safetensors"));
    EXPECT_EQ(r.code, 1);
    EXPECT_NE(r.err.find("nope.safetensors"), std::string::npos) << r.err;
}

TEST_F(LkcOp, UnknownDeviceIsRejected) {
    write_safetensors(path("in.safetensors"), make_inputs(parse_workload(kWl), Data::SmallInt, 2));
    const Result r = lkc(std::string("op ") + kWl + " --inputs " + path("in.safetensors") +
                         " --outputs " + path("out.safetensors") + " --device tpu");
    EXPECT_EQ(r.code, 1);
    EXPECT_NE(r.err.find("unknown device 'tpu'"), std::string::npos) << r.err;
}

TEST_F(LkcOp, BadWorkloadIsRejected) {
    write_safetensors(path("in.safetensors"), make_inputs(parse_workload(kWl), Data::SmallInt, 2));
    const Result r = lkc("op dwconv2d:fwd:n2c20h9w11:k6x7 --inputs " + path("in.safetensors") +
                         " --outputs " + path("out.safetensors"));
    EXPECT_EQ(r.code, 1);
    EXPECT_NE(r.err.find("even"), std::string::npos) << r.err;
}

// A device that is absent: a clear error and exit 1, not an abort (CUDA has no driver here).
TEST_F(LkcOp, AbsentDeviceIsAnError) {
    write_safetensors(path("in.safetensors"), make_inputs(parse_workload(kWl), Data::SmallInt, 2));
    const Result r = lkc(std::string("op ") + kWl + " --inputs " + path("in.safetensors") +
                         " --outputs " + path("out.safetensors") + " --device cuda");
    if (r.code == 0) GTEST_SKIP() << "a CUDA device exists here";
    EXPECT_EQ(r.code, 1) << r.err;
    EXPECT_NE(r.err.find("failed on device 'cuda'"), std::string::npos) << r.err;
    EXPECT_FALSE(fs::exists(path("out.safetensors")));
}

// Every op family through the CLI: `lkc example` writes valid inputs, `lkc op --check` runs the
// kernel and compares with the double reference (exit 0 only inside the bound).
TEST_F(LkcOp, EveryFamilyMatchesReferenceThroughCli) {
    const char* cases[][2] = {
        {"dwconv2d_multi:fwd:n1c19h13w12:b7x3d1,3x7d1,3x3d1", ""},
        {"dwconv2d_multi:bwd_weight:n1c17h15w15:b13x13d1,5x5d1,7x7d2,3x3d3", ""},
        {"shiftwise:fwd:n1c7h15w15:K13k3g4", ""},
        {"shiftwise:fwd:n1c7h15w15:K13k3g4", " --optional"},
        {"shiftwise:bwd_data:n1c9h10w12:K7k3g2", ""},
        {"dwconv2d_sparse:fwd:n1c19h14w14:k13x13", " --density 0.3"},
        {"dwconv2d_sparse:bwd_weight:n1c7h9w9:k5x51", " --density 0.6"},
    };
    for (const auto& c : cases) {
        const std::string wl = c[0];
        Result r = lkc("example " + wl + " -o " + path("in.safetensors") + c[1]);
        ASSERT_EQ(r.code, 0) << wl << ": " << r.err;
        r = lkc("op " + wl + " --inputs " + path("in.safetensors") + " --outputs " +
                path("out.safetensors") + " --check");
        EXPECT_EQ(r.code, 0) << wl << c[1] << ": " << r.out << r.err;
        EXPECT_NE(r.out.find("vs double reference"), std::string::npos) << r.out;
        EXPECT_EQ(r.out.find("FAILED"), std::string::npos) << r.out;
    }
}

// The sparse growth gradient (every kernel position) equals the dense gradient.
TEST_F(LkcOp, SparseAllTapsGradientIsDense) {
    const std::string wl = "dwconv2d_sparse:bwd_weight:n1c9h11w10:k7x7";
    Result r = lkc("example " + wl + " -o " + path("in.safetensors") + " --density 0.3");
    ASSERT_EQ(r.code, 0) << r.err;
    r = lkc("op " + wl + " --inputs " + path("in.safetensors") + " --outputs " +
            path("out.safetensors") + " --all-taps --check");
    EXPECT_EQ(r.code, 0) << r.out << r.err;
    EXPECT_EQ(r.out.find("FAILED"), std::string::npos) << r.out;
    ASSERT_EQ(lkc("example dwconv2d:fwd:n1c9h11w10:k7x7 -o " + path("d.safetensors")).code, 0);
    r = lkc("op dwconv2d:fwd:n1c9h11w10:k7x7 --inputs " + path("d.safetensors") + " --outputs " +
            path("o2.safetensors") + " --all-taps");
    EXPECT_EQ(r.code, 1);
    EXPECT_NE(r.err.find("--all-taps applies to dwconv2d_sparse only"), std::string::npos) << r.err;
}

// Bad values in the integer / mask inputs are named, and no output file is written.
TEST_F(LkcOp, BadTablesAndMasksAreNamed) {
    const std::string sw = "shiftwise:fwd:n1c7h15w15:K13k3g4";
    auto in = make_example_inputs(parse_workload(sw), 3);
    int32_t* sh = in.at("slot_h").data<int32_t>();
    sh[1] = sh[0];
    write_safetensors(path("sw.safetensors"), in);
    Result r = lkc("op " + sw + " --inputs " + path("sw.safetensors") + " --outputs " +
                   path("out.safetensors"));
    EXPECT_EQ(r.code, 1);
    EXPECT_NE(r.err.find("slot_h"), std::string::npos) << r.err;
    EXPECT_FALSE(fs::exists(path("out.safetensors")));

    const std::string sp = "dwconv2d_sparse:fwd:n1c4h9w9:k5x5";
    auto ins = make_example_inputs(parse_workload(sp), 3);
    ins.at("mask").data<float>()[7] = 0.5f;
    write_safetensors(path("sp.safetensors"), ins);
    r = lkc("op " + sp + " --inputs " + path("sp.safetensors") + " --outputs " +
            path("out.safetensors"));
    EXPECT_EQ(r.code, 1);
    EXPECT_NE(r.err.find("mask"), std::string::npos) << r.err;
    EXPECT_FALSE(fs::exists(path("out.safetensors")));

    const std::string mb = "dwconv2d_multi:fwd:n1c4h8w8:b5x5d1,3x3d1";
    auto inm = make_example_inputs(parse_workload(mb), 3);
    inm["w1"] = Tensor(DType::F32, {4, 1, 5, 5});
    write_safetensors(path("mb.safetensors"), inm);
    r = lkc("op " + mb + " --inputs " + path("mb.safetensors") + " --outputs " +
            path("out.safetensors"));
    EXPECT_EQ(r.code, 1);
    EXPECT_NE(r.err.find("'w1'"), std::string::npos) << r.err;
}

}  // namespace
}  // namespace lkc::test
