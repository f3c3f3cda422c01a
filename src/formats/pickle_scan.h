// A pickle's opcodes walked before LibTorch's unpickler runs them: the unpickler allocates by
// numbers the pickle states (a memo slot number makes it grow its memo table to that many
// entries; a string's length is allocated before the string is read), so a few bytes could
// make it reserve gigabytes, and it builds whatever references the pickle asks for, cycles
// included. Opcodes and their arguments are those of Python's pickle module (protocols 0-5),
// which LibTorch's pickler and torch.save write.
#pragma once

#include <string>
#include <string_view>

namespace ddpm {

// Throws ddpm::Error (runtime) starting with `what` when an argument's stated length runs past
// the end of the pickle, a memo slot number is not below the pickle's length (a pickle that
// stores k values uses slots 0..k-1, and each store takes at least one byte), or a value would
// come to refer to itself (LibTorch's values count references, so such a cycle is never freed).
// Stops at STOP or at a byte that is no opcode, which the unpickler refuses by itself.
void check_pickle_claims(std::string_view pickle, const std::string& what);

}  // namespace ddpm
