// Workload strings: round trips, randomized parse/print identity, every error case with its
// message, and nominal / useful FLOPs against brute-force counts.
#include <gtest/gtest.h>

#include <climits>
#include <cstdint>
#include <random>
#include <string>
#include <vector>

#include "runtime/workload.h"

namespace lkc {
namespace {

// ---------------------------------------------------------------------------------------------
// Round trips

TEST(Workload, ParsesTheArchitectureExample) {
    Workload w = parse_workload("dwconv2d:fwd:n1c256h56w56:k31x31:f32");
    EXPECT_EQ(w.op, Op::DwConv2d);
    EXPECT_EQ(w.pass, Pass::Fwd);
    EXPECT_EQ(w.n, 1);
    EXPECT_EQ(w.c, 256);
    EXPECT_EQ(w.h, 56);
    EXPECT_EQ(w.w, 56);
    EXPECT_EQ(w.kh, 31);
    EXPECT_EQ(w.kw, 31);
    EXPECT_EQ(w.stride, 1);
    EXPECT_EQ(w.dilation, 1);
    EXPECT_EQ(w.dtype, ElemType::F32);
    EXPECT_EQ(w.out_h(), 56);
    EXPECT_EQ(w.out_w(), 56);
    EXPECT_EQ(w.pad_h(), 15);
    EXPECT_EQ(w.pad_w(), 15);
}

TEST(Workload, CanonicalStringsRoundTrip) {
    const char* const cases[] = {
        "dwconv2d:fwd:n1c256h56w56:k31x31:f32",
        "dwconv2d:bwd_data:n1c256h56w56:k31x31:f32",
        "dwconv2d:bwd_weight:n1c256h56w56:k31x31:f32",
        "dwconv2d:fwd:n64c124h56w56:k51x5:f32",
        "dwconv2d:fwd:n64c124h56w56:k5x51:f16",
        "dwconv2d:fwd:n2c3h7w9:k1x1:bf16",
        "dwconv2d:fwd:n1c64h224w224:k3x3:s2:f32",
        "dwconv2d:fwd:n1c64h14w14:k3x3:d3:f32",
        "dwconv2d:bwd_data:n1c64h15w17:k7x5:s2:d3:bf16",
        "dwconv2d:fwd:n2147483647c2147483647h2147483647w2147483647:k63x63:f32",
        "dwconv2d_sparse:fwd:n1c499h14w14:k47x47:f32",
        "dwconv2d_sparse:bwd_weight:n8c998h7w7:k13x13:s2:d2:f16",
        "dwconv2d_multi:fwd:n1c124h56w56:b51x5d1,5x51d1,5x5d1:f32",
        "dwconv2d_multi:fwd:n1c80h56w56:b13x13d1,5x5d1,7x7d2,3x3d3,3x3d4,3x3d5:f32",
        "dwconv2d_multi:bwd_data:n1c80h56w56:b3x3d7:s2:bf16",
        "shiftwise:fwd:n1c60h56w56:K51k3g4:f32",
        "shiftwise:bwd_weight:n32c492h7w7:K13k3g4:f16",
        "shiftwise:bwd_data:n1c1h1w1:K1k1g1:bf16",
    };
    for (const char* s : cases) {
        SCOPED_TRACE(s);
        Workload w = parse_workload(s);
        EXPECT_EQ(to_string(w), s);
        EXPECT_EQ(parse_workload(to_string(w)), w);
    }
}

TEST(Workload, DefaultsAreNormalised) {
    // dtype defaults to f32 and is always printed; s1 / d1 are accepted and dropped.
    const std::pair<const char*, const char*> cases[] = {
        {"dwconv2d:fwd:n1c256h56w56:k31x31", "dwconv2d:fwd:n1c256h56w56:k31x31:f32"},
        {"dwconv2d:fwd:n1c256h56w56:k31x31:s1:d1:f32", "dwconv2d:fwd:n1c256h56w56:k31x31:f32"},
        {"dwconv2d:fwd:n1c256h56w56:k31x31:s1", "dwconv2d:fwd:n1c256h56w56:k31x31:f32"},
        {"dwconv2d:fwd:n1c256h56w56:k31x31:d1:bf16", "dwconv2d:fwd:n1c256h56w56:k31x31:bf16"},
        {"dwconv2d:fwd:n1c256h56w56:k31x31:s2", "dwconv2d:fwd:n1c256h56w56:k31x31:s2:f32"},
        {"dwconv2d:fwd:n1c256h56w56:k31x31:d3", "dwconv2d:fwd:n1c256h56w56:k31x31:d3:f32"},
        {"dwconv2d_multi:fwd:n1c8h8w8:b5x5d1:s1", "dwconv2d_multi:fwd:n1c8h8w8:b5x5d1:f32"},
        {"shiftwise:fwd:n1c60h56w56:K51k3g4", "shiftwise:fwd:n1c60h56w56:K51k3g4:f32"},
    };
    for (const auto& [in, out] : cases) {
        SCOPED_TRACE(in);
        EXPECT_EQ(to_string(parse_workload(in)), out);
        EXPECT_EQ(parse_workload(in), parse_workload(out));
    }
}

TEST(Workload, MultiBranchAndShiftwiseFields) {
    Workload m = parse_workload(
        "dwconv2d_multi:fwd:n1c80h56w56:b13x13d1,5x5d1,7x7d2,3x3d3,3x3d4,"
        "3x3d5:f32");
    ASSERT_EQ(m.branches.size(), 6u);
    EXPECT_EQ(m.branches[0], (Branch{13, 13, 1}));
    EXPECT_EQ(m.branches[2], (Branch{7, 7, 2}));
    EXPECT_EQ(m.branches[5], (Branch{3, 3, 5}));
    EXPECT_EQ(m.kh, 0);
    EXPECT_EQ(m.dilation, 1);
    EXPECT_EQ(m.pad_h(), 6);  // max(6, 2, 6, 3, 4, 5)

    Workload sw = parse_workload("shiftwise:fwd:n1c60h56w56:K51k3g4");
    EXPECT_EQ(sw.big_k, 51);
    EXPECT_EQ(sw.small_k, 3);
    EXPECT_EQ(sw.groups, 4);
    EXPECT_EQ(sw.num_sub_kernels(), 17);
    EXPECT_EQ(sw.pad_h(), 25);
    EXPECT_EQ(parse_workload("shiftwise:fwd:n1c1h5w5:K13k3g4").num_sub_kernels(), 5);

    Workload r = parse_workload("dwconv2d:fwd:n1c1h15w16:k51x5:s2:d3");
    EXPECT_EQ(r.out_h(), 8);
    EXPECT_EQ(r.out_w(), 8);
    EXPECT_EQ(r.pad_h(), 75);
    EXPECT_EQ(r.pad_w(), 6);
}

// ---------------------------------------------------------------------------------------------
// Randomized parse -> print -> parse identity

int odd_in(std::mt19937& rng, int lo, int hi) {  // odd value in [lo, hi], lo and hi odd
    return lo + 2 * std::uniform_int_distribution<int>(0, (hi - lo) / 2)(rng);
}

int size_in(std::mt19937& rng) {
    // Mostly small, sometimes huge, including the limit.
    switch (std::uniform_int_distribution<int>(0, 3)(rng)) {
        case 0:
            return std::uniform_int_distribution<int>(1, 8)(rng);
        case 1:
            return std::uniform_int_distribution<int>(1, 4096)(rng);
        case 2:
            return std::uniform_int_distribution<int>(1, INT_MAX)(rng);
        default:
            return INT_MAX - std::uniform_int_distribution<int>(0, 2)(rng);
    }
}

Workload random_workload(std::mt19937& rng) {
    auto pick = [&](int n) { return std::uniform_int_distribution<int>(0, n - 1)(rng); };
    Workload w;
    w.op = static_cast<Op>(pick(4));
    w.pass = static_cast<Pass>(pick(3));
    w.dtype = static_cast<ElemType>(pick(3));
    w.n = size_in(rng);
    w.c = size_in(rng);
    w.h = size_in(rng);
    w.w = size_in(rng);
    switch (w.op) {
        case Op::DwConv2d:
        case Op::DwConv2dSparse:
            w.kh = odd_in(rng, 1, 63);
            w.kw = odd_in(rng, 1, 63);
            w.stride = 1 + pick(2);
            w.dilation = 1 + pick(7);
            break;
        case Op::DwConv2dMulti: {
            int nb = 1 + pick(6);
            for (int i = 0; i < nb; ++i) {
                w.branches.push_back({odd_in(rng, 1, 63), odd_in(rng, 1, 63), 1 + pick(7)});
            }
            w.stride = 1 + pick(2);
            break;
        }
        case Op::ShiftWise:
            w.small_k = odd_in(rng, 1, 9);
            w.big_k = odd_in(rng, w.small_k, 63);
            w.groups = 1 + pick(8);
            break;
    }
    return w;
}

TEST(Workload, RandomizedRoundTrip) {
    std::mt19937 rng(20240601);
    for (int t = 0; t < 2000; ++t) {
        Workload w = random_workload(rng);
        std::string s = to_string(w);
        SCOPED_TRACE(s);
        Workload back = parse_workload(s);
        ASSERT_EQ(back, w);
        ASSERT_EQ(to_string(back), s);

        // Non-canonical spellings of the same workload parse to it too.
        std::string alt = s;
        if (w.dtype == ElemType::F32) alt = alt.substr(0, alt.size() - 4);  // drop ":f32"
        if (w.op == Op::DwConv2d && w.stride == 1 && w.dilation == 1) {
            size_t kernel_end = alt.find(':', alt.find(":k") + 1);
            alt.insert(kernel_end == std::string::npos ? alt.size() : kernel_end, ":s1:d1");
        }
        ASSERT_EQ(parse_workload(alt), w) << alt;
        ASSERT_EQ(to_string(parse_workload(alt)), s) << alt;
    }
}

// ---------------------------------------------------------------------------------------------
// Errors

// Expects parse_workload(s) to throw a WorkloadError whose message quotes s and contains every
// string in `parts`.
void expect_error(const std::string& s, const std::vector<std::string>& parts) {
    SCOPED_TRACE("input: '" + s + "'");
    try {
        Workload w = parse_workload(s);
        ADD_FAILURE() << "parsed without error as " << to_string(w);
    } catch (const WorkloadError& e) {
        std::string msg = e.what();
        EXPECT_NE(msg.find("'" + s + "'"), std::string::npos) << "message: " << msg;
        for (const std::string& p : parts) {
            EXPECT_NE(msg.find(p), std::string::npos) << "missing '" << p << "' in: " << msg;
        }
    }
}

TEST(WorkloadErrors, IsInvalidArgument) {
    EXPECT_THROW(parse_workload("x"), std::invalid_argument);
}

TEST(WorkloadErrors, EmptyAndFieldCount) {
    expect_error("", {"empty string", "<op>:<pass>:n<N>c<C>h<H>w<W>:<kernel>"});
    expect_error("dwconv2d", {"has 1 ':'-separated field(s)", "expected 4 to 7"});
    expect_error("dwconv2d:fwd:n1c256h56w56", {"has 3", "<kernel>"});
    expect_error("dwconv2d::n1c256h56w56:k31x31", {"field 2 (pass) is empty"});
    expect_error("dwconv2d:fwd:n1c256h56w56:k31x31:", {"field 5", "is empty"});
    expect_error("dwconv2d:fwd:n1c256h56w56:k31x31:s2::f32", {"field 6", "is empty"});
}

TEST(WorkloadErrors, UnknownOpAndPass) {
    expect_error("conv2d:fwd:n1c256h56w56:k31x31",
                 {"unknown op 'conv2d'", "dwconv2d, dwconv2d_multi, dwconv2d_sparse, shiftwise"});
    expect_error("DWCONV2D:fwd:n1c256h56w56:k31x31", {"unknown op 'DWCONV2D'"});
    expect_error(" dwconv2d:fwd:n1c256h56w56:k31x31", {"unknown op ' dwconv2d'"});
    expect_error("dwconv2d:forward:n1c256h56w56:k31x31",
                 {"unknown pass 'forward'", "fwd, bwd_data, bwd_weight"});
    expect_error("dwconv2d:bwd:n1c256h56w56:k31x31", {"unknown pass 'bwd'"});
}

TEST(WorkloadErrors, MalformedShape) {
    const std::string pre = "dwconv2d:fwd:";
    const std::string post = ":k31x31";
    expect_error(pre + "n1c256h56" + post,
                 {"shape field 'n1c256h56'", "missing 'w<W>'", "n<N>c<C>h<H>w<W>"});
    expect_error(pre + "c256h56w56" + post, {"shape field", "expected 'n' at position 0"});
    expect_error(pre + "n1c256w56h56" + post, {"expected 'h' at position 6, got 'w56h56'"});
    expect_error(pre + "n1cXh56w56" + post, {"expected digits for channels C, got 'Xh56w56'"});
    expect_error(pre + "n1c256h5.6w56" + post, {"expected 'w'", "got '.6w56'"});
    expect_error(pre + "n+1c256h56w56" + post, {"'+' sign in batch N"});
    expect_error(pre + "n1c256h56w56x" + post, {"unexpected trailing characters 'x'"});
    expect_error(pre + "n1c256h56w" + post, {"missing width W"});
    expect_error(pre + "n1c2147483648h56w56" + post,
                 {"channels C 2147483648 exceeds 2^31-1 = 2147483647"});
    expect_error(pre + "n1c99999999999999999999999h56w56" + post, {"exceeds 2^31-1"});
    expect_error(pre + "n01c256h56w56" + post, {"leading zero in batch N '01'"});
    expect_error(pre + "N1C256H56W56" + post, {"expected 'n'"});
}

TEST(WorkloadErrors, ZeroAndNegativeSizes) {
    expect_error("dwconv2d:fwd:n0c256h56w56:k31x31", {"batch N is 0; must be >= 1"});
    expect_error("dwconv2d:fwd:n1c0h56w56:k31x31", {"channels C is 0"});
    expect_error("dwconv2d:fwd:n1c256h000w56:k31x31", {"height H is 0"});
    expect_error("dwconv2d:fwd:n1c256h56w-5:k31x31", {"width W is negative; must be >= 1"});
    expect_error("dwconv2d:fwd:n1c256h56w56:k-3x3", {"kernel height is negative"});
    expect_error("dwconv2d:fwd:n1c256h56w56:k0x3", {"kernel height is 0"});
}

TEST(WorkloadErrors, Kernels) {
    const std::string pre = "dwconv2d:fwd:n1c256h56w56:";
    expect_error(pre + "k30x31",
                 {"kernel field 'k30x31'",
                  "kernel height 30 is even; only odd kernels have 'same' padding"});
    expect_error(pre + "k31x30", {"kernel width 30 is even"});
    expect_error(pre + "k65x3", {"kernel height 65 is out of range 1..63"});
    expect_error(pre + "k3x64", {"kernel width 64 is out of range 1..63"});
    expect_error(pre + "k31", {"missing 'x<Kw>'"});
    expect_error(pre + "31x31", {"expected 'k' at position 0"});
    expect_error(pre + "K31x31", {"expected 'k'"});
    expect_error(pre + "k31x31x", {"unexpected trailing characters 'x'"});
    expect_error(pre + "k31x31junk", {"unexpected trailing characters 'junk'"});
    expect_error(pre + "b5x5d1", {"expected 'k'"});
    expect_error("dwconv2d_sparse:fwd:n1c256h56w56:k4x5", {"kernel height 4 is even"});
    expect_error("dwconv2d_sparse:fwd:n1c256h56w56:k99x5", {"out of range 1..63"});
}

TEST(WorkloadErrors, MultiBranchKernels) {
    const std::string pre = "dwconv2d_multi:fwd:n1c80h56w56:";
    expect_error(pre + "b5x5", {"missing 'd<D>'", "b<Kh>x<Kw>d<D>(,<Kh>x<Kw>d<D>)*"});
    expect_error(pre + "b5x5d1,", {"missing branch 2 kernel height"});
    expect_error(pre + "b", {"missing branch 1 kernel height"});
    expect_error(pre + "5x5d1", {"expected 'b' at position 0"});
    expect_error(pre + "b5x5d1;3x3d2", {"unexpected trailing characters ';3x3d2'"});
    expect_error(pre + "b5x5d1,4x3d2", {"branch 2 kernel height 4 is even"});
    expect_error(pre + "b5x5d8", {"branch 1 dilation 8 is out of range 1..7"});
    expect_error(pre + "b5x5d0", {"branch 1 dilation is 0"});
    expect_error(pre + "b65x5d1", {"branch 1 kernel height 65 is out of range 1..63"});
    expect_error(pre + "b5x5d1:d2",
                 {"dwconv2d_multi takes no global ':d2'", "each branch carries its own dilation"});
    expect_error(pre + "b5x5d1:d1", {"dwconv2d_multi takes no global ':d1'"});
}

TEST(WorkloadErrors, ShiftwiseKernels) {
    const std::string pre = "shiftwise:fwd:n1c60h56w56:";
    expect_error(pre + "K51k3", {"missing 'g<G>'", "K<K>k<k>g<G>"});
    expect_error(pre + "K51k3g0", {"groups G is 0"});
    expect_error(pre + "K51k2g4", {"small kernel k 2 is even"});
    expect_error(pre + "K50k3g4", {"big kernel K 50 is even"});
    expect_error(pre + "K3k5g4", {"big kernel K=3 is smaller than small kernel k=5"});
    expect_error(pre + "K65k3g4", {"big kernel K 65 is out of range 1..63"});
    expect_error(pre + "k51K3g4", {"expected 'K' at position 0"});
    expect_error(pre + "K51k3g4:s2", {"shiftwise takes no ':s2'", "stride 1 only"});
    expect_error(pre + "K51k3g4:s1", {"shiftwise takes no ':s1'"});
    expect_error(pre + "K51k3g4:d2", {"shiftwise takes no ':d2'"});
}

TEST(WorkloadErrors, StrideDilationDtype) {
    const std::string pre = "dwconv2d:fwd:n1c256h56w56:k31x31:";
    expect_error(pre + "s3", {"stride field 's3'", "stride 3 is not supported", "s1 or s2"});
    expect_error(pre + "s0", {"stride is 0"});
    expect_error(pre + "s", {"missing stride"});
    expect_error(pre + "s2x", {"unexpected trailing characters 'x'"});
    expect_error(pre + "s+2", {"'+' sign in stride"});
    expect_error(pre + "d8", {"dilation 8 is out of range 1..7"});
    expect_error(pre + "d0", {"dilation is 0"});
    expect_error(pre + "dx", {"expected digits for dilation"});
    expect_error(pre + "f64", {"unknown dtype 'f64'", "f32, f16, bf16"});
    expect_error(pre + "F32", {"unknown dtype 'F32'"});
    expect_error(pre + "fp16", {"unknown dtype 'fp16'"});
}

TEST(WorkloadErrors, OrderDuplicatesAndTrailingGarbage) {
    const std::string pre = "dwconv2d:fwd:n1c256h56w56:k31x31:";
    expect_error(pre + "s2:s2", {"duplicate stride ':s' field 's2'"});
    expect_error(pre + "s2:s1", {"duplicate stride"});
    expect_error(pre + "d2:d3", {"duplicate dilation ':d' field 'd3'"});
    expect_error(pre + "f32:f16", {"duplicate dtype field 'f16'"});
    expect_error(pre + "d2:s2", {"stride ':s' field 's2' must come before the dilation ':d' field",
                                 "order is s<S>, d<D>, dtype"});
    expect_error(pre + "f16:s2", {"must come before the dtype field"});
    expect_error(pre + "f16:d2", {"dilation ':d' field 'd2' must come before the dtype field"});
    expect_error(pre + "f32:extra", {"unexpected trailing field 'extra' after the dtype"});
    expect_error(pre + "s2:d2:f32:x", {"unexpected trailing field 'x'"});
    expect_error(pre + "f32 ", {"unknown dtype 'f32 '"});
}

TEST(WorkloadErrors, ToStringRejectsInvalidWorkloads) {
    Workload w = parse_workload("dwconv2d:fwd:n1c8h8w8:k3x3");
    Workload bad = w;
    bad.stride = 3;
    EXPECT_THROW(to_string(bad), WorkloadError);
    bad = w;
    bad.kh = 4;
    EXPECT_THROW(to_string(bad), WorkloadError);
    bad = w;
    bad.branches.push_back({3, 3, 1});  // unused by dwconv2d
    try {
        to_string(bad);
        ADD_FAILURE() << "no throw";
    } catch (const WorkloadError& e) {
        EXPECT_NE(std::string(e.what()).find("does not use"), std::string::npos) << e.what();
    }
    Workload sw = parse_workload("shiftwise:fwd:n1c8h8w8:K13k3g4");
    sw.dilation = 2;
    EXPECT_THROW(to_string(sw), WorkloadError);
    EXPECT_THROW(to_string(Workload{}), WorkloadError);  // zero sizes
}

// ---------------------------------------------------------------------------------------------
// FLOPs against brute force

struct Counts {
    double nominal = 0, useful = 0;
};

// One depth-wise conv, every output and every tap; 2 FLOPs per multiply-add.
Counts brute_conv(const Workload& w, int kh, int kw, int d) {
    const int ph = d * (kh - 1) / 2, pw = d * (kw - 1) / 2;
    Counts r;
    for (int i = 0; i < w.out_h(); ++i) {
        for (int j = 0; j < w.out_w(); ++j) {
            for (int u = 0; u < kh; ++u) {
                for (int v = 0; v < kw; ++v) {
                    int y = i * w.stride + u * d - ph, x = j * w.stride + v * d - pw;
                    r.nominal += 2;
                    if (y >= 0 && y < w.h && x >= 0 && x < w.w) r.useful += 2;
                }
            }
        }
    }
    r.nominal *= double(w.n) * w.c;
    r.useful *= double(w.n) * w.c;
    return r;
}

// Shift-wise from its definition (large_kernel_ops.md section 4): k x k maps z with padding k-1
// on an (H+2e) x (W+2e) grid, read at shifted positions; out-of-map z reads contribute nothing.
Counts brute_shiftwise(const Workload& w) {
    const int k = w.small_k, nk = w.num_sub_kernels(), mid = w.big_k / 2;
    const int e = (k - 1) - k / 2;
    const int zh = w.h + 2 * e, zw = w.w + 2 * e;
    auto rp = [&](int s) { return mid - s * k - (k - 1); };
    Counts r;
    // Taps of one k x k sub-kernel evaluated at z position (p, q).
    auto sub_kernel = [&](int p, int q) {
        for (int a = 0; a < k; ++a) {
            for (int b = 0; b < k; ++b) {
                r.nominal += 2;
                if (p < 0 || p >= zh || q < 0 || q >= zw) continue;
                int y = p + a - (k - 1), x = q + b - (k - 1);
                if (y >= 0 && y < w.h && x >= 0 && x < w.w) r.useful += 2;
            }
        }
    };
    for (int i = 0; i < w.h; ++i) {
        for (int t = 0; t < w.w; ++t) {
            for (int s = 0; s < nk; ++s) sub_kernel(i + e, t - rp(s));  // horizontal
            for (int s = 0; s < nk; ++s) sub_kernel(i - rp(s), t + e);  // vertical
            sub_kernel(i + e, t + e);                                   // identity
        }
    }
    r.nominal *= double(w.n) * w.c;
    r.useful *= double(w.n) * w.c;
    return r;
}

Counts brute(const Workload& w) {
    switch (w.op) {
        case Op::DwConv2d:
        case Op::DwConv2dSparse:
            return brute_conv(w, w.kh, w.kw, w.dilation);
        case Op::DwConv2dMulti: {
            Counts sum;
            for (const Branch& b : w.branches) {
                Counts c = brute_conv(w, b.kh, b.kw, b.dilation);
                sum.nominal += c.nominal;
                sum.useful += c.useful;
            }
            return sum;
        }
        case Op::ShiftWise:
            return brute_shiftwise(w);
    }
    return {};
}

TEST(WorkloadFlops, MatchBruteForce) {
    const char* const cases[] = {
        "dwconv2d:fwd:n1c1h5w5:k3x3",
        "dwconv2d:fwd:n2c3h7w6:k31x31",  // kernel larger than the map
        "dwconv2d:fwd:n1c2h9w4:k51x5",   // rectangular, taller than the map
        "dwconv2d:fwd:n1c2h4w9:k5x51",
        "dwconv2d:fwd:n1c1h7w8:k5x5:s2",
        "dwconv2d:fwd:n1c1h11w10:k5x7:d3",
        "dwconv2d:fwd:n2c2h9w7:k7x3:s2:d3",
        "dwconv2d:fwd:n1c1h1w1:k63x63:s2:d7",
        "dwconv2d:fwd:n1c1h13w2:k1x3:s2",
        "dwconv2d_sparse:bwd_data:n1c3h6w6:k13x13:s2",
        "dwconv2d_multi:fwd:n1c2h10w9:b13x13d1,5x5d1,7x7d2,3x3d3,3x3d4,3x3d5",
        "dwconv2d_multi:fwd:n1c1h8w8:b51x5d1,5x51d1,5x5d1:s2",
        "shiftwise:fwd:n1c2h9w9:K51k3g4",    // nk*k = 51
        "shiftwise:fwd:n1c1h20w17:K13k3g4",  // nk*k = 15 != 13: asymmetric reach
        "shiftwise:fwd:n2c1h5w6:K7k5g1",
        "shiftwise:fwd:n1c1h4w3:K1k1g2",
    };
    for (const char* s : cases) {
        SCOPED_TRACE(s);
        Workload w = parse_workload(s);
        Counts b = brute(w);
        EXPECT_EQ(w.nominal_flops(), b.nominal);
        EXPECT_EQ(w.useful_flops(), b.useful);
        EXPECT_LE(w.useful_flops(), w.nominal_flops());
        EXPECT_GT(w.useful_flops(), 0);
    }
}

TEST(WorkloadFlops, RandomSmallShapesMatchBruteForce) {
    std::mt19937 rng(7);
    auto pick = [&](int lo, int hi) { return std::uniform_int_distribution<int>(lo, hi)(rng); };
    for (int t = 0; t < 300; ++t) {
        Workload w;
        w.op = static_cast<Op>(pick(0, 3));
        w.n = pick(1, 2);
        w.c = pick(1, 3);
        w.h = pick(1, 20);
        w.w = pick(1, 20);
        if (w.op == Op::DwConv2d || w.op == Op::DwConv2dSparse) {
            w.kh = odd_in(rng, 1, 25);
            w.kw = odd_in(rng, 1, 25);
            w.stride = pick(1, 2);
            w.dilation = pick(1, 7);
        } else if (w.op == Op::DwConv2dMulti) {
            for (int b = pick(1, 4); b > 0; --b) {
                w.branches.push_back({odd_in(rng, 1, 25), odd_in(rng, 1, 25), pick(1, 7)});
            }
            w.stride = pick(1, 2);
        } else {
            w.small_k = odd_in(rng, 1, 7);
            w.big_k = odd_in(rng, w.small_k, 31);
            w.groups = pick(1, 4);
        }
        SCOPED_TRACE(to_string(w));
        Counts b = brute(w);
        ASSERT_EQ(w.nominal_flops(), b.nominal);
        ASSERT_EQ(w.useful_flops(), b.useful);
    }
}

TEST(WorkloadFlops, KnownValues) {
    // 2*1*256*56*56*31*31
    Workload w = parse_workload("dwconv2d:fwd:n1c256h56w56:k31x31");
    EXPECT_DOUBLE_EQ(w.nominal_flops(), 2.0 * 256 * 56 * 56 * 31 * 31);
    // 1x1 kernel: every tap is useful.
    Workload one = parse_workload("dwconv2d:fwd:n3c5h7w9:k1x1:s2");
    EXPECT_DOUBLE_EQ(one.useful_flops(), one.nominal_flops());
    EXPECT_DOUBLE_EQ(one.nominal_flops(), 2.0 * 3 * 5 * 4 * 5);
    // 1x1 map, 3x3 kernel: only the centre tap lands.
    Workload dot = parse_workload("dwconv2d:fwd:n1c1h1w1:k3x3");
    EXPECT_DOUBLE_EQ(dot.useful_flops(), 2.0);
    EXPECT_DOUBLE_EQ(dot.nominal_flops(), 18.0);
    // Huge shapes stay finite and fast (per-tap interval counts, not per-output loops).
    Workload big = parse_workload(
        "dwconv2d:fwd:n2147483647c2147483647h2147483647w2147483647:"
        "k63x63:s2:d7");
    EXPECT_GT(big.useful_flops(), 0);
    EXPECT_LE(big.useful_flops(), big.nominal_flops());
}

}  // namespace
}  // namespace lkc
