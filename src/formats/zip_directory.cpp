// A zip archive's central directory; see zip_directory.h. Field offsets are those of the zip
// format (PKWARE's APPNOTE): end of central directory, its zip64 locator and record, and the
// central directory's file headers with their zip64 extra field.
#include "formats/zip_directory.h"

#include <algorithm>
#include <fstream>
#include <string_view>

#include "base/byte_order.h"
#include "ddpm/error.h"
#include "formats/safetensors_header.h"  // printable_name

namespace ddpm {
namespace {

constexpr std::string_view kEndSignature("PK\x05\x06", 4);
constexpr std::string_view kZip64LocatorSignature("PK\x06\x07", 4);
constexpr std::string_view kZip64EndSignature("PK\x06\x06", 4);
constexpr std::string_view kFileHeaderSignature("PK\x01\x02", 4);
constexpr std::string_view kLocalHeaderSignature("PK\x03\x04", 4);
constexpr size_t kEndSize = 22, kZip64LocatorSize = 20, kZip64EndSize = 56, kFileHeaderSize = 46,
                 kLocalHeaderSize = 30;
constexpr size_t kMaxComment = 0xFFFF;

class ArchiveReader {
 public:
  ArchiveReader(const std::filesystem::path& file, const std::string& what)
      : in_(file, std::ios::binary), what_(what) {
    std::error_code error;
    size_ = std::filesystem::file_size(file, error);
    if (!in_ || error) throw Error(ErrorKind::runtime, what_ + " cannot be opened; check the path");
  }

  uint64_t size() const { return size_; }

  // `length` bytes at `offset`, which must lie inside the file.
  std::string read(uint64_t offset, uint64_t length) {
    if (offset > size_ || length > size_ - offset) throw corrupt("points outside the file");
    std::string bytes(static_cast<size_t>(length), '\0');
    in_.seekg(static_cast<std::streamoff>(offset));
    if (!in_.read(bytes.data(), static_cast<std::streamsize>(length))) {
      throw corrupt("could not be read (the file changed while reading?)");
    }
    return bytes;
  }

  Error corrupt(const std::string& reason) const {
    return Error(ErrorKind::runtime, what_ + " is not a readable zip archive (truncated or "
                                             "corrupt?): its central directory " + reason);
  }

 private:
  std::ifstream in_;
  std::string what_;
  uint64_t size_ = 0;
};

struct DirectoryLocation {
  uint64_t count = 0, size = 0, offset = 0;
};

// The end record is the last signature with room for a whole record after it; the zip64 record
// replaces its numbers when a locator precedes it.
DirectoryLocation locate_directory(ArchiveReader& archive) {
  const uint64_t tail_size = std::min<uint64_t>(archive.size(), kMaxComment + kEndSize);
  const uint64_t tail_start = archive.size() - tail_size;
  const std::string tail = archive.read(tail_start, tail_size);
  if (tail.size() < kEndSize) throw archive.corrupt("is missing");
  const size_t end = std::string_view(tail).rfind(kEndSignature, tail.size() - kEndSize);
  if (end == std::string_view::npos) throw archive.corrupt("is missing");
  DirectoryLocation location{read_little_endian(tail, end + 10, 2), read_little_endian(tail, end + 12, 4),
                             read_little_endian(tail, end + 16, 4)};
  const uint64_t end_offset = tail_start + end;
  if (end_offset >= kZip64LocatorSize) {
    const std::string locator = archive.read(end_offset - kZip64LocatorSize, kZip64LocatorSize);
    if (locator.starts_with(kZip64LocatorSignature)) {
      const std::string zip64 = archive.read(read_little_endian(locator, 8, 8), kZip64EndSize);
      if (!zip64.starts_with(kZip64EndSignature)) throw archive.corrupt("has a bad zip64 record");
      location = {read_little_endian(zip64, 32, 8), read_little_endian(zip64, 40, 8),
                  read_little_endian(zip64, 48, 8)};
    }
  }
  return location;
}

// The central directory's header of one entry at `at` (its length in `header_length`), with
// where its bytes start from the entry's local header.
ZipEntry read_file_header(ArchiveReader& archive, std::string_view directory, size_t at,
                          size_t& header_length) {
  if (at + kFileHeaderSize > directory.size() ||
      directory.substr(at, 4) != kFileHeaderSignature) {
    throw archive.corrupt("is truncated");
  }
  ZipEntry entry;
  entry.method = static_cast<uint16_t>(read_little_endian(directory, at + 10, 2));
  entry.compressed_size = read_little_endian(directory, at + 20, 4);
  entry.size = read_little_endian(directory, at + 24, 4);
  uint64_t local_header = read_little_endian(directory, at + 42, 4);
  const size_t name_length = read_little_endian(directory, at + 28, 2);
  const size_t extra_length = read_little_endian(directory, at + 30, 2);
  const size_t comment_length = read_little_endian(directory, at + 32, 2);
  header_length = kFileHeaderSize + name_length + extra_length + comment_length;
  if (at + header_length > directory.size()) throw archive.corrupt("is truncated");
  entry.name = directory.substr(at + kFileHeaderSize, name_length);
  // zip64: the values given as 0xFFFFFFFF are in the extra field 0x0001, in this order.
  const std::string_view extra = directory.substr(at + kFileHeaderSize + name_length, extra_length);
  for (size_t field = 0; field + 4 <= extra.size();) {
    const uint64_t id = read_little_endian(extra, field, 2);
    const uint64_t length = read_little_endian(extra, field + 2, 2);
    if (id == 1) {
      size_t value = field + 4;
      for (uint64_t* stated : {&entry.size, &entry.compressed_size, &local_header}) {
        if (*stated == 0xFFFFFFFF && value + 8 <= std::min(extra.size(), field + 4 + length)) {
          *stated = read_little_endian(extra, value, 8);
          value += 8;
        }
      }
    }
    field += 4 + length;
  }
  const std::string local = archive.read(local_header, kLocalHeaderSize);
  if (!local.starts_with(kLocalHeaderSignature)) throw archive.corrupt("names a missing entry");
  entry.data_offset =
      local_header + kLocalHeaderSize + read_little_endian(local, 26, 2) + read_little_endian(local, 28, 2);
  if (entry.data_offset > archive.size() ||
      entry.compressed_size > archive.size() - entry.data_offset) {
    throw archive.corrupt("gives entry '" + printable_name(entry.name) +
                          "' bytes beyond the end of the file");
  }
  return entry;
}

}  // namespace

std::vector<ZipEntry> read_zip_directory(const std::filesystem::path& file,
                                         const std::string& what) {
  ArchiveReader archive(file, what);
  const DirectoryLocation location = locate_directory(archive);
  const std::string directory = archive.read(location.offset, location.size);
  if (location.count > directory.size() / kFileHeaderSize) throw archive.corrupt("is truncated");
  std::vector<ZipEntry> entries;
  for (size_t i = 0, at = 0, length = 0; i < location.count; ++i, at += length) {
    entries.push_back(read_file_header(archive, directory, at, length));
  }
  return entries;
}

}  // namespace ddpm
