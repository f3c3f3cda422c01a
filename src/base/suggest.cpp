// Edit-distance suggestions for error messages.
#include "base/suggest.h"

#include "ddpm/error.h"

#include <algorithm>
#include <numeric>

namespace ddpm {

int edit_distance(const std::string& a, const std::string& b) {
  std::vector<int> previous(b.size() + 1);
  std::vector<int> current(b.size() + 1);
  std::iota(previous.begin(), previous.end(), 0);
  for (size_t i = 1; i <= a.size(); ++i) {
    current[0] = static_cast<int>(i);
    for (size_t j = 1; j <= b.size(); ++j) {
      const int substitution = previous[j - 1] + (a[i - 1] == b[j - 1] ? 0 : 1);
      current[j] = std::min({previous[j] + 1, current[j - 1] + 1, substitution});
    }
    std::swap(previous, current);
  }
  return previous[b.size()];
}

std::string closest_match(const std::string& word, const std::vector<std::string>& candidates) {
  std::string best;
  int best_distance = 0;
  for (const auto& candidate : candidates) {
    const int distance = edit_distance(word, candidate);
    if (best.empty() || distance < best_distance) {
      best = candidate;
      best_distance = distance;
    }
  }
  // A typo changes a few characters; beyond a third of the word it is a different word.
  const int allowed = std::max<int>(2, static_cast<int>(word.size()) / 3);
  return (!best.empty() && best_distance <= allowed) ? best : std::string();
}

std::string suggestion_text(const std::string& word, const std::vector<std::string>& candidates) {
  const std::string match = closest_match(word, candidates);
  if (!match.empty()) return "did you mean '" + match + "'?";
  std::string list;
  for (const auto& candidate : candidates) list += (list.empty() ? "" : ", ") + candidate;
  return "valid choices: " + list;
}

std::string choice_list(const std::vector<std::string>& names, const std::string& last) {
  std::string list;
  for (size_t i = 0; i < names.size(); ++i) {
    list += (i == 0 ? "" : i + 1 == names.size() ? " " + last + " " : ", ") + names[i];
  }
  return list;
}

void require_choice(const std::string& value, const std::string& key_path,
                    const std::vector<std::string>& choices) {
  if (std::find(choices.begin(), choices.end(), value) == choices.end()) {
    throw config_error(key_path, "unknown value '" + value + "'; " +
                                     suggestion_text(value, choices));
  }
}

}  // namespace ddpm
