// experiments/reward/rewards.h.
#include "experiments/reward/rewards.h"

#include <cmath>

#include "core/error.h"
#include "core/image.h"
#include "core/log.h"

namespace unidiff::experiments {

const settings::Table<RewardConfig>& reward_settings() {
  static const settings::Table<RewardConfig> t = [] {
    using settings::Decl;
    using C = RewardConfig;
    settings::Table<C> t;
    t.add(Decl("reward", "reward fine-tuning: the reward (" + reward_names() + "); eval: also the samples' mean reward").guarded(), &C::name);
    t.add(Decl("reward_target", "distance: the rewarded point, comma-separated (empty: the origin)").guarded(),
          &C::target);
    t.add(Decl("reward_direction", "halfplane: the direction d of r = <d, x>, comma-separated (empty: the first axis)")
              .guarded(),
          &C::direction);
    t.add(Decl("reward_min", "halfplane: the smallest reward (the clip)").guarded(), &C::min);
    t.add(Decl("reward_max", "halfplane: the largest reward (the clip)").guarded(), &C::max);
    t.add(Decl("reward_classifier", "classifier: the classifier file ('unidiff eval train-classifier')").guarded(),
          &C::classifier);
    t.add(Decl("reward_class", "classifier: the class whose log-probability is the reward (-1: each sample's own "
                               "class, for a class-conditional policy)")
              .guarded(),
          &C::cls);
    return t;
  }();
  return t;
}

std::string reward_names() { return "distance, halfplane, classifier, compressibility, brightness"; }

namespace {

/// A vector of D values from a flag (empty: `fill` at `at`).
torch::Tensor vector_of(const std::vector<double>& v, int64_t d, const char* flag, double fill_first,
                        torch::Device device) {
  torch::Tensor out = torch::zeros({d}, torch::kFloat32);
  if (v.empty()) {
    out[0] = fill_first;
  } else {
    UD_CHECK_INPUT(static_cast<int64_t>(v.size()) == d, flag, " has ", v.size(), " values; the samples have ", d);
    for (int64_t i = 0; i < d; ++i) out[i] = v[static_cast<size_t>(i)];
  }
  return out.to(device);
}

}  // namespace

Reward make_reward(const RewardConfig& c, const std::vector<int64_t>& shape, torch::Device device) {
  UD_CHECK_INPUT(!c.name.empty(), "no --reward given (valid: ", reward_names(), ")");
  const bool images = shape.size() == 3;
  Reward r;
  r.name = c.name;
  if (c.name == "distance" || c.name == "halfplane") {
    UD_CHECK_INPUT(shape.size() == 1, "--reward=", c.name, " takes vector samples; these have shape ",
                   torch::IntArrayRef(shape));
    r.differentiable = true;
    if (c.name == "distance") {
      const torch::Tensor target = vector_of(c.target, shape[0], "--reward_target", 0.0, device);
      r.fn = [target](const torch::Tensor& x, const torch::Tensor&) { return -(x - target).pow(2).sum(1).clamp_min(1e-12).sqrt(); };
    } else {
      UD_CHECK_INPUT(c.min < c.max, "--reward_min must be below --reward_max");
      const torch::Tensor d = vector_of(c.direction, shape[0], "--reward_direction", 1.0, device);
      const double lo = c.min, hi = c.max;
      r.fn = [d, lo, hi](const torch::Tensor& x, const torch::Tensor&) { return (x * d).sum(1).clamp(lo, hi); };
    }
    return r;
  }
  UD_CHECK_INPUT(c.name == "classifier" || c.name == "compressibility" || c.name == "brightness",
                 "unknown --reward '", c.name, "' (valid: ", reward_names(), ")");
  UD_CHECK_INPUT(images, "--reward=", c.name, " takes images; these samples have shape ", torch::IntArrayRef(shape));
  if (c.name == "brightness") {
    r.differentiable = true;
    r.fn = [](const torch::Tensor& x, const torch::Tensor&) { return x.reshape({x.size(0), -1}).mean(1); };
  } else if (c.name == "compressibility") {
    r.differentiable = false;
    r.fn = [](const torch::Tensor& x, const torch::Tensor&) {
      // Each image as a PNG would store it (clamped to [-1, 1], 256 levels, RGB), its size in KB.
      const torch::Tensor u8 = ((x.detach().to(torch::kCPU, torch::kFloat32).clamp(-1, 1) + 1) * 127.5)
                                   .round()
                                   .to(torch::kUInt8);
      torch::Tensor out = torch::empty({x.size(0)}, torch::kFloat32);
      for (int64_t i = 0; i < x.size(0); ++i) {
        torch::Tensor img = u8[i].permute({1, 2, 0});
        if (img.size(2) == 1) img = img.expand({img.size(0), img.size(1), 3});
        out[i] = -static_cast<double>(image::encode_png(img.contiguous()).size()) / 1024.0;
      }
      return out.to(x.device());
    };
  } else {
    UD_CHECK_INPUT(!c.classifier.empty(), "--reward=classifier needs --reward_classifier (make one with ",
                   "'unidiff eval train-classifier')");
    const LoadedClassifier clf = load_classifier(c.classifier);
    UD_CHECK_INPUT(c.cls >= -1 && c.cls < clf.net->options.num_classes(), "--reward_class ", c.cls,
                   " is not a class of the classifier (0..", clf.net->options.num_classes() - 1,
                   ", or -1: each sample's own)");
    models::Classifier net = clf.net;
    net->to(device);
    net->eval();
    for (auto& p : net->parameters()) p.set_requires_grad(false);
    r.differentiable = true;
    r.needs_labels = c.cls < 0;
    const int64_t k = c.cls;
    r.fn = [net, k](const torch::Tensor& x, const torch::Tensor& labels) mutable {
      const torch::Tensor logp = torch::log_softmax(net->forward(x), 1);
      if (k >= 0) return logp.select(1, k);
      UD_CHECK_INPUT(labels.defined(), "--reward_class=-1 rewards each sample's own class: the samples have no labels ",
                     "(a class-conditional policy's have)");
      return logp.gather(1, labels.to(logp.device(), torch::kInt64).view({-1, 1})).view({-1});
    };
  }
  return r;
}

torch::Tensor finite_reward_mean(const Reward& reward, const torch::Tensor& x, const torch::Tensor& labels,
                                 const torch::Tensor& index) {
  const torch::Tensor r = reward.fn(x, labels);
  const torch::Tensor ok = r.isfinite();
  const int64_t good = ok.sum().item<int64_t>();
  if (good < r.numel()) {
    std::string which;
    if (index.defined()) {
      const torch::Tensor bad = index.masked_select(ok.logical_not()).cpu();
      for (int64_t i = 0; i < std::min<int64_t>(bad.numel(), 16); ++i) {
        which += (i ? ", " : ": samples ") + std::to_string(bad[i].item<int64_t>());
      }
      if (bad.numel() > 16) which += ", ...";
    }
    log::warn("reward", detail::str_cat(r.numel() - good, " non-finite ", reward.name, " reward(s) left out", which));
  }
  return torch::where(ok, r, torch::zeros_like(r)).sum() / static_cast<double>(std::max<int64_t>(good, 1));
}

}  // namespace unidiff::experiments
