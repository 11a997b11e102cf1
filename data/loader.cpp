#include "data/loader.h"

#include "core/error.h"
#include "core/rng.h"

namespace unidiff::data {

torch::Tensor keyed_hflip(const torch::Tensor& images, const torch::Tensor& index, uint32_t seed,
                          int64_t step) {
  UD_ASSERT(images.dim() == 4, "hflip takes images [B, C, H, W]");
  const torch::Tensor coin =
      rng::uniform({seed, rng::Purpose::kAugment}, static_cast<uint64_t>(step), index, {1}).squeeze(1) < 0.5;
  const torch::Tensor flipped = images.flip({3});
  return torch::where(coin.view({-1, 1, 1, 1}).to(images.device()), flipped, images);
}

Loader::Loader(const TensorDataset& dataset, ShardedSampler sampler, LoaderOptions options)
    : dataset_(dataset),
      sampler_(std::move(sampler)),
      options_(options),
      global_batch_(sampler_.global_batch()),
      position_(sampler_.position()) {
  UD_CHECK_INPUT(options_.prefetch >= 1, "prefetch must be at least 1, got ", options_.prefetch);
  UD_CHECK_INPUT(!options_.hflip || dataset_.is_image(), "horizontal flips need image data");
  reader_ = std::thread([this] { read_loop(); });
}

Loader::~Loader() {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    stop_ = true;
  }
  cv_.notify_all();
  if (reader_.joinable()) reader_.join();
}

void Loader::read_loop() {
  try {
    const bool pin = options_.device.is_cuda();
    for (;;) {
      {
        std::unique_lock<std::mutex> lock(mutex_);
        cv_.wait(lock, [&] { return stop_ || static_cast<int64_t>(queue_.size()) < options_.prefetch; });
        if (stop_) return;
      }
      const int64_t step = sampler_.position() / global_batch_;
      Batch b = dataset_.get_raw(sampler_.next());  // uint8 images stay uint8
      if (options_.hflip) b.x = keyed_hflip(b.x, b.index, options_.seed, step);
      if (pin) {  // so the copies to the device need not wait for the host
        b.x = b.x.pin_memory();
        b.index = b.index.pin_memory();
        if (b.labels.defined()) b.labels = b.labels.pin_memory();
      }
      {
        std::lock_guard<std::mutex> lock(mutex_);
        queue_.push_back(std::move(b));
      }
      cv_.notify_all();
    }
  } catch (...) {
    std::lock_guard<std::mutex> lock(mutex_);
    error_ = std::current_exception();
    cv_.notify_all();
  }
}

Batch Loader::next() {
  Batch b;
  {
    std::unique_lock<std::mutex> lock(mutex_);
    cv_.wait(lock, [&] { return !queue_.empty() || error_; });
    if (queue_.empty() && error_) std::rethrow_exception(error_);
    b = std::move(queue_.front());
    queue_.pop_front();
  }
  cv_.notify_all();
  // Images cross to the device as uint8 (a quarter of the float bytes) and are decoded there.
  b.x = b.x.to(options_.device, /*non_blocking=*/true);
  if (options_.decode) b.x = TensorDataset::decode(b.x);
  position_ += global_batch_;
  return b;
}

}  // namespace unidiff::data
