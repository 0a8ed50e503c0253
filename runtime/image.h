// Images for classification: PNG (libpng) and PPM/PGM (P6, P5, P3, P2) files, and the official
// evaluation transform of the four model families (timm's `create_transform` at eval, as
// RepLKNet, SLaK, UniRepLKNet and ShiftwiseConv evaluate ImageNet):
//   resize the shorter side to floor(size / 0.875) with PIL's antialiased bicubic filter
//   (a = -0.5), centre crop size x size, scale to [0, 1], normalise with the ImageNet mean
//   (0.485, 0.456, 0.406) and std (0.229, 0.224, 0.225).
#pragma once

#include <cstdint>
#include <stdexcept>
#include <string>
#include <vector>

#include "runtime/tensor.h"

namespace lkc {

class ImageError : public std::runtime_error {
  public:
    explicit ImageError(const std::string& msg) : std::runtime_error(msg) {}
};

// 8-bit RGB, row-major, interleaved (grey and alpha images are converted to RGB).
struct Image {
    int width = 0, height = 0;
    std::vector<uint8_t> rgb;  // width * height * 3
};

// Reads a PNG or PPM/PGM file (by its signature, not its name). Throws ImageError naming the
// file and what is wrong (missing, unreadable, not an image, truncated, unsupported variant).
Image read_image(const std::string& path);

// Writes a binary PPM (P6), atomically (temp file + rename). For tests and tools.
void write_ppm(const std::string& path, const Image& img);

struct Preprocess {
    int size = 224;           // crop size
    double crop_pct = 0.875;  // resize shorter side to size / crop_pct
    double mean[3] = {0.485, 0.456, 0.406};
    double std[3] = {0.229, 0.224, 0.225};
};

// The evaluation transform above: [1, 3, size, size] f32 NCHW.
Tensor preprocess(const Image& img, const Preprocess& p = {});

// Antialiased bicubic resample of one 8-bit RGB image (PIL's Image.resize(BICUBIC) algorithm):
// separable, kernel support scaled by the downscale factor, rounded to 8 bits.
Image resize_bicubic(const Image& img, int width, int height);

}  // namespace lkc
