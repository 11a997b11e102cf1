// TensorBoard event files: scalars and PNG images a run writes beside metrics.jsonl, readable by
// TensorBoard (`tensorboard --logdir runs/`). The messages are serialized by Debian's protobuf
// library (core/proto/tensorboard_event.proto) in a unit that sees no LibTorch header (the torch
// wheel ships protobuf headers of another version); each record is TFRecord-framed: length, masked
// CRC-32C of the length, the message, masked CRC-32C of the message.
#pragma once

#include <cstdint>
#include <filesystem>
#include <memory>
#include <string>
#include <vector>

namespace unidiff::tensorboard {

/// CRC-32C (Castagnoli) of `n` bytes, and TFRecord's masked form of a CRC.
uint32_t crc32c(const void* data, size_t n);
uint32_t masked_crc(uint32_t crc);

class EventWriter {
 public:
  /// Whether this build writes event files (it needs protobuf at build time; without, every call
  /// below does nothing).
  static bool available();

  /// Creates DIR/events.out.tfevents.<seconds>.<host>.<pid> and writes its version record and a
  /// session START at `start_step` (a resumed run: TensorBoard then drops the earlier file's events
  /// after that step, which the resumed run writes again). Throws std::runtime_error when the file
  /// cannot be created.
  EventWriter(const std::filesystem::path& dir, int64_t start_step);
  ~EventWriter();
  EventWriter(const EventWriter&) = delete;
  EventWriter& operator=(const EventWriter&) = delete;

  void scalar(const std::string& tag, int64_t step, double value);
  /// An image as PNG bytes of height x width x channels (1 grey, 3 RGB).
  void image(const std::string& tag, int64_t step, const std::vector<uint8_t>& png, int64_t height, int64_t width,
             int64_t channels);
  /// Writes what is buffered to the file (the run calls it at every logging step).
  void flush();
  /// The event file. A failed write is reported once (std::runtime_error from the call that saw
  /// it); later calls write nothing.
  const std::filesystem::path& path() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace unidiff::tensorboard
