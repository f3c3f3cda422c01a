// Trains a model for a few steps from C++ with libddpm: a JSON config, an image folder and a
// run directory, as `ddpm train` takes them, with a callback after every step.
//   train CONFIG IMAGE_DIR RUN_DIR [STEPS]
#include <iostream>
#include <string>

#include <ddpm/ddpm.h>

int main(int argc, char** argv) {
  if (argc < 4) {
    std::cerr << "usage: train CONFIG IMAGE_DIR RUN_DIR [STEPS]\n";
    return 2;
  }
  ddpm::TrainRequest request;
  request.config_file = argv[1];
  request.data = argv[2];
  request.run_dir = argv[3];
  const std::string steps = argc > 4 ? argv[4] : "10";
  request.overrides = {"train.steps=" + steps, "train.device=\"cpu\"", "train.sample_every=0"};
  request.on_step = [](const ddpm::TrainStepReport& report) {
    std::cout << "step " << report.step << "/" << report.total << " loss " << report.loss
              << "\n";
  };
  try {
    const ddpm::TrainReport report = ddpm::train_model(request);
    std::cout << "trained to step " << report.last_step << "; checkpoint "
              << report.last_checkpoint << "\n";
  } catch (const ddpm::Error& error) {
    std::cerr << "error: " << error.what() << "\n";
    return error.exit_code();
  }
  return 0;
}
