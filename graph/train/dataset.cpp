#include "graph/train/dataset.h"

#include <sys/stat.h>
#include <zlib.h>

#include <algorithm>
#include <cmath>
#include <numeric>

namespace lkc {
namespace train {

namespace {

bool exists(const std::string& p) {
    struct stat st;
    return ::stat(p.c_str(), &st) == 0;
}

// Whole file through zlib (reads gzip and plain files alike).
std::vector<uint8_t> read_maybe_gz(const std::string& path) {
    gzFile f = gzopen(path.c_str(), "rb");
    if (!f) throw DatasetError(path + ": cannot open");
    std::vector<uint8_t> out;
    uint8_t buf[1 << 16];
    int n;
    while ((n = gzread(f, buf, sizeof(buf))) > 0) out.insert(out.end(), buf, buf + n);
    int err = 0;
    const char* msg = gzerror(f, &err);
    const bool bad = n < 0 || (err != Z_OK && err != Z_STREAM_END);
    const std::string what = msg ? msg : "";
    gzclose(f);
    if (bad) throw DatasetError(path + ": corrupt compressed data (" + what + ")");
    return out;
}

uint32_t be32(const std::vector<uint8_t>& d, size_t at) {
    return (uint32_t(d[at]) << 24) | (uint32_t(d[at + 1]) << 16) | (uint32_t(d[at + 2]) << 8) |
           d[at + 3];
}

std::string find(const std::string& dir, const std::string& base) {
    for (const std::string& p : {dir + "/" + base + ".gz", dir + "/" + base})
        if (exists(p)) return p;
    throw DatasetError(dir + ": no " + base + " or " + base +
                       ".gz (Fashion-MNIST comes with the Debian package dataset-fashion-mnist)");
}

}  // namespace

Split read_idx_pair(const std::string& images_path, const std::string& labels_path) {
    const std::vector<uint8_t> im = read_maybe_gz(images_path), lb = read_maybe_gz(labels_path);
    if (im.size() < 16 || be32(im, 0) != 2051) {
        throw DatasetError(images_path + ": not an IDX image file (magic " +
                           (im.size() >= 4 ? std::to_string(be32(im, 0)) : std::string("missing")) +
                           ", expected 2051)");
    }
    if (lb.size() < 8 || be32(lb, 0) != 2049) {
        throw DatasetError(labels_path + ": not an IDX label file (magic " +
                           (lb.size() >= 4 ? std::to_string(be32(lb, 0)) : std::string("missing")) +
                           ", expected 2049)");
    }
    Split s;
    const uint32_t n = be32(im, 4), rows = be32(im, 8), cols = be32(im, 12), nl = be32(lb, 4);
    if (n != nl) {
        throw DatasetError(images_path + " has " + std::to_string(n) + " images but " +
                           labels_path + " has " + std::to_string(nl) + " labels");
    }
    if (rows == 0 || cols == 0 || rows > 4096 || cols > 4096 || n == 0 || n > (1u << 26)) {
        throw DatasetError(images_path + ": implausible dimensions " + std::to_string(n) + " x " +
                           std::to_string(rows) + " x " + std::to_string(cols));
    }
    const size_t want = 16 + size_t(n) * rows * cols;
    if (im.size() != want) {
        throw DatasetError(images_path + ": " + std::to_string(im.size()) + " bytes, expected " +
                           std::to_string(want) + " (truncated or trailing data)");
    }
    if (lb.size() != 8 + size_t(n)) {
        throw DatasetError(labels_path + ": " + std::to_string(lb.size()) + " bytes, expected " +
                           std::to_string(8 + size_t(n)));
    }
    s.count = int(n);
    s.rows = int(rows);
    s.cols = int(cols);
    s.images.assign(im.begin() + 16, im.end());
    s.labels.assign(lb.begin() + 8, lb.end());
    for (size_t i = 0; i < s.labels.size(); ++i)
        if (s.labels[i] >= 10) {
            throw DatasetError(labels_path + ": label " + std::to_string(s.labels[i]) + " at " +
                               std::to_string(i) + " is not in 0..9");
        }
    return s;
}

Dataset load_idx_dataset(const std::string& dir, const std::string& name) {
    if (!exists(dir)) {
        throw DatasetError(dir +
                           ": no such directory (install the Debian package "
                           "dataset-fashion-mnist, or give a directory with the IDX files)");
    }
    Dataset d;
    d.name = name;
    d.train =
        read_idx_pair(find(dir, "train-images-idx3-ubyte"), find(dir, "train-labels-idx1-ubyte"));
    d.test =
        read_idx_pair(find(dir, "t10k-images-idx3-ubyte"), find(dir, "t10k-labels-idx1-ubyte"));
    if (d.train.rows != d.test.rows || d.train.cols != d.test.cols) {
        throw DatasetError(dir + ": train images are " + std::to_string(d.train.rows) + "x" +
                           std::to_string(d.train.cols) + " but test images " +
                           std::to_string(d.test.rows) + "x" + std::to_string(d.test.cols));
    }
    return d;
}

Tensor make_batch(const Split& s, const std::vector<int>& index, int size, int channels,
                  const std::vector<bool>& flip, double mean, double std) {
    const int b = int(index.size());
    Tensor t(DType::F32, {b, channels, size, size});
    float* o = t.data<float>();
    const double sy = double(s.rows) / size, sx = double(s.cols) / size;
    for (int i = 0; i < b; ++i) {
        const int k = index[size_t(i)];
        if (k < 0 || k >= s.count)
            throw DatasetError("make_batch: index " + std::to_string(k) + " out of range");
        const uint8_t* img = s.images.data() + size_t(k) * s.rows * s.cols;
        const bool fl = !flip.empty() && flip[size_t(i)];
        for (int y = 0; y < size; ++y)
            for (int x = 0; x < size; ++x) {
                // Bilinear on pixel centres (exact copy when size == rows).
                const double fy = std::clamp((y + 0.5) * sy - 0.5, 0.0, double(s.rows - 1));
                const double fxr = std::clamp((x + 0.5) * sx - 0.5, 0.0, double(s.cols - 1));
                const double fx = fl ? double(s.cols - 1) - fxr : fxr;
                const int y0 = int(fy), x0 = int(fx);
                const int y1 = std::min(y0 + 1, s.rows - 1), x1 = std::min(x0 + 1, s.cols - 1);
                const double ay = fy - y0, ax = fx - x0;
                auto px = [&](int yy, int xx) { return img[size_t(yy) * s.cols + xx] / 255.0; };
                const double v = (1 - ay) * ((1 - ax) * px(y0, x0) + ax * px(y0, x1)) +
                                 ay * ((1 - ax) * px(y1, x0) + ax * px(y1, x1));
                const float nv = float((v - mean) / std);
                for (int c = 0; c < channels; ++c)
                    o[((size_t(i) * channels + c) * size + y) * size + x] = nv;
            }
    }
    return t;
}

std::vector<int> shuffled(int count, std::mt19937_64& rng) {
    std::vector<int> v(static_cast<size_t>(count), 0);
    std::iota(v.begin(), v.end(), 0);
    // Fisher-Yates with our own draws (std::shuffle's use of the engine is implementation-defined;
    // this keeps epochs identical across standard libraries, so resume is exact).
    for (int i = count - 1; i > 0; --i) {
        const int j = int(rng() % uint64_t(i + 1));
        std::swap(v[size_t(i)], v[size_t(j)]);
    }
    return v;
}

}  // namespace train
}  // namespace lkc
