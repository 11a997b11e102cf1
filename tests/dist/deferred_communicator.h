// A stream-ordered communicator for the CPU, for the tests: it models what NCCL promises a
// reducer (dist/communicator.h stream_ordered()). A started collective reads its input as it is
// at the start (a copy), the tensor then holds NaN until join_started(), where the collective
// really runs (over the wrapped MPI communicator) and writes its result. So a reducer that starts
// a bucket before its last gradient has arrived, or that reads a result before the join, gets a
// wrong or NaN gradient.
#pragma once

#include <torch/types.h>

#include <limits>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "dist/communicator.h"

namespace unidiff::dist {

class DeferredCommunicator final : public Communicator {
 public:
  explicit DeferredCommunicator(std::unique_ptr<Communicator> inner) : inner_(std::move(inner)) {}

  int rank() const override { return inner_->rank(); }
  int size() const override { return inner_->size(); }
  std::string backend() const override { return "deferred(" + inner_->backend() + ")"; }
  void all_reduce(torch::Tensor& t, ReduceOp op) override { inner_->all_reduce(t, op); }
  void broadcast(torch::Tensor& t, int root) override { inner_->broadcast(t, root); }
  torch::Tensor all_gather(const torch::Tensor& t) override { return inner_->all_gather(t); }
  void all_gather_inplace(torch::Tensor& full) override { inner_->all_gather_inplace(full); }
  torch::Tensor reduce_scatter(torch::Tensor& full, ReduceOp op) override { return inner_->reduce_scatter(full, op); }
  void barrier() override { inner_->barrier(); }
  std::unique_ptr<Communicator> duplicate() const override {
    return std::make_unique<DeferredCommunicator>(inner_->duplicate());
  }
  bool supports_background_thread() const override { return false; }  // never needs one
  bool stream_ordered() const override { return true; }

  void start_all_reduce(torch::Tensor& tensor, ReduceOp op) override {
    pending_.push_back({tensor, tensor.clone(), op, false});
    poison(tensor);
  }
  torch::Tensor start_reduce_scatter(torch::Tensor& full, ReduceOp op) override {
    torch::Tensor out = torch::empty({full.numel() / size()}, full.options());
    pending_.push_back({out, full.clone(), op, true});
    poison(full);
    poison(out);
    return out;
  }
  void join_started() override {
    torch::NoGradGuard no_grad;
    for (Pending& p : pending_) {
      if (p.scatter) {
        p.target.copy_(inner_->reduce_scatter(p.input, p.op));
      } else {
        inner_->all_reduce(p.input, p.op);
        p.target.copy_(p.input);
      }
    }
    joins_ += pending_.empty() ? 0 : 1;
    started_ += static_cast<int64_t>(pending_.size());
    pending_.clear();
  }

  /// Collectives started and joined so far, the joins that had any, and those started but not
  /// joined yet.
  int64_t started() const { return started_; }
  int64_t pending() const { return static_cast<int64_t>(pending_.size()); }
  int64_t joins() const { return joins_; }

 private:
  struct Pending {
    torch::Tensor target, input;
    ReduceOp op;
    bool scatter;
  };
  static void poison(torch::Tensor& t) {
    torch::NoGradGuard no_grad;
    t.fill_(std::numeric_limits<double>::quiet_NaN());
  }

  std::unique_ptr<Communicator> inner_;
  std::vector<Pending> pending_;
  int64_t started_ = 0, joins_ = 0;
};

}  // namespace unidiff::dist
