#include <dirent.h>
#include <fcntl.h>
#include <gtest/gtest.h>
#include <stdlib.h>
#include <unistd.h>

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <initializer_list>
#include <iterator>
#include <string>
#include <vector>

#include "runtime/safetensors.h"

namespace lkc {
namespace {

namespace fs = std::filesystem;

const char* const kWhat = "x.safetensors";

// 8-byte little-endian length prefix + header + data.
std::string make_file(const std::string& header, const std::string& data = "") {
    std::string out;
    uint64_t n = header.size();
    for (int i = 0; i < 8; ++i) out.push_back(static_cast<char>((n >> (8 * i)) & 0xff));
    return out + header + data;
}

std::string make_prefix(uint64_t n) {
    std::string out;
    for (int i = 0; i < 8; ++i) out.push_back(static_cast<char>((n >> (8 * i)) & 0xff));
    return out;
}

SafetensorsFile parse(const std::string& bytes) {
    return parse_safetensors(reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size(), kWhat);
}

// Message of the SafetensorsError thrown by parsing `bytes`; any other exception fails the test.
std::string parse_error(const std::string& bytes) {
    try {
        parse(bytes);
    } catch (const SafetensorsError& e) {
        return e.what();
    }
    ADD_FAILURE() << "expected a SafetensorsError";
    return "";
}

#define EXPECT_HAS(msg, sub)                                 \
    EXPECT_NE(std::string(msg).find(sub), std::string::npos) \
        << "message:  " << (msg) << "\nexpected: " << (sub)

// Parses `bytes`, expects an error starting with the file name and containing every substring.
void expect_error(const std::string& bytes, std::initializer_list<const char*> subs) {
    std::string msg = parse_error(bytes);
    EXPECT_EQ(msg.rfind(std::string(kWhat) + ": ", 0), 0u) << "message: " << msg;
    for (const char* s : subs) EXPECT_HAS(msg, s);
}

std::string entry(const std::string& dtype, const std::string& shape, const std::string& offsets) {
    return R"({"dtype":")" + dtype + R"(","shape":)" + shape + R"(,"data_offsets":)" + offsets +
           "}";
}

std::string bytes_of(const Tensor& t) {
    return std::string(static_cast<const char*>(t.raw()), t.nbytes());
}

class SafetensorsFileTest : public ::testing::Test {
  protected:
    void SetUp() override {
        std::string tmpl = (fs::temp_directory_path() / "lkc_st_XXXXXX").string();
        ASSERT_NE(::mkdtemp(tmpl.data()), nullptr);
        dir_ = tmpl;
    }
    void TearDown() override {
        std::error_code ec;
        fs::remove_all(dir_, ec);
    }
    std::string path(const std::string& name) const { return (fs::path(dir_) / name).string(); }
    std::vector<std::string> listing() const {
        std::vector<std::string> names;
        for (const auto& e : fs::directory_iterator(dir_)) names.push_back(e.path().filename());
        std::sort(names.begin(), names.end());
        return names;
    }
    std::string slurp(const std::string& p) const {
        std::ifstream in(p, std::ios::binary);
        return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
    }

    std::string dir_;
};

std::map<std::string, Tensor> sample_tensors() {
    std::map<std::string, Tensor> m;
    Tensor w(DType::F32, {2, 3});
    for (int i = 0; i < 6; ++i) w.data<float>()[i] = 0.5f * i - 1.0f;
    m["conv.weight"] = w;
    Tensor idx(DType::I32, {4});
    for (int i = 0; i < 4; ++i) idx.data<int32_t>()[i] = -7 + 1000 * i;
    m["idx"] = idx;
    Tensor nbt(DType::I64, {});
    nbt.data<int64_t>()[0] = int64_t{1} << 40;
    m["bn.num_batches_tracked"] = nbt;
    m["empty"] = Tensor(DType::F32, {0, 5});
    Tensor h(DType::F16, {3});
    h.data<uint16_t>()[0] = 0x3c00;
    h.data<uint16_t>()[1] = 0xc000;
    h.data<uint16_t>()[2] = 0x7bff;
    m["half"] = h;
    Tensor b(DType::BF16, {1, 1, 2});
    b.data<uint16_t>()[0] = 0x3f80;
    b.data<uint16_t>()[1] = 0x4049;
    m["bf"] = b;
    Tensor d(DType::F64, {2});
    d.data<double>()[0] = 3.25;
    d.data<double>()[1] = -1e300;
    m["d"] = d;
    Tensor u(DType::U8, {3});
    u.data<uint8_t>()[2] = 255;
    m["u8"] = u;
    Tensor flag(DType::Bool, {2});
    flag.data<uint8_t>()[1] = 1;
    m["flag"] = flag;
    Tensor s8(DType::I8, {1});
    s8.data<int8_t>()[0] = -128;
    m["s8"] = s8;
    Tensor s16(DType::I16, {1, 1, 1, 1, 1, 1, 1, 1});
    s16.data<uint16_t>()[0] = 0x8001;
    m["rank8"] = s16;
    return m;
}

void expect_same(const std::map<std::string, Tensor>& a, const std::map<std::string, Tensor>& b) {
    ASSERT_EQ(a.size(), b.size());
    for (const auto& kv : a) {
        auto it = b.find(kv.first);
        ASSERT_NE(it, b.end()) << kv.first;
        EXPECT_EQ(kv.second.dtype(), it->second.dtype()) << kv.first;
        EXPECT_EQ(kv.second.shape(), it->second.shape()) << kv.first;
        EXPECT_EQ(bytes_of(kv.second), bytes_of(it->second)) << kv.first;
    }
}

// ---- round trips ----

TEST_F(SafetensorsFileTest, RoundTripSeveralDtypesAndMetadata) {
    auto tensors = sample_tensors();
    std::map<std::string, std::string> meta = {{"format", "pt"}, {"note", "k=13 \"quoted\" ü"}};
    write_safetensors(path("m.safetensors"), tensors, meta);
    SafetensorsFile f = read_safetensors(path("m.safetensors"));
    expect_same(tensors, f.tensors);
    EXPECT_EQ(f.metadata, meta);

    const Tensor& nbt = f.tensors.at("bn.num_batches_tracked");
    EXPECT_EQ(nbt.ndim(), 0);
    EXPECT_EQ(nbt.numel(), 1);
    EXPECT_EQ(nbt.data<int64_t>()[0], int64_t{1} << 40);
    const Tensor& empty = f.tensors.at("empty");
    EXPECT_EQ(empty.shape(), (Shape{0, 5}));
    EXPECT_EQ(empty.numel(), 0);
    EXPECT_FALSE(empty.empty());
    EXPECT_EQ(f.tensors.at("conv.weight").data<float>()[5], 1.5f);

    // The in-memory image equals the file, and parsing it gives the same result.
    std::string image = serialize_safetensors(tensors, meta);
    EXPECT_EQ(image, slurp(path("m.safetensors")));
    SafetensorsFile g = parse(image);
    expect_same(tensors, g.tensors);
    EXPECT_EQ(g.metadata, meta);
}

TEST_F(SafetensorsFileTest, RoundTripWithoutMetadataAndNoTensors) {
    write_safetensors(path("a.safetensors"), {});
    SafetensorsFile f = read_safetensors(path("a.safetensors"));
    EXPECT_TRUE(f.tensors.empty());
    EXPECT_TRUE(f.metadata.empty());
    EXPECT_EQ(slurp(path("a.safetensors")), make_file("{}      "));
}

TEST(Safetensors, WriterLayoutIsByteExact) {
    std::map<std::string, Tensor> m;
    Tensor b(DType::F32, {2});
    b.data<float>()[0] = 1.0f;
    b.data<float>()[1] = -2.0f;
    m["b"] = b;
    Tensor a(DType::I64, {});
    a.data<int64_t>()[0] = 7;
    m["a"] = a;
    std::string header = R"({"__metadata__":{"format":"pt"},)"
                         R"("a":{"dtype":"I64","shape":[],"data_offsets":[0,8]},)"
                         R"("b":{"dtype":"F32","shape":[2],"data_offsets":[8,16]}})";
    while (header.size() % 8) header += ' ';
    std::string data(
        "\x07\0\0\0\0\0\0\0"
        "\x00\x00\x80\x3f"
        "\x00\x00\x00\xc0",
        16);
    EXPECT_EQ(serialize_safetensors(m, {{"format", "pt"}}), make_file(header, data));
}

TEST(Safetensors, ParsesHandBuiltFile) {
    // Header length 0x6c = 108 bytes, written out byte by byte.
    // clang-format off
    const uint8_t bytes[] = {
        0x6c, 0, 0, 0, 0, 0, 0, 0,
        '{', '"', 'w', '"', ':', '{', '"', 'd', 't', 'y', 'p', 'e', '"', ':', '"', 'I', '1', '6',
        '"', ',', '"', 's', 'h', 'a', 'p', 'e', '"', ':', '[', '2', ',', '1', ']', ',', '"', 'd',
        'a', 't', 'a', '_', 'o', 'f', 'f', 's', 'e', 't', 's', '"', ':', '[', '4', ',', '8', ']',
        '}', ',', '"', 'z', '"', ':', '{', '"', 'd', 't', 'y', 'p', 'e', '"', ':', '"', 'U', '8',
        '"', ',', '"', 's', 'h', 'a', 'p', 'e', '"', ':', '[', '0', ']', ',', '"', 'd', 'a', 't',
        'a', '_', 'o', 'f', 'f', 's', 'e', 't', 's', '"', ':', '[', '0', ',', '0', ']', '}', '}',
        // data: 4 bytes of gap, then w = {0x0201, 0xfffe}
        0xaa, 0xbb, 0xcc, 0xdd, 0x01, 0x02, 0xfe, 0xff,
    };
    // clang-format on
    ASSERT_EQ(sizeof(bytes), 8u + 0x6c + 8);
    SafetensorsFile f = parse_safetensors(bytes, sizeof(bytes), kWhat);
    ASSERT_EQ(f.tensors.size(), 2u);
    const Tensor& w = f.tensors.at("w");
    EXPECT_EQ(w.dtype(), DType::I16);
    EXPECT_EQ(w.shape(), (Shape{2, 1}));
    EXPECT_EQ(w.data<uint16_t>()[0], 0x0201);
    EXPECT_EQ(w.data<uint16_t>()[1], 0xfffe);
    const Tensor& z = f.tensors.at("z");
    EXPECT_EQ(z.dtype(), DType::U8);
    EXPECT_EQ(z.numel(), 0);
    EXPECT_TRUE(f.metadata.empty());
}

TEST(Safetensors, AcceptsUnpaddedHeaderTrailingSpacesGapsAndTrailingData) {
    std::string h = "{\"a\":" + entry("F32", "[1]", "[0,4]") +
                    ",\"b\":" + entry("F32", "[1]", "[8,12]") + "}   \n ";
    SafetensorsFile f = parse(make_file(h, std::string(16, '\x01')));
    EXPECT_EQ(f.tensors.size(), 2u);
}

TEST(Safetensors, ZeroSizeTensorInsideAnotherIsNotAnOverlap) {
    std::string h =
        "{\"a\":" + entry("F32", "[2]", "[0,8]") + ",\"e\":" + entry("F32", "[0]", "[4,4]") + "}";
    EXPECT_EQ(parse(make_file(h, std::string(8, '\0'))).tensors.size(), 2u);
}

// ---- framing errors ----

TEST(SafetensorsErrors, FileShorterThanPrefix) {
    expect_error("", {"file is 0 bytes", "8-byte"});
    expect_error(std::string("\x05\0\0\0\0", 5), {"file is 5 bytes", "shorter than the 8-byte"});
}

TEST(SafetensorsErrors, HeaderLengthZero) {
    expect_error(make_prefix(0) + "{}", {"header length is 0"});
}

TEST(SafetensorsErrors, HeaderLengthOverCap) {
    expect_error(make_prefix((uint64_t{100} << 20) + 1) + "{}",
                 {"header length 104857601", "100 MiB"});
    expect_error(make_prefix(~uint64_t{0}) + "{}", {"100 MiB"});
}

TEST(SafetensorsErrors, HeaderLengthBeyondFile) {
    expect_error(make_prefix(10) + "{}", {"header length 10", "exceeds the 2 bytes"});
}

TEST_F(SafetensorsFileTest, DataSectionOverCap) {
    // A sparse file slightly over 64 GiB; only the header is ever read.
    std::string p = path("huge.safetensors");
    {
        std::ofstream out(p, std::ios::binary);
        out << make_file("{}      ");
    }
    if (::truncate(p.c_str(), (int64_t{64} << 30) + 1024) != 0) GTEST_SKIP() << "no sparse files";
    try {
        read_safetensors(p);
        ADD_FAILURE() << "expected a SafetensorsError";
    } catch (const SafetensorsError& e) {
        EXPECT_HAS(e.what(), p);
        EXPECT_HAS(e.what(), "64 GiB");
    }
}

TEST(SafetensorsErrors, HeaderMustStartWithBrace) {
    expect_error(make_file(" {}"), {"header starts with byte 0x20", "expected '{'"});
    expect_error(make_file("[1]"), {"0x5b", "'{'"});
}

TEST(SafetensorsErrors, HeaderNotJson) {
    expect_error(make_file("{\"a\":"), {"header is not valid UTF-8 JSON"});
    expect_error(make_file("{} x"), {"not valid UTF-8 JSON"});
    expect_error(make_file("{\"a\x01\":1}"), {"not valid UTF-8 JSON"});
    expect_error(make_file(std::string("{}\0\0", 4)), {"NUL byte at offset 2"});
    expect_error(make_file(std::string("{}\0{\"w\":5}", 10)), {"NUL byte at offset 2"});
    expect_error(make_file("{\"n\":1e999}"), {"not valid UTF-8 JSON"});
}

TEST(SafetensorsErrors, HeaderNotUtf8) {
    expect_error(make_file("{\"w\xff\":{}}"), {"not valid UTF-8 JSON"});
    expect_error(make_file("{\"\xc3\x28\":{}}"), {"not valid UTF-8 JSON"});
}

TEST(SafetensorsErrors, DeepNesting) {
    std::string h = "{\"w\":" + std::string(1000, '[') + std::string(1000, ']') + "}";
    expect_error(make_file(h), {"nests deeper"});
}

// ---- entry errors ----

TEST(SafetensorsErrors, EntryNotObject) {
    expect_error(make_file("{\"w\":5}"), {"tensor 'w'", "entry is a number", "expected an object"});
    expect_error(make_file("{\"w\":[]}"), {"tensor 'w'", "entry is an array"});
}

TEST(SafetensorsErrors, MissingField) {
    expect_error(make_file(R"({"w":{"dtype":"F32","shape":[1]}})"),
                 {"tensor 'w'", "missing field 'data_offsets'"});
    expect_error(make_file(R"({"w":{"shape":[1],"data_offsets":[0,4]}})"),
                 {"tensor 'w'", "missing field 'dtype'"});
    expect_error(make_file(R"({"w":{"dtype":"F32","data_offsets":[0,4]}})"),
                 {"tensor 'w'", "missing field 'shape'"});
}

TEST(SafetensorsErrors, ExtraField) {
    expect_error(make_file(R"({"w":{"dtype":"F32","shape":[1],"data_offsets":[0,4],"foo":1}})",
                           std::string(4, '\0')),
                 {"tensor 'w'", "unexpected field 'foo'", "dtype, shape, data_offsets"});
}

TEST(SafetensorsErrors, UnknownDtype) {
    expect_error(make_file("{\"w\":" + entry("F8_E4M3", "[1]", "[0,1]") + "}", "x"),
                 {"tensor 'w'", "dtype 'F8_E4M3'", "expected one of F32"});
    expect_error(make_file("{\"w\":" + entry("f32", "[1]", "[0,4]") + "}", "xxxx"),
                 {"tensor 'w'", "'f32'"});
    expect_error(make_file(R"({"w":{"dtype":4,"shape":[1],"data_offsets":[0,4]}})", "xxxx"),
                 {"tensor 'w'", "field 'dtype' is a number", "expected a string"});
}

TEST(SafetensorsErrors, BadShape) {
    auto with_shape = [](const std::string& shape) {
        return make_file("{\"w\":" + entry("F32", shape, "[0,4]") + "}", "xxxx");
    };
    expect_error(with_shape("4"),
                 {"tensor 'w'", "field 'shape' is a number", "array of non-negative"});
    expect_error(with_shape("{}"), {"tensor 'w'", "field 'shape' is an object"});
    expect_error(with_shape("[1,-1]"),
                 {"tensor 'w'", "shape' element 1 is -1", "non-negative integer"});
    expect_error(with_shape("[1.0]"), {"tensor 'w'", "element 0 is 1.0"});
    expect_error(with_shape("[\"1\"]"), {"tensor 'w'", "element 0"});
    expect_error(with_shape("[[1]]"), {"tensor 'w'", "element 0"});
    expect_error(with_shape("[18446744073709551615]"), {"tensor 'w'", "element 0"});
    expect_error(with_shape("[1,1,1,1,1,1,1,1,1]"), {"tensor 'w'", "rank 9", "at most 8"});
    expect_error(with_shape("[4294967296,4294967296]"), {"tensor 'w'", "overflows"});
}

TEST(SafetensorsErrors, BadDataOffsets) {
    auto with_offsets = [](const std::string& offsets) {
        return make_file("{\"w\":" + entry("F32", "[1]", offsets) + "}", "xxxx");
    };
    for (const char* bad : {"4", "[]", "[0]", "[0,4,8]", "[-1,4]", "[0,4.0]", "[\"0\",4]", "null",
                            "[0,99999999999999999999999]"}) {
        SCOPED_TRACE(bad);
        expect_error(with_offsets(bad),
                     {"tensor 'w'", "field 'data_offsets'", "two non-negative integers"});
    }
    expect_error(with_offsets("[4,0]"), {"tensor 'w'", "data_offsets [4, 0]", "begin is greater"});
    expect_error(with_offsets("[4,8]"),
                 {"tensor 'w'", "data_offsets [4, 8]", "beyond the data section of 4 bytes"});
}

TEST(SafetensorsErrors, SpanMismatchMessage) {
    std::string h = "{\"w\":" + entry("F32", "[2,3]", "[0,100]") + "}";
    EXPECT_EQ(parse_error(make_file(h, std::string(100, '\0'))),
              "x.safetensors: tensor 'w': data_offsets [0, 100] span 100 bytes but dtype F32 "
              "shape [2, 3] needs 24");
    std::string h2 = "{\"w\":" + entry("I64", "[4611686018427387904]", "[0,8]") + "}";
    expect_error(make_file(h2, std::string(8, '\0')), {"tensor 'w'", "needs", "more than 2^64"});
}

TEST(SafetensorsErrors, Overlap) {
    std::string h =
        "{\"a\":" + entry("F32", "[2]", "[0,8]") + ",\"b\":" + entry("F32", "[2]", "[4,12]") + "}";
    expect_error(make_file(h, std::string(12, '\0')),
                 {"'a' data_offsets [0, 8]", "'b' data_offsets [4, 12]", "overlap"});
    std::string same =
        "{\"a\":" + entry("F32", "[1]", "[0,4]") + ",\"b\":" + entry("I32", "[1]", "[0,4]") + "}";
    expect_error(make_file(same, std::string(4, '\0')), {"'a'", "'b'", "overlap"});
}

TEST(SafetensorsErrors, BadMetadata) {
    expect_error(make_file(R"({"__metadata__":["a"]})"), {"__metadata__ is an array", "string"});
    expect_error(make_file(R"({"__metadata__":{"format":"pt","epoch":3}})"),
                 {"__metadata__ key 'epoch'", "value is a number", "expected a string"});
    expect_error(make_file(R"({"__metadata__":{"nested":{}}})"), {"__metadata__ key 'nested'"});
}

TEST(SafetensorsErrors, DuplicateNames) {
    std::string e = entry("F32", "[1]", "[0,4]");
    expect_error(make_file("{\"w\":" + e + ",\"w\":" + e + "}", "xxxx"),
                 {"duplicate tensor name 'w'"});
    expect_error(make_file(R"({"__metadata__":{},"__metadata__":{}})"), {"duplicate __metadata__"});
    expect_error(make_file(R"({"__metadata__":{"k":"a","k":"b"}})"),
                 {"__metadata__", "duplicate key 'k'"});
    expect_error(
        make_file(R"({"w":{"dtype":"F32","dtype":"I32","shape":[1],"data_offsets":[0,4]}})",
                  "xxxx"),
        {"tensor 'w'", "duplicate field 'dtype'"});
}

TEST(SafetensorsErrors, NamesAreEscapedInMessages) {
    expect_error(make_file("{\"a\\nb\":5}"), {"tensor 'a\\x0ab'"});
}

// ---- reader / writer file handling ----

TEST_F(SafetensorsFileTest, ReadErrorsNameThePath) {
    try {
        read_safetensors(path("missing.safetensors"));
        ADD_FAILURE() << "expected a SafetensorsError";
    } catch (const SafetensorsError& e) {
        EXPECT_HAS(e.what(), path("missing.safetensors") + ": cannot open");
    }
    {
        std::ofstream out(path("bad.safetensors"), std::ios::binary);
        out << make_file("{\"w\":5}");
    }
    try {
        read_safetensors(path("bad.safetensors"));
        ADD_FAILURE() << "expected a SafetensorsError";
    } catch (const SafetensorsError& e) {
        EXPECT_HAS(e.what(), path("bad.safetensors") + ": tensor 'w'");
    }
    try {
        read_safetensors(dir_);
        ADD_FAILURE() << "expected a SafetensorsError";
    } catch (const SafetensorsError& e) {
        EXPECT_HAS(e.what(), dir_);
    }
}

TEST_F(SafetensorsFileTest, AtomicWriteLeavesNoTempFile) {
    write_safetensors(path("m.safetensors"), sample_tensors());
    EXPECT_EQ(listing(), std::vector<std::string>{"m.safetensors"});
    // Overwriting replaces the content.
    std::map<std::string, Tensor> one = {{"x", Tensor(DType::I32, {1})}};
    write_safetensors(path("m.safetensors"), one);
    EXPECT_EQ(listing(), std::vector<std::string>{"m.safetensors"});
    expect_same(one, read_safetensors(path("m.safetensors")).tensors);
}

TEST_F(SafetensorsFileTest, WriteIntoMissingDirectoryThrowsAndLeavesNothing) {
    std::string p = path("nope/m.safetensors");
    try {
        write_safetensors(p, sample_tensors());
        ADD_FAILURE() << "expected a SafetensorsError";
    } catch (const SafetensorsError& e) {
        EXPECT_HAS(e.what(), p);
        EXPECT_HAS(e.what(), "temp file");
    }
    EXPECT_TRUE(listing().empty());
}

TEST_F(SafetensorsFileTest, FailedRenameRemovesTempFile) {
    // The target is a non-empty directory, so the final rename fails after the data is written.
    fs::create_directory(path("target"));
    { std::ofstream(path("target/keep")) << "x"; }
    EXPECT_THROW(write_safetensors(path("target"), sample_tensors()), SafetensorsError);
    EXPECT_EQ(listing(), std::vector<std::string>{"target"});
    EXPECT_TRUE(fs::is_directory(path("target")));
}

TEST_F(SafetensorsFileTest, InvalidInputKeepsExistingFile) {
    std::map<std::string, Tensor> good = {{"x", Tensor(DType::F32, {2})}};
    write_safetensors(path("m.safetensors"), good);
    const std::string before = slurp(path("m.safetensors"));

    std::map<std::string, Tensor> bad_utf8 = {{"w\xff", Tensor(DType::F32, {1})}};
    EXPECT_THROW(write_safetensors(path("m.safetensors"), bad_utf8), SafetensorsError);
    std::map<std::string, Tensor> reserved = {{"__metadata__", Tensor(DType::F32, {1})}};
    EXPECT_THROW(write_safetensors(path("m.safetensors"), reserved), SafetensorsError);
    std::map<std::string, Tensor> no_storage = {{"w", Tensor()}};
    try {
        write_safetensors(path("m.safetensors"), no_storage);
        ADD_FAILURE() << "expected a SafetensorsError";
    } catch (const SafetensorsError& e) {
        EXPECT_HAS(e.what(), "tensor 'w'");
    }
    EXPECT_THROW(write_safetensors(path("m.safetensors"), good, {{"k", "\xc3"}}), SafetensorsError);
    std::map<std::string, Tensor> rank9 = {{"r", Tensor(DType::U8, Shape(9, 1))}};
    EXPECT_THROW(write_safetensors(path("m.safetensors"), rank9), SafetensorsError);

    EXPECT_EQ(listing(), std::vector<std::string>{"m.safetensors"});
    EXPECT_EQ(slurp(path("m.safetensors")), before);
}

}  // namespace
}  // namespace lkc
