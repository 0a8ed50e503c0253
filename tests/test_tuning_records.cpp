// Tuning records, distilled tables, the selection rule and device fingerprints
// (runtime/tuning_records.h, runtime/device_info.h; docs/records.md).
#include <fcntl.h>
#include <gtest/gtest.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "runtime/device_info.h"
#include "runtime/tuning_records.h"

namespace lkc {
namespace {

namespace fs = std::filesystem;
using json = nlohmann::json;

const char* const kWl = "dwconv2d:fwd:n1c128h56w56:k31x31:f32";
const char* const kDev = "cpu/AMD EPYC/avx512/2c";

TuningRecord make_record(const std::string& workload = kWl, double median = 1.234,
                         const std::string& device_id = kDev, const std::string& status = "ok",
                         int trial = 7) {
    TuningRecord r;
    r.lkc_version = "0.1.0";
    r.timestamp = "2026-12-01T19:00:00Z";
    r.workload = workload;
    r.device_id = device_id;
    r.device = {
        {"kind", "cpu"}, {"id", device_id}, {"name", "AMD EPYC"}, {"isa", "avx512"}, {"cores", 2}};
    r.schedule.generator = "dwconv2d_fwd";
    r.schedule.params = {{"chunk", "8"}, {"tile", "14"}};
    r.kernel = "dwconv2d_fwd_t14c8_cpu";
    r.status = status;
    r.median_ms = status == "ok" ? median : std::nan("");
    r.times_ms = status == "ok" ? std::vector<double>{1.2, 1.3} : std::vector<double>{};
    r.compile_s = 3.1;
    r.error = status == "ok" ? "" : "boom";
    r.tuner = {{"seed", 1}, {"trial", trial}, {"strategy", "model"}};
    return r;
}

std::string read_text(const std::string& path) {
    std::ifstream in(path, std::ios::binary);
    std::stringstream s;
    s << in.rdbuf();
    return s.str();
}

void write_text(const std::string& path, const std::string& text) {
    std::ofstream out(path, std::ios::binary | std::ios::trunc);
    out << text;
}

class RecordFiles : public ::testing::Test {
  protected:
    void SetUp() override {
        std::string tmpl = (fs::temp_directory_path() / "lkc_records_XXXXXX").string();
        ASSERT_NE(::mkdtemp(tmpl.data()), nullptr);
        dir_ = tmpl;
    }
    void TearDown() override {
        std::error_code ec;
        fs::remove_all(dir_, ec);
    }
    std::string path(const std::string& name) const { return (fs::path(dir_) / name).string(); }

    std::string dir_;
};

// Expects `fn` to throw RecordError whose message contains every string of `needles`.
template <typename Fn>
void expect_record_error(Fn fn, const std::vector<std::string>& needles) {
    try {
        fn();
        ADD_FAILURE() << "no RecordError; expected one mentioning " << needles.front();
    } catch (const RecordError& e) {
        for (const std::string& n : needles) {
            EXPECT_NE(std::string(e.what()).find(n), std::string::npos)
                << "message '" << e.what() << "' lacks '" << n << "'";
        }
    }
}

// ---- schedules ----

TEST(ScheduleKey, RoundTrip) {
    Schedule s{"dwconv2d_fwd", {{"tile", "14"}, {"chunk", "8"}, {"border", "masked"}}};
    EXPECT_EQ(schedule_key(s), "dwconv2d_fwd:border=masked,chunk=8,tile=14");
    EXPECT_EQ(parse_schedule_key(schedule_key(s)), s);
    Schedule empty{"dwconv2d_taps_fwd", {}};
    EXPECT_EQ(schedule_key(empty), "dwconv2d_taps_fwd:");
    EXPECT_EQ(parse_schedule_key("dwconv2d_taps_fwd:"), empty);
    Schedule dotted{"g.v-2", {{"vec_width", "16"}, {"ratio", "0.5"}}};
    EXPECT_EQ(parse_schedule_key(schedule_key(dotted)), dotted);
}

TEST(ScheduleKey, Invalid) {
    expect_record_error([] { parse_schedule_key("dwconv2d_fwd"); }, {"missing ':'"});
    expect_record_error([] { parse_schedule_key(":tile=1"); }, {"generator"});
    expect_record_error([] { parse_schedule_key("g:tile"); }, {"'tile'", "no '='"});
    expect_record_error([] { parse_schedule_key("g:tile=1,"); }, {"trailing ','"});
    expect_record_error([] { parse_schedule_key("g:tile=1,tile=2"); }, {"twice"});
    expect_record_error([] { parse_schedule_key("g:tile="); }, {"invalid value"});
    expect_record_error([] { parse_schedule_key("g:a b=1"); }, {"key"});
    expect_record_error([] { schedule_key(Schedule{"g", {{"tile", "1,2"}}}); }, {"'1,2'"});
    expect_record_error([] { schedule_key(Schedule{"", {}}); }, {"generator"});
}

// ---- record JSON ----

TEST(RecordJson, RoundTripEveryField) {
    TuningRecord r = make_record();
    json j = r;
    TuningRecord back = j.get<TuningRecord>();
    EXPECT_EQ(back.format, 1);
    EXPECT_EQ(back.lkc_version, "0.1.0");
    EXPECT_EQ(back.timestamp, r.timestamp);
    EXPECT_EQ(back.workload, r.workload);
    EXPECT_EQ(back.device_id, kDev);
    EXPECT_EQ(back.device, r.device);
    EXPECT_EQ(back.schedule, r.schedule);
    EXPECT_EQ(back.kernel, r.kernel);
    EXPECT_EQ(back.status, "ok");
    EXPECT_EQ(back.error, "");
    EXPECT_DOUBLE_EQ(back.median_ms, 1.234);
    EXPECT_EQ(back.times_ms, r.times_ms);
    EXPECT_DOUBLE_EQ(back.compile_s, 3.1);
    EXPECT_EQ(back.tuner, r.tuner);

    // Through the line form too, and a failed record with a null median.
    TuningRecord line_back = parse_record_line(record_line(r));
    EXPECT_EQ(json(line_back), j);
    TuningRecord failed = make_record(kWl, 0, kDev, "compile_error");
    TuningRecord fback = parse_record_line(record_line(failed));
    EXPECT_EQ(fback.status, "compile_error");
    EXPECT_TRUE(std::isnan(fback.median_ms));
    EXPECT_EQ(fback.error, "boom");
    EXPECT_TRUE(fback.times_ms.empty());
}

TEST(RecordJson, LineLayoutAndVersionField) {
    TuningRecord r = make_record();
    std::string line = record_line(r);
    EXPECT_EQ(line.find('\n'), std::string::npos);
    EXPECT_EQ(line.rfind("{\"format\":1,\"lkc_version\":\"0.1.0\",\"timestamp\":", 0), 0u) << line;
    EXPECT_NE(line.find("\"params\":{\"chunk\":\"8\",\"tile\":\"14\"}"), std::string::npos);
    EXPECT_NE(line.find("\"device\":{\"kind\":\"cpu\",\"id\":\"cpu/AMD EPYC/avx512/2c\""),
              std::string::npos);
    EXPECT_STREQ(lkc_version(), "0.1.0");
    EXPECT_TRUE(json::parse(line).contains("lkc_version"));
}

TEST(RecordJson, WorkloadIsCanonicalised) {
    json j = make_record();
    j["workload"] = "dwconv2d:fwd:n1c128h56w56:k31x31";  // dtype defaulted
    EXPECT_EQ(j.get<TuningRecord>().workload, kWl);
}

TEST(RecordJson, EveryFieldIsValidated) {
    const json good = make_record();
    struct Case {
        const char* field;
        json value;  // discarded json: remove the field
        std::string needle;
    };
    const json drop = json::value_t::discarded;
    std::vector<Case> cases = {
        {"format", "1", "field 'format'"},
        {"format", 2, "record format 2 is newer than this lkc (1)"},
        {"format", 0, "record format 0 is not valid"},
        {"format", drop, "field 'format': missing"},
        {"lkc_version", 1, "field 'lkc_version'"},
        {"lkc_version", "", "field 'lkc_version'"},
        {"timestamp", "yesterday", "field 'timestamp'"},
        {"timestamp", "2026-13-01T19:00:00Z", "field 'timestamp'"},
        {"workload", "dwconv2d:fwd:n1c128h56w56:k32x32", "field 'workload'"},
        {"workload", 3, "field 'workload'"},
        {"device", "cpu", "field 'device'"},
        {"device", {{"kind", "tpu"}, {"id", "x"}}, "field 'device.kind'"},
        {"device", {{"kind", "cpu"}}, "field 'device.id': missing"},
        {"schedule", {{"generator", "g"}}, "field 'schedule.params': missing"},
        {"schedule",
         {{"generator", "g"}, {"params", {{"tile", 14}}}},
         "field 'schedule.params.tile'"},
        {"schedule",
         {{"generator", "bad name"}, {"params", json::object()}},
         "field 'schedule.generator'"},
        {"kernel", nullptr, "field 'kernel'"},
        {"status", "meh", "unknown status 'meh'"},
        {"error", drop, "field 'error': missing"},
        {"median_ms", -1, "field 'median_ms'"},
        {"median_ms", nullptr, "field 'median_ms'"},
        {"median_ms", "1.2", "field 'median_ms'"},
        {"times_ms", 1.2, "field 'times_ms'"},
        {"times_ms", {1.0, "x"}, "field 'times_ms[1]'"},
        {"compile_s", -3, "field 'compile_s'"},
        {"tuner", json::array(), "field 'tuner'"},
        {"tuner", {{"seed", "one"}}, "field 'tuner.seed'"},
        {"tuner", {{"trial", -1}}, "field 'tuner.trial'"},
        {"tuner", {{"strategy", 5}}, "field 'tuner.strategy'"},
    };
    for (const Case& c : cases) {
        json j = good;
        if (c.value.is_discarded()) {
            j.erase(c.field);
        } else {
            j[c.field] = c.value;
        }
        SCOPED_TRACE(j.dump());
        expect_record_error([&] { j.get<TuningRecord>(); }, {c.needle});
    }
    // Unknown extra fields are ignored; a non-object is rejected.
    json extra = good;
    extra["future_field"] = 1;
    EXPECT_NO_THROW(extra.get<TuningRecord>());
    expect_record_error([] { json::array().get<TuningRecord>(); }, {"expected a JSON object"});
    // A failed record may carry a null median.
    json failed = good;
    failed["status"] = "timeout";
    failed["median_ms"] = nullptr;
    EXPECT_NO_THROW(failed.get<TuningRecord>());
}

// ---- files ----

TEST_F(RecordFiles, LoadSkipsAndReportsCorruptLines) {
    const std::string p = path("records.jsonl");
    const std::string ok1 = record_line(make_record(kWl, 1.0));
    const std::string ok2 = record_line(make_record(kWl, 2.0));
    json wrong_type = make_record();
    wrong_type["median_ms"] = "fast";
    json bad_status = make_record();
    bad_status["status"] = "meh";
    json bad_wl = make_record();
    bad_wl["workload"] = "dwconv2d:fwd:n1c128h56w56";
    json fmt2 = make_record();
    fmt2["format"] = 2;
    std::string text = ok1 + "\n" +                            // 1 ok
                       "garbage here\n" +                      // 2
                       ok1.substr(0, ok1.size() / 2) + "\n" +  // 3 truncated JSON
                       "\n" +                                  // 4 blank: skipped silently
                       wrong_type.dump() + "\n" +              // 5
                       bad_status.dump() + "\n" +              // 6
                       bad_wl.dump() + "\n" +                  // 7
                       fmt2.dump() + "\n" +                    // 8
                       "[1,2,3]\n" +                           // 9
                       ok2 + "\n" +                            // 10 ok
                       ok2.substr(0, 40);                      // 11 truncated last line
    write_text(p, text);
    RecordsLoad l = load_records(p);
    ASSERT_EQ(l.records.size(), 2u);
    EXPECT_DOUBLE_EQ(l.records[0].median_ms, 1.0);
    EXPECT_DOUBLE_EQ(l.records[1].median_ms, 2.0);
    EXPECT_EQ(l.lines, 10u);
    ASSERT_EQ(l.problems.size(), 8u);
    const std::vector<std::pair<int, std::string>> expected = {
        {2, "not valid JSON"},         {3, "not valid JSON"},
        {5, "field 'median_ms'"},      {6, "unknown status 'meh'"},
        {7, "field 'workload'"},       {8, "record format 2 is newer than this lkc (1)"},
        {9, "expected a JSON object"}, {11, "truncated last line"}};
    for (size_t i = 0; i < expected.size(); ++i) {
        const std::string prefix = p + ":" + std::to_string(expected[i].first) + ": ";
        EXPECT_EQ(l.problems[i].rfind(prefix, 0), 0u) << l.problems[i];
        EXPECT_NE(l.problems[i].find(expected[i].second), std::string::npos) << l.problems[i];
    }
}

TEST_F(RecordFiles, LoadMissingFileIsEmptyAndUnreadableThrows) {
    RecordsLoad l = load_records(path("nope/records.jsonl"));
    EXPECT_TRUE(l.records.empty());
    EXPECT_TRUE(l.problems.empty());
    EXPECT_EQ(l.lines, 0u);
    expect_record_error([&] { load_records(dir_); }, {dir_, "not a regular file"});
    if (::geteuid() != 0) {  // root reads anything
        const std::string p = path("locked.jsonl");
        write_text(p, record_line(make_record()) + "\n");
        ::chmod(p.c_str(), 0);
        expect_record_error([&] { load_records(p); }, {p, "cannot open"});
    }
}

TEST_F(RecordFiles, AppendCreatesDirectoriesAndRefusesInvalidRecords) {
    const std::string p = path("a/b/records.jsonl");
    append_record(p, make_record(kWl, 1.0));
    append_record(p, make_record(kWl, 2.0));
    const std::string text = read_text(p);
    EXPECT_EQ(std::count(text.begin(), text.end(), '\n'), 2);
    EXPECT_EQ(text.back(), '\n');
    TuningRecord bad = make_record();
    bad.status = "fine";
    expect_record_error([&] { append_record(p, bad); }, {p, "invalid record", "status"});
    EXPECT_EQ(read_text(p), text);
    EXPECT_EQ(load_records(p).records.size(), 2u);
}

TEST_F(RecordFiles, TruncatedLastLineThenAppendStaysParseable) {
    const std::string p = path("records.jsonl");
    const std::string line = record_line(make_record(kWl, 1.0));
    write_text(p, line + "\n" + line.substr(0, line.size() - 10));  // writer died mid-line
    append_record(p, make_record(kWl, 3.0));
    RecordsLoad l = load_records(p);
    ASSERT_EQ(l.records.size(), 2u);
    EXPECT_DOUBLE_EQ(l.records[1].median_ms, 3.0);
    ASSERT_EQ(l.problems.size(), 1u);
    EXPECT_EQ(l.problems[0].rfind(p + ":2: not valid JSON", 0), 0u) << l.problems[0];
    EXPECT_EQ(l.lines, 3u);
}

TEST_F(RecordFiles, ConcurrentAppendsFromManyProcesses) {
    const std::string p = path("records.jsonl");
    constexpr int kProcs = 4, kEach = 200;
    std::vector<pid_t> kids;
    for (int k = 0; k < kProcs; ++k) {
        pid_t pid = ::fork();
        ASSERT_GE(pid, 0);
        if (pid == 0) {
            int rc = 0;
            try {
                for (int i = 0; i < kEach; ++i) {
                    TuningRecord r = make_record(kWl, 1.0 + i, kDev, "ok", k * kEach + i);
                    r.error = std::string(static_cast<size_t>(i % 7) * 300, 'x');  // long lines
                    append_record(p, r);
                }
            } catch (...) {
                rc = 1;
            }
            ::_exit(rc);
        }
        kids.push_back(pid);
    }
    for (pid_t pid : kids) {
        int status = 0;
        ASSERT_EQ(::waitpid(pid, &status, 0), pid);
        EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    }
    RecordsLoad l = load_records(p);
    EXPECT_TRUE(l.problems.empty()) << l.problems.front();
    ASSERT_EQ(l.records.size(), static_cast<size_t>(kProcs * kEach));
    EXPECT_EQ(l.lines, static_cast<size_t>(kProcs * kEach));
    std::set<int> trials;
    for (const TuningRecord& r : l.records) trials.insert(r.tuner["trial"].get<int>());
    EXPECT_EQ(trials.size(), static_cast<size_t>(kProcs * kEach));
}

// ---- best / distill ----

TEST(BestRecords, LeastMedianTiesEarliestAndOrdering) {
    const std::string wl2 = "dwconv2d:bwd_data:n1c128h56w56:k31x31:f32";
    std::vector<TuningRecord> rs;
    rs.push_back(make_record(kWl, 2.0, "zz", "ok", 1));
    rs.push_back(make_record(kWl, 1.5, kDev, "ok", 2));
    rs.push_back(make_record(kWl, 1.5, kDev, "ok", 3));       // tie: the earlier (trial 2) wins
    rs.push_back(make_record(kWl, 0.1, kDev, "timeout", 4));  // not ok: never best
    rs.push_back(make_record(wl2, 9.0, kDev, "ok", 5));
    rs.push_back(make_record(wl2, 8.0, kDev, "ok", 6));
    rs.push_back(make_record(wl2, 7.0, kDev, "wrong_result", 7));
    std::vector<TuningRecord> b = best_records(rs);
    ASSERT_EQ(b.size(), 3u);
    // Sorted by (device_id, workload): "cpu/..." < "zz"; "dwconv2d:bwd_data" < "dwconv2d:fwd".
    EXPECT_EQ(b[0].device_id, kDev);
    EXPECT_EQ(b[0].workload, wl2);
    EXPECT_EQ(b[0].tuner["trial"], 6);
    EXPECT_EQ(b[1].device_id, kDev);
    EXPECT_EQ(b[1].workload, kWl);
    EXPECT_EQ(b[1].tuner["trial"], 2);
    EXPECT_EQ(b[2].device_id, "zz");
    EXPECT_EQ(record_device_ids(rs), (std::vector<std::string>{kDev, "zz"}));
}

TEST_F(RecordFiles, DistillWriteAtomicallyAndReadBack) {
    const std::string wl2 = "dwconv2d:fwd:n8c384h14w14:k51x5:f32";
    std::vector<TuningRecord> rs;
    TuningRecord def = make_record(kWl, 2.0, kDev, "ok", 0);
    def.tuner["strategy"] = "default";
    def.schedule.params = {{"chunk", "4"}, {"tile", "8"}};
    rs.push_back(def);
    rs.push_back(make_record(kWl, 1.5, kDev, "ok", 1));
    rs.push_back(make_record(kWl, 0, kDev, "compile_error", 2));
    rs.push_back(make_record(wl2, 4.0, kDev, "ok", 3));
    rs.push_back(make_record(wl2, 0, kDev, "timeout", 4));
    rs.push_back(make_record(wl2, 0, kDev, "wrong_result", 5));
    rs.push_back(make_record(kWl, 0.5, "other/device", "ok", 6));  // another device: not counted
    json t = distill(rs, kDev);
    EXPECT_EQ(t["format"], 1);
    EXPECT_EQ(t["lkc_version"], lkc_version());
    EXPECT_EQ(t["device"]["id"], kDev);
    ASSERT_EQ(t["entries"].size(), 2u);
    const json& e0 = t["entries"][0];  // sorted by workload: k31x31 n1 before k51x5 n8
    EXPECT_EQ(e0["workload"], kWl);
    EXPECT_EQ(e0["generator"], "dwconv2d_fwd");
    EXPECT_EQ(e0["params"], (json{{"chunk", "8"}, {"tile", "14"}}));
    EXPECT_EQ(e0["kernel"], "dwconv2d_fwd_t14c8_cpu");
    EXPECT_DOUBLE_EQ(e0["median_ms"].get<double>(), 1.5);
    EXPECT_DOUBLE_EQ(e0["default_ms"].get<double>(), 2.0);
    EXPECT_EQ(e0["trials"], 3);
    EXPECT_EQ(e0["failed"], 1);
    const json& e1 = t["entries"][1];
    EXPECT_EQ(e1["workload"], wl2);
    EXPECT_TRUE(e1["default_ms"].is_null());
    EXPECT_EQ(e1["trials"], 3);
    EXPECT_EQ(e1["failed"], 2);
    expect_record_error([&] { distill(rs, "no/such/device"); }, {"no records", "no/such/device"});

    const std::string p = distilled_table_path(path("tuned"), kDev);
    EXPECT_EQ(fs::path(p).filename(), "cpu-amd-epyc-avx512-2c.json");
    write_distilled(p, t);
    const std::string text = read_text(p);
    EXPECT_EQ(text.rfind("{\n  \"format\": 1,\n  \"lkc_version\"", 0), 0u) << text;
    EXPECT_EQ(text.back(), '\n');
    // No temp files left next to it.
    size_t files = 0;
    for (const auto& de : fs::directory_iterator(path("tuned"))) {
        (void)de;
        ++files;
    }
    EXPECT_EQ(files, 1u);

    DistilledTable back = read_distilled(p);
    EXPECT_EQ(back.format, 1);
    EXPECT_EQ(back.device_id, kDev);
    EXPECT_EQ(back.device["isa"], "avx512");
    ASSERT_EQ(back.entries.size(), 2u);
    EXPECT_EQ(back.entries[0].workload, kWl);
    EXPECT_EQ(back.entries[0].schedule,
              (Schedule{"dwconv2d_fwd", {{"chunk", "8"}, {"tile", "14"}}}));
    EXPECT_EQ(back.entries[0].kernel, "dwconv2d_fwd_t14c8_cpu");
    EXPECT_DOUBLE_EQ(back.entries[0].median_ms, 1.5);
    ASSERT_TRUE(back.entries[0].default_ms.has_value());
    EXPECT_DOUBLE_EQ(*back.entries[0].default_ms, 2.0);
    EXPECT_EQ(back.entries[0].trials, 3);
    EXPECT_EQ(back.entries[0].failed, 1);
    EXPECT_FALSE(back.entries[1].default_ms.has_value());

    // Rewriting replaces the file whole; an invalid table leaves it untouched.
    json bad = t;
    bad["entries"][0]["median_ms"] = -1;
    expect_record_error([&] { write_distilled(p, bad); }, {p, "entries[0].median_ms"});
    EXPECT_EQ(read_text(p), text);
    write_distilled(p, t);
    EXPECT_EQ(read_text(p), text);
}

TEST(Distilled, ErrorsNameTheField) {
    std::vector<TuningRecord> rs = {make_record()};
    const json good = distill(rs, kDev);
    ASSERT_NO_THROW(distilled_from_json(good, "t.json"));
    struct Case {
        std::function<void(json&)> edit;
        std::string needle;
    };
    std::vector<Case> cases = {
        {[](json& j) { j["format"] = 2; }, "t.json: format: distilled table format 2 is newer"},
        {[](json& j) { j.erase("lkc_version"); }, "t.json: lkc_version: missing"},
        {[](json& j) { j["device"] = 1; }, "t.json: device: expected an object"},
        {[](json& j) { j["device"].erase("id"); }, "t.json: device.id: missing"},
        {[](json& j) { j["entries"] = json::object(); }, "t.json: entries: expected an array"},
        {[](json& j) { j["entries"][0] = 5; }, "t.json: entries[0]: expected an object"},
        {[](json& j) { j["entries"][0]["workload"] = "conv"; }, "t.json: entries[0].workload"},
        {[](json& j) { j["entries"].push_back(j["entries"][0]); },
         "t.json: entries[1].workload: duplicate entry"},
        {[](json& j) { j["entries"][0].erase("generator"); },
         "t.json: entries[0].generator: missing"},
        {[](json& j) { j["entries"][0]["params"]["tile"] = 14; },
         "t.json: entries[0].params.tile: expected a string"},
        {[](json& j) { j["entries"][0]["kernel"] = false; }, "t.json: entries[0].kernel"},
        {[](json& j) { j["entries"][0]["median_ms"] = 0; }, "t.json: entries[0].median_ms"},
        {[](json& j) { j["entries"][0]["default_ms"] = "x"; }, "t.json: entries[0].default_ms"},
        {[](json& j) { j["entries"][0]["trials"] = 0; }, "t.json: entries[0].trials"},
        {[](json& j) { j["entries"][0]["failed"] = 1; },
         "t.json: entries[0].failed: is 1 of 1 trials"},
        {[](json& j) { j["entries"][0]["failed"] = 1.5; }, "t.json: entries[0].failed"},
    };
    for (const Case& c : cases) {
        json j = good;
        c.edit(j);
        SCOPED_TRACE(j.dump());
        expect_record_error([&] { distilled_from_json(j, "t.json"); }, {c.needle});
    }
    expect_record_error([] { parse_distilled("{\"format\":", "t.json"); },
                        {"t.json: not valid JSON"});
    expect_record_error([] { read_distilled("/nonexistent/lkc/t.json"); },
                        {"/nonexistent/lkc/t.json", "cannot open"});
}

// ---- selection ----

DistilledTable table_of(const std::vector<std::pair<std::string, double>>& wls,
                        const std::string& tile, const std::string& device_id = kDev) {
    DistilledTable t;
    t.device_id = device_id;
    t.device = {{"kind", "cpu"}, {"id", device_id}};
    for (const auto& wm : wls) {
        DistilledEntry e;
        e.workload = to_string(parse_workload(wm.first));
        e.schedule = Schedule{"dwconv2d_fwd", {{"tile", tile}}};
        e.kernel = "k_t" + tile;
        e.median_ms = wm.second;
        e.trials = 1;
        t.entries.push_back(e);
    }
    return t;
}

TEST(ScheduleBook, ExactBeforeNearestAndLowerMedianAcrossSources) {
    ScheduleBook book;
    EXPECT_FALSE(book.lookup(parse_workload(kWl), kDev).has_value());
    book.add_distilled(table_of({{"dwconv2d:fwd:n1c128h56w56:k29x29", 0.1}}, "7"), "near.json");
    book.add_distilled(table_of({{kWl, 2.0}}, "14"), "a.json");
    book.add_distilled(table_of({{kWl, 1.0}}, "8"), "b.json");
    EXPECT_EQ(book.size(), 3u);
    auto m = book.lookup(parse_workload("dwconv2d:fwd:n1c128h56w56:k31x31"), kDev);
    ASSERT_TRUE(m.has_value());
    EXPECT_EQ(m->kind, MatchKind::Exact);
    EXPECT_EQ(m->source, "b.json");
    EXPECT_EQ(m->schedule.params.at("tile"), "8");
    EXPECT_EQ(m->kernel, "k_t8");
    EXPECT_DOUBLE_EQ(m->median_ms, 1.0);
    EXPECT_EQ(m->distance, 0.0);
    EXPECT_EQ(m->recorded_workload, kWl);
    // Another device sees nothing.
    EXPECT_FALSE(book.lookup(parse_workload(kWl), "cpu/other/avx2/4c").has_value());
}

TEST(ScheduleBook, NearestByDistance) {
    ScheduleBook book;
    book.add_distilled(table_of({{"dwconv2d:fwd:n1c128h56w56:k13x13", 1.0},     // kernel far
                                 {"dwconv2d:fwd:n1c256h28w28:k31x31", 1.0},     // 1+1+1 = 3
                                 {"dwconv2d:fwd:n1c128h112w112:k31x31", 1.0}},  // 1+1 = 2
                                "1"),
                       "t.json");
    auto m = book.lookup(parse_workload("dwconv2d:fwd:n1c128h56w56:k31x31"), kDev);
    ASSERT_TRUE(m.has_value());
    EXPECT_EQ(m->kind, MatchKind::Nearest);
    EXPECT_EQ(m->recorded_workload, "dwconv2d:fwd:n1c128h112w112:k31x31:f32");
    EXPECT_DOUBLE_EQ(m->distance, 2.0);
    // The accept callback is asked in distance order.
    std::vector<std::string> asked;
    ScheduleBook book2;
    book2.add_distilled(table_of({{"dwconv2d:fwd:n1c256h28w28:k31x31", 1.0}}, "a"), "t.json");
    book2.add_distilled(table_of({{"dwconv2d:fwd:n1c128h112w112:k31x31", 1.0}}, "b"), "t.json");
    book2.add_distilled(table_of({{"dwconv2d:fwd:n1c128h56w56:k13x13", 1.0}}, "c"), "t.json");
    m = book2.lookup(parse_workload(kWl), kDev, [&](const Schedule& s) {
        asked.push_back(s.params.at("tile"));
        return s.params.at("tile") == "a";
    });
    ASSERT_TRUE(m.has_value());
    EXPECT_EQ(asked, (std::vector<std::string>{"b", "a"}));
    EXPECT_EQ(m->schedule.params.at("tile"), "a");
    EXPECT_DOUBLE_EQ(m->distance, 3.0);
    // Rejecting everything gives the hand default.
    EXPECT_FALSE(book2.lookup(parse_workload(kWl), kDev, [](const Schedule&) { return false; }));
}

TEST(ScheduleBook, AcceptCanRejectTheExactMatch) {
    ScheduleBook book;
    book.add_distilled(table_of({{kWl, 1.0}}, "x"), "t.json");
    book.add_distilled(table_of({{"dwconv2d:fwd:n2c128h56w56:k31x31", 1.0}}, "y"), "t.json");
    auto m = book.lookup(parse_workload(kWl), kDev,
                         [](const Schedule& s) { return s.params.at("tile") != "x"; });
    ASSERT_TRUE(m.has_value());
    EXPECT_EQ(m->kind, MatchKind::Nearest);
    EXPECT_DOUBLE_EQ(m->distance, 1.0);
}

TEST(ScheduleBook, IncomparableWorkloadsNeverMatch) {
    const std::vector<std::string> others = {
        "dwconv2d:bwd_data:n1c128h56w56:k31x31",     // pass
        "dwconv2d:fwd:n1c128h56w56:k31x31:s2",       // stride
        "dwconv2d:fwd:n1c128h56w56:k31x31:d2",       // dilation
        "dwconv2d:fwd:n1c128h56w56:k31x31:f16",      // dtype
        "dwconv2d_sparse:fwd:n1c128h56w56:k31x31",   // op
        "dwconv2d_multi:fwd:n1c128h56w56:b31x31d1",  // op
    };
    ScheduleBook book;
    std::vector<std::pair<std::string, double>> wls;
    for (const std::string& o : others) wls.push_back({o, 1.0});
    book.add_distilled(table_of(wls, "1"), "t.json");
    EXPECT_FALSE(book.lookup(parse_workload(kWl), kDev).has_value());

    // Multi-branch: the branch list must be equal; shift-wise: K, k and G.
    ScheduleBook multi;
    multi.add_distilled(table_of({{"dwconv2d_multi:fwd:n1c128h56w56:b51x5d1,5x51d1", 1.0},
                                  {"dwconv2d_multi:fwd:n1c64h28w28:b51x5d1,5x51d1,5x5d1", 1.0},
                                  {"shiftwise:fwd:n1c60h56w56:K51k3g4", 1.0},
                                  {"shiftwise:fwd:n1c60h56w56:K51k5g4", 1.0}},
                                 "1"),
                        "t.json");
    auto m =
        multi.lookup(parse_workload("dwconv2d_multi:fwd:n1c128h56w56:b51x5d1,5x51d1,5x5d1"), kDev);
    ASSERT_TRUE(m.has_value());
    EXPECT_EQ(m->recorded_workload, "dwconv2d_multi:fwd:n1c64h28w28:b51x5d1,5x51d1,5x5d1:f32");
    EXPECT_DOUBLE_EQ(m->distance, 3.0);
    EXPECT_FALSE(
        multi.lookup(parse_workload("dwconv2d_multi:fwd:n1c128h56w56:b51x5d2,5x51d1"), kDev));
    m = multi.lookup(parse_workload("shiftwise:fwd:n1c120h56w56:K51k3g4"), kDev);
    ASSERT_TRUE(m.has_value());
    EXPECT_EQ(m->recorded_workload, "shiftwise:fwd:n1c60h56w56:K51k3g4:f32");
    EXPECT_FALSE(multi.lookup(parse_workload("shiftwise:fwd:n1c60h56w56:K51k3g2"), kDev));
}

TEST(ScheduleBook, WorkloadDistance) {
    auto d = [](const char* a, const char* b) {
        return workload_distance(parse_workload(a), parse_workload(b));
    };
    EXPECT_DOUBLE_EQ(*d("dwconv2d:fwd:n1c128h56w56:k31x31", "dwconv2d:fwd:n1c128h56w56:k31x31"), 0);
    EXPECT_DOUBLE_EQ(*d("dwconv2d:fwd:n4c128h56w56:k31x31", "dwconv2d:fwd:n1c32h56w56:k31x31"), 4);
    EXPECT_DOUBLE_EQ(*d("dwconv2d:fwd:n1c128h56w56:k31x31", "dwconv2d:fwd:n1c128h56w56:k31x31"), 0);
    EXPECT_NEAR(
        *d("dwconv2d_sparse:fwd:n1c128h56w56:k51x51", "dwconv2d_sparse:fwd:n1c128h56w56:k31x31"),
        4 * std::log2(51.0 / 31.0), 1e-12);
    EXPECT_FALSE(d("dwconv2d:fwd:n1c128h56w56:k31x31", "dwconv2d:bwd_weight:n1c128h56w56:k31x31"));
}

TEST(ScheduleBook, AddRecordsUsesBest) {
    std::vector<TuningRecord> rs = {make_record(kWl, 3.0, kDev, "ok", 1),
                                    make_record(kWl, 2.0, kDev, "ok", 2),
                                    make_record(kWl, 1.0, kDev, "run_error", 3)};
    rs[1].schedule.params["tile"] = "7";
    ScheduleBook book;
    book.add_records(rs, "records.jsonl");
    EXPECT_EQ(book.size(), 1u);
    auto m = book.lookup(parse_workload(kWl), kDev);
    ASSERT_TRUE(m.has_value());
    EXPECT_EQ(m->schedule.params.at("tile"), "7");
    EXPECT_EQ(m->source, "records.jsonl");
}

TEST(UserRecordsPath, Environment) {
    auto save = [](const char* name) -> std::optional<std::string> {
        const char* v = ::getenv(name);
        return v ? std::optional<std::string>(v) : std::nullopt;
    };
    auto restore = [](const char* name, const std::optional<std::string>& v) {
        if (v) {
            ::setenv(name, v->c_str(), 1);
        } else {
            ::unsetenv(name);
        }
    };
    auto rec = save("LKC_RECORDS"), xdg = save("XDG_CACHE_HOME"), home = save("HOME");
    ::setenv("LKC_RECORDS", "/r/x.jsonl", 1);
    ::setenv("XDG_CACHE_HOME", "/xdg", 1);
    ::setenv("HOME", "/home/u", 1);
    EXPECT_EQ(default_user_records_path(), "/r/x.jsonl");
    ::unsetenv("LKC_RECORDS");
    EXPECT_EQ(default_user_records_path(), "/xdg/lkc/records.jsonl");
    ::unsetenv("XDG_CACHE_HOME");
    EXPECT_EQ(default_user_records_path(), "/home/u/.cache/lkc/records.jsonl");
    restore("LKC_RECORDS", rec);
    restore("XDG_CACHE_HOME", xdg);
    restore("HOME", home);
}

// ---- device fingerprints ----

TEST(DeviceInfo, CpuFromCpuinfoText) {
    const std::string text =
        "processor\t: 0\nvendor_id\t: AuthenticAMD\ncpu family\t: 25\nmodel\t\t: 1\n"
        "model name\t: AMD  EPYC   7B13 64-Core/Processor \nflags\t\t: fpu sse4_1 avx2 fma avx512f "
        "avx512vl avx512bw\n\nprocessor\t: 1\nmodel name\t: Other\n";
    DeviceInfo d = cpu_device_info_from(text, 3);
    EXPECT_EQ(d.kind, "cpu");
    EXPECT_EQ(d.name, "AMD EPYC 7B13 64-Core-Processor");
    EXPECT_EQ(d.id, "cpu/AMD EPYC 7B13 64-Core-Processor/avx2/3c");  // no avx512dq
    EXPECT_EQ(d.fields["isa"], "avx2");
    EXPECT_EQ(d.fields["cores"], 3);
    EXPECT_EQ(d.fields["vendor_id"], "AuthenticAMD");
    EXPECT_EQ(d.fields["cpu_family"], "25");
    EXPECT_EQ(cpu_device_info_from("", 1).id, "cpu/unknown cpu/baseline/1c");
    EXPECT_EQ(cpu_isa_from_flags("avx512f avx512vl avx512bw avx512dq avx2 fma"), "avx512");
    EXPECT_EQ(cpu_isa_from_flags("avx2 sse4_1"), "sse41");  // avx2 without fma
    EXPECT_EQ(cpu_isa_from_flags("sse2"), "baseline");
    json j = device_json(d);
    EXPECT_EQ(j["kind"], "cpu");
    EXPECT_EQ(j["id"], d.id);
    EXPECT_EQ(j["isa"], "avx2");
}

TEST(DeviceInfo, CpuOfThisMachine) {
    DeviceInfo d = cpu_device_info();
    EXPECT_EQ(d.kind, "cpu");
    ASSERT_TRUE(d.fields.contains("cores"));
    EXPECT_GE(d.fields["cores"].get<int>(), 1);
    // Cross-check the ISA against the compiler's CPUID view.
    __builtin_cpu_init();
    const bool avx512 = __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512vl") &&
                        __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512dq");
    const bool avx2 = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
    const std::string isa = avx512 ? "avx512" : avx2 ? "avx2" : "";
    if (!isa.empty()) EXPECT_EQ(d.fields["isa"], isa);
    EXPECT_EQ(d.id, "cpu/" + d.name + "/" + d.fields["isa"].get<std::string>() + "/" +
                        std::to_string(d.fields["cores"].get<int>()) + "c");
    EXPECT_EQ(d.id.find("  "), std::string::npos);
    std::printf("cpu device id: %s (slug %s)\n", d.id.c_str(), device_slug(d.id).c_str());
}

TEST(DeviceInfo, OpenClAndCudaFromProbes) {
    OpenClProbe p;
    p.platform_name = "Portable Computing Language";
    p.platform_version = "OpenCL 3.0 PoCL 3.1+debian  Linux";
    p.device_name = "pthread-skylake-avx512-AMD EPYC";
    p.device_type = "cpu";
    p.driver_version = "3.1+debian";
    p.compute_units = 2;
    DeviceInfo o = opencl_device_info_from(p);
    EXPECT_EQ(o.kind, "opencl");
    EXPECT_EQ(o.id,
              "opencl/Portable Computing Language/cpu-pthread-skylake-avx512-AMD EPYC/3.1+debian");
    EXPECT_EQ(o.fields["platform_version"], "OpenCL 3.0 PoCL 3.1+debian Linux");
    EXPECT_EQ(o.fields["compute_units"], 2);

    CudaProbe c;
    c.name = "NVIDIA A100-SXM4-40GB";
    c.cc_major = 8;
    c.cc_minor = 0;
    c.multiprocessors = 108;
    c.driver_version = 12040;
    DeviceInfo d = cuda_device_info_from(c);
    EXPECT_EQ(d.id, "cuda/NVIDIA A100-SXM4-40GB/sm_80/12.4");
    EXPECT_EQ(d.fields["compute_capability"], "8.0");
    EXPECT_EQ(d.fields["multiprocessors"], 108);
    EXPECT_EQ(cuda_driver_version_string(11080), "11.8");
}

TEST_F(RecordFiles, OpenClFindsPocl) {
    const char* old = ::getenv("POCL_CACHE_DIR");
    std::string saved = old ? old : "";
    ::setenv("POCL_CACHE_DIR", path("pocl_cache").c_str(), 1);
    try {
        DeviceInfo d = opencl_device_info();
        EXPECT_EQ(d.kind, "opencl");
        EXPECT_EQ(d.id.rfind("opencl/", 0), 0u);
        EXPECT_GE(d.fields["compute_units"].get<int>(), 1);
        std::printf("opencl device id: %s\n", d.id.c_str());
        EXPECT_THROW(opencl_device_info(1000), DeviceUnavailable);
    } catch (const DeviceUnavailable& e) {
        if (old) ::setenv("POCL_CACHE_DIR", saved.c_str(), 1);
        GTEST_SKIP() << "no OpenCL platform: " << e.what();
    }
    if (old) {
        ::setenv("POCL_CACHE_DIR", saved.c_str(), 1);
    } else {
        ::unsetenv("POCL_CACHE_DIR");
    }
}

TEST(DeviceInfo, CudaUnavailableThrows) {
    if (::access("/dev/nvidiactl", F_OK) == 0) GTEST_SKIP() << "this machine has an NVIDIA GPU";
    try {
        cuda_device_info();
        ADD_FAILURE() << "cuda_device_info() returned without a GPU";
    } catch (const DeviceUnavailable& e) {
        EXPECT_NE(std::string(e.what()).find("cuda"), std::string::npos) << e.what();
        std::printf("cuda: %s\n", e.what());
    }
    EXPECT_THROW(cuda_device_info(-1), DeviceUnavailable);
}

TEST(DeviceInfo, Slug) {
    EXPECT_EQ(device_slug("cpu/AMD EPYC/avx512/2c"), "cpu-amd-epyc-avx512-2c");
    EXPECT_EQ(device_slug("opencl/Portable Computing Language/cpu-pthread-x/3.1+debian"),
              "opencl-portable-computing-language-cpu-pthread-x-3-1-debian");
    EXPECT_EQ(device_slug("///"), "device");
    const std::string long_id = "cuda/" + std::string(300, 'a') + "/sm_80/12.4";
    const std::string s = device_slug(long_id);
    EXPECT_LE(s.size(), 120u);
    EXPECT_NE(s, device_slug("cuda/" + std::string(300, 'a') + "/sm_90/12.4"));
    for (char ch : s)
        EXPECT_TRUE((ch >= 'a' && ch <= 'z') || (ch >= '0' && ch <= '9') || ch == '-');
    EXPECT_EQ(normalise_id_part("  a \t b/c\x01 "), "a b-c");
}

}  // namespace
}  // namespace lkc
