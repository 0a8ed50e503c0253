// ONNX export (graph/onnx_export.h): the protobuf writer against known encodings and a small
// decoder; the ModelProto's structure decoded here; every family's tiny model in the train form
// and in each deploy form (epilogues and Reorders, multi-branch, sparse, fused and three-output
// shift-wise), and a hand-built graph with every op, run by ONNX Runtime through onnx_check.py
// (onnx.checker.check_model included) and compared with the double reference executor
// (1e-4 relative to max |logit|); unexportable graphs and atomic writes.
//
// The Python side needs numpy, onnx and onnxruntime (lkc.sh installs them); when python3 cannot
// import them the ONNX Runtime tests skip and say so.
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <functional>
#include <iostream>
#include <map>
#include <set>
#include <sstream>

#include "graph/builder.h"
#include "graph/models/models.h"
#include "graph/onnx_export.h"
#include "graph/passes/passes.h"
#include "graph/reference_executor.h"
#include "graph/weights.h"
#include "runtime/op_inputs.h"
#include "runtime/workload.h"

#ifndef LKC_ONNX_CHECK_SCRIPT
#error "LKC_ONNX_CHECK_SCRIPT (path of tests/graph/onnx_check.py) must be defined"
#endif

namespace lkc {
namespace graph {
namespace {

// ---- a tiny protobuf decoder ----------------------------------------------------------------

struct Field {
    uint32_t number = 0;
    uint32_t wire = 0;
    uint64_t varint = 0;  // wire 0; wire 5: the 32 bits
    std::string bytes;    // wire 2
};

uint64_t read_varint(const std::string& s, size_t* pos) {
    uint64_t v = 0;
    for (int shift = 0; shift < 64; shift += 7) {
        if (*pos >= s.size()) throw std::runtime_error("truncated varint");
        const uint8_t b = static_cast<uint8_t>(s[(*pos)++]);
        v |= static_cast<uint64_t>(b & 0x7f) << shift;
        if ((b & 0x80) == 0) return v;
    }
    throw std::runtime_error("varint longer than 10 bytes");
}

std::vector<Field> decode(const std::string& s) {
    std::vector<Field> out;
    size_t pos = 0;
    while (pos < s.size()) {
        const uint64_t tag = read_varint(s, &pos);
        Field f;
        f.number = static_cast<uint32_t>(tag >> 3);
        f.wire = static_cast<uint32_t>(tag & 7);
        if (f.number == 0) throw std::runtime_error("field number 0");
        switch (f.wire) {
            case 0:
                f.varint = read_varint(s, &pos);
                break;
            case 2: {
                const uint64_t n = read_varint(s, &pos);
                if (n > s.size() - pos) throw std::runtime_error("length past the end");
                f.bytes = s.substr(pos, static_cast<size_t>(n));
                pos += static_cast<size_t>(n);
                break;
            }
            case 5:
                if (s.size() - pos < 4) throw std::runtime_error("truncated fixed32");
                for (int i = 0; i < 4; ++i) {
                    f.varint |= static_cast<uint64_t>(static_cast<uint8_t>(s[pos + i])) << (8 * i);
                }
                pos += 4;
                break;
            default:
                throw std::runtime_error("unexpected wire type " + std::to_string(f.wire));
        }
        out.push_back(std::move(f));
    }
    return out;
}

std::vector<const Field*> fields(const std::vector<Field>& fs, uint32_t number) {
    std::vector<const Field*> r;
    for (const Field& f : fs) {
        if (f.number == number) r.push_back(&f);
    }
    return r;
}

const Field& one(const std::vector<Field>& fs, uint32_t number) {
    std::vector<const Field*> r = fields(fs, number);
    if (r.size() != 1) {
        throw std::runtime_error("field " + std::to_string(number) + " occurs " +
                                 std::to_string(r.size()) + " times, expected once");
    }
    return *r[0];
}

std::string hex(const std::string& s) {
    std::string h;
    char buf[4];
    for (unsigned char c : s) {
        std::snprintf(buf, sizeof buf, "%02x", c);
        h += buf;
    }
    return h;
}

TEST(OnnxProto, KnownEncodings) {
    auto varint = [](uint64_t v) {
        std::string s;
        proto::append_varint(&s, v);
        return hex(s);
    };
    EXPECT_EQ(varint(0), "00");
    EXPECT_EQ(varint(1), "01");
    EXPECT_EQ(varint(127), "7f");
    EXPECT_EQ(varint(128), "8001");
    EXPECT_EQ(varint(150), "9601");
    EXPECT_EQ(varint(300), "ac02");
    EXPECT_EQ(varint(UINT64_MAX), "ffffffffffffffffff01");
    // protobuf.dev encoding guide: field 1 = 150 -> 08 96 01; field 2 = "testing".
    EXPECT_EQ(hex(proto::Writer().int_field(1, 150).bytes()), "089601");
    EXPECT_EQ(hex(proto::Writer().string_field(2, "testing").bytes()), "120774657374696e67");
    // Negative int64: ten bytes of two's complement.
    EXPECT_EQ(hex(proto::Writer().int_field(3, -1).bytes()), "18ffffffffffffffffff01");
    // float 1.0 as fixed32 little-endian: field 2 -> tag 0x15.
    EXPECT_EQ(hex(proto::Writer().float_field(2, 1.0f).bytes()), "150000803f");
    // Nested: field 3 holding {field 1 = 150} (the guide's Test3) -> 1a 03 08 96 01.
    proto::Writer inner;
    inner.int_field(1, 150);
    EXPECT_EQ(hex(proto::Writer().message_field(3, inner).bytes()), "1a03089601");
    // Unpacked repeated: one tag per element.
    EXPECT_EQ(hex(proto::Writer().int_fields(8, {1, 2, 300}).bytes()), "4001400240ac02");
    // Tags of large field numbers: field 20 varint -> a0 01.
    EXPECT_EQ(hex(proto::Writer().int_field(20, 7).bytes()), "a00107");
}

TEST(OnnxProto, RoundTrip) {
    uint64_t s = 88172645463325252ull;
    std::vector<int64_t> vals;
    for (int i = 0; i < 200; ++i) {
        s ^= s << 13;
        s ^= s >> 7;
        s ^= s << 17;
        vals.push_back(static_cast<int64_t>(s >> (i % 64)) * (i % 3 == 0 ? -1 : 1));
    }
    proto::Writer inner;
    inner.int_fields(1, vals).float_field(2, -3.25f).string_field(3, std::string("a\0b", 3));
    proto::Writer outer;
    outer.int_field(1, 8).message_field(7, inner).string_field(2, "lkc").message_field(7, inner);
    std::vector<Field> f = decode(outer.bytes());
    ASSERT_EQ(f.size(), 4u);
    EXPECT_EQ(one(f, 1).varint, 8u);
    EXPECT_EQ(one(f, 2).bytes, "lkc");
    std::vector<const Field*> msgs = fields(f, 7);
    ASSERT_EQ(msgs.size(), 2u);
    for (const Field* m : msgs) {
        EXPECT_EQ(m->wire, 2u);
        std::vector<Field> g = decode(m->bytes);
        std::vector<const Field*> ints = fields(g, 1);
        ASSERT_EQ(ints.size(), vals.size());
        for (size_t i = 0; i < vals.size(); ++i) {
            EXPECT_EQ(static_cast<int64_t>(ints[i]->varint), vals[i]) << i;
        }
        const uint32_t bits = static_cast<uint32_t>(one(g, 2).varint);
        float fv;
        std::memcpy(&fv, &bits, 4);
        EXPECT_EQ(fv, -3.25f);
        EXPECT_EQ(one(g, 3).bytes, std::string("a\0b", 3));
    }
    EXPECT_THROW(decode(outer.bytes().substr(0, outer.bytes().size() - 1)), std::runtime_error);
}

// ---- helpers --------------------------------------------------------------------------------

ModelOptions tiny(int batch) {
    ModelOptions o;
    o.image_size = 32;
    o.num_classes = 10;
    o.batch = batch;
    return o;
}

// Deterministic values in [-1, 1).
Tensor random_f32(Shape shape, uint32_t seed) {
    Tensor t(DType::F32, std::move(shape));
    uint32_t s = seed * 2654435761u + 1;
    for (int64_t i = 0; i < t.numel(); ++i) {
        s = s * 1664525u + 1013904223u;
        t.data<float>()[i] = static_cast<float>((s >> 8) * (2.0 / 16777216.0) - 1.0);
    }
    return t;
}

std::string temp_dir() {
    std::string base = ::testing::TempDir();
    if (base.empty() || base.back() != '/') base += '/';
    std::string tmpl = base + "lkc_onnx_XXXXXX";
    std::vector<char> buf(tmpl.begin(), tmpl.end());
    buf.push_back('\0');
    if (::mkdtemp(buf.data()) == nullptr) throw std::runtime_error("mkdtemp " + tmpl + " failed");
    return buf.data();
}

void remove_dir(const std::string& dir) {
    const std::string cmd = "rm -rf '" + dir + "'";
    if (std::system(cmd.c_str()) != 0) std::cerr << "could not remove " << dir << "\n";
}

bool exists(const std::string& path) {
    struct stat st;
    return ::stat(path.c_str(), &st) == 0;
}

std::string read_file(const std::string& path) {
    std::ifstream f(path, std::ios::binary);
    std::ostringstream s;
    s << f.rdbuf();
    return s.str();
}

// .npy version 1.0, '<f4', C order.
void write_npy(const std::string& path, const Tensor& t) {
    std::string shape = "(";
    for (int64_t d : t.shape()) shape += std::to_string(d) + ", ";
    if (t.ndim() > 1) shape.erase(shape.size() - 1);
    shape += ")";
    std::string header = "{'descr': '<f4', 'fortran_order': False, 'shape': " + shape + ", }";
    while ((10 + header.size() + 1) % 64 != 0) header += ' ';
    header += '\n';
    std::ofstream f(path, std::ios::binary);
    f.write("\x93NUMPY\x01\x00", 8);
    const uint16_t n = static_cast<uint16_t>(header.size());
    const char len[2] = {static_cast<char>(n & 0xff), static_cast<char>(n >> 8)};
    f.write(len, 2);
    f.write(header.data(), static_cast<std::streamsize>(header.size()));
    f.write(static_cast<const char*>(t.raw()), static_cast<std::streamsize>(t.nbytes()));
    if (!f) throw std::runtime_error("cannot write " + path);
}

// Reads a '<f4' C-order .npy (versions 1-3) written by numpy.save.
std::vector<float> read_npy(const std::string& path, Shape* shape) {
    const std::string s = read_file(path);
    if (s.size() < 10 || s.compare(0, 6, "\x93NUMPY") != 0) {
        throw std::runtime_error(path + ": not a .npy file");
    }
    const int major = static_cast<uint8_t>(s[6]);
    size_t hlen, off;
    if (major == 1) {
        hlen = static_cast<uint8_t>(s[8]) | (static_cast<size_t>(static_cast<uint8_t>(s[9])) << 8);
        off = 10;
    } else {
        hlen = 0;
        for (int i = 0; i < 4; ++i)
            hlen |= static_cast<size_t>(static_cast<uint8_t>(s[8 + i])) << (8 * i);
        off = 12;
    }
    const std::string h = s.substr(off, hlen);
    if (h.find("'<f4'") == std::string::npos ||
        h.find("'fortran_order': False") == std::string::npos) {
        throw std::runtime_error(path + ": header " + h + ", expected '<f4' C order");
    }
    const size_t a = h.find('(', h.find("'shape'")), b = h.find(')', a);
    shape->clear();
    std::stringstream dims(h.substr(a + 1, b - a - 1));
    std::string item;
    while (std::getline(dims, item, ',')) {
        if (item.find_first_not_of(' ') != std::string::npos) shape->push_back(std::stoll(item));
    }
    const size_t n = static_cast<size_t>(shape_numel(*shape));
    if (s.size() != off + hlen + 4 * n) throw std::runtime_error(path + ": wrong data size");
    std::vector<float> v(n);
    std::memcpy(v.data(), s.data() + off + hlen, 4 * n);
    return v;
}

struct OrtRun {
    bool skipped = false;
    std::string log;
    std::vector<float> y;
    Shape shape;
};

// Exports g, runs onnx_check.py on it with input x; fails the test on a script error.
OrtRun run_onnx_runtime(const Graph& g, const Tensor& x, OnnxExportInfo* info = nullptr) {
    OrtRun r;
    const std::string dir = temp_dir();
    const std::string model = dir + "/model.onnx", in = dir + "/x.npy", out = dir + "/y.npy",
                      log = dir + "/log.txt";
    export_onnx(g, model, OnnxExportOptions{}, info);
    write_npy(in, x);
    const std::string cmd = std::string("python3 '") + LKC_ONNX_CHECK_SCRIPT + "' '" + model +
                            "' '" + in + "' '" + out + "' > '" + log + "' 2>&1";
    const int status = std::system(cmd.c_str());
    r.log = read_file(log);
    const int code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
    if (code == 77) {
        r.skipped = true;  // numpy / onnx / onnxruntime missing; the log says which
    } else if (code == 127) {
        r.skipped = true;
        r.log = "python3 is not on PATH: " + r.log;
    } else if (code != 0) {
        ADD_FAILURE() << "onnx_check.py exited with " << code << " (status " << status << "):\n"
                      << r.log;
    } else {
        r.y = read_npy(out, &r.shape);
    }
    remove_dir(dir);
    return r;
}

std::vector<double> reference_logits(const Graph& g, const Tensor& x) {
    Graph l = passes::lower_for_reference(g);
    ReferenceResult r = run_reference(l, {{l.tensor(l.inputs.at(0)).name, x}});
    const Tensor& t = r.outputs.at(l.tensor(l.outputs.at(0)).name);
    return std::vector<double>(t.data<double>(), t.data<double>() + t.numel());
}

int count_op(const Graph& g, OpKind op) {
    int n = 0;
    for (const Node& x : g.nodes) n += x.op == op;
    return n;
}

// max |a - b| / max |a|.
double rel_err(const std::vector<double>& a, const std::vector<float>& b) {
    EXPECT_EQ(a.size(), b.size());
    double scale = 0, err = 0;
    for (size_t i = 0; i < a.size() && i < b.size(); ++i) {
        scale = std::max(scale, std::abs(a[i]));
        err = std::max(err, std::abs(a[i] - static_cast<double>(b[i])));
    }
    return scale > 0 ? err / scale : err;
}

// ---- the ModelProto's structure -------------------------------------------------------------

TEST(OnnxExport, ModelStructure) {
    Graph train = build_model("replknet-test", tiny(1));
    init_weights(train, 3, InitMode::Test);
    Graph g = passes::deploy(train);
    OnnxExportInfo info;
    const std::string bytes = onnx_model_bytes(g, {}, &info);
    EXPECT_EQ(info.bytes, bytes.size());
    std::vector<Field> model = decode(bytes);
    EXPECT_EQ(one(model, 1).varint, 8u) << "ir_version";
    std::vector<Field> opset = decode(one(model, 8).bytes);
    EXPECT_EQ(one(opset, 1).bytes, "");
    EXPECT_EQ(one(opset, 2).varint, 17u);
    EXPECT_EQ(one(model, 2).bytes, "lkc");
    std::vector<Field> graph = decode(one(model, 7).bytes);
    EXPECT_EQ(one(graph, 2).bytes, "replknet-test");

    // Input x [N, 3, 32, 32] float, output logits [N, 10].
    auto check_value = [](const Field& f, const std::string& name, const Shape& dims) {
        std::vector<Field> v = decode(f.bytes);
        EXPECT_EQ(one(v, 1).bytes, name);
        std::vector<Field> tt = decode(one(decode(one(v, 2).bytes), 1).bytes);
        EXPECT_EQ(one(tt, 1).varint, 1u) << "elem_type FLOAT";
        std::vector<const Field*> d = fields(decode(one(tt, 2).bytes), 1);
        ASSERT_EQ(d.size(), dims.size());
        for (size_t i = 0; i < dims.size(); ++i) {
            std::vector<Field> dim = decode(d[i]->bytes);
            if (i == 0) {
                EXPECT_EQ(one(dim, 2).bytes, "N");
            } else {
                EXPECT_EQ(static_cast<int64_t>(one(dim, 1).varint), dims[i]);
            }
        }
    };
    check_value(one(graph, 11), "x", {-1, 3, 32, 32});
    check_value(one(graph, 12), "logits", {-1, 10});

    // Initializers: float32 / int64 raw_data of the right size, unique names.
    std::set<std::string> names;
    int64_t elements = 0;
    for (const Field* f : fields(graph, 5)) {
        std::vector<Field> t = decode(f->bytes);
        int64_t n = 1;
        for (const Field* d : fields(t, 1)) n *= static_cast<int64_t>(d->varint);
        const uint64_t type = one(t, 2).varint;
        ASSERT_TRUE(type == 1 || type == 7) << type;
        EXPECT_EQ(static_cast<int64_t>(one(t, 9).bytes.size()), n * (type == 1 ? 4 : 8));
        EXPECT_TRUE(names.insert(one(t, 8).bytes).second) << one(t, 8).bytes;
        elements += n;
    }
    EXPECT_EQ(fields(graph, 5).size(), info.initializers);
    EXPECT_EQ(elements, info.initializer_elements);
    // Initializers of parameters are named by their (sanitised) keys: the folded stem conv's
    // "stem.0.conv+bn.weight" and the unchanged official ones alike.
    int keyed = 0;
    for (const Node& n : g.nodes) {
        if (n.op != OpKind::Conv2d && n.op != OpKind::DwConv2d) continue;
        EXPECT_EQ(names.count(onnx_sanitize_name(n.param("weight"))), 1u) << n.param("weight");
        ++keyed;
    }
    EXPECT_GT(keyed, 5);
    EXPECT_EQ(names.count("stem.0.conv_bn.weight"), 1u);

    // Nodes: op types as counted, depth-wise convs are grouped Convs, names from lkc nodes.
    std::map<std::string, int> ops;
    std::set<std::string> node_names;
    int grouped = 0;
    for (const Field* f : fields(graph, 1)) {
        std::vector<Field> n = decode(f->bytes);
        const std::string op = one(n, 4).bytes;
        ++ops[op];
        EXPECT_TRUE(node_names.insert(one(n, 3).bytes).second) << one(n, 3).bytes;
        for (const Field* a : fields(n, 5)) {
            std::vector<Field> at = decode(a->bytes);
            if (one(at, 1).bytes == "group" && one(at, 3).varint > 1) ++grouped;
        }
    }
    EXPECT_EQ(ops, info.op_counts);
    EXPECT_EQ(fields(graph, 1).size(), info.nodes);
    EXPECT_GT(grouped, 0);
    EXPECT_EQ(ops.count("Identity"), 1u) << "the Reorders (x -> x.nchw16c, head.nchw16c -> head)";
    for (const Node& n : g.nodes) {
        if (n.op == OpKind::Conv2d || n.op == OpKind::DwConv2d) {
            EXPECT_EQ(node_names.count(onnx_sanitize_name(n.name)), 1u) << n.name;
        }
    }
    EXPECT_EQ(onnx_sanitize_name("stages.0.blocks.0.pw1.conv+bn"), "stages.0.blocks.0.pw1.conv_bn");
    EXPECT_EQ(onnx_sanitize_name(""), "_");
}

// ---- every tiny model through ONNX Runtime --------------------------------------------------

passes::CostFn prefer(Op op) {
    return [op](const Workload& w) { return w.op == op ? 0.0 : 1.0; };
}

struct Config {
    const char* name;
    std::function<passes::DeployOptions()> options;  // empty: the train form itself
};

passes::DeployOptions forced(Op op) {
    passes::DeployOptions o;
    o.reparameterize.cost = prefer(op);
    o.reparameterize.sparse_max_density = 1.0;  // every merged kernel is a sparse candidate
    return o;
}

const Config kConfigs[] = {
    {"train", nullptr},
    {"deploy", [] { return passes::DeployOptions{}; }},
    {"deploy_unfused",
     [] {
         passes::DeployOptions o;
         o.fuse = false;
         o.layouts = false;
         return o;
     }},
    {"dense", [] { return forced(Op::DwConv2d); }},
    {"multi", [] { return forced(Op::DwConv2dMulti); }},
    {"sparse", [] { return forced(Op::DwConv2dSparse); }},
    {"shiftwise", [] { return forced(Op::ShiftWise); }},
    {"shiftwise_three_outputs",
     [] {
         passes::DeployOptions o;
         o.reparameterize.shiftwise_fuse = false;
         return o;
     }},
    {"onnx_options", [] { return onnx_deploy_options(); }},
};

class OnnxTiny : public ::testing::TestWithParam<std::tuple<const char*, int>> {};

TEST_P(OnnxTiny, OnnxRuntimeMatchesReference) {
    const std::string model = std::get<0>(GetParam());
    const Config& cfg = kConfigs[std::get<1>(GetParam())];
    Graph train = build_model(model, tiny(2));
    init_weights(train, 42, InitMode::Test);
    Graph g = cfg.options ? passes::deploy(train, cfg.options()) : train;

    const std::string c = cfg.name;
    const std::string family = model_info(model).family;
    if (c == "deploy") EXPECT_EQ(count_op(g, OpKind::Reorder), 2);
    if (c == "multi" && family != "shiftwise") EXPECT_GT(count_op(g, OpKind::DwConv2dMulti), 0);
    if (c == "sparse") EXPECT_GT(count_op(g, OpKind::DwConv2dSparse), 0);
    int fused_sw = 0, plain_sw = 0;
    for (const Node& n : g.nodes) {
        if (n.op == OpKind::ShiftWise) (n.has_param("ah") ? fused_sw : plain_sw) += 1;
    }
    if (family == "shiftwise" && c == "shiftwise") EXPECT_EQ(fused_sw, 2);
    if (family == "shiftwise" && (c == "train" || c == "shiftwise_three_outputs")) {
        EXPECT_EQ(plain_sw, 2);
    }
    if (c == "onnx_options") {
        // Dense-cost forms: multi-branch strips where the merged kernel is mostly zeros.
        EXPECT_EQ(count_op(g, OpKind::DwConv2dSparse), 0);
        EXPECT_EQ(fused_sw, 0);
        const bool strips = family == "slak" || family == "shiftwise";
        EXPECT_EQ(count_op(g, OpKind::DwConv2dMulti) > 0, strips) << family;
    }
    bool epilogues = false;
    for (const Node& n : g.nodes) epilogues = epilogues || !n.attrs.epilogues.empty();
    EXPECT_EQ(epilogues, c != "train" && c != "deploy_unfused");

    const Tensor x = random_f32({2, 3, 32, 32}, 5);
    OnnxExportInfo info;
    OrtRun r = run_onnx_runtime(g, x, &info);
    if (r.skipped)
        GTEST_SKIP() << "onnx / onnxruntime / numpy not importable by python3 (pip install "
                        "onnx onnxruntime numpy): "
                     << r.log;
    ASSERT_EQ(r.shape, (Shape{2, 10})) << r.log;
    const double err = rel_err(reference_logits(g, x), r.y);
    // Also against the train form: the deploy passes' error and the export's together.
    const double err_train = rel_err(reference_logits(train, x), r.y);
    EXPECT_LT(err, 1e-4) << model << " / " << c << "\n" << r.log;
    EXPECT_LT(err_train, 1e-4) << model << " / " << c;
    char buf[64];
    std::snprintf(buf, sizeof buf, "%.3g", err);
    RecordProperty("relative_error", buf);
    std::cout << "[onnx] " << model << " " << c << ": max |ort - ref| / max |ref| = " << buf
              << " (vs train form " << err_train << "), " << info.nodes << " ONNX nodes, "
              << info.initializers << " initializers\n"
              << r.log;
}

INSTANTIATE_TEST_SUITE_P(Families, OnnxTiny,
                         ::testing::Combine(::testing::Values("replknet-test", "slak-test",
                                                              "unireplknet-test", "shiftwise-test"),
                                            ::testing::Range(0, 9)),
                         [](const auto& info) {
                             std::string n = std::get<0>(info.param);
                             for (char& ch : n) {
                                 if (ch == '-') ch = '_';
                             }
                             return n + "_" + kConfigs[std::get<1>(info.param)].name;
                         });

// Full-size models at 224, batch 1, default deploy pipeline: only when LKC_ONNX_FULL_MODELS
// names them ("replknet-31b,slak-t"); minutes of reference executor time each.
TEST(OnnxExport, FullSizeModels) {
    const char* env = std::getenv("LKC_ONNX_FULL_MODELS");
    if (env == nullptr || *env == '\0') GTEST_SKIP() << "set LKC_ONNX_FULL_MODELS=name,name,...";
    std::stringstream list(env);
    std::string name;
    while (std::getline(list, name, ',')) {
        Graph train = build_model(name, ModelOptions{});
        init_weights(train, 7, InitMode::Test);
        const Tensor x = random_f32({1, 3, 224, 224}, 13);
        for (int form = 0; form < 2; ++form) {
            Graph g =
                passes::deploy(train, form == 0 ? passes::DeployOptions{} : onnx_deploy_options());
            OnnxExportInfo info;
            OrtRun r = run_onnx_runtime(g, x, &info);
            if (r.skipped) GTEST_SKIP() << "onnx / onnxruntime / numpy not importable: " << r.log;
            const double err = rel_err(reference_logits(g, x), r.y);
            EXPECT_LT(err, 1e-4) << name;
            std::cout << "[onnx] " << name << " 224 " << (form ? "onnx_deploy_options" : "deploy")
                      << ": " << err << ", " << info.bytes << " bytes, " << info.nodes << " nodes, "
                      << info.initializer_elements << " initializer elements, "
                      << count_op(g, OpKind::DwConv2d) << " dense / "
                      << count_op(g, OpKind::DwConv2dSparse) << " sparse / "
                      << count_op(g, OpKind::DwConv2dMulti) << " multi / "
                      << count_op(g, OpKind::ShiftWise) << " shift-wise depth-wise nodes\n"
                      << r.log;
        }
    }
}

// ---- every op on a hand-built graph ---------------------------------------------------------

int permute(GraphBuilder& b, const std::string& name, int x, std::vector<int> perm) {
    Node p;
    p.op = OpKind::Permute;
    p.name = name;
    p.inputs = {x};
    p.attrs.perm = std::move(perm);
    return b.add1(p);
}

// Every op kind and layout the exporter maps: grouped strided dilated conv, depth-wise with
// stride 2 and dilation, sparse, multi-branch, both shift-wise forms, SE, channel select /
// concat, NHWC channel ops between permutes, NC LayerNorm / BatchNorm / Gemm / Softmax.
Graph every_op_graph() {
    GraphBuilder b("every-op");
    int x = b.input("x", {2, 6, 18, 18});
    Node c;
    c.op = OpKind::Conv2d;
    c.name = "conv";
    c.inputs = {x};
    c.params["weight"] = b.param("conv.weight", {16, 3, 3, 3}, ParamInit::Weight);
    c.params["bias"] = b.param("conv.bias", {16}, ParamInit::Bias);
    c.attrs.stride = 2;
    c.attrs.dilation = 2;
    c.attrs.pad_h = 2;
    c.attrs.pad_w = 1;
    c.attrs.groups = 2;
    int y = b.add1(c);          // [2,16,9,8]
    y = b.batch_norm("bn", y);  // epilogue candidate
    y = b.unary(OpKind::Relu, "relu", y);
    y = b.dwconv("dw", y, 5, 3, 1, 2, true);                // dilation 2
    const int r = b.dwconv("dw_s2", y, 3, 3, 2, 1, false);  // [2,16,5,4]
    // Sparse 7x7 with a random mask.
    Node sp;
    sp.op = OpKind::DwConv2dSparse;
    sp.name = "sparse";
    sp.inputs = {y};
    sp.params["weight"] = b.param("sparse.weight", {16, 1, 7, 7}, ParamInit::Weight);
    sp.params["bias"] = b.param("sparse.bias", {16}, ParamInit::Bias);
    Tensor mask(DType::U8, {16, 1, 7, 7});
    for (int64_t i = 0; i < mask.numel(); ++i) mask.data<uint8_t>()[i] = (i * 7919 % 5) < 2;
    sp.consts["mask"] = b.constant("sparse.mask", mask);
    int s = b.add1(sp);
    // Multi-branch 7x3 + 3x7 + 3x3 dilated 2.
    Node mb;
    mb.op = OpKind::DwConv2dMulti;
    mb.name = "multi";
    mb.inputs = {s};
    mb.params["weight0"] = b.param("multi.weight0", {16, 1, 7, 3}, ParamInit::Weight);
    mb.params["weight1"] = b.param("multi.weight1", {16, 1, 3, 7}, ParamInit::Weight);
    mb.params["weight2"] = b.param("multi.weight2", {16, 1, 3, 3}, ParamInit::Weight);
    mb.params["bias"] = b.param("multi.bias", {16}, ParamInit::Bias);
    mb.attrs.dilations = {1, 1, 2};
    int m = b.add1(mb);
    m = b.binary(OpKind::Add, "residual", m, y);
    m = b.unary(OpKind::Gelu, "gelu", m);
    // Shift-wise K=7 k=3 (nk = 3) on 16 channels, three outputs and fused.
    std::map<std::string, Tensor> tabs =
        make_example_inputs(parse_workload("shiftwise:fwd:n2c16h9w8:K7k3g2"), 3);
    Node sw;
    sw.op = OpKind::ShiftWise;
    sw.name = "sw";
    sw.inputs = {m};
    sw.attrs.big_k = 7;
    sw.attrs.small_k = 3;
    sw.params["weight0"] = b.param("sw.weight0", {48, 1, 3, 3}, ParamInit::Weight);
    sw.params["weight1"] = b.param("sw.weight1", {16, 3, 3, 3}, ParamInit::Weight);
    sw.consts["slot_h"] = b.constant("sw.slot_h", tabs.at("slot_h"));
    sw.consts["slot_v"] = b.constant("sw.slot_v", tabs.at("slot_v"));
    sw.consts["ident"] = b.constant("sw.ident", tabs.at("ident"));
    std::vector<int> ys = b.add(sw, {"yh", "yv", "ys"});
    int t = b.binary(OpKind::Add, "sw.add1", ys[0], ys[1]);
    t = b.binary(OpKind::Add, "sw.add2", t, ys[2]);
    Node fs = sw;
    fs.name = "swf";
    fs.inputs = {t};
    fs.params.clear();
    fs.params["weight0"] = b.param("swf.weight", {16, 3, 3, 3}, ParamInit::Weight);
    fs.params["ah"] = b.param("swf.ah", {16}, ParamInit::Ones);
    fs.params["av"] = b.param("swf.av", {16}, ParamInit::Ones);
    fs.params["as"] = b.param("swf.as", {16}, ParamInit::Ones);
    fs.params["bias"] = b.param("swf.bias", {16}, ParamInit::Bias);
    fs.consts["slot_h"] = b.constant("swf.slot_h", tabs.at("slot_h"));
    fs.consts["slot_v"] = b.constant("swf.slot_v", tabs.at("slot_v"));
    fs.consts["ident"] = b.constant("swf.ident", tabs.at("ident"));
    t = b.add1(fs);
    // SE: pool (keepdims) -> 1x1 conv -> ReLU -> 1x1 conv -> sigmoid -> mul.
    int p = b.avg_pool("se.pool", t, true);
    p = b.conv2d("se.fc1", p, 4, 1, 1, 1, 0, 0, 1, true);
    p = b.unary(OpKind::Relu, "se.relu", p);
    p = b.conv2d("se.fc2", p, 16, 1, 1, 1, 0, 0, 1, true);
    p = b.unary(OpKind::Sigmoid, "se.sigmoid", p);
    t = b.binary(OpKind::Mul, "se.mul", t, p);
    // Channel select (reversed first 10) and concat with the last 6.
    Tensor i1(DType::I32, {10}), i2(DType::I32, {6});
    for (int i = 0; i < 10; ++i) i1.data<int32_t>()[i] = 9 - i;
    for (int i = 0; i < 6; ++i) i2.data<int32_t>()[i] = 10 + i;
    int s1 = b.channel_select("select1", t, b.constant("select1.index", i1));
    int s2 = b.channel_select("select2", t, b.constant("select2.index", i2));
    t = b.concat("concat", {s1, s2});
    // NCHW LayerNorm and Linear (1x1 Conv), layer scale, Softmax on channels.
    t = b.layer_norm("ln", t);
    t = b.linear("fc", t, 16, true);
    t = b.scale("ls", "ls.gamma", t);
    t = b.unary(OpKind::Softmax, "softmax", t);
    // Channels last: LayerNorm, Linear (MatMul), GRN, BatchNorm, Scale, Softmax.
    int h = permute(b, "to_nhwc", t, {0, 2, 3, 1});
    h = b.layer_norm("nhwc.ln", h);
    h = b.linear("nhwc.fc", h, 12, true);
    h = b.grn("nhwc.grn", h);
    h = b.batch_norm("nhwc.bn", h);
    h = b.scale("nhwc.ls", "nhwc.ls.gamma", h);
    h = b.unary(OpKind::Softmax, "nhwc.softmax", h);
    h = permute(b, "to_nchw", h, {0, 3, 1, 2});
    h = b.grn("grn", h, 1e-6, false);
    // Head: pool -> NC LayerNorm, BatchNorm, Gemm, Softmax, Gemm; also Flatten of the pool.
    int v = b.avg_pool("pool", h, false);
    v = b.layer_norm("head.ln", v);
    v = b.batch_norm("head.bn", v);
    v = b.linear("head.fc1", v, 12, false);
    v = b.unary(OpKind::Softmax, "head.softmax", v);
    int k = b.flatten("flatten", b.avg_pool("pool2", h, true));
    v = b.binary(OpKind::Add, "head.add", v, k);
    const int q = b.linear("head.fc_r", b.avg_pool("pool_r", r, false), 12, false);
    v = b.binary(OpKind::Add, "head.add_r", v, q);
    v = b.linear("head", v, 7, true);
    b.output(v);
    return b.finish();
}

TEST(OnnxExport, EveryOpMatchesReference) {
    Graph g = every_op_graph();
    init_weights(g, 9, InitMode::Test);
    std::set<OpKind> kinds;
    for (const Node& n : g.nodes) kinds.insert(n.op);
    EXPECT_EQ(kinds.size(), 21u) << "every op kind except Reorder (covered by the fused variant)";
    const Tensor x = random_f32({2, 6, 18, 18}, 11);
    // As built; then with epilogues (BN, ReLU, GELU, residual, layer scale on their producers)
    // and blocked layouts (Reorders).
    passes::DeployOptions fused;
    fused.fold_bn = false;
    fused.reparam = false;
    const Graph variants[2] = {g, passes::deploy(g, fused)};
    for (int i = 0; i < 2; ++i) {
        const Graph& gv = variants[i];
        if (i == 1) {
            int eps = 0;
            for (const Node& n : gv.nodes) eps += static_cast<int>(n.attrs.epilogues.size());
            EXPECT_GE(eps, 4);
            EXPECT_GE(count_op(gv, OpKind::Reorder), 2);
        }
        OrtRun r = run_onnx_runtime(gv, x);
        if (r.skipped) GTEST_SKIP() << "onnx / onnxruntime / numpy not importable: " << r.log;
        ASSERT_EQ(r.shape, (Shape{2, 7})) << r.log;
        const double err = rel_err(reference_logits(gv, x), r.y);
        EXPECT_LT(err, 1e-4) << (i ? "fused" : "as built") << "\n" << r.log;
        std::cout << "[onnx] every-op " << (i ? "fused" : "as built") << ": " << err << "\n"
                  << r.log;
    }
}

// ---- unexportable graphs and atomic writes --------------------------------------------------

TEST(OnnxExport, Errors) {
    // An op kind without a mapping: GraphError naming the node.
    Graph g = build_model("replknet-test", tiny(1));
    init_weights(g, 1, InitMode::Test);
    Graph bad = g;
    bad.nodes[3].op = static_cast<OpKind>(99);
    try {
        (void)onnx_model_bytes(bad);
        ADD_FAILURE() << "no error for an unknown op kind";
    } catch (const GraphError& e) {
        const std::string m = e.what();
        EXPECT_NE(m.find("node '" + bad.nodes[3].name + "'"), std::string::npos) << m;
        EXPECT_NE(m.find("no ONNX mapping"), std::string::npos) << m;
    }
    // A shape-only graph: the parameter without a value is named.
    Graph shapes = build_model("slak-test", tiny(1));
    try {
        (void)onnx_model_bytes(shapes);
        ADD_FAILURE() << "no error for a graph without values";
    } catch (const GraphError& e) {
        const std::string m = e.what();
        EXPECT_NE(m.find("has no value"), std::string::npos) << m;
        EXPECT_NE(m.find("node 'downsample_layers.0.0'"), std::string::npos) << m;
        EXPECT_NE(m.find("parameter 'downsample_layers.0.0."), std::string::npos) << m;
    }
    // A non-float tensor.
    Graph f16 = g;
    f16.tensors[static_cast<size_t>(f16.nodes[2].outputs[0])].dtype = DType::F16;
    EXPECT_THROW((void)onnx_model_bytes(f16), GraphError);
    // Bad shift-wise tables: the node and the table are named.
    Graph sw = build_model("shiftwise-test", tiny(1));
    init_weights(sw, 1, InitMode::Test);
    for (const Node& n : sw.nodes) {
        if (n.op != OpKind::ShiftWise) continue;
        Tensor t(DType::I32, sw.constants.at(n.constant("slot_h")).shape());
        sw.constants[n.constant("slot_h")] = t;  // all zeros: not a permutation
        try {
            (void)onnx_model_bytes(sw);
            ADD_FAILURE() << "no error for bad shift tables";
        } catch (const GraphError& e) {
            const std::string m = e.what();
            EXPECT_NE(m.find("node '" + n.name + "'"), std::string::npos) << m;
            EXPECT_NE(m.find("slot_h"), std::string::npos) << m;
        }
        break;
    }

    // Atomic: a failed export leaves an existing file as it was and no temp file behind.
    const std::string dir = temp_dir();
    const std::string path = dir + "/m.onnx";
    { std::ofstream(path) << "old"; }
    EXPECT_THROW(export_onnx(bad, path), GraphError);
    EXPECT_EQ(read_file(path), "old");
    export_onnx(g, path);
    EXPECT_EQ(read_file(path), onnx_model_bytes(g));
    const std::string ls = dir + "/list.txt";
    const std::string cmd = "ls -a '" + dir + "' > '" + ls + "'";
    ASSERT_EQ(std::system(cmd.c_str()), 0);
    EXPECT_EQ(read_file(ls), ".\n..\nlist.txt\nm.onnx\n");
    // A directory that does not exist: the path is named.
    try {
        export_onnx(g, dir + "/no/such/dir/m.onnx");
        ADD_FAILURE() << "no error for a missing directory";
    } catch (const std::runtime_error& e) {
        EXPECT_NE(std::string(e.what()).find(dir + "/no/such/dir/m.onnx"), std::string::npos)
            << e.what();
    }
    EXPECT_FALSE(exists(dir + "/no"));
    remove_dir(dir);
}

}  // namespace
}  // namespace graph
}  // namespace lkc
