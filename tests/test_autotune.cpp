// The autotuner: the search space (every candidate valid, canonical, uniquely named; nonsense
// rejected), the selection rule wired into the registry (exact, nearest, hand default; corrupt
// records reported), measurement failures recorded instead of crashing, and short real tuning
// runs through the CLI on the CPU and on PoCL (records written with the version field, resumed
// from the records, the tuned kernel then used by `lkc op` and still exact).
#include <gtest/gtest.h>
#include <sys/wait.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <set>
#include <sstream>

#include "autotune/candidates.h"
#include "autotune/compile.h"
#include "autotune/measure.h"
#include "runtime/device_info.h"
#include "runtime/op_inputs.h"
#include "runtime/op_runner.h"
#include "runtime/safetensors.h"
#include "runtime/schedule_selection.h"
#include "runtime/tuning_records.h"

#ifndef LKC_BINARY
#error "LKC_BINARY must name the lkc executable"
#endif

namespace lkc::test {
namespace {

namespace fs = std::filesystem;

const char* kSpaceCases[] = {
    "dwconv2d:fwd:n1c128h56w56:k31x31",
    "dwconv2d:fwd:n1c20h7w7:k13x13:s2",
    "dwconv2d:fwd:n2c33h14w14:k7x7:d3",
    "dwconv2d:bwd_data:n1c64h14w14:k51x5",
    "dwconv2d:bwd_data:n1c16h9w9:k3x3:s2",
    "dwconv2d:bwd_weight:n8c128h14w14:k31x31",
    "dwconv2d:bwd_weight:n1c5h5w5:k1x1",
    "dwconv2d_multi:fwd:n1c124h56w56:b51x5d1,5x51d1,5x5d1",
    "dwconv2d_multi:bwd_weight:n1c32h14w14:b13x13d1,5x5d1,7x7d2,3x3d3",
    "shiftwise:fwd:n1c60h56w56:K51k3g4",
    "shiftwise:bwd_weight:n1c122h28w28:K49k3g4",
    "dwconv2d_sparse:fwd:n1c128h14w14:k31x31",
    "dwconv2d_sparse:bwd_data:n1c16h13w15:k7x7:s2",
    "dwconv2d_sparse:bwd_weight:n1c16h56w56:k51x5",
};

TEST(TuneSpace, EveryCandidateIsValidCanonicalAndUniquelyNamed) {
    for (Device d : {Device::Cpu, Device::OpenCL}) {
        for (const char* wl : kSpaceCases) {
            const Workload w = parse_workload(wl);
            const auto cs = tune::enumerate_candidates(w, d);
            ASSERT_FALSE(cs.empty()) << wl << " on " << device_name(d);
            std::set<std::string> names;
            for (const tune::Candidate& c : cs) {
                EXPECT_EQ(tune::invalid_reason(w, d, c.generator, c.params), "")
                    << c.name << " for " << wl;
                EXPECT_EQ(space::canonical(c.generator, family_of(d), c.params), c.params)
                    << c.name;
                EXPECT_TRUE(names.insert(c.name).second) << "duplicate candidate " << c.name;
                for (char ch : c.name)
                    ASSERT_TRUE(std::isalnum(static_cast<unsigned char>(ch)) || ch == '_')
                        << c.name;
                EXPECT_GT(c.model_cost, 0) << c.name;
            }
            // Sorted by model cost.
            for (size_t i = 1; i < cs.size(); ++i)
                EXPECT_LE(cs[i - 1].model_cost, cs[i].model_cost);
            // The hand default is a candidate of the same workload.
            const tune::Candidate def = tune::default_candidate(w, d);
            EXPECT_FALSE(def.generator.empty()) << wl;
        }
    }
}

TEST(TuneSpace, NonsenseIsRejectedWithAReason) {
    const Workload small = parse_workload("dwconv2d:fwd:n1c16h7w7:k3x3");
    auto reason = [&](const Workload& w, const char* gen, space::Params p) {
        return tune::invalid_reason(w, Device::Cpu, gen, p);
    };
    EXPECT_NE(reason(small, "dwconv2d_fwd", {{"tile", "16"}}).find("tile wider"),
              std::string::npos);
    EXPECT_NE(reason(small, "dwconv2d_fwd", {{"tile", "4"}, {"chunk", "8"}}).find("chunk wider"),
              std::string::npos);
    EXPECT_NE(reason(small, "dwconv2d_fwd",
                     {{"tile", "4"}, {"chunk", "3"}, {"par_rows", "false"}, {"rows_per_task", "2"}})
                  .find("rows_per_task"),
              std::string::npos);
    EXPECT_EQ(reason(small, "dwconv2d_fwd", {{"tile", "4"}, {"chunk", "3"}}), "");
    const Workload dil = parse_workload("dwconv2d:fwd:n1c16h28w28:k7x7:d2");
    EXPECT_NE(reason(dil, "dwconv2d_fwd", {{"pixels", "true"}, {"chunk", "7"}}), "");
    EXPECT_NE(reason(small, "dwconv2d_bwd_weight", {}), "");  // wrong pass
    EXPECT_NE(reason(small, "dwconv2d_fwd", {{"tile", "abc"}}).find("integer"), std::string::npos);
    EXPECT_NE(reason(small, "dwconv2d_fwd", {{"nope", "1"}}).find("no schedule parameter"),
              std::string::npos);
    const Workload sp = parse_workload("dwconv2d_sparse:fwd:n1c16h56w56:k31x31");
    EXPECT_NE(reason(sp, "dwconv2d_sparse_fwd", {{"tile", "56"}, {"chunk", "6"}}).find("28 vector"),
              std::string::npos);
}

TEST(TuneSpace, CompiledVariantsHaveCanonicalSchedules) {
    std::map<std::string, std::string> seen;  // family + schedule name -> variant
    for (const KernelInfo& k : all_kernels()) {
        space::Params p;
        ASSERT_NO_THROW(p = kernel_schedule(k)) << k.name;
        const std::string key = std::string(device_name(k.device)) + ":" +
                                space::schedule_name(k.generator, family_of(k.device), p);
        EXPECT_FALSE(seen.count(key))
            << k.name << " and " << seen[key] << " share schedule " << key;
        seen[key] = k.name;
        // Every compiled variant is found again from its schedule.
        EXPECT_EQ(kernel_for_schedule(Schedule{k.generator, p}, k.device), &k) << k.name;
    }
}

// Writes one record for `wl` naming compiled variant `k`.
void write_record(const std::string& path, const std::string& wl, const KernelInfo& k, double ms) {
    TuningRecord r;
    r.lkc_version = lkc_version();
    r.timestamp = utc_timestamp_now();
    r.workload = wl;
    r.device = device_json(cpu_device_info());
    r.device_id = cpu_device_info().id;
    r.schedule = Schedule{k.generator, kernel_schedule(k)};
    r.kernel = k.name;
    r.status = "ok";
    r.median_ms = ms;
    r.times_ms = {ms};
    r.tuner = {{"seed", 1}, {"trial", 0}, {"strategy", "model"}};
    append_record(path, r);
}

class TuneFiles : public testing::Test {
  protected:
    void SetUp() override {
        dir_ = fs::temp_directory_path() /
               ("lkc_tune_test_" + std::to_string(::getpid()) + "_" +
                testing::UnitTest::GetInstance()->current_test_info()->name());
        fs::create_directories(dir_);
    }
    void TearDown() override {
        disable_schedules();
        fs::remove_all(dir_);
    }
    std::string path(const std::string& n) const { return (dir_ / n).string(); }

    struct Result {
        int code;
        std::string out, err;
    };
    Result lkc(const std::string& args) const {
        const std::string out = path("stdout.txt"), err = path("stderr.txt");
        const std::string cmd = "LKC_KERNEL_CACHE=" + path("kcache") +
                                " POCL_CACHE_DIR=" + path("pocl") + " " + LKC_BINARY + " " + args +
                                " >" + out + " 2>" + err;
        const int status = std::system(cmd.c_str());
        Result r;
        r.code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
        r.out = slurp(out);
        r.err = slurp(err);
        return r;
    }
    static std::string slurp(const std::string& p) {
        std::ifstream f(p);
        std::stringstream s;
        s << f.rdbuf();
        return s.str();
    }
    fs::path dir_;
};

// The selection rule as the runners see it: an exact record wins, a record of a nearby shape is
// used for another one, nothing matching gives the hand default; corrupt lines are reported.
TEST_F(TuneFiles, RunnersUseExactThenNearestThenDefault) {
    const std::string wl = "dwconv2d:fwd:n1c32h28w28:k7x7:f32";
    const Workload w = parse_workload(wl);
    const KernelInfo& def = hand_default_kernel(w, Device::Cpu);
    const KernelInfo* other = nullptr;  // a different variant that can run w
    for (const KernelInfo& k : all_kernels())
        if (k.device == Device::Cpu && &k != &def && kernel_supports(k, w)) other = &k;
    ASSERT_NE(other, nullptr);
    const std::string recs = path("records.jsonl");
    write_record(recs, wl, *other, 0.1);
    {
        std::ofstream f(recs, std::ios::app);
        f << "{not json\n";
    }
    use_schedules({recs}, /*builtin_tables=*/false);
    EXPECT_EQ(schedule_problems().size(), 1u);

    auto r = make_runner(w, Device::Cpu);
    EXPECT_EQ(r->kernel_name(), other->name);
    EXPECT_EQ(r->selection().how, "tuned (exact)");
    EXPECT_EQ(r->selection().source, recs);

    const Workload near = parse_workload("dwconv2d:fwd:n2c32h28w28:k7x7:f32");
    auto rn = make_runner(near, Device::Cpu);
    EXPECT_EQ(rn->kernel_name(), other->name);
    EXPECT_EQ(rn->selection().how, "tuned (nearest: " + wl + ")");

    const Workload far = parse_workload("dwconv2d:bwd_weight:n1c32h28w28:k7x7:f32");  // other pass
    EXPECT_EQ(make_runner(far, Device::Cpu)->selection().how, "hand default");

    // A named kernel always wins; with schedules off the default returns.
    EXPECT_EQ(make_runner(w, Device::Cpu, def.name)->selection().how, "named");
    disable_schedules();
    EXPECT_EQ(make_runner(w, Device::Cpu)->kernel_name(), def.name);
}

// A schedule no variant has and the cache does not hold falls through to the hand default.
TEST_F(TuneFiles, UnbuiltScheduleFallsBackToDefault) {
    setenv("LKC_KERNEL_CACHE", path("empty-cache").c_str(), 1);
    const std::string wl = "dwconv2d:fwd:n1c32h28w28:k7x7:f32";
    TuningRecord r;
    r.lkc_version = lkc_version();
    r.timestamp = utc_timestamp_now();
    r.workload = wl;
    r.device = device_json(cpu_device_info());
    r.device_id = cpu_device_info().id;
    r.schedule = Schedule{"dwconv2d_fwd", {{"tile", "6"}, {"chunk", "7"}, {"rows_per_task", "2"}}};
    r.status = "ok";
    r.median_ms = 0.01;
    r.times_ms = {0.01};
    append_record(path("r.jsonl"), r);
    use_schedules({path("r.jsonl")}, false);
    auto run = make_runner(parse_workload(wl), Device::Cpu);
    EXPECT_EQ(run->selection().how, "hand default");
    unsetenv("LKC_KERNEL_CACHE");
}

// A library that is not a kernel, or a kernel of another generator, is a run_error of that
// candidate, reported with the reason; the caller goes on.
TEST_F(TuneFiles, BrokenCandidateLibrariesAreRunErrors) {
    const Workload w = parse_workload("dwconv2d:fwd:n1c16h14w14:k7x7:f32");
    tune::Candidate c =
        tune::make_candidate(w, Device::Cpu, "dwconv2d_fwd", {{"tile", "6"}, {"chunk", "7"}});
    tune::MeasureOptions o;
    o.worker = LKC_BINARY;
    o.timeout_s = 60;
    {
        std::ofstream f(path("garbage.so"));
        f << "this is not a shared object";
    }
    tune::Measurement m = tune::measure_candidate(w, Device::Cpu, c, path("garbage.so"), o);
    EXPECT_EQ(m.status, "run_error");
    EXPECT_NE(m.error.find("garbage.so"), std::string::npos) << m.error;

    // Compile a bwd_data candidate and present it as a forward one: the metadata check rejects it.
    setenv("LKC_KERNEL_CACHE", path("kcache").c_str(), 1);
    const Workload bd = parse_workload("dwconv2d:bwd_data:n1c16h14w14:k7x7:f32");
    tune::Candidate cb =
        tune::make_candidate(bd, Device::Cpu, "dwconv2d_bwd_data", {{"tile", "6"}, {"chunk", "7"}});
    const tune::CompileResult cr = tune::compile_candidate(cb, Device::Cpu, cpu_device_info().id);
    ASSERT_TRUE(cr.ok) << cr.error;
    fs::copy_file(cr.library, path(c.name + ".so"));
    m = tune::measure_candidate(w, Device::Cpu, c, path(c.name + ".so"), o);
    EXPECT_EQ(m.status, "run_error");
    unsetenv("LKC_KERNEL_CACHE");
}

// A real, short tuning run: records appear (one per trial, version field set), the summary names
// the schedule, a second run resumes from the records without measuring again, `lkc op` then runs
// the tuned kernel (from the cache if it is not compiled in) and it is still exact.
TEST_F(TuneFiles, ShortCpuRunRecordsResumesAndIsUsed) {
    const std::string wl = "dwconv2d:fwd:n1c16h14w14:k7x7:f32";
    const std::string recs = path("records.jsonl");
    // 9 trials: the hand default, the 6 compiled-in variants of lowest model cost, 2 compiled.
    const std::string args =
        "tune " + wl + " --budget 120 --max-trials 9 --no-final --records " + recs;
    Result r = lkc(args);
    ASSERT_EQ(r.code, 0) << r.err;
    EXPECT_NE(r.out.find(wl), std::string::npos) << r.out;
    // One record per trial plus the tuner's decision ("chosen").
    auto trials_of = [](const std::vector<TuningRecord>& rs, bool chosen) {
        std::vector<TuningRecord> v;
        for (const TuningRecord& t : rs)
            if ((t.tuner.value("strategy", "") == "chosen") == chosen) v.push_back(t);
        return v;
    };
    RecordsLoad l = load_records(recs);
    EXPECT_TRUE(l.problems.empty());
    const auto trials = trials_of(l.records, false);
    ASSERT_EQ(trials.size(), 9u) << r.err;
    EXPECT_EQ(trials_of(l.records, true).size(), 1u);
    int compiled = 0;
    for (const TuningRecord& t : trials) {
        EXPECT_EQ(t.status, "ok") << t.kernel << ": " << t.error;
        EXPECT_EQ(t.lkc_version, lkc_version());
        EXPECT_EQ(t.workload, wl);
        compiled += t.kernel.find("__") != std::string::npos;
    }
    EXPECT_EQ(trials[0].tuner.value("strategy", ""), "default");
    // Paired trials carry the hand default's time measured alongside.
    EXPECT_GT(trials[1].tuner.value("paired_default_ms", 0.0), 0.0);

    // Resume: same seed and budget, nothing measured again (one more decision record).
    r = lkc(args);
    ASSERT_EQ(r.code, 0) << r.err;
    EXPECT_NE(r.err.find("9 from records"), std::string::npos) << r.err;
    l = load_records(recs);
    EXPECT_EQ(trials_of(l.records, false).size(), 9u);
    EXPECT_EQ(trials_of(l.records, true).size(), 2u);
    EXPECT_GE(compiled, 1);

    // lkc op picks the recorded best and reproduces the reference.
    r = lkc("example " + wl + " -o " + path("in.safetensors"));
    ASSERT_EQ(r.code, 0) << r.err;
    r = lkc("op " + wl + " --inputs " + path("in.safetensors") + " --outputs " +
            path("out.safetensors") + " --records " + recs + " --check --verbose");
    ASSERT_EQ(r.code, 0) << r.out << r.err;
    EXPECT_NE(r.err.find("tuned (exact"), std::string::npos) << r.err;
    EXPECT_NE(r.out.find("vs double reference"), std::string::npos);

    // A record naming a compiled (not built-in) candidate: lkc op loads it from the kernel cache.
    for (const TuningRecord& t : l.records) {
        if (t.kernel.find("__") == std::string::npos) continue;
        TuningRecord only = t;
        only.median_ms = 1e-6;  // best by far
        append_record(path("one.jsonl"), only);
        break;
    }
    r = lkc("op " + wl + " --inputs " + path("in.safetensors") + " --outputs " +
            path("out2.safetensors") + " --records " + path("one.jsonl") + " --check --verbose");
    ASSERT_EQ(r.code, 0) << r.out << r.err;
    EXPECT_NE(r.err.find("__"), std::string::npos) << r.err;  // the candidate's name
    EXPECT_NE(r.err.find("tuned (exact"), std::string::npos) << r.err;

    r = lkc("tune best --records " + recs);
    ASSERT_EQ(r.code, 0) << r.err;
    EXPECT_NE(r.out.find(wl), std::string::npos);
    r = lkc("tune distill --records " + recs + " --out-dir " + path("tuned"));
    ASSERT_EQ(r.code, 0) << r.err;
    const DistilledTable t =
        read_distilled(distilled_table_path(path("tuned"), cpu_device_info().id));
    ASSERT_EQ(t.entries.size(), 1u);
    EXPECT_EQ(t.entries[0].workload, wl);
    EXPECT_EQ(t.entries[0].trials, 11);
}

TEST_F(TuneFiles, ShortOpenClRunOnPocl) {
    try {
        (void)opencl_device_info();
    } catch (const DeviceUnavailable& e) {
        GTEST_SKIP() << "no OpenCL device: " << e.what();
    }
    const std::string wl = "dwconv2d:fwd:n1c16h14w14:k5x5:f32";
    const std::string recs = path("records.jsonl");
    Result r = lkc("tune " + wl +
                   " --device opencl --budget 300 --max-trials 2 --no-final --records " + recs);
    ASSERT_EQ(r.code, 0) << r.err;
    const RecordsLoad l = load_records(recs);
    ASSERT_EQ(l.records.size(), 3u);  // two trials and the decision
    for (const TuningRecord& t : l.records) {
        EXPECT_EQ(t.status, "ok") << t.kernel << ": " << t.error;
        EXPECT_EQ(t.device_id.rfind("opencl/", 0), 0u) << t.device_id;
    }
}

TEST_F(TuneFiles, MissingCudaAndBadInputsAreClearErrors) {
    Result r =
        lkc("tune dwconv2d:fwd:n1c16h14w14:k5x5:f32 --device cuda --records " + path("r.jsonl"));
    EXPECT_EQ(r.code, 1);
    EXPECT_NE(r.err.find("no CUDA device"), std::string::npos) << r.err;
    {
        std::ofstream f(path("shapes.txt"));
        f << "# comment\ndwconv2d:fwd:n1c16h14w14:k5x5\ndwconv2d:fwd:n1c16h14w14:k4x4\n";
    }
    r = lkc("tune --shapes " + path("shapes.txt") + " --records " + path("r.jsonl"));
    EXPECT_EQ(r.code, 1);
    EXPECT_NE(r.err.find("shapes.txt:3"), std::string::npos) << r.err;
    r = lkc("tune dwconv2d:fwd:n1c16h14w14:k5x5 --strategy annealing --records " + path("r.jsonl"));
    EXPECT_EQ(r.code, 1);
    EXPECT_NE(r.err.find("annealing"), std::string::npos) << r.err;
}

}  // namespace
}  // namespace lkc::test
