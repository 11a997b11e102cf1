// dist/reducer.h: flat buckets, accumulator post-hooks, an in-order launcher and a background
// communication thread.
#include "dist/reducer.h"

#include <torch/csrc/autograd/function.h>
#include <torch/csrc/autograd/function_hook.h>
#include <torch/csrc/autograd/variable.h>

#include <chrono>
#include <memory>

#include "core/error.h"

namespace unidiff::dist {
namespace {

using Clock = std::chrono::steady_clock;

double seconds_since(Clock::time_point t) {
  return std::chrono::duration<double>(Clock::now() - t).count();
}

/// Runs after a parameter's gradient has been accumulated into its .grad.
class ReadyHook final : public torch::autograd::FunctionPostHook {
 public:
  ReadyHook(std::function<void()> fn) : fn_(std::move(fn)) {}
  torch::autograd::variable_list operator()(const torch::autograd::variable_list& outputs,
                                            const torch::autograd::variable_list&) override {
    fn_();
    return outputs;
  }

 private:
  std::function<void()> fn_;
};

}  // namespace

Reducer::Reducer(std::vector<torch::Tensor> params, const Communicator& comm, ReducerOptions options)
    : params_(std::move(params)), comm_(comm.duplicate()), options_(options) {
  UD_CHECK_INPUT(options_.bucket_bytes > 0, "the bucket size must be positive, got ",
                 options_.bucket_bytes);
  UD_ASSERT(!params_.empty(), "a reducer needs parameters");
  comm_->set_label(options_.label);
  const int world = comm_->size();
  const auto opts = params_[0].options();
  for (const auto& p : params_) {
    UD_ASSERT(p.device() == params_[0].device() && p.scalar_type() == params_[0].scalar_type(),
              "a reducer's parameters share one device and dtype");
    UD_ASSERT(p.is_leaf() && p.requires_grad(), "reducer parameters must be trainable leaves");
  }
  // Buckets in reverse registration order: backward produces the last layers' gradients first.
  slots_.assign(params_.size(), {});
  std::vector<std::vector<size_t>> members(1);
  int64_t bytes = 0;
  for (size_t k = params_.size(); k-- > 0;) {
    const int64_t b = params_[k].numel() * params_[k].element_size();
    if (!members.back().empty() && bytes + b > options_.bucket_bytes) {
      members.emplace_back();
      bytes = 0;
    }
    members.back().push_back(k);
    bytes += b;
  }
  torch::NoGradGuard no_grad;
  grad_ptr_.assign(params_.size(), nullptr);
  for (auto& m : members) {
    Bucket bucket;
    int64_t n = 0;
    for (size_t k : m) n += params_[k].numel();
    numel_ += n;
    const int64_t padded = options_.shard_optimizer ? (n + world - 1) / world * world : n;
    bucket.params = torch::zeros({padded}, opts.requires_grad(false));
    bucket.grads = torch::zeros({padded}, opts.requires_grad(false));
    int64_t offset = 0;
    for (size_t k : m) {
      auto& p = params_[k];
      const int64_t count = p.numel();
      // Each parameter keeps its own memory layout (contiguous, or channels-last for
      // convolution weights) inside its slice; its gradient gets the same strides.
      UD_ASSERT(p.is_non_overlapping_and_dense(), "reducer parameter ", k, " is not dense in memory");
      const auto in_slice = [&](const torch::Tensor& flat) {
        const torch::Tensor slice = flat.slice(0, offset, offset + count);
        return slice.as_strided(p.sizes(), p.strides(), slice.storage_offset());
      };
      torch::Tensor pv = in_slice(bucket.params);
      pv.copy_(p);
      p.set_data(pv);
      p.mutable_grad() = in_slice(bucket.grads);
      grad_ptr_[k] = p.grad().data_ptr();
      slots_[k] = {static_cast<int>(buckets_.size()), offset};
      offset += count;
    }
    bucket.members = std::move(m);
    bucket.pending = static_cast<int>(bucket.members.size());
    buckets_.push_back(std::move(bucket));
  }
  marked_.assign(params_.size(), 0);
  ready_.assign(buckets_.size(), 0);
  bind_hooks();
  stream_ordered_ = options_.overlap && communicating() && comm_->stream_ordered();
  scattered_.resize(buckets_.size());
  background_ = options_.overlap && communicating() && !stream_ordered_ && comm_->supports_background_thread();
  if (background_) worker_ = std::thread([this] { worker_loop(); });
}

Reducer::~Reducer() {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    stop_ = true;
  }
  cv_.notify_all();
  if (worker_.joinable()) worker_.join();
  unbind_hooks();
}

void Reducer::bind_hooks() {
  for (size_t k = 0; k < params_.size(); ++k) {
    auto acc = torch::autograd::impl::grad_accumulator(params_[k]);
    UD_ASSERT(acc != nullptr, "no gradient accumulator for parameter ", k);
    hook_keys_.push_back(acc->add_post_hook(std::make_unique<ReadyHook>([this, k] { mark_ready(k); })));
    accumulators_.push_back(std::move(acc));
  }
}

void Reducer::unbind_hooks() {
  for (size_t k = 0; k < accumulators_.size(); ++k) accumulators_[k]->del_post_hook(hook_keys_[k]);
  accumulators_.clear();
  hook_keys_.clear();
}

void Reducer::rebind_hooks() {
  // The autograd metadata holds accumulators weakly: dropping ours frees them unless a live
  // graph still refers to them, and grad_accumulator() then makes new ones on the current stream.
  const std::vector<std::weak_ptr<torch::autograd::Node>> old(accumulators_.begin(), accumulators_.end());
  unbind_hooks();
  size_t held = old.size();
  for (size_t k = 0; k < old.size() && held == old.size(); ++k) {
    if (!old[k].expired()) held = k;
  }
  bind_hooks();  // fresh accumulators, or the held ones: the hooks are back either way
  UD_CHECK_INPUT(held == old.size(), "the gradient accumulator of parameter ", held,
                 " is still held by a live autograd graph (a loss kept with retain_graph?): the reducer ",
                 "cannot move its gradient hooks to the current stream");
}

void Reducer::zero_grad() {
  torch::NoGradGuard no_grad;
  for (auto& b : buckets_) b.grads.zero_();
}

void Reducer::set_sync(bool sync) {
  std::lock_guard<std::mutex> lock(mutex_);
  sync_ = sync;
}

void Reducer::mark_ready(size_t k) {
  const torch::Tensor& g = params_[k].grad();
  UD_ASSERT(g.defined() && g.data_ptr() == grad_ptr_[k], "the gradient of parameter ", k,
            " no longer lives in its reducer bucket: reset gradients with Reducer::zero_grad(), "
            "not an optimizer's zero_grad()");
  std::lock_guard<std::mutex> lock(mutex_);
  if (!sync_ || marked_[k]) return;
  marked_[k] = 1;
  const auto bucket = static_cast<size_t>(slots_[k].bucket);
  if (--buckets_[bucket].pending == 0) {
    ready_[bucket] = 1;
    if (background_ || stream_ordered_) launch_ready_locked();
  }
}

void Reducer::launch_ready_locked() {
  bool launched = false;
  while (next_launch_ < num_buckets() && ready_[static_cast<size_t>(next_launch_)]) {
    if (stream_ordered_) {
      start_bucket_locked(next_launch_++);
    } else {
      queue_.push_back(next_launch_++);
      launched = true;
    }
  }
  if (launched) cv_.notify_all();
}

torch::Tensor Reducer::start_collective(int b) {
  Bucket& bucket = buckets_[static_cast<size_t>(b)];
  torch::NoGradGuard no_grad;
  if (options_.shard_optimizer) return comm_->start_reduce_scatter(bucket.grads);
  comm_->start_all_reduce(bucket.grads);
  return {};
}

void Reducer::average(int b, const torch::Tensor& mine) {
  const double world = static_cast<double>(comm_->size());
  torch::NoGradGuard no_grad;
  if (options_.shard_optimizer) {
    mine.div_(world);
    grad_shard(b).copy_(mine);
  } else {
    buckets_[static_cast<size_t>(b)].grads.div_(world);
  }
}

int64_t Reducer::bucket_bytes(int b) const {
  const torch::Tensor& grads = buckets_[static_cast<size_t>(b)].grads;
  return grads.numel() * grads.element_size();
}

void Reducer::start_bucket_locked(int b) {
  // Called from the gradient hook, on the stream the bucket's last gradient was accumulated on:
  // the collective is queued behind it.
  scattered_[static_cast<size_t>(b)] = start_collective(b);
  stats_.bytes += bucket_bytes(b);
}

void Reducer::finish_started_buckets() {
  comm_->join_started();
  for (int b = 0; b < num_buckets(); ++b) {
    average(b, scattered_[static_cast<size_t>(b)]);  // on the compute stream, after the join
    scattered_[static_cast<size_t>(b)] = torch::Tensor();
  }
}

void Reducer::reduce_bucket(int b) {
  // A blocking communicator's start_* calls finish before they return; a stream-ordered one's
  // result is there for this thread's stream after the join.
  const auto t0 = Clock::now();
  const torch::Tensor mine = start_collective(b);
  comm_->join_started();
  average(b, mine);
  const double s = seconds_since(t0);
  std::lock_guard<std::mutex> lock(mutex_);
  stats_.comm_seconds += s;
  stats_.bytes += bucket_bytes(b);
}

void Reducer::worker_loop() {
  for (;;) {
    int b = -1;
    {
      std::unique_lock<std::mutex> lock(mutex_);
      cv_.wait(lock, [&] { return stop_ || !queue_.empty(); });
      if (stop_) return;
      b = queue_.front();
      queue_.pop_front();
    }
    try {
      reduce_bucket(b);
    } catch (...) {
      std::lock_guard<std::mutex> lock(mutex_);
      error_ = std::current_exception();
    }
    {
      std::lock_guard<std::mutex> lock(mutex_);
      ++done_;
    }
    cv_.notify_all();
  }
}

void Reducer::finalize() {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    if (!sync_) return;
  }
  const auto t0 = Clock::now();
  double comm_before = 0;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    comm_before = stats_.comm_seconds;
  }
  if (communicating()) {
    if (stream_ordered_) {
      {
        std::lock_guard<std::mutex> lock(mutex_);
        // Buckets with unused parameters are complete now: start everything left, in order.
        std::fill(ready_.begin(), ready_.end(), 1);
        launch_ready_locked();
      }
      finish_started_buckets();
    } else if (background_) {
      std::unique_lock<std::mutex> lock(mutex_);
      // Buckets with unused parameters are complete now: launch everything left, in order.
      std::fill(ready_.begin(), ready_.end(), 1);
      launch_ready_locked();
      cv_.wait(lock, [&] { return done_ == num_buckets() || error_; });
      if (error_) std::rethrow_exception(error_);
    } else {
      for (int b = 0; b < num_buckets(); ++b) reduce_bucket(b);
    }
  }
  std::lock_guard<std::mutex> lock(mutex_);
  // Without the background thread every collective ran here, in plain sight.
  stats_.exposed_seconds += background_ ? seconds_since(t0) : stats_.comm_seconds - comm_before;
  ++stats_.steps;
  std::fill(marked_.begin(), marked_.end(), 0);
  std::fill(ready_.begin(), ready_.end(), 0);
  for (auto& b : buckets_) b.pending = static_cast<int>(b.members.size());
  next_launch_ = 0;
  done_ = 0;
}

void Reducer::all_gather_params() {
  if (!options_.shard_optimizer || !communicating()) return;
  torch::NoGradGuard no_grad;
  for (auto& b : buckets_) comm_->all_gather_inplace(b.params);
}

std::pair<int64_t, int64_t> Reducer::shard_range(int b) const {
  const int64_t padded = buckets_[static_cast<size_t>(b)].params.numel();
  if (!options_.shard_optimizer) return {0, padded};
  const int64_t n = padded / comm_->size();
  return {comm_->rank() * n, (comm_->rank() + 1) * n};
}

torch::Tensor Reducer::param_shard(int b) const {
  const torch::Tensor& full = buckets_[static_cast<size_t>(b)].params;
  if (!options_.shard_optimizer) return full;
  const int64_t n = full.numel() / comm_->size();
  return full.slice(0, comm_->rank() * n, (comm_->rank() + 1) * n);
}

torch::Tensor Reducer::grad_shard(int b) const {
  const torch::Tensor& full = buckets_[static_cast<size_t>(b)].grads;
  if (!options_.shard_optimizer) return full;
  const int64_t n = full.numel() / comm_->size();
  return full.slice(0, comm_->rank() * n, (comm_->rank() + 1) * n);
}

}  // namespace unidiff::dist
