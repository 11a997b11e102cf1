// experiments/model_group.h.
#include "experiments/model_group.h"

#include <cmath>
#include <numbers>

#include "core/error.h"
#include "dist/gradients.h"

namespace unidiff::experiments {

double learning_rate(const OptimConfig& o, int64_t step, int64_t total) {
  double lr = o.lr;
  if (o.warmup_steps > 0 && step < o.warmup_steps) {
    return lr * static_cast<double>(step + 1) / static_cast<double>(o.warmup_steps);
  }
  if (o.decay == "cosine") {
    const double span = static_cast<double>(std::max<int64_t>(1, total - o.warmup_steps));
    const double progress = static_cast<double>(step - o.warmup_steps) / span;
    lr *= 0.5 * (1 + std::cos(std::numbers::pi * std::min(1.0, progress)));
  }
  return lr;
}

ModelGroup::ModelGroup(std::string name, Role role, std::shared_ptr<models::Network> network,
                       const dist::Communicator& world, const OptimConfig& optim,
                       const DistConfig& dist, int64_t total_steps)
    : name_(std::move(name)),
      role_(role),
      network_(std::move(network)),
      optim_(optim),
      total_steps_(total_steps) {
  UD_ASSERT(network_ != nullptr, "group ", name_, " has no network");
  dist::broadcast_tensors(network_->parameters(), const_cast<dist::Communicator&>(world));
  if (role_ == Role::kFrozen) {
    network_->eval();
    for (auto& p : network_->parameters()) p.set_requires_grad(false);
    ema_ = std::make_unique<models::Ema>(*network_, 0.0);
    return;
  }
  UD_CHECK_INPUT(dist.bucket_mb > 0, "--dist_bucket_mb must be positive, got ", dist.bucket_mb);
  dist::ReducerOptions ro;
  ro.bucket_bytes = static_cast<int64_t>(dist.bucket_mb * (1 << 20));
  ro.overlap = dist.overlap;
  ro.shard_optimizer = dist.zero;
  ro.communicate_alone = dist.communicate_alone;
  reducer_ = std::make_unique<dist::Reducer>(network_->parameters(), world, ro);
  dist::AdamWConfig ac;
  ac.beta1 = optim_.beta1;
  ac.beta2 = optim_.beta2;
  ac.weight_decay = optim_.weight_decay;
  optimizer_ = std::make_unique<dist::FlatAdamW>(*reducer_, ac);
  ema_ = std::make_unique<models::Ema>(*network_, optim_.ema_decay);
  lr_ = torch::zeros({}, reducer_->param_shard(0).options().dtype(torch::kFloat32));
}

void ModelGroup::begin_step() {
  UD_ASSERT(role_ == Role::kTrained, "group ", name_, " is frozen");
  reducer_->zero_grad();
}

double ModelGroup::end_step(int64_t step) {
  const double lr = schedule(step);
  update();
  return lr;
}

double ModelGroup::schedule(int64_t step) {
  UD_ASSERT(role_ == Role::kTrained, "group ", name_, " is frozen");
  const double lr = learning_rate(optim_, step, total_steps_);
  torch::NoGradGuard no_grad;
  lr_.fill_(lr);
  optimizer_->count_step();
  ema_->schedule();
  return lr;
}

void ModelGroup::update() {
  UD_ASSERT(role_ == Role::kTrained, "group ", name_, " is frozen");
  reducer_->finalize();
  if (optim_.grad_clip > 0) optimizer_->clip_grad_norm(optim_.grad_clip);
  optimizer_->update(lr_);
  ema_->apply(*network_);
}

ModelGroup& ModelGroups::add(std::unique_ptr<ModelGroup> group) {
  const std::string name = group->name();
  UD_ASSERT(!groups_.count(name), "model group ", name, " exists twice");
  return *(groups_[name] = std::move(group));
}

ModelGroup& ModelGroups::get(const std::string& name) {
  const auto it = groups_.find(name);
  UD_ASSERT(it != groups_.end(), "no model group named ", name);
  return *it->second;
}

}  // namespace unidiff::experiments
