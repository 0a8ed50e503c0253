// `lkc run` and `lkc inspect` end to end: logits written with --output equal the double reference
// executor's on the same input and weights (a checkpoint written in the official state_dict
// layout), images go through the evaluation transform, and bad inputs (missing or corrupt image,
// a checkpoint with a missing or mis-shaped tensor, unknown model, absent CUDA device) exit 1
// with a message naming the problem. Also `lkc train`'s errors, log, resume and weights export.
#include <gtest/gtest.h>
#include <sys/wait.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include "graph/models/models.h"
#include "graph/reference_executor.h"
#include "graph/weights.h"
#include "runtime/image.h"
#include "runtime/safetensors.h"
#include "tests/cli_harness.h"

namespace lkc::test {
namespace {

namespace fs = std::filesystem;

using LkcRun = CliTest;

const char* kModel = "unireplknet-test";
const char* kFlags = " --size 32 --classes 10 --repeat 2 --no-records";

graph::Graph tiny(int batch) {
    graph::ModelOptions mo;
    mo.image_size = 32;
    mo.num_classes = 10;
    mo.batch = batch;
    return graph::build_model(kModel, mo);
}

TEST_F(LkcRun, LogitsMatchTheReferenceWithAStateDict) {
    graph::Graph g = tiny(2);
    graph::init_weights(g, 5, graph::InitMode::Test);
    write_safetensors(path("w.safetensors"), graph::state_dict(g));
    Tensor x(DType::F32, {2, 3, 32, 32});
    std::mt19937 gen(3);
    std::uniform_real_distribution<float> u(-2, 2);
    for (int64_t i = 0; i < x.numel(); ++i) x.data<float>()[i] = u(gen);
    write_safetensors(path("x.safetensors"), {{"x", x}});
    for (const char* form : {"", " --train-form"}) {
        const Result r = lkc(std::string("run --model ") + kModel + kFlags + form + " --weights " +
                             path("w.safetensors") + " --input " + path("x.safetensors") +
                             " --output " + path("y.safetensors"));
        ASSERT_EQ(r.code, 0) << r.err;
        EXPECT_NE(r.out.find("image 1: top-5"), std::string::npos) << r.out;
        EXPECT_NE(r.out.find("img/s"), std::string::npos) << r.out;
        const Tensor got = read_safetensors(path("y.safetensors")).tensors.at("logits");
        const Tensor want = graph::run_reference(g, {{"x", x}}).outputs.at("head");
        ASSERT_EQ(got.shape(), want.shape());
        double err = 0, mx = 0;
        for (int64_t i = 0; i < want.numel(); ++i) {
            err = std::max(err, std::fabs(got.data<float>()[i] - want.data<double>()[i]));
            mx = std::max(mx, std::fabs(want.data<double>()[i]));
        }
        EXPECT_LE(err, 1e-4 * mx) << form << ": max |diff| " << err;
    }
}

TEST_F(LkcRun, ImageInputAndInspect) {
    Image img;
    img.width = 50;
    img.height = 40;
    img.rgb.resize(50 * 40 * 3);
    for (size_t i = 0; i < img.rgb.size(); ++i) img.rgb[i] = uint8_t(i * 7);
    write_ppm(path("img.ppm"), img);
    Result r = lkc(std::string("run --model ") + kModel + kFlags + " --input " + path("img.ppm") +
                   " --batch 3");
    ASSERT_EQ(r.code, 0) << r.err;
    EXPECT_NE(r.out.find("initialised from seed"), std::string::npos) << r.out;
    EXPECT_NE(r.out.find("image 2: top-5"), std::string::npos) << r.out;
    r = lkc(std::string("inspect --model ") + kModel + " --size 32 --classes 10");
    ASSERT_EQ(r.code, 0) << r.err;
    EXPECT_NE(r.out.find("parameters"), std::string::npos);
    EXPECT_NE(r.out.find("memory plan: arena"), std::string::npos) << r.out;
}

TEST_F(LkcRun, BadInputsAreClearErrors) {
    Result r = lkc(std::string("run --model ") + kModel + kFlags + " --input " + path("none.png"));
    EXPECT_EQ(r.code, 1);
    EXPECT_NE(r.err.find("none.png"), std::string::npos) << r.err;
    {
        std::ofstream f(path("bad.png"), std::ios::binary);
        f << "\x89PNG\r\n\x1a\n garbage";
    }
    r = lkc(std::string("run --model ") + kModel + kFlags + " --input " + path("bad.png"));
    EXPECT_EQ(r.code, 1);
    EXPECT_NE(r.err.find("not a valid PNG"), std::string::npos) << r.err;
    {
        std::ofstream f(path("short.ppm"), std::ios::binary);
        f << "P6\n4 4\n255\nabc";
    }
    r = lkc(std::string("run --model ") + kModel + kFlags + " --input " + path("short.ppm"));
    EXPECT_EQ(r.code, 1);
    EXPECT_NE(r.err.find("truncated"), std::string::npos) << r.err;

    // A checkpoint with one tensor missing and one mis-shaped: both named.
    graph::Graph g = tiny(1);
    graph::init_weights(g, 1);
    auto sd = graph::state_dict(g);
    const std::string missing = sd.begin()->first;
    sd.erase(sd.begin());
    auto it = std::next(sd.begin(), 3);
    const std::string misshaped = it->first;
    it->second = Tensor(DType::F32, {7});
    write_safetensors(path("w.safetensors"), sd);
    Image img;
    img.width = img.height = 32;
    img.rgb.assign(32 * 32 * 3, 100);
    write_ppm(path("img.ppm"), img);
    r = lkc(std::string("run --model ") + kModel + kFlags + " --weights " + path("w.safetensors") +
            " --input " + path("img.ppm"));
    EXPECT_EQ(r.code, 1);
    EXPECT_NE(r.err.find(missing), std::string::npos) << r.err;
    EXPECT_NE(r.err.find(misshaped), std::string::npos) << r.err;

    r = lkc(std::string("run --model no-such-net --input ") + path("img.ppm"));
    EXPECT_EQ(r.code, 1);
    EXPECT_NE(r.err.find("replknet-31b"), std::string::npos) << r.err;  // lists the known names

    r = lkc(std::string("run --model ") + kModel + kFlags + " --input " + path("img.ppm") +
            " --device cuda");
    EXPECT_EQ(r.code, 1);
    EXPECT_NE(r.err.find("cuda"), std::string::npos) << r.err;
}

// `lkc train`: bad data directory, --resume without --checkpoint and a GPU device are errors that
// say so; a run stopped after 2 of 4 steps and resumed appends to its CSV log, ends at step 4,
// evaluates, and its weights export to the deploy form.
TEST_F(LkcRun, TrainCliErrorsLogAndResume) {
    const std::string base = "train --model slak-test --batch 8 --steps 4 --eval-limit 16 -q ";
    Result r = lkc(base + "--data " + path("no-such-dir"));
    EXPECT_EQ(r.code, 1);
    EXPECT_NE(r.err.find("no-such-dir"), std::string::npos) << r.err;
    r = lkc(base + "--resume");
    EXPECT_EQ(r.code, 1);
    EXPECT_NE(r.err.find("--resume needs --checkpoint"), std::string::npos) << r.err;
    r = lkc(base + "--device opencl");
    EXPECT_EQ(r.code, 1);
    EXPECT_NE(r.err.find("training runs on the CPU"), std::string::npos) << r.err;
    if (!fs::exists("/usr/share/datasets/fashion-mnist"))
        GTEST_SKIP() << "dataset-fashion-mnist is not installed";
    const std::string run =
        base + "--log " + path("log.csv") + " --checkpoint " + path("ck.safetensors");
    r = lkc(run + " --stop-after 2");
    ASSERT_EQ(r.code, 0) << r.err;
    r = lkc(run + " --resume --save-weights " + path("w.safetensors"));
    ASSERT_EQ(r.code, 0) << r.err;
    EXPECT_NE(r.out.find("checkpoint: " + path("ck.safetensors") + " (step 4)"), std::string::npos)
        << r.out;
    EXPECT_NE(r.out.find("test accuracy"), std::string::npos) << r.out;
    std::ifstream log(path("log.csv"));
    std::vector<std::string> lines;
    for (std::string l; std::getline(log, l);) lines.push_back(l);
    // header, steps 1-2, final row of the first call, steps 3-4, final row.
    ASSERT_EQ(lines.size(), 7u);
    EXPECT_EQ(lines[0].rfind("step,epoch,loss", 0), 0u);
    EXPECT_EQ(lines[4].rfind("3,", 0), 0u) << lines[4];
    EXPECT_EQ(lines[5].rfind("4,", 0), 0u) << lines[5];
    r = lkc("export --deploy --model slak-test --size 32 --classes 10 --in-chans 1 --weights " +
            path("w.safetensors") + " -o " + path("d.safetensors"));
    EXPECT_EQ(r.code, 0) << r.err;
    EXPECT_TRUE(fs::exists(path("d.safetensors")));
}

}  // namespace
}  // namespace lkc::test
