// `lkc compile` end to end: for every family's tiny model the AOT binary builds, links no
// libHalide, and its logits equal `lkc run`'s on the same image and weights within 1e-5 relative
// (weights next to the binary, or embedded); bad inputs to the binary (image, weights file) and
// to lkc compile (target, model) fail with a message; host-cuda builds here and its PTX passes
// ptxas, and the binary then reports the missing device.
#include <gtest/gtest.h>
#include <sys/wait.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "runtime/image.h"
#include "runtime/safetensors.h"
#include "tests/cli_harness.h"

namespace lkc::test {
namespace {

namespace fs = std::filesystem;

class LkcCompile : public CliTest {
  protected:
    void SetUp() override {
        CliTest::SetUp();
        Image img;
        img.width = 40;
        img.height = 36;
        img.rgb.resize(size_t(40) * 36 * 3);
        for (size_t i = 0; i < img.rgb.size(); ++i) img.rgb[i] = uint8_t((i * 37) % 251);
        write_ppm(path("img.ppm"), img);
    }
};

double rel_diff(const Tensor& a, const Tensor& b) {
    double err = 0, mx = 0;
    for (int64_t i = 0; i < a.numel(); ++i) {
        err = std::max(err, double(std::fabs(a.data<float>()[i] - b.data<float>()[i])));
        mx = std::max(mx, double(std::fabs(b.data<float>()[i])));
    }
    return mx > 0 ? err / mx : err;
}

TEST_F(LkcCompile, EveryFamilyMatchesLkcRun) {
    const char* models[] = {"replknet-test", "slak-test", "unireplknet-test", "shiftwise-test"};
    for (size_t i = 0; i < 4; ++i) {
        const std::string m = models[i], out = path("aot_" + m);
        const bool embed = i == 2;
        const std::string common =
            " --model " + m + " --size 32 --classes 10 --batch 2 --seed 3 --no-records";
        Result r = lkc("compile" + common + " -o " + out + (embed ? " --embed-weights" : ""));
        ASSERT_EQ(r.code, 0) << m << ": " << r.err;
        ASSERT_TRUE(fs::exists(out + "/" + m)) << r.out;
        // No libHalide, no Python.
        r = sh("ldd " + out + "/" + m);
        EXPECT_EQ(r.out.find("Halide"), std::string::npos) << r.out;
        EXPECT_EQ(r.out.find("python"), std::string::npos) << r.out;
        if (embed) fs::remove(out + "/" + m + ".weights.safetensors");  // must not be needed
        r = sh(out + "/" + m + " --input " + path("img.ppm") + " --repeat 3 --output " +
               path("aot.st"));
        ASSERT_EQ(r.code, 0) << m << ": " << r.err;
        EXPECT_NE(r.out.find("image 1: top-5"), std::string::npos) << r.out;
        EXPECT_NE(r.out.find("start-up"), std::string::npos) << r.out;
        r = lkc("run" + common + " --input " + path("img.ppm") + " --repeat 1 --output " +
                path("run.st"));
        ASSERT_EQ(r.code, 0) << r.err;
        const Tensor a = read_safetensors(path("aot.st")).tensors.at("logits");
        const Tensor b = read_safetensors(path("run.st")).tensors.at("logits");
        ASSERT_EQ(a.shape(), b.shape());
        EXPECT_LE(rel_diff(a, b), 1e-5) << m;
    }
}

TEST_F(LkcCompile, BadInputsFailClearly) {
    const std::string out = path("aot");
    Result r =
        lkc("compile --model unireplknet-test --size 32 --classes 10 --no-records -o " + out);
    ASSERT_EQ(r.code, 0) << r.err;
    const std::string bin = out + "/unireplknet-test";
    r = sh(bin + " --input " + path("missing.png"));
    EXPECT_EQ(r.code, 3);
    EXPECT_NE(r.err.find("missing.png"), std::string::npos) << r.err;
    {
        std::ofstream f(path("bad.safetensors"));
        f << "not a safetensors file";
    }
    r = sh(bin + " --input " + path("img.ppm") + " --weights " + path("bad.safetensors"));
    EXPECT_EQ(r.code, 4);
    EXPECT_NE(r.err.find("bad.safetensors"), std::string::npos) << r.err;
    write_safetensors(path("other.safetensors"), {{"x", Tensor(DType::F32, {3})}});
    r = sh(bin + " --input " + path("img.ppm") + " --weights " + path("other.safetensors"));
    EXPECT_EQ(r.code, 4);
    EXPECT_NE(r.err.find("missing"), std::string::npos) << r.err;
    r = sh(bin + " --bogus");
    EXPECT_EQ(r.code, 2);

    r = lkc("compile --model unireplknet-test --target host-tpu -o " + path("x"));
    EXPECT_EQ(r.code, 1);
    EXPECT_NE(r.err.find("host-avx2"), std::string::npos) << r.err;
    r = lkc("compile --model no-such-model -o " + path("x"));
    EXPECT_EQ(r.code, 1);
    EXPECT_NE(r.err.find("unireplknet-t"), std::string::npos) << r.err;
}

TEST_F(LkcCompile, CudaTargetBuildsAndPassesPtxas) {
    const std::string out = path("aot_cuda");
    Result r = lkc(
        "compile --model replknet-test --size 32 --classes 10 --no-records --target host-cuda -o " +
        out);
    ASSERT_EQ(r.code, 0) << r.err;
    std::ifstream f(out + "/ptxas.txt");
    std::stringstream s;
    s << f.rdbuf();
    EXPECT_NE(s.str().find("sm_90: ok"), std::string::npos) << s.str();
    // No GPU here: the binary says so and exits non-zero (it does not abort).
    r = sh(out + "/replknet-test --input " + path("img.ppm"));
    EXPECT_EQ(r.code, 5) << r.out << r.err;
    EXPECT_NE(r.err.find("cuda"), std::string::npos) << r.err;
}

}  // namespace
}  // namespace lkc::test
