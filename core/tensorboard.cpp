// core/tensorboard.h. Compiled without LibTorch's include folders (its own target in
// core/CMakeLists.txt): the protobuf headers here are Debian's.
#include "core/tensorboard.h"

#include <unistd.h>

#include <array>
#include <chrono>
#include <cstring>
#include <fstream>
#include <stdexcept>

#ifdef UNIDIFF_WITH_TENSORBOARD
#include "core/proto/tensorboard_event.pb.h"
#endif

namespace unidiff::tensorboard {

uint32_t crc32c(const void* data, size_t n) {
  static const std::array<uint32_t, 256> table = [] {
    std::array<uint32_t, 256> t{};
    for (uint32_t i = 0; i < 256; ++i) {
      uint32_t c = i;
      for (int k = 0; k < 8; ++k) c = (c & 1) ? (c >> 1) ^ 0x82F63B78u : c >> 1;  // reflected Castagnoli
      t[i] = c;
    }
    return t;
  }();
  uint32_t crc = 0xFFFFFFFFu;
  const auto* p = static_cast<const uint8_t*>(data);
  for (size_t i = 0; i < n; ++i) crc = table[(crc ^ p[i]) & 0xFF] ^ (crc >> 8);
  return crc ^ 0xFFFFFFFFu;
}

uint32_t masked_crc(uint32_t crc) { return ((crc >> 15) | (crc << 17)) + 0xa282ead8u; }

struct EventWriter::Impl {
  std::filesystem::path path;
  std::ofstream out;
  bool failed = false;

  void record(const std::string& bytes) {
    if (failed) return;
    const uint64_t n = bytes.size();
    const uint32_t len_crc = masked_crc(crc32c(&n, sizeof(n)));
    const uint32_t data_crc = masked_crc(crc32c(bytes.data(), bytes.size()));
    out.write(reinterpret_cast<const char*>(&n), sizeof(n));
    out.write(reinterpret_cast<const char*>(&len_crc), sizeof(len_crc));
    out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
    out.write(reinterpret_cast<const char*>(&data_crc), sizeof(data_crc));
    check();
  }
  void check() {
    if (!failed && !out.good()) {
      failed = true;
      throw std::runtime_error("writing the TensorBoard event file '" + path.string() +
                               "' failed; no more events are written to it");
    }
  }
};

namespace {

double wall_time() {
  return std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count();
}

}  // namespace

#ifdef UNIDIFF_WITH_TENSORBOARD

bool EventWriter::available() { return true; }

EventWriter::EventWriter(const std::filesystem::path& dir, int64_t start_step) : impl_(std::make_unique<Impl>()) {
  char host[256] = "localhost";
  ::gethostname(host, sizeof(host) - 1);
  const auto seconds = static_cast<int64_t>(wall_time());
  impl_->path = dir / ("events.out.tfevents." + std::to_string(seconds) + "." + host + "." + std::to_string(::getpid()));
  impl_->out.open(impl_->path, std::ios::binary | std::ios::trunc);
  if (!impl_->out) throw std::runtime_error("cannot create the TensorBoard event file '" + impl_->path.string() + "'");
  proto::Event version;
  version.set_wall_time(wall_time());
  version.set_file_version("brain.Event:2");
  impl_->record(version.SerializeAsString());
  proto::Event start;
  start.set_wall_time(wall_time());
  start.set_step(start_step);
  start.mutable_session_log()->set_status(proto::SessionLog::START);
  impl_->record(start.SerializeAsString());
  flush();
}

void EventWriter::scalar(const std::string& tag, int64_t step, double value) {
  proto::Event e;
  e.set_wall_time(wall_time());
  e.set_step(step);
  auto* v = e.mutable_summary()->add_value();
  v->set_tag(tag);
  v->set_simple_value(static_cast<float>(value));
  impl_->record(e.SerializeAsString());
}

void EventWriter::image(const std::string& tag, int64_t step, const std::vector<uint8_t>& png, int64_t height,
                        int64_t width, int64_t channels) {
  proto::Event e;
  e.set_wall_time(wall_time());
  e.set_step(step);
  auto* v = e.mutable_summary()->add_value();
  v->set_tag(tag);
  auto* image = v->mutable_image();
  image->set_height(static_cast<int32_t>(height));
  image->set_width(static_cast<int32_t>(width));
  image->set_colorspace(static_cast<int32_t>(channels));
  image->set_encoded_image_string(png.data(), png.size());
  impl_->record(e.SerializeAsString());
}

#else

bool EventWriter::available() { return false; }
EventWriter::EventWriter(const std::filesystem::path&, int64_t) : impl_(std::make_unique<Impl>()) {
  impl_->failed = true;
}
void EventWriter::scalar(const std::string&, int64_t, double) {}
void EventWriter::image(const std::string&, int64_t, const std::vector<uint8_t>&, int64_t, int64_t, int64_t) {}

#endif

EventWriter::~EventWriter() = default;

void EventWriter::flush() {
  if (impl_->failed) return;
  impl_->out.flush();
  impl_->check();
}

const std::filesystem::path& EventWriter::path() const { return impl_->path; }

}  // namespace unidiff::tensorboard
