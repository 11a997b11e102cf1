// The rewards of reward fine-tuning (--reward=NAME with its own flags): functions of a batch of
// clean samples, each marked differentiable or not. A method that needs reward gradients (ReFL,
// DRaFT, QSM) refuses one that is not, naming both.
//
//   name             samples   r(x)                                                       gradient
//   distance         vectors   -||x - target||_2 (--reward_target=X,Y,...)                  yes
//   halfplane        vectors   <d, x> clipped to [--reward_min, --reward_max] (--reward_direction)  yes
//   classifier       images    log-probability of --reward_class under --reward_classifier   yes
//                              (-1: of each sample's own class, a class-conditional policy's)
//   compressibility  images    minus the PNG-encoded size in kilobytes (DDPO's task)        no
//   brightness       images    mean pixel value, in [-1, 1]                                 yes
#pragma once

#include <torch/types.h>

#include <functional>
#include <string>
#include <vector>

#include "core/settings.h"
#include "experiments/classifier.h"
#include "experiments/config.h"

namespace unidiff::experiments {

// RewardConfig and reward_settings() are in experiments/config.h (eval reads rewards too).


struct Reward {
  std::string name;
  bool differentiable = false;
  bool needs_labels = false;  ///< the classifier reward of each sample's own class (--reward_class=-1)
  /// [B] float rewards of samples x [B, ...] (on x's device) of classes `labels` (int64 [B], or
  /// undefined for an unconditional model); differentiable where marked.
  std::function<torch::Tensor(const torch::Tensor& x, const torch::Tensor& labels)> fn;
};

/// The mean of the finite rewards of x (differentiable where the reward is), 0 when none is finite;
/// each non-finite one is reported (by every rank) with its sample's global index from `index`.
torch::Tensor finite_reward_mean(const Reward& reward, const torch::Tensor& x, const torch::Tensor& labels,
                                 const torch::Tensor& index);

/// The reward a config names, for samples of `data_shape` on `device`; InputError when it does not
/// apply (a vector reward on images, a target of another length, a missing classifier file).
Reward make_reward(const RewardConfig& config, const std::vector<int64_t>& data_shape, torch::Device device);

/// "distance, halfplane, classifier, compressibility, brightness".
std::string reward_names();

}  // namespace unidiff::experiments
