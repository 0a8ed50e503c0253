// Image classification datasets for `lkc train`: Fashion-MNIST from the Debian package
// dataset-fashion-mnist (IDX files, gzip-compressed, /usr/share/datasets/fashion-mnist), or any
// directory holding the four IDX files (plain or .gz). Real data on disk; missing or corrupt files
// are errors naming the file and what is wrong.
#pragma once

#include <cstdint>
#include <random>
#include <stdexcept>
#include <string>
#include <vector>

#include "runtime/tensor.h"

namespace lkc {
namespace train {

class DatasetError : public std::runtime_error {
  public:
    explicit DatasetError(const std::string& msg) : std::runtime_error(msg) {}
};

struct Split {
    int count = 0, rows = 0, cols = 0;
    std::vector<uint8_t> images;  // count * rows * cols, row-major
    std::vector<uint8_t> labels;  // count
};

struct Dataset {
    std::string name;
    int classes = 10;
    Split train, test;
};

// The package's directory.
constexpr const char* kFashionMnistDir = "/usr/share/datasets/fashion-mnist";

// Reads {train,t10k}-{images-idx3,labels-idx1}-ubyte[.gz] from `dir`. Checks the IDX magic
// numbers (2051 images, 2049 labels), dimensions, that image and label counts agree, that the data
// is complete and labels are < 10.
Dataset load_idx_dataset(const std::string& dir, const std::string& name = "fashion-mnist");

// One IDX file (gzip or plain), validated; for tests.
Split read_idx_pair(const std::string& images_path, const std::string& labels_path);

// A batch as the network input: [B, channels, size, size] f32, each image resized (nearest for
// integer factors, bilinear otherwise) from rows x cols to size x size, normalised with the
// dataset's mean / std (Fashion-MNIST train: 0.2860, 0.3530), replicated over channels.
// `index` picks the images; `flip` mirrors horizontally (training augmentation) where set.
Tensor make_batch(const Split& s, const std::vector<int>& index, int size, int channels,
                  const std::vector<bool>& flip = {}, double mean = 0.2860, double std = 0.3530);

// A permutation of 0..count-1 for an epoch, from the generator (deterministic for a seed).
std::vector<int> shuffled(int count, std::mt19937_64& rng);

}  // namespace train
}  // namespace lkc
