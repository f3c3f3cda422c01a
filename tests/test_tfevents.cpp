// TensorBoard's framing (formats/tfevents.h) against published values: CRC-32C's check value
// and RFC 3720's test vectors, TFRecord's mask, and a scalar event byte by byte as protobuf's
// wire format lays it out. tests/tensorboard_check.py reads whole runs with TensorBoard.
#include <gtest/gtest.h>

#include <cstring>
#include <string>

#include "formats/tfevents.h"

namespace ddpm {
namespace {

TEST(TfEvents, Crc32cMatchesItsPublishedValues) {
  EXPECT_EQ(crc32c("123456789"), 0xE3069283u);                // the CRC catalogue's check
  EXPECT_EQ(crc32c(std::string(32, '\0')), 0x8A9136AAu);      // RFC 3720, B.4: 32 zeros
  EXPECT_EQ(crc32c(std::string(32, '\xff')), 0x62A8AB43u);    // 32 bytes of 0xff
  std::string ascending;
  for (int i = 0; i < 32; ++i) ascending.push_back(static_cast<char>(i));
  EXPECT_EQ(crc32c(ascending), 0x46DD794Eu);                  // 0x00, 0x01, ..., 0x1f
  const uint32_t crc = crc32c("abc");
  EXPECT_EQ(masked_crc32c("abc"), ((crc >> 15) | (crc << 17)) + 0xa282ead8u);
}

TEST(TfEvents, ARecordIsLengthCrcPayloadCrc) {
  const std::string record = tfrecord("hello");
  ASSERT_EQ(record.size(), 8u + 4u + 5u + 4u);
  EXPECT_EQ(record.substr(0, 8), std::string("\x05\0\0\0\0\0\0\0", 8));
  uint32_t length_crc = 0, payload_crc = 0;
  std::memcpy(&length_crc, record.data() + 8, 4);
  std::memcpy(&payload_crc, record.data() + 17, 4);
  EXPECT_EQ(length_crc, masked_crc32c(record.substr(0, 8)));
  EXPECT_EQ(record.substr(12, 5), "hello");
  EXPECT_EQ(payload_crc, masked_crc32c("hello"));
}

TEST(TfEvents, AScalarEventIsTheProtobufWireFormat) {
  const std::string event = scalar_event(1.5, 300, "loss", 0.25f);
  std::string expected;
  expected += '\x09';                                    // field 1, fixed64: wall_time
  double wall_time = 1.5;
  expected.append(reinterpret_cast<const char*>(&wall_time), 8);
  expected += "\x10\xac\x02";                            // field 2, varint: step 300
  expected += "\x2a\x0d";                                // field 5: summary, 13 bytes
  expected += "\x0a\x0b";                                //   field 1: value, 11 bytes
  expected += "\x0a\x04loss";                            //     field 1: tag
  expected += '\x15';                                    //     field 2, fixed32: simple_value
  float value = 0.25f;
  expected.append(reinterpret_cast<const char*>(&value), 4);
  EXPECT_EQ(event, expected);
}

}  // namespace
}  // namespace ddpm
