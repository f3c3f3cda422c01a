// The run directory's `latest` pointer: only a step file of its own folder is followed, so a
// damaged or hostile pointer cannot lead a command out of the run directory.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

#include "ddpm/error.h"
#include "formats/checkpoint.h"
#include "test_support.h"

namespace ddpm {
namespace {

namespace fs = std::filesystem;

std::string pointer_error(std::string_view text) {
  return testing::error_of([&] { checkpoint_name_from_pointer(text, "run/checkpoints/latest"); });
}

TEST(CheckpointPointer, NamesAStepFileWithOrWithoutItsNewline) {
  EXPECT_EQ(checkpoint_name_from_pointer("step_000000012.pt\n", "latest"), "step_000000012.pt");
  EXPECT_EQ(checkpoint_name_from_pointer("step_7.pt", "latest"), "step_7.pt");
  EXPECT_EQ(checkpoint_name_from_pointer("step_9223372036854775807.pt\n", "latest"),
            "step_9223372036854775807.pt");
}

TEST(CheckpointPointer, AnythingElseIsRefusedNamingThePointer) {
  for (const std::string_view text : std::initializer_list<std::string_view>{
           "../../outside/step_000000001.pt\n", "/etc/passwd\n", "step_1.pt/../../x", "", "\n",
        "step_.pt\n", "step_12.pt\n\n", "step_12.pt\r\n", " step_12.pt", "step_12.ptx",
        "step_1e3.pt", "step_00000000000000000001.pt", "model.pt\n", "step_-1.pt",
        std::string_view("step_1.pt\0../x", 14)}) {
    const std::string message = pointer_error(text);
    EXPECT_CONTAINS(message, "run/checkpoints/latest");
    EXPECT_CONTAINS(message, "step_<digits>.pt");
  }
  // Unprintable bytes are shown escaped.
  EXPECT_CONTAINS(pointer_error("\x1b[2J"), "\\x1b[2J");
}

TEST(CheckpointPointer, ResolveFollowsOnlyAStepFileInTheRunDirectory) {
  testing::TempDir temp("checkpoint_pointer");
  const fs::path run = temp.path() / "run";
  fs::create_directories(run / "checkpoints");
  std::ofstream(temp.path() / "outside.pt") << "not a checkpoint";
  std::ofstream(run / "checkpoints" / "step_000000003.pt") << "a checkpoint";
  const auto point = [&](const std::string& text) {
    std::ofstream(run / "checkpoints" / "latest", std::ios::binary | std::ios::trunc) << text;
  };
  point("step_000000003.pt\n");
  EXPECT_EQ(resolve_checkpoint(run), run / "checkpoints" / "step_000000003.pt");
  point("../../outside.pt\n");
  EXPECT_CONTAINS(testing::error_of([&] { resolve_checkpoint(run); }),
                  (run / "checkpoints" / "latest").string());
  point((temp.path() / "outside.pt").string());
  EXPECT_CONTAINS(testing::error_of([&] { resolve_checkpoint(run); }), "step_<digits>.pt");
  // A long pointer is not read whole.
  point(std::string(1 << 20, 'x'));
  EXPECT_CONTAINS(testing::error_of([&] { resolve_checkpoint(run); }), "...");
  point("step_000000004.pt\n");
  EXPECT_CONTAINS(testing::error_of([&] { resolve_checkpoint(run); }), "which does not exist");
  // No `latest` (a run killed before its first one): the newest step file; none: an error.
  fs::remove(run / "checkpoints" / "latest");
  EXPECT_EQ(resolve_checkpoint(run), run / "checkpoints" / "step_000000003.pt");
  fs::remove(run / "checkpoints" / "step_000000003.pt");
  EXPECT_CONTAINS(testing::error_of([&] { resolve_checkpoint(run); }), "has no checkpoints/latest");
}

}  // namespace
}  // namespace ddpm
