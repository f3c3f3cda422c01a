// The walk over a pickle's opcodes; see pickle_scan.h.
#include "formats/pickle_scan.h"

#include <charconv>
#include <cstdint>
#include <optional>
#include <vector>

#include "base/byte_order.h"
#include "ddpm/error.h"

namespace ddpm {
namespace {

// How an opcode's argument is laid out.
enum class Argument {
  none,
  fixed,      // `width` bytes
  length,     // a `width`-byte little-endian length, then that many bytes
  line,       // text up to a newline
  two_lines,  // GLOBAL and INST: module and name
  unknown,    // no opcode
};

struct Layout {
  Argument argument = Argument::unknown;
  size_t width = 0;
};

Layout layout_of(uint8_t opcode) {
  switch (opcode) {
    case '(': case '0': case '1': case '2': case 'N': case 'Q': case 'R': case 'a': case 'b':
    case 'd': case '}': case 'e': case 'l': case ']': case 'o': case 's': case 't': case ')':
    case 'u': case 0x81: case 0x85: case 0x86: case 0x87: case 0x88: case 0x89: case 0x8f:
    case 0x90: case 0x91: case 0x92: case 0x93: case 0x94: case '.':
      return {Argument::none};
    case 'K': case 'h': case 'q': case 0x80: case 0x82: return {Argument::fixed, 1};
    case 'M': case 0x83: return {Argument::fixed, 2};
    case 'J': case 'j': case 'r': case 0x84: return {Argument::fixed, 4};
    case 'G': case 0x95: return {Argument::fixed, 8};
    case 'U': case 'C': case 0x8a: case 0x8c: return {Argument::length, 1};
    case 'T': case 'X': case 'B': case 0x8b: return {Argument::length, 4};
    case 0x8d: case 0x8e: case 0x96: return {Argument::length, 8};
    case 'F': case 'I': case 'L': case 'P': case 'S': case 'V': case 'g': case 'p':
      return {Argument::line};
    case 'c': case 'i': return {Argument::two_lines};
    default: return {};
  }
}

// The values the pickle builds, as a graph of what refers to what. Containers gain references
// after they are made (APPEND, SETITEM, BUILD) and the memo hands out any value again, so a
// value can come to refer to itself; LibTorch's values count references, and such a cycle is
// never freed. A call (REDUCE) may return one of its arguments (restore_type_tag does), so its
// result is taken to be all of them at once: values merged into one (union-find) refer to what
// each refers to. Marks are stack positions, as in LibTorch's unpickler.
class ValueGraph {
 public:
  // Runs one opcode (`number`: its slot or integer argument); false when the pickle is
  // malformed here, which the unpickler refuses by itself, so that the walk stops.
  bool run(uint8_t opcode, std::optional<uint64_t> number) {
    switch (opcode) {
      case '(':  // MARK
        marks_.push_back(stack_.size());
        return true;
      case '0': return pop().has_value();
      case '1': return pop_to_mark().has_value();
      case 'a': {  // APPEND
        const auto item = pop();
        return item && refer(*item);
      }
      case 'e': case 'u': case 0x90: {  // APPENDS, SETITEMS, ADDITEMS: into what is below the mark
        const auto items = pop_to_mark();
        if (!items) return false;
        for (const size_t item : *items) {
          if (!refer(item)) return false;
        }
        return true;
      }
      case 's': {  // SETITEM
        const auto value = pop(), key = pop();
        return value && key && refer(*key) && refer(*value);
      }
      case 'b': {  // BUILD
        const auto state = pop();
        return state && refer(*state);
      }
      case 't': case 'l': case 'd': case 0x91: {  // TUPLE, LIST, DICT, FROZENSET: from the mark
        const auto items = pop_to_mark();
        return items && (push(make(*items)), true);
      }
      case 0x85: case 0x86: case 0x87: {  // TUPLE1-3
        std::vector<size_t> items(opcode - 0x84);
        for (size_t& item : items) {
          const auto popped = pop();
          if (!popped) return false;
          item = *popped;
        }
        push(make(items));
        return true;
      }
      case 'R': case 0x81: {  // REDUCE, NEWOBJ: a call on an argument tuple
        const auto arguments = pop(), callable = pop();
        return arguments && callable && (push(call({*arguments})), true);
      }
      case 0x92: {  // NEWOBJ_EX: with keyword arguments
        const auto keywords = pop(), arguments = pop(), callable = pop();
        return keywords && arguments && callable && (push(call({*arguments, *keywords})), true);
      }
      case 'o': case 'i': {  // OBJ, INST: a call on the values from the mark
        const auto items = pop_to_mark();
        return items && (push(call({make(*items)})), true);
      }
      case 0x93: {  // STACK_GLOBAL: a global named by two strings
        const auto name = pop(), module = pop();
        return name && module && (push(make({})), true);
      }
      case '2':  // DUP
        return !stack_.empty() && (push(stack_.back()), true);
      case 'Q': {  // BINPERSID: a storage, by its id
        const auto id = pop();
        return id && (push(make({*id})), true);
      }
      case 'q': case 'r': case 'p': case 0x94: {  // PUT, MEMOIZE
        if (stack_.empty()) return false;
        const size_t slot = opcode == 0x94 ? memo_.size() : static_cast<size_t>(*number);
        if (slot >= memo_.size()) memo_.resize(slot + 1, kNone);
        memo_[slot] = stack_.back();
        return true;
      }
      case 'h': case 'j': case 'g': {  // GET; a slot skipped by a PUT holds None
        if (*number >= memo_.size()) return false;
        push(memo_[*number] == kNone ? make({}) : memo_[*number]);
        return true;
      }
      case 0x80: case 0x95: case '.':  // PROTO, FRAME, STOP
        return true;
      default:  // a value of its own: a number, a string, a global, an empty container
        push(make({}));
        return true;
    }
  }

  // Whether some value refers to itself, directly or through others (a depth-first search).
  bool has_cycle() {
    enum class State : uint8_t { unseen, open, done };
    std::vector<State> state(references_.size(), State::unseen);
    for (size_t root = 0; root < references_.size(); ++root) {
      if (find(root) != root || state[root] != State::unseen) continue;
      std::vector<std::pair<size_t, size_t>> path{{root, 0}};  // value, next reference
      state[root] = State::open;
      while (!path.empty()) {
        auto& [value, next] = path.back();
        if (next == references_[value].size()) {
          state[value] = State::done;
          path.pop_back();
          continue;
        }
        const size_t child = find(references_[value][next++]);
        if (state[child] == State::open) return true;
        if (state[child] == State::unseen) {
          state[child] = State::open;
          path.emplace_back(child, 0);
        }
      }
    }
    return false;
  }

 private:
  static constexpr size_t kNone = SIZE_MAX;

  size_t make(std::vector<size_t> refers_to) {
    references_.push_back(std::move(refers_to));
    parent_.push_back(parent_.size());
    return parent_.size() - 1;
  }
  size_t find(size_t value) {
    while (parent_[value] != value) value = parent_[value] = parent_[parent_[value]];
    return value;
  }
  size_t merge(size_t a, size_t b) {
    a = find(a);
    b = find(b);
    if (a == b) return a;
    if (references_[a].size() < references_[b].size()) std::swap(a, b);
    references_[a].insert(references_[a].end(), references_[b].begin(), references_[b].end());
    references_[b].clear();
    parent_[b] = a;
    return a;
  }
  // What a call returns may be any value of its argument tuples.
  size_t call(const std::vector<size_t>& argument_tuples) {
    size_t result = make({});
    for (const size_t tuple : argument_tuples) {
      const std::vector<size_t> arguments = references_[find(tuple)];
      for (const size_t argument : arguments) result = merge(result, argument);
    }
    return result;
  }
  void push(size_t value) { stack_.push_back(value); }
  std::optional<size_t> pop() {
    if (stack_.empty() || (!marks_.empty() && marks_.back() >= stack_.size())) {
      return std::nullopt;
    }
    const size_t value = stack_.back();
    stack_.pop_back();
    return value;
  }
  std::optional<std::vector<size_t>> pop_to_mark() {
    if (marks_.empty() || marks_.back() > stack_.size()) return std::nullopt;
    std::vector<size_t> items(stack_.begin() + static_cast<std::ptrdiff_t>(marks_.back()),
                              stack_.end());
    stack_.resize(marks_.back());
    marks_.pop_back();
    return items;
  }
  // The value on top of the stack (a container) comes to refer to `item`.
  bool refer(size_t item) {
    if (stack_.empty()) return false;
    references_[find(stack_.back())].push_back(item);
    return true;
  }

  std::vector<size_t> stack_, marks_, memo_;
  std::vector<std::vector<size_t>> references_;  // of each merged value, at its representative
  std::vector<size_t> parent_;
};

}  // namespace

void check_pickle_claims(std::string_view pickle, const std::string& what) {
  const auto refuse = [&](size_t at, const std::string& reason) {
    return Error(ErrorKind::runtime, what + " holds a pickle whose opcode at byte " +
                                         std::to_string(at) + " " + reason +
                                         ": the file is corrupt or crafted");
  };
  ValueGraph values;
  bool simulating = true;
  size_t at = 0;
  while (at < pickle.size()) {
    const size_t opcode_at = at;
    const uint8_t opcode = static_cast<uint8_t>(pickle[at++]);
    const Layout layout = layout_of(opcode);
    const size_t left = pickle.size() - at;
    const auto end_of_line = [&](size_t from) {
      const size_t newline = pickle.find('\n', from);
      if (newline == std::string_view::npos) throw refuse(opcode_at, "has no end of line");
      return newline + 1;
    };
    std::optional<uint64_t> slot;  // of PUT and GET
    switch (layout.argument) {
      case Argument::unknown:
        at = pickle.size();
        continue;
      case Argument::none:
        break;
      case Argument::fixed:
        if (layout.width > left) throw refuse(opcode_at, "runs past the end");
        slot = read_little_endian(pickle, at, layout.width);
        at += layout.width;
        break;
      case Argument::length: {
        if (layout.width > left) throw refuse(opcode_at, "runs past the end");
        const uint64_t length = read_little_endian(pickle, at, layout.width);
        if (length > left - layout.width) {
          throw refuse(opcode_at, "states a length of " + std::to_string(length) +
                                      " bytes, more than the " +
                                      std::to_string(left - layout.width) + " left");
        }
        at += layout.width + length;
        break;
      }
      case Argument::line: {
        const size_t end = end_of_line(at);
        uint64_t number = 0;
        const auto parsed = std::from_chars(pickle.data() + at, pickle.data() + end - 1, number);
        slot = parsed.ec == std::errc::result_out_of_range ? UINT64_MAX : number;
        at = end;
        break;
      }
      case Argument::two_lines:
        at = end_of_line(end_of_line(at));
        break;
    }
    // A pickle that stores k values uses memo slots 0..k-1, each store taking a byte or more.
    if ((opcode == 'q' || opcode == 'r' || opcode == 'p') && *slot >= pickle.size()) {
      throw refuse(opcode_at, "stores memo slot " + std::to_string(*slot) + " in a pickle of " +
                                  std::to_string(pickle.size()) + " bytes");
    }
    // After a malformed opcode only the lengths are checked: the unpickler stops there.
    if (simulating) simulating = opcode != '.' && values.run(opcode, slot);
    if (opcode == '.') break;
  }
  if (values.has_cycle()) {
    throw Error(ErrorKind::runtime, what + " holds a pickle whose values refer to themselves, "
                                           "which LibTorch could never free: the file is "
                                           "corrupt or crafted");
  }
}

}  // namespace ddpm
