// The interface every denoising network implements, and the registry that builds one from its
// architecture config (saved in checkpoints, so `unidiff sample` rebuilds the same network).
#pragma once

#include <torch/nn/module.h>
#include <torch/nn/modules/container/modulelist.h>
#include <torch/nn/modules/linear.h>
#include <torch/nn/pimpl.h>

#include <memory>
#include <string>
#include <vector>

#include "core/settings.h"

namespace unidiff::models {

/// A network mapping (x [B, ...], t [B]) to a tensor shaped like x. What the output means is
/// declared by the objective, not the network.
class Network : public torch::nn::Module {
 public:
  virtual torch::Tensor forward(const torch::Tensor& x, const torch::Tensor& t) = 0;
  /// Class-conditional call: labels int64 [B] in 0..K-1, or K for "no class" (the null label of
  /// classifier-free guidance). Unconditional networks accept only undefined labels.
  virtual torch::Tensor forward_cond(const torch::Tensor& x, const torch::Tensor& t,
                                     const torch::Tensor& labels);
  /// K, the classes a conditional network knows (0: unconditional).
  virtual int64_t num_classes() const { return 0; }
  /// Guidance-conditioned call (LCM, guided distillation; Meng et al. 2023): w float [B], the
  /// classifier-free guidance scale (uncond + w (cond - uncond)) whose output the network was
  /// distilled to give in one call. Embedded like the time, w 1000 through the time embedding's
  /// sinusoid and a zero-initialised linear layer added to the time embedding, so a guided network
  /// initialised from an unguided one starts as its conditional model at every w. Only networks
  /// built with NetworkConfig::guidance take it, and those take nothing else.
  virtual torch::Tensor forward_guided(const torch::Tensor& x, const torch::Tensor& t, const torch::Tensor& labels,
                                       const torch::Tensor& w);
  /// Whether the network has a guidance embedding (forward_guided is its call).
  virtual bool guided() const { return false; }
  /// The bottleneck features of the forward pass at (x, t, labels), pooled to [B, feature_dim()]:
  /// what a discriminator head reads (DMD2's GAN on the fake score). The MLP's last hidden layer,
  /// the UNet's middle block averaged over space, DiT's last hidden state averaged over tokens.
  virtual torch::Tensor features(const torch::Tensor& x, const torch::Tensor& t, const torch::Tensor& labels);
  virtual int64_t feature_dim() const { return 0; }
};

/// A small trainable head over [B, F] features: `layers` x (Linear to `hidden`, SiLU), then
/// Linear(hidden, 1) -> [B] logits (a GAN discriminator's head on a backbone's features, or with
/// more layers a discriminator of its own on small vectors). hidden 0: F.
class HeadImpl : public torch::nn::Module {
 public:
  explicit HeadImpl(int64_t features, int64_t hidden = 0, int64_t layers = 1);
  torch::Tensor forward(const torch::Tensor& features);

 private:
  torch::nn::ModuleList hidden_;
  torch::nn::Linear out_{nullptr};
};
TORCH_MODULE(Head);

/// What the network is: enough to rebuild it. Stored with the weights.
struct NetworkConfig {
  std::string arch = "mlp";           ///< registry name (see network_names())
  std::vector<int64_t> data_shape;    ///< shape of one sample, e.g. {2}
  int64_t hidden = 256;               ///< hidden width
  int64_t layers = 3;                 ///< hidden layers
  int64_t time_dim = 64;              ///< time embedding size (even)
  int64_t fourier = 0;                ///< mlp: octaves of input Fourier features (0: none)
  // unet (models/unet.h)
  int64_t channels = 128;                      ///< base width
  std::vector<int64_t> channel_mult{1, 2, 2, 2};  ///< width multiplier per level
  int64_t res_blocks = 2;                      ///< residual blocks per level
  std::vector<int64_t> attn_res{16};           ///< resolutions with self-attention
  double dropout = 0.1;                        ///< residual-block dropout
  double norm_eps = 1e-5;                      ///< unet: GroupNorm epsilon
  int64_t time_flip = 0;                       ///< unet: 1 = time embedding [cos, sin]
  double time_shift = 1;                       ///< unet: its frequency shift (models/unet.h)
  int64_t attn_head_dim = 0;                   ///< unet: channels per attention head (0: one head)
  int64_t downsample_padding = 1;              ///< unet: 1 every side, 0 right and bottom (models/unet.h)
  int64_t num_classes = 0;                     ///< unet, dit: class-conditional over K classes (0: no)
  int64_t guidance = 0;                        ///< unet, dit: 1 = a guidance embedding (Network::forward_guided)
  // dit (models/dit.h): width is `hidden`; dit-s and dit-b fix width, depth and heads
  int64_t depth = 12;                          ///< transformer blocks
  int64_t heads = 6;                           ///< attention heads
  int64_t patch = 2;                           ///< patch side
};

/// Its settings (core/settings.h): the model_* flags, the model file's attributes, the resume
/// guard. data_shape and num_classes come from the data (attributes only).
const settings::Table<NetworkConfig>& network_settings();

/// Architecture names the registry knows, sorted.
std::vector<std::string> network_names();
/// Builds a network; an unknown arch or a shape it cannot take throws InputError.
std::shared_ptr<Network> make_network(const NetworkConfig& config);

}  // namespace unidiff::models
