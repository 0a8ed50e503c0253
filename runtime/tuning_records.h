// Tuning records (docs/records.md): an append-only JSON-lines log of measurements, the `best` and
// `distill` reductions that turn a log into the compact per-device table builds use
// (schedules/tuned/<device slug>.json), and the rule that picks a schedule for a workload.
//
// A record line:
//   {"format":1,"lkc_version":"0.1.0","timestamp":"2026-12-01T19:00:00Z",
//    "workload":"dwconv2d:fwd:n1c128h56w56:k31x31:f32",
//    "device":{"kind":"cpu","id":"cpu/AMD EPYC/avx512/2c",...},
//    "schedule":{"generator":"dwconv2d_fwd","params":{"chunk":"8","tile":"14"}},
//    "kernel":"dwconv2d_fwd_t14c8_cpu","status":"ok","median_ms":1.234,"times_ms":[1.2,1.3],
//    "compile_s":3.1,"error":"","tuner":{"seed":1,"trial":7,"strategy":"model"}}
#pragma once

#include <cstddef>
#include <functional>
#include <map>
#include <nlohmann/json.hpp>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

#include "runtime/workload.h"

namespace lkc {

// Invalid record, distilled table or schedule key, and I/O failures. The message names the file
// (and line) or the field at fault and what was expected.
class RecordError : public std::runtime_error {
  public:
    explicit RecordError(const std::string& msg) : std::runtime_error(msg) {}
};

// The record and distilled-table format this lkc reads and writes.
constexpr int kRecordFormat = 1;

// The lkc version written into records ("0.1.0").
const char* lkc_version();

// Current UTC time as "YYYY-MM-DDTHH:MM:SSZ".
std::string utc_timestamp_now();

// ---- schedules ----

// A point of a generator's schedule space. Generator names and parameter keys are non-empty
// [A-Za-z0-9_.-]; values are non-empty and contain no ',', '=', ':', whitespace or control bytes.
struct Schedule {
    std::string generator;
    std::map<std::string, std::string> params;
};
bool operator==(const Schedule& a, const Schedule& b);
inline bool operator!=(const Schedule& a, const Schedule& b) { return !(a == b); }

// Throws RecordError naming the generator/key/value that breaks the rules above.
void validate_schedule(const Schedule& s);

// "<generator>:<k>=<v>,<k>=<v>" in key order; "<generator>:" without params.
std::string schedule_key(const Schedule& s);

// Inverse of schedule_key; throws RecordError quoting the key and the part at fault.
Schedule parse_schedule_key(const std::string& key);

// ---- records ----

// ok | compile_error | timeout | wrong_result | run_error
bool is_record_status(const std::string& status);

struct TuningRecord {
    int format = kRecordFormat;
    std::string lkc_version;
    std::string timestamp;  // "YYYY-MM-DDTHH:MM:SS[.fff]Z"
    std::string workload;   // canonical workload string (from_json canonicalises)
    nlohmann::json device = nlohmann::json::object();  // {"kind","id",...}
    std::string device_id;                             // == device["id"]
    Schedule schedule;
    std::string kernel;    // AOT variant name; may be empty (e.g. a JIT candidate)
    std::string status;    // see is_record_status
    std::string error;     // "" when status is ok
    double median_ms = 0;  // > 0 for ok; NaN (JSON null) allowed otherwise
    std::vector<double> times_ms;
    double compile_s = 0;                             // >= 0
    nlohmann::json tuner = nlohmann::json::object();  // {"seed":int,"trial":int,"strategy":str,...}
};

// `device_id` is authoritative: to_json writes it as device["id"].
void to_json(nlohmann::json& j, const TuningRecord& r);
// Validates every field; throws RecordError naming the field and what was expected. A format
// other than 1 fails with "record format N is newer than this lkc (1)" (or "... is not valid").
// Unknown extra top-level fields are ignored.
void from_json(const nlohmann::json& j, TuningRecord& r);

// One line of a record file, without the trailing '\n'. Validates `r` first.
std::string record_line(const TuningRecord& r);
// Parses one line; throws RecordError on invalid JSON or fields.
TuningRecord parse_record_line(const std::string& line);

// Appends `r` as one line. Creates parent directories; opens with O_APPEND|O_CREAT, holds
// flock(LOCK_EX) while writing the whole line in one write call and fsyncing. If the file does not
// end in '\n' (a writer crashed mid-line) a '\n' is written first so the new line stays parseable.
// Validates `r` first; throws RecordError naming the file on any failure.
void append_record(const std::string& path, const TuningRecord& r);

struct RecordsLoad {
    std::vector<TuningRecord> records;  // valid lines, in file order
    std::vector<std::string> problems;  // "file:line: what", one per skipped line
    size_t lines = 0;                   // non-blank lines read (records + problems)
};

// Reads a record file under flock(LOCK_SH). Malformed, truncated, wrong-format or invalid lines
// are skipped and reported in `problems`; never throws for bad content. A missing file gives an
// empty result. Throws RecordError naming the file if it exists but cannot be read (directory,
// permission, I/O error).
RecordsLoad load_records(const std::string& path);

// For each (workload, device_id): the latest ok record with tuner.strategy "chosen" (the tuner's
// decision after its final interleaved comparison), else the ok record with the least median_ms
// (ties: the earliest); sorted by (device_id, workload).
std::vector<TuningRecord> best_records(const std::vector<TuningRecord>& records);

// The distinct device ids of `records`, sorted.
std::vector<std::string> record_device_ids(const std::vector<TuningRecord>& records);

// ---- distilled tables ----

struct DistilledEntry {
    std::string workload;  // canonical
    Schedule schedule;
    std::string kernel;
    double median_ms = 0;              // > 0
    std::optional<double> default_ms;  // the hand default's time, if it was measured
    int trials = 0;                    // records of this workload/device
    int failed = 0;                    // of which not ok
};

struct DistilledTable {
    int format = kRecordFormat;
    std::string lkc_version;
    nlohmann::json device = nlohmann::json::object();
    std::string device_id;                // == device["id"]
    std::vector<DistilledEntry> entries;  // workloads unique
};

// The table for `device_id`:
//   {"format":1,"lkc_version":..,"device":{..},"entries":[{"workload","generator","params",
//    "kernel","median_ms","default_ms","trials","failed"},..]}
// One entry per workload with an ok record (the best one), sorted by workload. default_ms is the
// least median of the ok records whose tuner.strategy is "default" (null if none). `device` is the
// device object of the last record of that id. Throws RecordError if no record has `device_id`.
nlohmann::json distill(const std::vector<TuningRecord>& records, const std::string& device_id);

// Validates `table` (as parse_distilled) and writes it atomically: a temp file in the same
// directory, fsync, rename over `path`, fsync of the directory. Creates parent directories.
void write_distilled(const std::string& path, const nlohmann::json& table);

// Validates a distilled table; errors are "<source>: <field path>: <what was expected>".
DistilledTable parse_distilled(const std::string& text, const std::string& source_name);
DistilledTable distilled_from_json(const nlohmann::json& j, const std::string& source_name);
DistilledTable read_distilled(const std::string& path);

// `<tuned_dir>/<device_slug(device_id)>.json`.
std::string distilled_table_path(const std::string& tuned_dir, const std::string& device_id);

// ---- selection ----

enum class MatchKind { Exact, Nearest };

struct TunedMatch {
    MatchKind kind = MatchKind::Exact;
    std::string recorded_workload;  // the workload the schedule was tuned for
    Schedule schedule;
    std::string kernel;
    double median_ms = 0;  // measured on recorded_workload
    double distance = 0;   // 0 for exact matches
    std::string source;    // file the entry came from
};

// Tuned schedules of any number of sources (distilled tables, record files), and the rule that
// picks one for a workload on a device:
//   1. exact: an entry for the same canonical workload string and device id; with several (from
//      several sources) the lower median first;
//   2. nearest: entries of the same device, op, pass, dtype and stride, and the same dilation
//      (dwconv2d, dwconv2d_sparse), branch list (dwconv2d_multi) or K/k/G (shiftwise), ordered
//      by distance = sum over n, c, h, w of |log2(a/b)| + 2 * (|log2(kh_a/kh_b)| +
//      |log2(kw_a/kw_b)|) (kernel terms for dwconv2d / dwconv2d_sparse only), then median;
//   3. nullopt: the caller uses its hand default.
// `accept` (if set) is asked in that order and may reject a schedule that cannot run the
// workload; the first accepted one is returned. An invalid `w` throws WorkloadError.
class ScheduleBook {
  public:
    void add_distilled(const DistilledTable& table, const std::string& source);
    // Adds best_records(records).
    void add_records(const std::vector<TuningRecord>& records, const std::string& source);

    std::optional<TunedMatch> lookup(const Workload& w, const std::string& device_id,
                                     const std::function<bool(const Schedule&)>& accept = {}) const;

    size_t size() const { return entries_.size(); }

  private:
    struct Entry {
        std::string device_id;
        std::string workload_str;
        Workload workload;
        Schedule schedule;
        std::string kernel;
        double median_ms;
        std::string source;
    };
    void add(const std::string& device_id, const std::string& workload, const Schedule& schedule,
             const std::string& kernel, double median_ms, const std::string& source);

    std::vector<Entry> entries_;
};

// Distance of the selection rule between two workloads, or nullopt if they are not comparable.
std::optional<double> workload_distance(const Workload& a, const Workload& b);

// $LKC_RECORDS if set, else $XDG_CACHE_HOME/lkc/records.jsonl, else ~/.cache/lkc/records.jsonl.
std::string default_user_records_path();

}  // namespace lkc
