// Test helper for diffusers_crosscheck.py: builds the UNet of a config, gives it random weights
// (so that the zero-initialised layers take part), runs one forward pass in eval mode and writes
//   OUT/weights.pt  the state dict, with diffusers' parameter names
//   OUT/case.pt     {"x": input, "t": timesteps, "eps": output, "parameters": count}
// Usage: export_unet_case CONFIG.json OUT_DIR [SEED]
#include <filesystem>
#include <iostream>

#include "base/atomic_file.h"
#include "config/config_json.h"
#include "formats/weights.h"
#include "model/unet.h"

int main(int argc, char** argv) {
  if (argc < 3) {
    std::cerr << "usage: export_unet_case CONFIG.json OUT_DIR [SEED]\n";
    return 2;
  }
  try {
    const ddpm::Config config = ddpm::load_config(argv[1], {});
    const std::filesystem::path out = argv[2];
    std::filesystem::create_directories(out);
    torch::manual_seed(argc > 3 ? std::stoll(argv[3]) : 0);

    ddpm::UNet model(config.model, config.data);
    {
      torch::NoGradGuard no_grad;
      for (auto& parameter : model->parameters()) parameter.normal_(0.0, 0.05);
    }
    model->eval();
    const auto x = torch::randn({3, config.data.channels, config.data.height, config.data.width});
    const auto t = torch::tensor({0, 421, 999}, torch::kLong);
    torch::Tensor eps;
    {
      torch::NoGradGuard no_grad;
      eps = model->forward(x, t);
    }
    ddpm::save_weights(*model, out / "weights.pt");

    c10::impl::GenericDict result(c10::StringType::get(), c10::AnyType::get());
    result.insert("x", x);
    result.insert("t", t);
    result.insert("eps", eps);
    result.insert("parameters", model->parameter_count());
    const std::vector<char> bytes = ddpm::pickle_for_python(c10::IValue(result));
    ddpm::write_file_atomically(out / "case.pt", std::string_view(bytes.data(), bytes.size()));
    return 0;
  } catch (const std::exception& error) {
    std::cerr << "export_unet_case: " << error.what() << "\n";
    return 1;
  }
}
