// "Did you mean ...?" hints for misspelt keys and names, by edit distance.
#pragma once

#include <string>
#include <vector>

namespace ddpm {

// Levenshtein distance between two strings.
int edit_distance(const std::string& a, const std::string& b);

// The candidate closest to `word` when it is close enough to be a likely typo, else "".
std::string closest_match(const std::string& word, const std::vector<std::string>& candidates);

// A sentence for an error message: "did you mean 'lr'?" or the list of valid choices.
std::string suggestion_text(const std::string& word, const std::vector<std::string>& candidates);

// The names as a sentence's list, "a, b or c" (for --help texts and messages, which take
// their choices from the same tables as the parsers).
std::string choice_list(const std::vector<std::string>& names, const std::string& last = "or");

// Throws ddpm::Error (config) naming `key_path` unless `value` is one of `choices`.
void require_choice(const std::string& value, const std::string& key_path,
                    const std::vector<std::string>& choices);

}  // namespace ddpm
