#include "runtime/tuning_records.h"

#include <errno.h>
#include <fcntl.h>
#include <pwd.h>
#include <stdlib.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <ctime>
#include <filesystem>
#include <limits>
#include <set>
#include <utility>

#include "runtime/device_info.h"

#ifndef LKC_VERSION
#define LKC_VERSION "0.0.0"
#endif

namespace lkc {

namespace {

using json = nlohmann::json;
using ordered_json = nlohmann::ordered_json;
namespace fs = std::filesystem;

constexpr size_t kMaxShown = 120;
constexpr const char* kStatuses[] = {"ok", "compile_error", "timeout", "wrong_result", "run_error"};
constexpr const char* kStatusList = "ok, compile_error, timeout, wrong_result or run_error";
constexpr const char* kDeviceKinds = "cpu, opencl or cuda";

std::string errno_text(int err) { return std::strerror(err); }

// Compact JSON of a value for messages, shortened if long.
std::string show(const json& j) {
    std::string s = j.dump(-1, ' ', false, json::error_handler_t::replace);
    if (s.size() > kMaxShown) s = s.substr(0, kMaxShown) + "...";
    return s;
}

std::string quote(const std::string& s) {
    std::string r;
    for (char ch : s.substr(0, kMaxShown)) {
        unsigned char c = static_cast<unsigned char>(ch);
        r += (c < 0x20 || c == 0x7f) ? '?' : ch;
    }
    if (s.size() > kMaxShown) r += "...";
    return "'" + r + "'";
}

bool name_char(char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' ||
           c == '.' || c == '-';
}

bool valid_name(const std::string& s) {
    return !s.empty() && std::all_of(s.begin(), s.end(), name_char);
}

bool valid_value(const std::string& s) {
    if (s.empty()) return false;
    for (char ch : s) {
        unsigned char c = static_cast<unsigned char>(ch);
        if (c <= 0x20 || c == 0x7f || c == ',' || c == '=' || c == ':') return false;
    }
    return true;
}

// Validation of one JSON document. Messages are "<prefix><field word> '<field>': <what>": "field
// 'median_ms': ..." for records, "<source>: entries[2].median_ms: ..." for distilled tables.
class Checker {
  public:
    explicit Checker(std::string prefix, std::string field_word)
        : prefix_(std::move(prefix)), field_word_(std::move(field_word)) {}

    [[noreturn]] void fail(const std::string& field, const std::string& what) const {
        std::string where = field_word_.empty() ? field : field_word_ + " '" + field + "'";
        throw RecordError(prefix_ + where + ": " + what);
    }

    const json& member(const json& obj, const std::string& field, const std::string& key) const {
        auto it = obj.find(key);
        if (it == obj.end()) fail(field, "missing");
        return *it;
    }

    std::string string(const json& v, const std::string& field) const {
        if (!v.is_string()) fail(field, "expected a string, got " + show(v));
        return v.get<std::string>();
    }

    std::string nonempty_string(const json& v, const std::string& field) const {
        std::string s = string(v, field);
        if (s.empty()) fail(field, "expected a non-empty string");
        return s;
    }

    long long integer(const json& v, const std::string& field, long long lo, long long hi) const {
        if (!v.is_number_integer()) fail(field, "expected an integer, got " + show(v));
        if (v.is_number_unsigned() && v.get<uint64_t>() > static_cast<uint64_t>(hi)) {
            fail(field, "expected an integer in " + std::to_string(lo) + ".." + std::to_string(hi) +
                            ", got " + show(v));
        }
        long long x = v.get<long long>();
        if (x < lo || x > hi) {
            fail(field, "expected an integer in " + std::to_string(lo) + ".." + std::to_string(hi) +
                            ", got " + show(v));
        }
        return x;
    }

    // Finite number; `positive`: > 0, else >= 0.
    double number(const json& v, const std::string& field, bool positive) const {
        const char* want = positive ? "expected a number > 0" : "expected a number >= 0";
        if (!v.is_number()) fail(field, std::string(want) + ", got " + show(v));
        double x = v.get<double>();
        if (!std::isfinite(x) || (positive ? !(x > 0) : !(x >= 0))) {
            fail(field, std::string(want) + ", got " + show(v));
        }
        return x;
    }

    const json& object(const json& v, const std::string& field) const {
        if (!v.is_object()) fail(field, "expected an object, got " + show(v));
        return v;
    }

    // The format field: 1, or a message saying what `thing` is too new or invalid.
    int format(const json& v, const std::string& field, const std::string& thing) const {
        if (!v.is_number_integer()) fail(field, "expected the integer 1, got " + show(v));
        const bool too_big = v.is_number_unsigned()
                                 ? v.get<uint64_t>() > static_cast<uint64_t>(kRecordFormat)
                                 : v.get<long long>() > kRecordFormat;
        if (too_big) {
            fail(field, thing + " format " + v.dump() + " is newer than this lkc (" +
                            std::to_string(kRecordFormat) + ")");
        }
        if (v.get<long long>() != kRecordFormat) {
            fail(field, thing + " format " + v.dump() + " is not valid; expected " +
                            std::to_string(kRecordFormat));
        }
        return kRecordFormat;
    }

    // Canonical workload string.
    std::string workload(const json& v, const std::string& field) const {
        std::string s = string(v, field);
        try {
            return to_string(parse_workload(s));
        } catch (const WorkloadError& e) {
            fail(field, e.what());
        }
    }

    // {"kind","id",...}; returns the id.
    std::string device(const json& v, const std::string& field) const {
        object(v, field);
        std::string kind = string(member(v, field + ".kind", "kind"), field + ".kind");
        if (kind != "cpu" && kind != "opencl" && kind != "cuda") {
            fail(field + ".kind",
                 "unknown device kind " + quote(kind) + "; expected " + kDeviceKinds);
        }
        return nonempty_string(member(v, field + ".id", "id"), field + ".id");
    }

    Schedule schedule(const json& generator, const json& params, const std::string& gfield,
                      const std::string& pfield) const {
        Schedule s;
        s.generator = string(generator, gfield);
        if (!valid_name(s.generator)) {
            fail(gfield, "expected a non-empty name of [A-Za-z0-9_.-], got " + show(generator));
        }
        object(params, pfield);
        for (auto it = params.begin(); it != params.end(); ++it) {
            const std::string f = pfield + "." + it.key();
            if (!valid_name(it.key())) {
                fail(f, "parameter key is not a non-empty name of [A-Za-z0-9_.-]");
            }
            std::string v = string(it.value(), f);
            if (!valid_value(v)) {
                fail(f,
                     "expected a non-empty value without ',', '=', ':', whitespace or control "
                     "characters, got " +
                         show(it.value()));
            }
            s.params[it.key()] = v;
        }
        return s;
    }

  private:
    std::string prefix_;
    std::string field_word_;
};

// "YYYY-MM-DDTHH:MM:SS[.f+]Z"
bool valid_timestamp(const std::string& s) {
    if (s.size() < 20 || s.back() != 'Z') return false;
    const char* form = "dddd-dd-ddTdd:dd:dd";
    for (size_t i = 0; i < 19; ++i) {
        if (form[i] == 'd' ? !(s[i] >= '0' && s[i] <= '9') : s[i] != form[i]) return false;
    }
    if (s.size() > 20) {
        if (s[19] != '.' || s.size() < 22) return false;
        for (size_t i = 20; i + 1 < s.size(); ++i) {
            if (!(s[i] >= '0' && s[i] <= '9')) return false;
        }
    }
    auto num = [&](size_t pos, size_t len) { return std::stoi(s.substr(pos, len)); };
    int mo = num(5, 2), d = num(8, 2), h = num(11, 2), mi = num(14, 2), se = num(17, 2);
    return mo >= 1 && mo <= 12 && d >= 1 && d <= 31 && h <= 23 && mi <= 59 && se <= 60;
}

ordered_json ordered_device(const json& device, const std::string& id) {
    ordered_json o;
    o["kind"] = device.value("kind", "");
    o["id"] = id;
    if (device.contains("name")) o["name"] = device["name"];
    for (auto it = device.begin(); it != device.end(); ++it) {
        if (it.key() != "kind" && it.key() != "id" && it.key() != "name") o[it.key()] = it.value();
    }
    return o;
}

ordered_json record_ordered(const TuningRecord& r) {
    ordered_json o;
    o["format"] = r.format;
    o["lkc_version"] = r.lkc_version;
    o["timestamp"] = r.timestamp;
    o["workload"] = r.workload;
    o["device"] = ordered_device(r.device.is_object() ? r.device : json::object(), r.device_id);
    ordered_json sched;
    sched["generator"] = r.schedule.generator;
    sched["params"] = ordered_json::object();
    for (const auto& kv : r.schedule.params) sched["params"][kv.first] = kv.second;
    o["schedule"] = std::move(sched);
    o["kernel"] = r.kernel;
    o["status"] = r.status;
    o["median_ms"] = std::isfinite(r.median_ms) ? ordered_json(r.median_ms) : ordered_json();
    o["times_ms"] = ordered_json::array();
    for (double t : r.times_ms)
        o["times_ms"].push_back(std::isfinite(t) ? ordered_json(t) : ordered_json());
    o["compile_s"] = std::isfinite(r.compile_s) ? ordered_json(r.compile_s) : ordered_json();
    o["error"] = r.error;
    o["tuner"] = ordered_json(r.tuner);
    return o;
}

// ---- file helpers ----

struct Fd {
    int fd = -1;
    ~Fd() {
        if (fd >= 0) ::close(fd);
    }
};

void lock_file(int fd, int op, const std::string& path, const char* what) {
    while (::flock(fd, op) != 0) {
        if (errno == EINTR) continue;
        const int err = errno;
        throw RecordError(path + ": cannot " + what + ": " + errno_text(err));
    }
}

void write_all(int fd, const char* data, size_t n, const std::string& path) {
    while (n > 0) {
        ssize_t w = ::write(fd, data, n);
        if (w < 0) {
            if (errno == EINTR) continue;
            const int err = errno;
            throw RecordError(path + ": write failed: " + errno_text(err));
        }
        data += w;
        n -= static_cast<size_t>(w);
    }
}

void make_parent_dirs(const std::string& path) {
    fs::path parent = fs::path(path).parent_path();
    if (parent.empty()) return;
    std::error_code ec;
    fs::create_directories(parent, ec);
    if (ec) {
        throw RecordError(path + ": cannot create directory '" + parent.string() +
                          "': " + ec.message());
    }
}

// Whole file into `out`; throws RecordError naming `path`.
void read_all(int fd, const std::string& path, std::string* out) {
    char buf[1 << 16];
    for (;;) {
        ssize_t n = ::read(fd, buf, sizeof buf);
        if (n < 0) {
            if (errno == EINTR) continue;
            const int err = errno;
            throw RecordError(path + ": read failed: " + errno_text(err));
        }
        if (n == 0) break;
        out->append(buf, static_cast<size_t>(n));
    }
}

// Opens a regular file for reading; ENOENT gives -1 if `missing_ok`, every other failure throws.
int open_for_reading(const std::string& path, bool missing_ok) {
    int fd;
    do {
        fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    } while (fd < 0 && errno == EINTR);
    if (fd < 0) {
        const int err = errno;
        if (err == ENOENT && missing_ok) return -1;
        throw RecordError(path + ": cannot open: " + errno_text(err));
    }
    struct stat st;
    if (::fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        ::close(fd);
        throw RecordError(path + ": is not a regular file");
    }
    return fd;
}

// Temp file in the same directory, fsync, rename over `path`, fsync of the directory.
void write_file_atomic(const std::string& path, const std::string& content) {
    make_parent_dirs(path);
    std::string tmpl = path + ".tmp.XXXXXX";
    struct TempGuard {
        std::string tmp;
        int fd = -1;
        bool committed = false;
        ~TempGuard() {
            if (fd >= 0) ::close(fd);
            if (!tmp.empty() && !committed) ::unlink(tmp.c_str());
        }
    } guard;
    int fd = ::mkstemp(tmpl.data());
    if (fd < 0) {
        const int err = errno;
        throw RecordError(path + ": cannot create temp file '" + tmpl + "': " + errno_text(err));
    }
    guard.fd = fd;
    guard.tmp = tmpl;
    ::fchmod(fd, 0644);
    write_all(fd, content.data(), content.size(), path);
    if (::fsync(fd) != 0) {
        const int err = errno;
        throw RecordError(path + ": fsync of temp file failed: " + errno_text(err));
    }
    guard.fd = -1;
    if (::close(fd) != 0) {
        const int err = errno;
        throw RecordError(path + ": close of temp file failed: " + errno_text(err));
    }
    if (::rename(tmpl.c_str(), path.c_str()) != 0) {
        const int err = errno;
        throw RecordError(path + ": cannot rename temp file '" + tmpl +
                          "' into place: " + errno_text(err));
    }
    guard.committed = true;
    fs::path dir = fs::path(path).parent_path();
    int dfd = ::open(dir.empty() ? "." : dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd >= 0) {
        ::fsync(dfd);  // best effort: make the rename durable
        ::close(dfd);
    }
}

}  // namespace

const char* lkc_version() { return LKC_VERSION; }

std::string utc_timestamp_now() {
    std::time_t t = std::time(nullptr);
    std::tm tm;
    ::gmtime_r(&t, &tm);
    char buf[32];
    std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &tm);
    return buf;
}

// ---- schedules ----

bool operator==(const Schedule& a, const Schedule& b) {
    return a.generator == b.generator && a.params == b.params;
}

void validate_schedule(const Schedule& s) {
    if (!valid_name(s.generator)) {
        throw RecordError("schedule generator " + quote(s.generator) +
                          ": expected a non-empty name of [A-Za-z0-9_.-]");
    }
    for (const auto& kv : s.params) {
        if (!valid_name(kv.first)) {
            throw RecordError("schedule parameter key " + quote(kv.first) +
                              ": expected a non-empty name of [A-Za-z0-9_.-]");
        }
        if (!valid_value(kv.second)) {
            throw RecordError("schedule parameter " + kv.first + " value " + quote(kv.second) +
                              ": expected a non-empty value without ',', '=', ':', whitespace "
                              "or control characters");
        }
    }
}

std::string schedule_key(const Schedule& s) {
    validate_schedule(s);
    std::string key = s.generator + ":";
    bool first = true;
    for (const auto& kv : s.params) {
        if (!first) key += ',';
        first = false;
        key += kv.first + "=" + kv.second;
    }
    return key;
}

Schedule parse_schedule_key(const std::string& key) {
    auto fail = [&](const std::string& what) -> void {
        throw RecordError("schedule key " + quote(key) + ": " + what +
                          " (expected <generator>:<k>=<v>,<k>=<v>)");
    };
    size_t colon = key.find(':');
    if (colon == std::string::npos) fail("missing ':' after the generator");
    Schedule s;
    s.generator = key.substr(0, colon);
    if (!valid_name(s.generator)) fail("generator " + quote(s.generator) + " is not a valid name");
    std::string rest = key.substr(colon + 1);
    size_t pos = 0;
    while (pos < rest.size()) {
        size_t comma = rest.find(',', pos);
        if (comma == std::string::npos) comma = rest.size();
        std::string item = rest.substr(pos, comma - pos);
        size_t eq = item.find('=');
        if (eq == std::string::npos) fail("parameter " + quote(item) + " has no '='");
        std::string k = item.substr(0, eq), v = item.substr(eq + 1);
        if (!valid_name(k)) fail("parameter key " + quote(k) + " is not a valid name");
        if (!valid_value(v)) fail("parameter " + k + " has an invalid value " + quote(v));
        if (!s.params.emplace(k, v).second) fail("parameter " + k + " appears twice");
        if (comma == rest.size()) break;
        pos = comma + 1;
        if (pos == rest.size()) fail("trailing ','");
    }
    return s;
}

// ---- records ----

bool is_record_status(const std::string& status) {
    for (const char* s : kStatuses) {
        if (status == s) return true;
    }
    return false;
}

void to_json(json& j, const TuningRecord& r) { j = json(record_ordered(r)); }

void from_json(const json& j, TuningRecord& r) {
    Checker c("", "field");
    if (!j.is_object()) throw RecordError("expected a JSON object, got " + show(j));
    TuningRecord out;
    out.format = c.format(c.member(j, "format", "format"), "format", "record");
    out.lkc_version = c.nonempty_string(c.member(j, "lkc_version", "lkc_version"), "lkc_version");
    out.timestamp = c.string(c.member(j, "timestamp", "timestamp"), "timestamp");
    if (!valid_timestamp(out.timestamp)) {
        c.fail("timestamp",
               "expected UTC time YYYY-MM-DDTHH:MM:SS[.fff]Z, got " + quote(out.timestamp));
    }
    out.workload = c.workload(c.member(j, "workload", "workload"), "workload");
    const json& dev = c.member(j, "device", "device");
    out.device_id = c.device(dev, "device");
    out.device = dev;

    const json& sched = c.object(c.member(j, "schedule", "schedule"), "schedule");
    out.schedule = c.schedule(c.member(sched, "schedule.generator", "generator"),
                              c.member(sched, "schedule.params", "params"), "schedule.generator",
                              "schedule.params");

    out.kernel = c.string(c.member(j, "kernel", "kernel"), "kernel");
    out.status = c.string(c.member(j, "status", "status"), "status");
    if (!is_record_status(out.status)) {
        c.fail("status", "unknown status " + quote(out.status) + "; expected " + kStatusList);
    }
    out.error = c.string(c.member(j, "error", "error"), "error");

    const json& med = c.member(j, "median_ms", "median_ms");
    if (out.status == "ok") {
        if (!med.is_number() || !std::isfinite(med.get<double>()) || !(med.get<double>() > 0)) {
            c.fail("median_ms", "expected a number > 0 for status ok, got " + show(med));
        }
        out.median_ms = med.get<double>();
    } else {
        out.median_ms = med.is_null() ? std::numeric_limits<double>::quiet_NaN()
                                      : c.number(med, "median_ms", false);
    }

    const json& times = c.member(j, "times_ms", "times_ms");
    if (!times.is_array()) c.fail("times_ms", "expected an array of numbers, got " + show(times));
    for (size_t i = 0; i < times.size(); ++i) {
        out.times_ms.push_back(c.number(times[i], "times_ms[" + std::to_string(i) + "]", false));
    }
    out.compile_s = c.number(c.member(j, "compile_s", "compile_s"), "compile_s", false);

    const json& tuner = c.object(c.member(j, "tuner", "tuner"), "tuner");
    if (tuner.contains("seed")) {
        c.integer(tuner["seed"], "tuner.seed", std::numeric_limits<long long>::min(),
                  std::numeric_limits<long long>::max());
    }
    if (tuner.contains("trial")) {
        c.integer(tuner["trial"], "tuner.trial", 0, std::numeric_limits<long long>::max());
    }
    if (tuner.contains("strategy")) c.string(tuner["strategy"], "tuner.strategy");
    out.tuner = tuner;
    r = std::move(out);
}

std::string record_line(const TuningRecord& r) {
    std::string line = record_ordered(r).dump(-1, ' ', false, json::error_handler_t::strict);
    parse_record_line(line);  // validates
    return line;
}

TuningRecord parse_record_line(const std::string& line) {
    json j;
    try {
        j = json::parse(line);
    } catch (const json::parse_error& e) {
        throw RecordError(std::string("not valid JSON: ") + e.what());
    }
    TuningRecord r;
    from_json(j, r);
    return r;
}

void append_record(const std::string& path, const TuningRecord& r) {
    std::string line;
    try {
        line = record_line(r) + "\n";
    } catch (const RecordError& e) {
        throw RecordError(path + ": refusing to append an invalid record: " + e.what());
    } catch (const json::exception& e) {
        throw RecordError(path + ": refusing to append an invalid record: " + e.what());
    }
    make_parent_dirs(path);
    Fd f;
    do {
        f.fd = ::open(path.c_str(), O_RDWR | O_APPEND | O_CREAT | O_CLOEXEC, 0644);
    } while (f.fd < 0 && errno == EINTR);
    if (f.fd < 0) {
        const int err = errno;
        throw RecordError(path + ": cannot open for appending: " + errno_text(err));
    }
    lock_file(f.fd, LOCK_EX, path, "lock (flock LOCK_EX)");
    struct stat st;
    if (::fstat(f.fd, &st) != 0) {
        const int err = errno;
        throw RecordError(path + ": fstat failed: " + errno_text(err));
    }
    if (!S_ISREG(st.st_mode)) throw RecordError(path + ": is not a regular file");
    if (st.st_size > 0) {
        char last = '\n';
        ssize_t n;
        do {
            n = ::pread(f.fd, &last, 1, st.st_size - 1);
        } while (n < 0 && errno == EINTR);
        if (n != 1) {
            const int err = errno;
            throw RecordError(path + ": cannot read the last byte: " + errno_text(err));
        }
        if (last != '\n') line.insert(line.begin(), '\n');  // close a crashed writer's line
    }
    write_all(f.fd, line.data(), line.size(), path);
    if (::fsync(f.fd) != 0) {
        const int err = errno;
        throw RecordError(path + ": fsync failed: " + errno_text(err));
    }
    lock_file(f.fd, LOCK_UN, path, "unlock");
}

RecordsLoad load_records(const std::string& path) {
    RecordsLoad out;
    Fd f;
    f.fd = open_for_reading(path, true);
    if (f.fd < 0) return out;
    std::string text;
    lock_file(f.fd, LOCK_SH, path, "lock (flock LOCK_SH)");
    read_all(f.fd, path, &text);
    lock_file(f.fd, LOCK_UN, path, "unlock");

    size_t pos = 0, lineno = 0;
    while (pos < text.size()) {
        size_t nl = text.find('\n', pos);
        const bool terminated = nl != std::string::npos;
        if (!terminated) nl = text.size();
        std::string line = text.substr(pos, nl - pos);
        pos = nl + 1;
        ++lineno;
        if (!line.empty() && line.back() == '\r') line.pop_back();
        if (line.find_first_not_of(" \t") == std::string::npos) continue;
        ++out.lines;
        try {
            out.records.push_back(parse_record_line(line));
        } catch (const std::exception& e) {
            std::string what = e.what();
            if (!terminated) what = "truncated last line (no newline at end of file): " + what;
            out.problems.push_back(path + ":" + std::to_string(lineno) + ": " + what);
        }
    }
    return out;
}

std::vector<TuningRecord> best_records(const std::vector<TuningRecord>& records) {
    std::map<std::pair<std::string, std::string>, size_t> best;  // (device, workload) -> index
    auto chosen = [&](size_t i) {
        return records[i].tuner.is_object() && records[i].tuner.value("strategy", "") == "chosen";
    };
    for (size_t i = 0; i < records.size(); ++i) {
        const TuningRecord& r = records[i];
        if (r.status != "ok" || !std::isfinite(r.median_ms)) continue;
        auto key = std::make_pair(r.device_id, r.workload);
        auto it = best.find(key);
        if (it == best.end()) {
            best.emplace(key, i);
        } else if (chosen(i)) {
            it->second = i;  // the tuner's decision: the latest one stands
        } else if (!chosen(it->second) && r.median_ms < records[it->second].median_ms) {
            it->second = i;
        }
    }
    std::vector<TuningRecord> out;
    out.reserve(best.size());
    for (const auto& kv : best) out.push_back(records[kv.second]);
    return out;
}

std::vector<std::string> record_device_ids(const std::vector<TuningRecord>& records) {
    std::set<std::string> ids;
    for (const TuningRecord& r : records) ids.insert(r.device_id);
    return std::vector<std::string>(ids.begin(), ids.end());
}

// ---- distilled tables ----

json distill(const std::vector<TuningRecord>& records, const std::string& device_id) {
    struct Counts {
        int trials = 0, failed = 0;
        std::optional<double> default_ms;
    };
    std::map<std::string, Counts> counts;
    const json* device = nullptr;
    for (const TuningRecord& r : records) {
        if (r.device_id != device_id) continue;
        device = &r.device;
        Counts& c = counts[r.workload];
        ++c.trials;
        const bool ok = r.status == "ok" && std::isfinite(r.median_ms);
        if (!ok) ++c.failed;
        const bool is_default =
            r.tuner.is_object() && r.tuner.contains("strategy") && r.tuner["strategy"] == "default";
        if (ok && is_default && (!c.default_ms || r.median_ms < *c.default_ms)) {
            c.default_ms = r.median_ms;
        }
    }
    if (!device) throw RecordError("distill: no records for device '" + device_id + "'");

    json table = json::object();
    table["format"] = kRecordFormat;
    table["lkc_version"] = lkc_version();
    json dev = *device;
    dev["id"] = device_id;
    table["device"] = dev;
    table["entries"] = json::array();
    for (const TuningRecord& b : best_records(records)) {
        if (b.device_id != device_id) continue;
        const Counts& c = counts[b.workload];
        json e = json::object();
        e["workload"] = b.workload;
        e["generator"] = b.schedule.generator;
        e["params"] = json::object();
        for (const auto& kv : b.schedule.params) e["params"][kv.first] = kv.second;
        e["kernel"] = b.kernel;
        e["median_ms"] = b.median_ms;
        e["default_ms"] = c.default_ms ? json(*c.default_ms) : json();
        e["trials"] = c.trials;
        e["failed"] = c.failed;
        table["entries"].push_back(std::move(e));
    }
    return table;
}

DistilledTable distilled_from_json(const json& j, const std::string& source_name) {
    Checker c(source_name + ": ", "");
    if (!j.is_object()) c.fail("table", "expected a JSON object, got " + show(j));
    DistilledTable t;
    t.format = c.format(c.member(j, "format", "format"), "format", "distilled table");
    t.lkc_version = c.nonempty_string(c.member(j, "lkc_version", "lkc_version"), "lkc_version");
    const json& dev = c.member(j, "device", "device");
    t.device_id = c.device(dev, "device");
    t.device = dev;
    const json& entries = c.member(j, "entries", "entries");
    if (!entries.is_array()) c.fail("entries", "expected an array, got " + show(entries));
    std::set<std::string> seen;
    for (size_t i = 0; i < entries.size(); ++i) {
        const std::string f = "entries[" + std::to_string(i) + "]";
        const json& e = c.object(entries[i], f);
        DistilledEntry d;
        d.workload = c.workload(c.member(e, f + ".workload", "workload"), f + ".workload");
        if (!seen.insert(d.workload).second) {
            c.fail(f + ".workload", "duplicate entry for workload '" + d.workload + "'");
        }
        d.schedule =
            c.schedule(c.member(e, f + ".generator", "generator"),
                       c.member(e, f + ".params", "params"), f + ".generator", f + ".params");
        d.kernel = c.string(c.member(e, f + ".kernel", "kernel"), f + ".kernel");
        d.median_ms = c.number(c.member(e, f + ".median_ms", "median_ms"), f + ".median_ms", true);
        const json& def = c.member(e, f + ".default_ms", "default_ms");
        if (!def.is_null()) d.default_ms = c.number(def, f + ".default_ms", true);
        d.trials = static_cast<int>(c.integer(c.member(e, f + ".trials", "trials"), f + ".trials",
                                              1, std::numeric_limits<int>::max()));
        d.failed = static_cast<int>(
            c.integer(c.member(e, f + ".failed", "failed"), f + ".failed", 0, d.trials));
        if (d.failed >= d.trials) {
            c.fail(f + ".failed", "is " + std::to_string(d.failed) + " of " +
                                      std::to_string(d.trials) +
                                      " trials; an entry needs at least one ok trial");
        }
        t.entries.push_back(std::move(d));
    }
    return t;
}

DistilledTable parse_distilled(const std::string& text, const std::string& source_name) {
    json j;
    try {
        j = json::parse(text);
    } catch (const json::parse_error& e) {
        throw RecordError(source_name + ": not valid JSON: " + e.what());
    }
    return distilled_from_json(j, source_name);
}

DistilledTable read_distilled(const std::string& path) {
    Fd f;
    f.fd = open_for_reading(path, false);
    std::string text;
    read_all(f.fd, path, &text);
    return parse_distilled(text, path);
}

void write_distilled(const std::string& path, const json& table) {
    DistilledTable t = distilled_from_json(table, path);
    // Canonical key order for checked-in files: format first, entry fields as documented.
    ordered_json o;
    o["format"] = t.format;
    o["lkc_version"] = t.lkc_version;
    o["device"] = ordered_device(t.device, t.device_id);
    o["entries"] = ordered_json::array();
    for (const DistilledEntry& d : t.entries) {
        ordered_json e;
        e["workload"] = d.workload;
        e["generator"] = d.schedule.generator;
        e["params"] = ordered_json::object();
        for (const auto& kv : d.schedule.params) e["params"][kv.first] = kv.second;
        e["kernel"] = d.kernel;
        e["median_ms"] = d.median_ms;
        e["default_ms"] = d.default_ms ? ordered_json(*d.default_ms) : ordered_json();
        e["trials"] = d.trials;
        e["failed"] = d.failed;
        o["entries"].push_back(std::move(e));
    }
    write_file_atomic(path, o.dump(2) + "\n");
}

std::string distilled_table_path(const std::string& tuned_dir, const std::string& device_id) {
    return (fs::path(tuned_dir) / (device_slug(device_id) + ".json")).string();
}

// ---- selection ----

std::optional<double> workload_distance(const Workload& a, const Workload& b) {
    if (a.op != b.op || a.pass != b.pass || a.dtype != b.dtype || a.stride != b.stride) {
        return std::nullopt;
    }
    const bool dense_kernel = a.op == Op::DwConv2d || a.op == Op::DwConv2dSparse;
    if (dense_kernel && a.dilation != b.dilation) return std::nullopt;
    if (a.op == Op::DwConv2dMulti && a.branches != b.branches) return std::nullopt;
    if (a.op == Op::ShiftWise &&
        (a.big_k != b.big_k || a.small_k != b.small_k || a.groups != b.groups)) {
        return std::nullopt;
    }
    auto term = [](int x, int y) { return std::fabs(std::log2(double(x) / double(y))); };
    double d = term(a.n, b.n) + term(a.c, b.c) + term(a.h, b.h) + term(a.w, b.w);
    if (dense_kernel) d += 2 * (term(a.kh, b.kh) + term(a.kw, b.kw));
    return d;
}

void ScheduleBook::add(const std::string& device_id, const std::string& workload,
                       const Schedule& schedule, const std::string& kernel, double median_ms,
                       const std::string& source) {
    Workload w = parse_workload(workload);
    entries_.push_back(Entry{device_id, to_string(w), w, schedule, kernel, median_ms, source});
}

void ScheduleBook::add_distilled(const DistilledTable& table, const std::string& source) {
    for (const DistilledEntry& e : table.entries) {
        add(table.device_id, e.workload, e.schedule, e.kernel, e.median_ms, source);
    }
}

void ScheduleBook::add_records(const std::vector<TuningRecord>& records,
                               const std::string& source) {
    for (const TuningRecord& r : best_records(records)) {
        add(r.device_id, r.workload, r.schedule, r.kernel, r.median_ms, source);
    }
}

std::optional<TunedMatch> ScheduleBook::lookup(
    const Workload& w, const std::string& device_id,
    const std::function<bool(const Schedule&)>& accept) const {
    const std::string key = to_string(w);
    struct Candidate {
        const Entry* e;
        double distance;
        size_t order;
    };
    std::vector<Candidate> exact, nearest;
    for (size_t i = 0; i < entries_.size(); ++i) {
        const Entry& e = entries_[i];
        if (e.device_id != device_id) continue;
        if (e.workload_str == key) {
            exact.push_back({&e, 0.0, i});
        } else if (std::optional<double> d = workload_distance(w, e.workload)) {
            nearest.push_back({&e, *d, i});
        }
    }
    auto by_rank = [](const Candidate& a, const Candidate& b) {
        if (a.distance != b.distance) return a.distance < b.distance;
        if (a.e->median_ms != b.e->median_ms) return a.e->median_ms < b.e->median_ms;
        return a.order < b.order;
    };
    std::sort(exact.begin(), exact.end(), by_rank);
    std::sort(nearest.begin(), nearest.end(), by_rank);
    for (int pass = 0; pass < 2; ++pass) {
        for (const Candidate& c : pass == 0 ? exact : nearest) {
            if (accept && !accept(c.e->schedule)) continue;
            TunedMatch m;
            m.kind = pass == 0 ? MatchKind::Exact : MatchKind::Nearest;
            m.recorded_workload = c.e->workload_str;
            m.schedule = c.e->schedule;
            m.kernel = c.e->kernel;
            m.median_ms = c.e->median_ms;
            m.distance = c.distance;
            m.source = c.e->source;
            return m;
        }
    }
    return std::nullopt;
}

std::string default_user_records_path() {
    const char* env = ::getenv("LKC_RECORDS");
    if (env && *env) return env;
    const char* xdg = ::getenv("XDG_CACHE_HOME");
    if (xdg && *xdg == '/') return (fs::path(xdg) / "lkc" / "records.jsonl").string();
    std::string home;
    const char* h = ::getenv("HOME");
    if (h && *h) {
        home = h;
    } else {
        struct passwd pw;
        struct passwd* res = nullptr;
        char buf[4096];
        if (::getpwuid_r(::getuid(), &pw, buf, sizeof buf, &res) == 0 && res && res->pw_dir) {
            home = res->pw_dir;
        }
    }
    if (home.empty()) {
        throw RecordError(
            "cannot find the user record file: LKC_RECORDS, XDG_CACHE_HOME and HOME are unset");
    }
    return (fs::path(home) / ".cache" / "lkc" / "records.jsonl").string();
}

}  // namespace lkc
