#include "graph/train/loop.h"

#include <chrono>
#include <cmath>

#include "graph/executor.h"
#include "graph/models/models.h"
#include "graph/weights.h"

namespace lkc {
namespace train {

namespace {

double now_ms() {
    using namespace std::chrono;
    return duration<double, std::milli>(steady_clock::now().time_since_epoch()).count();
}

graph::Graph build(const Dataset& data, const RunOptions& o) {
    graph::ModelOptions mo;
    mo.num_classes = data.classes;
    mo.image_size = o.image_size;
    mo.batch = o.batch;
    mo.in_chans = o.in_chans;
    graph::Graph g = graph::build_model(o.model, mo);
    graph::init_weights(g, o.train.seed);
    if (!o.weights.empty()) graph::load_weights(g, o.weights);
    return g;
}

// Metadata a checkpoint must agree on to be resumed by this run.
std::map<std::string, std::string> run_metadata(const RunOptions& o) {
    return {{"model", graph::canonical_model_name(o.model)},
            {"image_size", std::to_string(o.image_size)},
            {"in_chans", std::to_string(o.in_chans)},
            {"batch", std::to_string(o.batch)},
            {"grad_accum", std::to_string(o.train.grad_accum)},
            {"optimizer", o.train.optimizer},
            {"sparsity", std::to_string(o.train.sparsity)},
            {"mask_structure", mask_structure_name(o.train.mask_structure)},
            {"drop_path", std::to_string(o.train.drop_path)}};
}

}  // namespace

struct TrainingRun::Impl {
    const Dataset& data;
    RunOptions o;
    std::unique_ptr<Trainer> trainer;
    // Data order: `order` shuffles each epoch; `epoch_start` is its state before the current
    // epoch's shuffle (what a checkpoint stores, the permutation is re-derived); `aug` draws flips.
    std::mt19937_64 order, epoch_start, aug;
    std::vector<int> perm;
    int epoch = 0;
    size_t pos = 0;

    Impl(const Dataset& d, const RunOptions& opt) : data(d), o(opt) {}

    void begin_epoch() {
        epoch_start = order;
        perm = shuffled(data.train.count, order);
        pos = 0;
    }
};

TrainingRun::TrainingRun(const Dataset& data, const RunOptions& o)
    : impl_(std::make_unique<Impl>(data, o)) {
    Impl& m = *impl_;
    if (o.batch < 1) throw std::invalid_argument("batch must be >= 1");
    if (o.steps < 1) throw std::invalid_argument("steps must be >= 1");
    if (o.batch > data.train.count)
        throw std::invalid_argument("batch " + std::to_string(o.batch) + " exceeds the " +
                                    std::to_string(data.train.count) + " training images");
    m.o.train.total_steps = o.steps;
    m.trainer = std::make_unique<Trainer>(build(data, m.o), m.o.train);
    m.order.seed(o.train.seed * 0x9E3779B97F4A7C15ull + 1);
    m.aug.seed(o.train.seed * 0x9E3779B97F4A7C15ull + 2);
    m.begin_epoch();
}

TrainingRun::~TrainingRun() = default;

StepLog TrainingRun::step() {
    Impl& m = *impl_;
    const double t0 = now_ms();
    StepLog log;
    int correct = 0, samples = 0;
    double loss = 0;
    for (int k = 0; k < m.o.train.grad_accum; ++k) {
        if (m.pos + size_t(m.o.batch) > m.perm.size()) {
            ++m.epoch;
            m.begin_epoch();
        }
        const std::vector<int> index(m.perm.begin() + long(m.pos),
                                     m.perm.begin() + long(m.pos) + m.o.batch);
        m.pos += size_t(m.o.batch);
        std::vector<bool> flip(index.size(), false);
        if (m.o.flip)
            for (size_t i = 0; i < flip.size(); ++i) flip[i] = (m.aug() & 1) != 0;
        std::vector<int32_t> labels;
        for (int i : index) labels.push_back(m.data.train.labels[size_t(i)]);
        const Tensor x = make_batch(m.data.train, index, m.o.image_size, m.o.in_chans, flip);
        const StepResult r = m.trainer->step(x, labels);
        loss += r.loss * r.samples;
        correct += r.correct;
        samples += r.samples;
        log.lr = r.lr;
        log.pruned += r.pruned;
    }
    log.step = m.trainer->optimizer_steps();
    log.epoch = m.epoch;
    log.loss = loss / samples;
    log.accuracy = double(correct) / samples;
    log.ms = now_ms() - t0;
    return log;
}

void TrainingRun::save(const std::string& path) const {
    const Impl& m = *impl_;
    CheckpointData c = m.trainer->state();
    c.tensors["train.step"] = scalar_i64(m.trainer->optimizer_steps());
    c.tensors["train.epoch"] = scalar_i64(m.epoch);
    c.tensors["train.batch_in_epoch"] = scalar_i64(int64_t(m.pos / size_t(m.o.batch)));
    c.tensors["train.rng.order_epoch"] = rng_tensor(m.epoch_start);
    c.tensors["train.rng.aug"] = rng_tensor(m.aug);
    c.metadata = run_metadata(m.o);
    write_checkpoint(path, c);
}

void TrainingRun::resume(const std::string& path) {
    Impl& m = *impl_;
    const CheckpointData c = read_checkpoint(path);
    for (const auto& [k, v] : run_metadata(m.o)) {
        auto it = c.metadata.find(k);
        if (it == c.metadata.end())
            throw std::runtime_error(path + ": checkpoint metadata has no '" + k + "'");
        if (it->second != v)
            throw std::runtime_error(path + ": checkpoint was written with " + k + " " +
                                     it->second + ", this run has " + v);
    }
    auto need = [&](const std::string& k) -> const Tensor& {
        auto it = c.tensors.find(k);
        if (it == c.tensors.end())
            throw std::runtime_error(path + ": checkpoint has no tensor '" + k + "'");
        return it->second;
    };
    m.trainer->load_state(c);
    m.epoch = int(scalar_value(need("train.epoch"), "train.epoch"));
    m.order = rng_from_tensor(need("train.rng.order_epoch"), "train.rng.order_epoch");
    m.begin_epoch();
    const int64_t b = scalar_value(need("train.batch_in_epoch"), "train.batch_in_epoch");
    if (b < 0 || size_t(b) * size_t(m.o.batch) > m.perm.size())
        throw std::runtime_error(path + ": train.batch_in_epoch " + std::to_string(b) +
                                 " is out of range");
    m.pos = size_t(b) * size_t(m.o.batch);
    m.aug = rng_from_tensor(need("train.rng.aug"), "train.rng.aug");
}

EvalResult TrainingRun::evaluate(int limit, bool ema) const {
    const Impl& m = *impl_;
    const double t0 = now_ms();
    graph::Executor ex(m.trainer->model(ema), graph::ExecOptions{});
    const Split& s = m.data.test;
    const int n = limit > 0 ? std::min(limit, s.count) : s.count, B = m.o.batch;
    EvalResult r;
    double loss = 0;
    for (int start = 0; start < n; start += B) {
        std::vector<int> index;
        for (int i = 0; i < B; ++i)
            index.push_back(std::min(start + i, n - 1));  // last batch padded
        const Tensor x = make_batch(s, index, m.o.image_size, m.o.in_chans);
        const Tensor y = ex.run({{"x", x}}).begin()->second;
        const int k = int(y.dim(1));
        for (int i = 0; i < B && start + i < n; ++i) {
            const float* l = y.data<float>() + size_t(i) * size_t(k);
            int best = 0;
            double mx = l[0], z = 0;
            for (int j = 1; j < k; ++j)
                if (l[j] > l[best]) best = j;
            mx = l[best];
            for (int j = 0; j < k; ++j) z += std::exp(double(l[j]) - mx);
            const int label = s.labels[size_t(start + i)];
            loss += std::log(z) - (double(l[label]) - mx);
            r.correct += best == label;
            ++r.samples;
        }
    }
    r.loss = loss / std::max(1, r.samples);
    r.ms = now_ms() - t0;
    return r;
}

int64_t TrainingRun::steps_done() const { return impl_->trainer->optimizer_steps(); }
Trainer& TrainingRun::trainer() { return *impl_->trainer; }
const RunOptions& TrainingRun::options() const { return impl_->o; }

}  // namespace train
}  // namespace lkc
