// Generates images from a checkpoint into memory with libddpm, then writes each as a binary
// PGM (gray) or PPM (RGB) file with this program's own code.
//   generate CHECKPOINT OUT_DIR [COUNT] [SEED]
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <iostream>
#include <string>

#include <ddpm/ddpm.h>

int main(int argc, char** argv) {
  if (argc < 3) {
    std::cerr << "usage: generate CHECKPOINT OUT_DIR [COUNT] [SEED]\n";
    return 2;
  }
  try {
    const ddpm::Pipeline pipeline = ddpm::Pipeline::load(argv[1], "cpu");
    ddpm::SampleRequest request;
    request.num_images = argc > 3 ? std::atoll(argv[3]) : 4;
    request.seed = argc > 4 ? std::strtoull(argv[4], nullptr, 10) : 0;
    request.on_progress = [](const ddpm::SampleProgress& p) {
      if (p.step == p.steps_total) std::cout << "images " << p.images_done + p.batch_images
                                             << "/" << p.images_total << "\n";
    };
    for (const ddpm::GeneratedImage& image : pipeline.generate(request)) {
      char name[32];
      std::snprintf(name, sizeof name, "/image_%05lld.%s", static_cast<long long>(image.index),
                    image.channels == 1 ? "pgm" : "ppm");
      std::ofstream out(argv[2] + std::string(name), std::ios::binary);
      out << (image.channels == 1 ? "P5" : "P6") << "\n"
          << image.width << " " << image.height << "\n255\n";
      out.write(reinterpret_cast<const char*>(image.pixels.data()),
                static_cast<std::streamsize>(image.pixels.size()));
      if (!out) throw std::runtime_error("cannot write " + std::string(argv[2]) + name);
    }
    std::cout << "ddpm " << ddpm::version() << ": wrote " << request.num_images << " images to "
              << argv[2] << "\n";
  } catch (const ddpm::Error& error) {
    std::cerr << "error: " << error.what() << "\n";
    return error.exit_code();
  }
  return 0;
}
