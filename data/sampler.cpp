// data/sampler.h.
#include "data/sampler.h"

#include "core/error.h"
#include "core/rng.h"

namespace unidiff::data {

ShardedSampler::ShardedSampler(int64_t dataset_size, int64_t global_batch, int world_size,
                               int rank, uint32_t seed, uint8_t stream)
    : dataset_size_(dataset_size),
      global_batch_(global_batch),
      world_size_(world_size),
      rank_(rank),
      seed_(seed),
      stream_(stream) {
  UD_CHECK_INPUT(global_batch > 0, "the global batch size must be positive, got ", global_batch);
  UD_CHECK_INPUT(global_batch <= dataset_size, "the global batch size ", global_batch,
                 " is larger than the dataset (", dataset_size, " samples)");
  UD_CHECK_INPUT(global_batch % world_size == 0, "the global batch size ", global_batch,
                 " is not divisible by the number of ranks ", world_size);
  UD_ASSERT(rank >= 0 && rank < world_size);
}

const torch::Tensor& ShardedSampler::order(int64_t epoch) {
  if (epoch != cached_epoch_) {
    cached_order_ = rng::permutation(rng::Stream{seed_, rng::Purpose::kDataOrder}.in(stream_),
                                     static_cast<uint64_t>(epoch), dataset_size_);
    cached_epoch_ = epoch;
  }
  return cached_order_;
}

torch::Tensor ShardedSampler::next() {
  const int64_t e = epoch();
  const int64_t start = position_ - e * epoch_samples() + rank_;
  const torch::Tensor positions =
      torch::arange(start, start + global_batch_ - rank_, world_size_, torch::kInt64);
  torch::Tensor out = order(e).index_select(0, positions);
  position_ += global_batch_;
  return out;
}

void ShardedSampler::set_position(int64_t position) {
  UD_CHECK_INPUT(position >= 0 && position % global_batch_ == 0, "sampler position ", position,
                 " is not a whole number of global batches of ", global_batch_);
  position_ = position;
}

}  // namespace unidiff::data
