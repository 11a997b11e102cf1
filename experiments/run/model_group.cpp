// experiments/run/model_group.h.
#include "experiments/run/model_group.h"

#include <cmath>
#include <numbers>

#include "core/error.h"
#include "dist/gradients.h"
#include "models/precision.h"

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

ModelGroup::ModelGroup(std::string name, Role role, std::shared_ptr<torch::nn::Module> module,
                       const dist::Communicator& world, const OptimConfig& optim, const DistConfig& dist,
                       int64_t total_steps)
    : name_(std::move(name)), role_(role), module_(std::move(module)), optim_(optim), dist_(dist),
      total_steps_(total_steps) {
  UD_ASSERT(module_ != nullptr, "group ", name_, " has no module");
  network_ = dynamic_cast<models::Network*>(module_.get());
  dist::broadcast_tensors(module_->parameters(), const_cast<dist::Communicator&>(world));
  if (role_ == Role::kFrozen) {
    module_->eval();
    for (auto& p : module_->parameters()) p.set_requires_grad(false);
    return;
  }
  UD_CHECK_INPUT(dist.bucket_mb > 0, "--dist_bucket_mb must be positive, got ", dist.bucket_mb);
  world_ = world.duplicate();
  world_->set_label("group '" + name_ + "'");
  build_training();
}

ModelGroup::~ModelGroup() {
  // The optimizer holds the reducer's buckets; the reducer's hooks hang on the parameters.
  optimizer_.reset();
  reducer_.reset();
}

void ModelGroup::build_training() {
  optimizer_.reset();
  reducer_.reset();
  dist::ReducerOptions ro;
  ro.bucket_bytes = static_cast<int64_t>(dist_.bucket_mb * (1 << 20));
  ro.overlap = dist_.overlap;
  ro.shard_optimizer = dist_.zero;
  ro.communicate_alone = dist_.communicate_alone;
  const std::string label = "group '" + name_ + "' gradients";
  ro.label = label.c_str();
  reducer_ = std::make_unique<dist::Reducer>(module_->parameters(), *world_, ro);
  dist::AdamWConfig ac;
  ac.beta1 = optim_.beta1;
  ac.beta2 = optim_.beta2;
  ac.weight_decay = optim_.weight_decay;
  optimizer_ = std::make_unique<dist::FlatAdamW>(*reducer_, ac);
  ema_ = std::make_unique<models::Ema>(*module_, optim_.ema_decay);
  lr_ = torch::zeros({}, reducer_->param_shard(0).options().dtype(torch::kFloat32));
  skipped_ = torch::zeros({1}, lr_.options());
  if (!skip_count_.defined()) skip_count_ = torch::zeros({1}, lr_.options());  // kept across restarts
}

void ModelGroup::restart(int64_t total_steps) {
  UD_ASSERT(trained(), "group ", name_, " is frozen");
  total_steps_ = total_steps;
  build_training();
}

models::Network& ModelGroup::net() {
  UD_ASSERT(network_ != nullptr, "group ", name_, " holds no network");
  return *network_;
}

models::Ema& ModelGroup::ema() {
  UD_ASSERT(ema_ != nullptr, "group ", name_, " is frozen: it has no EMA");
  return *ema_;
}
const models::Ema& ModelGroup::ema() const {
  UD_ASSERT(ema_ != nullptr, "group ", name_, " is frozen: it has no EMA");
  return *ema_;
}
dist::Reducer& ModelGroup::reducer() {
  UD_ASSERT(reducer_ != nullptr, "group ", name_, " is frozen: it has no reducer");
  return *reducer_;
}
dist::FlatAdamW& ModelGroup::optimizer() {
  UD_ASSERT(optimizer_ != nullptr, "group ", name_, " is frozen: it has no optimizer");
  return *optimizer_;
}

void ModelGroup::begin_step() {
  UD_ASSERT(trained(), "group ", name_, " is frozen");
  reducer_->zero_grad();
}

double ModelGroup::end_step(int64_t step) {
  const double lr = schedule(step);
  update();
  return lr;
}

double ModelGroup::schedule(int64_t step) {
  UD_ASSERT(trained(), "group ", name_, " is frozen");
  const double lr = learning_rate(optim_, step, total_steps_);
  torch::NoGradGuard no_grad;
  lr_.fill_(lr);
  optimizer_->count_step();
  ema_->schedule();
  return lr;
}

void ModelGroup::update() {
  UD_ASSERT(trained(), "group ", name_, " is frozen");
  reducer_->finalize();
  const torch::Tensor norm =
      optim_.grad_clip > 0 ? optimizer_->clip_grad_norm(optim_.grad_clip) : optimizer_->grad_norm();
  skipped_.copy_(norm.isfinite().logical_not().to(torch::kFloat32).reshape({1}));
  skip_count_.add_(skipped_);
  optimizer_->update(lr_, skipped_);
  ema_->apply(*module_, skipped_);
}

void ModelGroup::store_as(torch::ScalarType dtype) {
  UD_ASSERT(!trained(), "group ", name_, ": only frozen groups change their storage (master weights stay float32)");
  UD_ASSERT(dtype == torch::kFloat32 || dtype == torch::kBFloat16, "storage must be float32 or bfloat16");
  module_->to(dtype);
  storage_ = dtype;
}

torch::Tensor ModelGroup::forward(const torch::Tensor& x, const torch::Tensor& t, const torch::Tensor& labels,
                                  const torch::Tensor& w) {
  net();  // asserts it is a network
  const auto call = [&](const torch::Tensor& xs, const torch::Tensor& ts) {
    if (w.defined()) return network_->forward_guided(xs, ts, labels, w);
    return labels.defined() ? network_->forward_cond(xs, ts, labels) : network_->forward(xs, ts);
  };
  if (storage_ == torch::kFloat32) return call(x, t).to(torch::kFloat32);
  const models::AutocastScope autocast(x.device().type(), "bf16");
  return call(x.to(storage_), t.to(storage_)).to(torch::kFloat32);
}

ModelGroup::Bytes ModelGroup::bytes() const {
  Bytes b;
  for (const auto& p : module_->parameters()) {
    b.params += p.numel() * static_cast<int64_t>(p.element_size());
    if (p.grad().defined()) b.grads += p.grad().numel() * static_cast<int64_t>(p.grad().element_size());
  }
  if (optimizer_ != nullptr) {
    for (const auto& m : optimizer_->exp_avg()) b.optimizer += m.numel() * static_cast<int64_t>(m.element_size());
    for (const auto& v : optimizer_->exp_avg_sq()) b.optimizer += v.numel() * static_cast<int64_t>(v.element_size());
  }
  if (ema_ != nullptr) {
    for (const auto& [name, t] : ema_->shadow()) b.ema += t.numel() * static_cast<int64_t>(t.element_size());
  }
  return b;
}

ModelGroup::NoGradScope::NoGradScope(ModelGroup& group) {
  for (auto& p : group.module().parameters()) {
    params_.push_back(p);
    was_.push_back(p.requires_grad());
    p.set_requires_grad(false);
  }
}

ModelGroup::NoGradScope::~NoGradScope() {
  for (size_t i = 0; i < params_.size(); ++i) params_[i].set_requires_grad(was_[i]);
}

ModelGroup& ModelGroups::add(std::unique_ptr<ModelGroup> group) {
  UD_ASSERT(!has(group->name()), "model group ", group->name(), " exists twice");
  groups_.push_back(std::move(group));
  return *groups_.back();
}

bool ModelGroups::has(const std::string& name) const {
  for (const auto& g : groups_) {
    if (g->name() == name) return true;
  }
  return false;
}

ModelGroup& ModelGroups::get(const std::string& name) {
  for (auto& g : groups_) {
    if (g->name() == name) return *g;
  }
  UD_ASSERT(false, "no model group named ", name);
  return *groups_.front();
}

const ModelGroup& ModelGroups::get(const std::string& name) const {
  return const_cast<ModelGroups*>(this)->get(name);
}

std::vector<ModelGroup*> ModelGroups::all() {
  std::vector<ModelGroup*> out;
  for (auto& g : groups_) out.push_back(g.get());
  return out;
}

std::vector<const ModelGroup*> ModelGroups::all() const {
  std::vector<const ModelGroup*> out;
  for (const auto& g : groups_) out.push_back(g.get());
  return out;
}

}  // namespace unidiff::experiments
