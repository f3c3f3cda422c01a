// Test helper for hf_interop_check.py: loads a model the way `ddpm sample` does (a checkpoint,
// run directory or diffusers folder, through model_source.h), runs one forward pass and writes
// the prediction.
// Usage: predict_eps SOURCE INPUT.pt OUTPUT.pt [--channels-last]
//   INPUT.pt  {"x": [B, C, H, W] float32, "t": [B] int64, and for a class-conditional model
//             optionally "labels": [B] int64} (torch.save)
//   OUTPUT.pt the predicted noise [B, C, H, W]
#include <iostream>

#include "formats/weights.h"
#include "interop/model_source.h"
#include "model/unet.h"

int main(int argc, char** argv) {
  if (argc < 4) {
    std::cerr << "usage: predict_eps SOURCE INPUT.pt OUTPUT.pt [--channels-last]\n";
    return 2;
  }
  try {
    torch::set_num_threads(static_cast<int>(std::thread::hardware_concurrency()));
    const ddpm::ModelSource source = ddpm::load_model_source(argv[1]);
    const ddpm::Config& config = source.config;
    ddpm::UNet model(config.model, config.data);
    ddpm::load_state_dict(*model, source.ema, argv[1]);
    model->set_channels_last(argc > 4 && std::string(argv[4]) == "--channels-last");
    model->eval();
    const auto input = ddpm::read_pickle_file(argv[2], "input").toGenericDict();
    const torch::Tensor x = input.at("x").toTensor();
    const torch::Tensor t = input.at("t").toTensor();
    torch::Tensor eps;
    {
      torch::NoGradGuard no_grad;
      eps = input.contains("labels") ? model->forward(x, t, input.at("labels").toTensor())
                                     : model->forward(x, t);
    }
    ddpm::write_pickle_file(argv[3], c10::IValue(eps));
    return 0;
  } catch (const std::exception& error) {
    std::cerr << "predict_eps: " << error.what() << "\n";
    return 1;
  }
}
