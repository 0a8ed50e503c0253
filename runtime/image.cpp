#include "runtime/image.h"

#include <png.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <iterator>
#include <memory>

namespace lkc {

namespace {

std::vector<uint8_t> slurp(const std::string& path) {
    std::ifstream f(path, std::ios::binary);
    if (!f) throw ImageError(path + ": cannot open (" + std::strerror(errno) + ")");
    std::vector<uint8_t> d((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
    if (f.bad()) throw ImageError(path + ": read error");
    return d;
}

struct PngRead {
    const std::vector<uint8_t>* data;
    size_t pos;
};

Image decode_png(const std::vector<uint8_t>& data, const std::string& path) {
    png_structp png = png_create_read_struct(PNG_LIBPNG_VER_STRING, nullptr, nullptr, nullptr);
    if (!png) throw ImageError(path + ": libpng could not start");
    png_infop info = png_create_info_struct(png);
    std::string err;
    png_set_error_fn(
        png, &err,
        [](png_structp p, png_const_charp msg) {
            *static_cast<std::string*>(png_get_error_ptr(p)) = msg;
            png_longjmp(p, 1);
        },
        [](png_structp, png_const_charp) {});
    Image img;
    std::vector<png_bytep> rows;
    PngRead src{&data, 0};
    if (setjmp(png_jmpbuf(png))) {
        png_destroy_read_struct(&png, &info, nullptr);
        throw ImageError(path + ": not a valid PNG (" + err + ")");
    }
    png_set_read_fn(png, &src, [](png_structp p, png_bytep out, png_size_t n) {
        auto* s = static_cast<PngRead*>(png_get_io_ptr(p));
        if (s->pos + n > s->data->size()) png_error(p, "file is truncated");
        std::memcpy(out, s->data->data() + s->pos, n);
        s->pos += n;
    });
    png_read_info(png, info);
    const png_uint_32 w = png_get_image_width(png, info), h = png_get_image_height(png, info);
    if (w == 0 || h == 0 || w > 32768 || h > 32768) {
        png_destroy_read_struct(&png, &info, nullptr);
        throw ImageError(path + ": image size " + std::to_string(w) + "x" + std::to_string(h) +
                         " outside 1..32768");
    }
    const int bit_depth = png_get_bit_depth(png, info), color = png_get_color_type(png, info);
    if (bit_depth == 16) png_set_strip_16(png);
    if (color == PNG_COLOR_TYPE_PALETTE) png_set_palette_to_rgb(png);
    if (color == PNG_COLOR_TYPE_GRAY && bit_depth < 8) png_set_expand_gray_1_2_4_to_8(png);
    if (png_get_valid(png, info, PNG_INFO_tRNS)) png_set_tRNS_to_alpha(png);
    if (color == PNG_COLOR_TYPE_GRAY || color == PNG_COLOR_TYPE_GRAY_ALPHA)
        png_set_gray_to_rgb(png);
    png_set_strip_alpha(png);
    png_read_update_info(png, info);
    img.width = int(w);
    img.height = int(h);
    img.rgb.resize(size_t(w) * h * 3);
    rows.resize(h);
    for (png_uint_32 y = 0; y < h; ++y) rows[y] = img.rgb.data() + size_t(y) * w * 3;
    png_read_image(png, rows.data());
    png_destroy_read_struct(&png, &info, nullptr);
    return img;
}

// PNM: P6 / P5 (binary) and P3 / P2 (ASCII), maxval 1..255 scaled to 8 bits, or up to 65535
// (binary two bytes, big-endian) scaled down.
Image decode_pnm(const std::vector<uint8_t>& d, const std::string& path) {
    size_t pos = 2;
    auto fail = [&](const std::string& what) -> void { throw ImageError(path + ": PNM " + what); };
    auto next_int = [&](const char* field) {
        while (pos < d.size()) {
            if (d[pos] == '#') {
                while (pos < d.size() && d[pos] != '\n') ++pos;
            } else if (std::isspace(d[pos])) {
                ++pos;
            } else {
                break;
            }
        }
        if (pos >= d.size() || !std::isdigit(d[pos])) fail(std::string("header: no ") + field);
        long v = 0;
        while (pos < d.size() && std::isdigit(d[pos])) {
            v = v * 10 + (d[pos++] - '0');
            if (v > 1 << 20) fail(std::string("header: ") + field + " too large");
        }
        return int(v);
    };
    const char kind = char(d[1]);
    const bool color = kind == '6' || kind == '3', binary = kind == '6' || kind == '5';
    Image img;
    img.width = next_int("width");
    img.height = next_int("height");
    const int maxval = next_int("maxval");
    if (img.width < 1 || img.height < 1 || img.width > 32768 || img.height > 32768)
        fail("size " + std::to_string(img.width) + "x" + std::to_string(img.height) +
             " outside 1..32768");
    if (maxval < 1 || maxval > 65535)
        fail("maxval " + std::to_string(maxval) + " outside 1..65535");
    const size_t px = size_t(img.width) * img.height, ch = color ? 3 : 1;
    std::vector<int> v(px * ch);
    if (binary) {
        ++pos;  // the single whitespace after maxval
        const size_t bps = maxval > 255 ? 2 : 1;
        if (d.size() < pos + v.size() * bps) {
            fail("data is truncated: " + std::to_string(d.size() - std::min(d.size(), pos)) +
                 " bytes for " + std::to_string(v.size() * bps));
        }
        for (size_t i = 0; i < v.size(); ++i)
            v[i] = bps == 2 ? (d[pos + 2 * i] << 8) | d[pos + 2 * i + 1] : d[pos + i];
    } else {
        for (size_t i = 0; i < v.size(); ++i) v[i] = next_int("sample");
    }
    img.rgb.resize(px * 3);
    for (size_t i = 0; i < px; ++i)
        for (size_t c = 0; c < 3; ++c) {
            const int s = v[i * ch + (color ? c : 0)];
            if (s > maxval)
                fail("sample " + std::to_string(s) + " above maxval " + std::to_string(maxval));
            img.rgb[i * 3 + c] = uint8_t(std::lround(255.0 * s / maxval));
        }
    return img;
}

// PIL's bicubic kernel (a = -0.5), support 2.
double bicubic(double x) {
    const double a = -0.5;
    x = std::fabs(x);
    if (x < 1) return ((a + 2) * x - (a + 3)) * x * x + 1;
    if (x < 2) return (((x - 5) * x + 8) * x - 4) * a;
    return 0;
}

// One separable pass along an axis of `n_in` samples to `n_out`: per output index its first
// input and normalised weights (PIL ImagingResample's precompute_coeffs).
struct Coeffs {
    std::vector<int> first, count;
    std::vector<double> w;  // count.max() per output
    int ksize = 0;
};
Coeffs coeffs(int n_in, int n_out) {
    const double scale = double(n_in) / n_out, fscale = std::max(scale, 1.0);
    const double support = 2.0 * fscale;
    Coeffs c;
    c.ksize = int(std::ceil(support)) * 2 + 1;
    c.first.resize(n_out);
    c.count.resize(n_out);
    c.w.assign(size_t(n_out) * c.ksize, 0.0);
    for (int i = 0; i < n_out; ++i) {
        const double center = (i + 0.5) * scale;
        int lo = int(center - support + 0.5), hi = int(center + support + 0.5);
        lo = std::max(lo, 0);
        hi = std::min(hi, n_in);
        double sum = 0;
        for (int x = lo; x < hi; ++x) {
            const double wt = bicubic((x - center + 0.5) / fscale);
            c.w[size_t(i) * c.ksize + (x - lo)] = wt;
            sum += wt;
        }
        if (sum != 0)
            for (int x = 0; x < hi - lo; ++x) c.w[size_t(i) * c.ksize + x] /= sum;
        c.first[i] = lo;
        c.count[i] = hi - lo;
    }
    return c;
}

uint8_t clip8(double v) { return uint8_t(std::clamp(std::lround(v), 0L, 255L)); }

}  // namespace

Image read_image(const std::string& path) {
    const std::vector<uint8_t> d = slurp(path);
    if (d.size() >= 8 && png_sig_cmp(d.data(), 0, 8) == 0) return decode_png(d, path);
    if (d.size() >= 2 && d[0] == 'P' && (d[1] == '6' || d[1] == '5' || d[1] == '3' || d[1] == '2'))
        return decode_pnm(d, path);
    throw ImageError(path + ": not a PNG or PPM/PGM image (" + std::to_string(d.size()) +
                     " bytes, unknown signature)");
}

void write_ppm(const std::string& path, const Image& img) {
    const std::string tmp = path + ".tmp." + std::to_string(::getpid());
    {
        std::ofstream f(tmp, std::ios::binary);
        if (!f) throw ImageError(tmp + ": cannot create");
        f << "P6\n" << img.width << " " << img.height << "\n255\n";
        f.write(reinterpret_cast<const char*>(img.rgb.data()), std::streamsize(img.rgb.size()));
        if (!f) throw ImageError(tmp + ": write error");
    }
    if (std::rename(tmp.c_str(), path.c_str()) != 0) {
        std::remove(tmp.c_str());
        throw ImageError(path + ": cannot rename the temp file into place");
    }
}

Image resize_bicubic(const Image& img, int width, int height) {
    // Horizontal, rounded to 8 bits, then vertical (PIL's order and rounding).
    Image mid;
    mid.width = width;
    mid.height = img.height;
    mid.rgb.resize(size_t(width) * img.height * 3);
    const Coeffs ch = coeffs(img.width, width);
    for (int y = 0; y < img.height; ++y)
        for (int x = 0; x < width; ++x)
            for (int c = 0; c < 3; ++c) {
                double s = 0;
                for (int k = 0; k < ch.count[x]; ++k)
                    s += ch.w[size_t(x) * ch.ksize + k] *
                         img.rgb[(size_t(y) * img.width + ch.first[x] + k) * 3 + c];
                mid.rgb[(size_t(y) * width + x) * 3 + c] = clip8(s);
            }
    Image out;
    out.width = width;
    out.height = height;
    out.rgb.resize(size_t(width) * height * 3);
    const Coeffs cv = coeffs(img.height, height);
    for (int y = 0; y < height; ++y)
        for (int x = 0; x < width; ++x)
            for (int c = 0; c < 3; ++c) {
                double s = 0;
                for (int k = 0; k < cv.count[y]; ++k)
                    s += cv.w[size_t(y) * cv.ksize + k] *
                         mid.rgb[(size_t(cv.first[y] + k) * width + x) * 3 + c];
                out.rgb[(size_t(y) * width + x) * 3 + c] = clip8(s);
            }
    return out;
}

Tensor preprocess(const Image& img, const Preprocess& p) {
    if (img.width < 1 || img.height < 1) throw ImageError("preprocess: empty image");
    const int short_side = int(std::floor(p.size / p.crop_pct));
    int rw, rh;
    if (img.width <= img.height) {
        rw = short_side;
        rh = int(std::floor(double(short_side) * img.height / img.width));
    } else {
        rh = short_side;
        rw = int(std::floor(double(short_side) * img.width / img.height));
    }
    const Image r = (rw == img.width && rh == img.height) ? img : resize_bicubic(img, rw, rh);
    // Centre crop (torchvision: top = round((h - size) / 2)).
    const int top = int(std::lround((rh - p.size) / 2.0)),
              left = int(std::lround((rw - p.size) / 2.0));
    Tensor t(DType::F32, {1, 3, p.size, p.size});
    float* o = t.data<float>();
    for (int c = 0; c < 3; ++c)
        for (int y = 0; y < p.size; ++y)
            for (int x = 0; x < p.size; ++x) {
                const int sy = y + top, sx = x + left;
                const double v = (sy >= 0 && sy < rh && sx >= 0 && sx < rw)
                                     ? r.rgb[(size_t(sy) * rw + sx) * 3 + c] / 255.0
                                     : 0.0;
                o[(size_t(c) * p.size + y) * p.size + x] = float((v - p.mean[c]) / p.std[c]);
            }
    return t;
}

}  // namespace lkc
