#include "runtime/safetensors.h"

#include <errno.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <limits>
#include <nlohmann/json.hpp>
#include <set>
#include <utility>
#include <vector>

// Tensor bytes are copied verbatim; the file format is little-endian.
static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__,
              "safetensors I/O assumes a little-endian host");

namespace lkc {

namespace {

using json = nlohmann::json;

constexpr const char* kMetadataKey = "__metadata__";
constexpr size_t kMaxJsonDepth = 64;
constexpr size_t kMaxQuotedChars = 200;

[[noreturn]] void fail(const std::string& what, const std::string& msg) {
    throw SafetensorsError(what + ": " + msg);
}

// Single-quoted name for messages; control bytes escaped, very long names shortened.
std::string quote(const std::string& s) {
    static const char* kHex = "0123456789abcdef";
    std::string r = "'";
    size_t n = std::min(s.size(), kMaxQuotedChars);
    for (size_t i = 0; i < n; ++i) {
        unsigned char c = static_cast<unsigned char>(s[i]);
        if (c < 0x20 || c == 0x7f) {
            r += "\\x";
            r += kHex[c >> 4];
            r += kHex[c & 15];
        } else {
            r += static_cast<char>(c);
        }
    }
    if (n < s.size()) r += "...";
    return r + "'";
}

// Compact JSON text of a value for messages, shortened if long.
std::string show(const json& j) {
    std::string s = j.dump(-1, ' ', false, json::error_handler_t::replace);
    if (s.size() > kMaxQuotedChars) s = s.substr(0, kMaxQuotedChars) + "...";
    return s;
}

std::string a_json(const json& j) {
    std::string t = j.type_name();
    return (t == "object" || t == "array") ? "an " + t : "a " + t;
}

std::string tensor_ctx(const std::string& what, const std::string& name) {
    return what + ": tensor " + quote(name);
}

uint64_t read_u64_le(const uint8_t* p) {
    uint64_t v = 0;
    for (int i = 7; i >= 0; --i) v = (v << 8) | p[i];
    return v;
}

// Non-negative JSON integer to u64; false for anything else.
bool get_u64(const json& j, uint64_t* out) {
    if (j.is_number_unsigned()) {
        *out = j.get<uint64_t>();
        return true;
    }
    if (j.is_number_integer()) {
        int64_t v = j.get<int64_t>();
        if (v < 0) return false;
        *out = static_cast<uint64_t>(v);
        return true;
    }
    return false;
}

std::string all_dtype_names() {
    static const DType kAll[] = {DType::F32, DType::F16, DType::BF16, DType::F64, DType::I8,
                                 DType::U8,  DType::I16, DType::I32,  DType::I64, DType::Bool};
    std::string r;
    for (DType t : kAll) {
        if (!r.empty()) r += ", ";
        r += dtype_name(t);
    }
    return r;
}

struct Entry {
    std::string name;
    DType dtype = DType::F32;
    Shape shape;
    uint64_t begin = 0;
    uint64_t end = 0;
};

struct Header {
    std::vector<Entry> entries;  // in name order
    std::map<std::string, std::string> metadata;
    uint64_t data_start = 0;  // absolute file offset of the data section
    uint64_t data_size = 0;
};

// Validates the 8-byte prefix against the file size; returns the header length N.
uint64_t check_prefix(const uint8_t* prefix, uint64_t file_size, const std::string& what) {
    if (file_size < 8) {
        fail(what, "file is " + std::to_string(file_size) +
                       " bytes, shorter than the 8-byte little-endian header length prefix");
    }
    uint64_t n = read_u64_le(prefix);
    if (n == 0) fail(what, "header length is 0; expected a JSON object of at least 2 bytes");
    if (n > kSafetensorsMaxHeaderBytes) {
        fail(what, "header length " + std::to_string(n) + " exceeds the 100 MiB cap (" +
                       std::to_string(kSafetensorsMaxHeaderBytes) + " bytes)");
    }
    if (n > file_size - 8) {
        fail(what, "header length " + std::to_string(n) + " exceeds the " +
                       std::to_string(file_size - 8) +
                       " bytes that follow the 8-byte length prefix (file truncated?)");
    }
    uint64_t data_size = file_size - 8 - n;
    if (data_size > kSafetensorsMaxDataBytes) {
        fail(what, "data section is " + std::to_string(data_size) +
                       " bytes, exceeds the 64 GiB cap (" +
                       std::to_string(kSafetensorsMaxDataBytes) + " bytes)");
    }
    return n;
}

// Parses JSON, rejecting duplicate keys at any level and absurd nesting.
json parse_json(const uint8_t* text, size_t n, const std::string& what) {
    struct Frame {
        bool is_object = false;
        std::string name;  // key this container sits under ("" for the top level)
        std::set<std::string> keys;
        std::string last_key;
    };
    std::vector<Frame> stack;
    auto callback = [&](int /*depth*/, json::parse_event_t ev, json& parsed) -> bool {
        switch (ev) {
            case json::parse_event_t::object_start:
            case json::parse_event_t::array_start: {
                if (stack.size() >= kMaxJsonDepth) {
                    fail(what, "header JSON nests deeper than " + std::to_string(kMaxJsonDepth) +
                                   " levels; a safetensors header needs 3");
                }
                Frame f;
                f.is_object = ev == json::parse_event_t::object_start;
                if (!stack.empty()) {
                    f.name = stack.back().is_object ? stack.back().last_key : stack.back().name;
                }
                stack.push_back(std::move(f));
                break;
            }
            case json::parse_event_t::object_end:
            case json::parse_event_t::array_end:
                if (!stack.empty()) stack.pop_back();
                break;
            case json::parse_event_t::key: {
                if (stack.empty() || !parsed.is_string()) break;
                Frame& f = stack.back();
                const std::string& k = parsed.get_ref<const std::string&>();
                if (!f.keys.insert(k).second) {
                    if (stack.size() == 1) {
                        if (k == kMetadataKey) fail(what, "duplicate __metadata__ key in header");
                        fail(what, "duplicate tensor name " + quote(k) +
                                       " in header; expected each name once");
                    }
                    if (stack.size() == 2 && f.name == kMetadataKey) {
                        fail(what, "__metadata__: duplicate key " + quote(k));
                    }
                    if (stack.size() == 2) {
                        fail(tensor_ctx(what, f.name), "duplicate field " + quote(k));
                    }
                    fail(what,
                         "duplicate key " + quote(k) + " in header JSON under " + quote(f.name));
                }
                f.last_key = k;
                break;
            }
            case json::parse_event_t::value:
                break;
        }
        return true;
    };
    try {
        return json::parse(text, text + n, callback, /*allow_exceptions=*/true);
    } catch (const json::exception& e) {
        fail(what, std::string("header is not valid UTF-8 JSON: ") + e.what());
    }
}

Entry parse_entry(const std::string& name, const json& v, uint64_t data_size,
                  const std::string& what) {
    const std::string ctx = tensor_ctx(what, name);
    if (!v.is_object()) {
        fail(ctx, "entry is " + a_json(v) +
                      ", expected an object with fields dtype, shape, data_offsets");
    }
    for (const char* f : {"dtype", "shape", "data_offsets"}) {
        if (!v.contains(f)) {
            fail(ctx, std::string("missing field '") + f +
                          "'; expected fields dtype, shape, data_offsets");
        }
    }
    for (const auto& kv : v.items()) {
        const std::string& k = kv.key();
        if (k != "dtype" && k != "shape" && k != "data_offsets") {
            fail(ctx, "unexpected field " + quote(k) +
                          "; expected only fields dtype, shape, data_offsets");
        }
    }

    Entry e;
    e.name = name;

    const json& dt = v.at("dtype");
    if (!dt.is_string()) {
        fail(ctx, "field 'dtype' is " + a_json(dt) + " " + show(dt) +
                      ", expected a string such as \"F32\"");
    }
    const std::string& dts = dt.get_ref<const std::string&>();
    if (!dtype_from_name(dts, &e.dtype)) {
        fail(ctx, "field 'dtype': unknown or unsupported dtype " + quote(dts) +
                      "; expected one of " + all_dtype_names());
    }

    const json& sh = v.at("shape");
    if (!sh.is_array()) {
        fail(ctx, "field 'shape' is " + a_json(sh) + " " + show(sh) +
                      ", expected an array of non-negative integers");
    }
    if (sh.size() > static_cast<size_t>(kSafetensorsMaxRank)) {
        fail(ctx, "field 'shape' has rank " + std::to_string(sh.size()) + ", expected at most " +
                      std::to_string(kSafetensorsMaxRank));
    }
    for (size_t i = 0; i < sh.size(); ++i) {
        uint64_t d = 0;
        if (!get_u64(sh[i], &d) || d > static_cast<uint64_t>(std::numeric_limits<int64_t>::max())) {
            fail(ctx, "field 'shape' element " + std::to_string(i) + " is " + show(sh[i]) +
                          ", expected a non-negative integer (shape " + show(sh) + ")");
        }
        e.shape.push_back(static_cast<int64_t>(d));
    }
    int64_t numel = 0;
    try {
        numel = shape_numel(e.shape);
    } catch (const std::invalid_argument&) {
        fail(ctx, "field 'shape' " + shape_to_string(e.shape) +
                      ": element count overflows a 64-bit integer");
    }

    const json& off = v.at("data_offsets");
    if (!off.is_array() || off.size() != 2 || !get_u64(off[0], &e.begin) ||
        !get_u64(off[1], &e.end)) {
        fail(ctx, "field 'data_offsets' is " + show(off) +
                      ", expected an array of two non-negative integers [begin, end]");
    }
    const std::string offs =
        "data_offsets [" + std::to_string(e.begin) + ", " + std::to_string(e.end) + "]";
    if (e.begin > e.end) fail(ctx, offs + ": begin is greater than end");
    if (e.end > data_size) {
        fail(ctx,
             offs + ": end is beyond the data section of " + std::to_string(data_size) + " bytes");
    }
    const uint64_t span = e.end - e.begin;
    const uint64_t esize = dtype_size(e.dtype);
    const uint64_t un = static_cast<uint64_t>(numel);
    const bool fits = un <= std::numeric_limits<uint64_t>::max() / esize;
    if (!fits || un * esize != span) {
        std::string needs =
            fits ? std::to_string(un * esize)
                 : std::to_string(un) + " x " + std::to_string(esize) + " (more than 2^64)";
        fail(ctx, offs + " span " + std::to_string(span) + " bytes but dtype " + dts + " shape " +
                      shape_to_string(e.shape) + " needs " + needs);
    }
    return e;
}

// Validates the header text (n bytes) of a file of `file_size` bytes.
Header parse_header(const uint8_t* text, uint64_t n, uint64_t file_size, const std::string& what) {
    Header h;
    h.data_start = 8 + n;
    h.data_size = file_size - 8 - n;
    if (text[0] != '{') {
        static const char* kHex = "0123456789abcdef";
        std::string got = "0x";
        got += kHex[text[0] >> 4];
        got += kHex[text[0] & 15];
        fail(what, "header starts with byte " + got + ", expected '{' (a JSON object)");
    }
    // nlohmann::json stops at a NUL byte and ignores the rest; valid JSON never contains one.
    if (const void* z = std::memchr(text, 0, static_cast<size_t>(n))) {
        fail(what, "header contains a NUL byte at offset " +
                       std::to_string(static_cast<const uint8_t*>(z) - text) +
                       "; expected UTF-8 JSON padded with spaces");
    }
    json j = parse_json(text, static_cast<size_t>(n), what);
    if (!j.is_object()) fail(what, "header is " + a_json(j) + ", expected a JSON object");

    for (const auto& kv : j.items()) {
        const std::string& name = kv.key();
        const json& v = kv.value();
        if (name == kMetadataKey) {
            if (!v.is_object()) {
                fail(what, "__metadata__ is " + a_json(v) +
                               ", expected an object mapping strings to strings");
            }
            for (const auto& m : v.items()) {
                if (!m.value().is_string()) {
                    fail(what, "__metadata__ key " + quote(m.key()) + ": value is " +
                                   a_json(m.value()) + " " + show(m.value()) +
                                   ", expected a string");
                }
                h.metadata[m.key()] = m.value().get<std::string>();
            }
            continue;
        }
        h.entries.push_back(parse_entry(name, v, h.data_size, what));
    }

    // Gaps are tolerated; overlaps are not. Zero-byte tensors occupy nothing.
    std::vector<const Entry*> order;
    for (const Entry& e : h.entries) {
        if (e.end > e.begin) order.push_back(&e);
    }
    std::sort(order.begin(), order.end(), [](const Entry* a, const Entry* b) {
        return a->begin != b->begin ? a->begin < b->begin : a->end < b->end;
    });
    for (size_t i = 1; i < order.size(); ++i) {
        const Entry& a = *order[i - 1];
        const Entry& b = *order[i];
        if (a.end > b.begin) {
            fail(what, "tensors " + quote(a.name) + " data_offsets [" + std::to_string(a.begin) +
                           ", " + std::to_string(a.end) + "] and " + quote(b.name) +
                           " data_offsets [" + std::to_string(b.begin) + ", " +
                           std::to_string(b.end) + "] overlap; expected disjoint byte ranges");
        }
    }
    return h;
}

std::string errno_text(int err) { return std::strerror(err); }

// Reads exactly n bytes at offset off.
void pread_full(int fd, void* buf, uint64_t n, uint64_t off, const std::string& what,
                const std::string& purpose) {
    auto* p = static_cast<uint8_t*>(buf);
    while (n > 0) {
        size_t chunk = static_cast<size_t>(std::min<uint64_t>(n, uint64_t{1} << 30));
        ssize_t r = ::pread(fd, p, chunk, static_cast<off_t>(off));
        if (r < 0) {
            const int err = errno;
            if (err == EINTR) continue;
            fail(what, "read error while reading " + purpose + ": " + errno_text(err));
        }
        if (r == 0) fail(what, "file ended early while reading " + purpose + " (truncated?)");
        p += r;
        off += static_cast<uint64_t>(r);
        n -= static_cast<uint64_t>(r);
    }
}

struct Fd {
    int fd = -1;
    ~Fd() {
        if (fd >= 0) ::close(fd);
    }
};

// Header JSON text, space padded to a multiple of 8, plus the data layout in name order.
struct Layout {
    std::string header;
    uint64_t data_size = 0;
};

Layout make_layout(const std::map<std::string, Tensor>& tensors,
                   const std::map<std::string, std::string>& metadata, const std::string& what) {
    nlohmann::ordered_json h = nlohmann::ordered_json::object();
    if (!metadata.empty()) {
        nlohmann::ordered_json m = nlohmann::ordered_json::object();
        for (const auto& kv : metadata) m[kv.first] = kv.second;
        h[kMetadataKey] = std::move(m);
    }
    uint64_t off = 0;
    for (const auto& kv : tensors) {
        const std::string& name = kv.first;
        const Tensor& t = kv.second;
        if (name == kMetadataKey) {
            fail(what, "tensor name '__metadata__' is reserved for the metadata object");
        }
        if (t.empty()) {
            fail(tensor_ctx(what, name), "has no storage (default-constructed Tensor)");
        }
        if (t.ndim() > kSafetensorsMaxRank) {
            fail(tensor_ctx(what, name), "shape " + shape_to_string(t.shape()) + " has rank " +
                                             std::to_string(t.ndim()) + ", expected at most " +
                                             std::to_string(kSafetensorsMaxRank));
        }
        uint64_t nbytes = t.nbytes();
        if (nbytes > kSafetensorsMaxDataBytes - off) {
            fail(what, "total tensor data exceeds the 64 GiB cap at tensor " + quote(name));
        }
        nlohmann::ordered_json e = nlohmann::ordered_json::object();
        e["dtype"] = dtype_name(t.dtype());
        e["shape"] = t.shape();
        e["data_offsets"] = {off, off + nbytes};
        h[name] = std::move(e);
        off += nbytes;
    }
    Layout l;
    l.data_size = off;
    try {
        l.header = h.dump();
    } catch (const nlohmann::json::exception& e) {
        fail(what, std::string("tensor name or metadata is not valid UTF-8: ") + e.what());
    }
    l.header.append((8 - l.header.size() % 8) % 8, ' ');
    if (l.header.size() > kSafetensorsMaxHeaderBytes) {
        fail(what, "header would be " + std::to_string(l.header.size()) +
                       " bytes, exceeding the 100 MiB cap");
    }
    return l;
}

void append_u64_le(std::string* s, uint64_t v) {
    for (int i = 0; i < 8; ++i) s->push_back(static_cast<char>((v >> (8 * i)) & 0xff));
}

void write_full(int fd, const void* buf, uint64_t n, const std::string& what) {
    const auto* p = static_cast<const uint8_t*>(buf);
    while (n > 0) {
        size_t chunk = static_cast<size_t>(std::min<uint64_t>(n, uint64_t{1} << 30));
        ssize_t r = ::write(fd, p, chunk);
        if (r < 0) {
            const int err = errno;
            if (err == EINTR) continue;
            fail(what, "write failed: " + errno_text(err));
        }
        if (r == 0) fail(what, "write made no progress");
        p += r;
        n -= static_cast<uint64_t>(r);
    }
}

std::string dir_of(const std::string& path) {
    size_t slash = path.rfind('/');
    if (slash == std::string::npos) return ".";
    if (slash == 0) return "/";
    return path.substr(0, slash);
}

}  // namespace

SafetensorsFile parse_safetensors(const uint8_t* data, size_t size, const std::string& what) {
    const uint64_t n = check_prefix(data, size, what);
    Header h = parse_header(data + 8, n, size, what);
    SafetensorsFile f;
    f.metadata = std::move(h.metadata);
    for (Entry& e : h.entries) {
        Tensor t(e.dtype, e.shape);
        if (t.nbytes() > 0) std::memcpy(t.raw(), data + h.data_start + e.begin, t.nbytes());
        f.tensors.emplace(std::move(e.name), std::move(t));
    }
    return f;
}

SafetensorsFile read_safetensors(const std::string& path) {
    Fd fd;
    do {
        fd.fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    } while (fd.fd < 0 && errno == EINTR);
    if (fd.fd < 0) {
        const int err = errno;
        fail(path, "cannot open for reading: " + errno_text(err));
    }
    struct stat st;
    if (::fstat(fd.fd, &st) != 0) {
        const int err = errno;
        fail(path, "cannot stat: " + errno_text(err));
    }
    if (!S_ISREG(st.st_mode)) fail(path, "not a regular file");
    const uint64_t size = static_cast<uint64_t>(st.st_size);

    uint8_t prefix[8] = {};
    if (size >= 8) pread_full(fd.fd, prefix, 8, 0, path, "the header length");
    const uint64_t n = check_prefix(prefix, size, path);
    std::vector<uint8_t> text(static_cast<size_t>(n));
    pread_full(fd.fd, text.data(), n, 8, path, "the JSON header");
    Header h = parse_header(text.data(), n, size, path);
    text = std::vector<uint8_t>();

    SafetensorsFile f;
    f.metadata = std::move(h.metadata);
    for (Entry& e : h.entries) {
        Tensor t(e.dtype, e.shape);
        if (t.nbytes() > 0) {
            pread_full(fd.fd, t.raw(), t.nbytes(), h.data_start + e.begin, path,
                       "tensor " + quote(e.name));
        }
        f.tensors.emplace(std::move(e.name), std::move(t));
    }
    return f;
}

std::string serialize_safetensors(const std::map<std::string, Tensor>& tensors,
                                  const std::map<std::string, std::string>& metadata,
                                  const std::string& what) {
    Layout l = make_layout(tensors, metadata, what);
    std::string out;
    out.reserve(8 + l.header.size() + l.data_size);
    append_u64_le(&out, l.header.size());
    out += l.header;
    for (const auto& kv : tensors) {
        out.append(static_cast<const char*>(kv.second.raw()), kv.second.nbytes());
    }
    return out;
}

void write_safetensors(const std::string& path, const std::map<std::string, Tensor>& tensors,
                       const std::map<std::string, std::string>& metadata) {
    // Validate and lay out before touching the file system.
    Layout l = make_layout(tensors, metadata, path);
    const std::string tmp = path + ".tmp." + std::to_string(::getpid());

    // Removes the temp file unless the rename happened.
    struct TempGuard {
        std::string tmp;
        int fd = -1;
        bool created = false;
        bool committed = false;
        ~TempGuard() {
            if (fd >= 0) ::close(fd);
            if (created && !committed) ::unlink(tmp.c_str());
        }
    } guard;
    guard.tmp = tmp;

    do {
        guard.fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    } while (guard.fd < 0 && errno == EINTR);
    if (guard.fd < 0) {
        const int err = errno;
        fail(path, "cannot create temp file " + quote(tmp) + ": " + errno_text(err));
    }
    guard.created = true;

    std::string head;
    append_u64_le(&head, l.header.size());
    head += l.header;
    write_full(guard.fd, head.data(), head.size(), path);
    for (const auto& kv : tensors) write_full(guard.fd, kv.second.raw(), kv.second.nbytes(), path);

    if (::fsync(guard.fd) != 0) {
        const int err = errno;
        fail(path, "fsync of temp file failed: " + errno_text(err));
    }
    int fd = guard.fd;
    guard.fd = -1;
    if (::close(fd) != 0) {
        const int err = errno;
        fail(path, "close of temp file failed: " + errno_text(err));
    }
    if (::rename(tmp.c_str(), path.c_str()) != 0) {
        const int err = errno;
        fail(path, "cannot rename temp file " + quote(tmp) + " into place: " + errno_text(err));
    }
    guard.committed = true;

    // Best effort: make the rename durable.
    int dfd = ::open(dir_of(path).c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd >= 0) {
        ::fsync(dfd);
        ::close(dfd);
    }
}

}  // namespace lkc
