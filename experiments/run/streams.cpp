// experiments/run/streams.h.
#include "experiments/run/streams.h"

#include "core/error.h"

namespace unidiff::experiments {

namespace {
constexpr size_t kRecentSteps = 1024;  ///< batches whose indices a divergence report can name
}

DataStream::DataStream(std::string name, uint8_t number, data::TensorDataset dataset, int64_t global_batch,
                       int world, int rank, uint32_t seed, torch::Device device)
    : name_(std::move(name)),
      number_(number),
      dataset_(std::move(dataset)),
      global_batch_(global_batch),
      world_(world),
      rank_(rank),
      seed_(seed) {
  options_.device = device;
  options_.seed = seed;
}

void DataStream::check() {
  if (!sampler_) sampler_.emplace(dataset_.size(), global_batch_, world_, rank_, seed_, number_);
}

DataStream::~DataStream() = default;

data::Batch DataStream::next() {
  check();
  if (!loader_) loader_ = std::make_unique<data::Loader>(dataset_, *sampler_, options_);
  data::Batch b = loader_->next();
  recent_.emplace_back(step_, b.index);
  if (recent_.size() > kRecentSteps) recent_.pop_front();
  return b;
}

int64_t DataStream::position() const {
  return loader_ ? loader_->position() : sampler_ ? sampler_->position() : 0;
}

void DataStream::save(dist::CheckpointWriter& w) const {
  w.set_attr("stream/" + name_ + "/position", position());
  w.set_attr("stream/" + name_ + "/global_batch", global_batch());
  if (number_ == 0) {
    w.set_attr("loader_position", position());
    w.set_attr("global_batch", global_batch());
  }
}

void DataStream::load(const dist::CheckpointReader& reader) {
  UD_ASSERT(!loader_, "stream ", name_, " restored after it started");
  std::optional<int64_t> position = reader.attr_int("stream/" + name_ + "/position");
  if (!position && number_ == 0) position = reader.attr_int("loader_position");
  check();
  const int64_t b = global_batch();
  sampler_->set_position(position.value_or(0) / b * b);
}

std::optional<torch::Tensor> DataStream::indices_of(int64_t step) const {
  for (const auto& [s, idx] : recent_) {
    if (s == step) return idx;
  }
  return std::nullopt;
}

}  // namespace unidiff::experiments
