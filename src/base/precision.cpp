// Precision names and the autocast guard; see precision.h.
#include "base/precision.h"

#include <ATen/autocast_mode.h>

#include "base/suggest.h"

namespace ddpm {

const std::vector<std::string>& precision_names() {
  static const std::vector<std::string> names = {"fp32", "bf16", "fp16"};
  return names;
}

Precision precision_from_name(const std::string& name, const std::string& key) {
  require_choice(name, key, precision_names());
  if (name == "bf16") return Precision::bf16;
  if (name == "fp16") return Precision::fp16;
  return Precision::fp32;
}

const std::string& precision_name(Precision precision) {
  return precision_names()[static_cast<size_t>(precision)];
}

torch::ScalarType precision_dtype(Precision precision) {
  switch (precision) {
    case Precision::bf16: return torch::kBFloat16;
    case Precision::fp16: return torch::kHalf;
    case Precision::fp32: break;
  }
  return torch::kFloat;
}

AutocastGuard::AutocastGuard(Precision precision, torch::Device device) {
  if (precision == Precision::fp32) return;
  active_ = true;
  device_type_ = device.type();
  was_enabled_ = at::autocast::is_autocast_enabled(device_type_);
  previous_dtype_ = at::autocast::get_autocast_dtype(device_type_);
  at::autocast::set_autocast_enabled(device_type_, true);
  at::autocast::set_autocast_dtype(device_type_, precision_dtype(precision));
}

AutocastGuard::~AutocastGuard() {
  if (!active_) return;
  at::autocast::set_autocast_enabled(device_type_, was_enabled_);
  at::autocast::set_autocast_dtype(device_type_, previous_dtype_);
  if (!was_enabled_) at::autocast::clear_cache();
}

}  // namespace ddpm
