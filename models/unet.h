// The DDPM/ADM UNet (Ho et al. 2020; the DDPM CIFAR-10 configuration is ch 128, mult 1,2,2,2,
// 2 res blocks per level, attention at 16x16, dropout 0.1, 35,746,307 parameters). Layer for
// layer the computation of the reference PyTorch network the benchmarks compare with: GroupNorm(32)
// + SiLU + 3x3 conv residual blocks with the projected time embedding added after the first conv,
// single-head self-attention blocks, stride-2 conv downsampling, nearest upsampling + conv, skip
// connections concatenated on the way up. Submodules carry the reference's names
// (temb, cin, down.i.j, mid.j, up.i.j, out), so state dicts map one to one.
#pragma once

#include <torch/nn/modules/container/modulelist.h>
#include <torch/nn/modules/container/sequential.h>
#include <torch/nn/modules/conv.h>
#include <torch/nn/modules/dropout.h>
#include <torch/nn/modules/embedding.h>
#include <torch/nn/modules/linear.h>
#include <torch/nn/modules/normalization.h>

#include <vector>

#include "models/network.h"

namespace unidiff::models {

struct UnetOptions {
  int64_t in_channels = 3;                  ///< image channels C of [B, C, H, W]
  int64_t resolution = 32;                  ///< H = W of the input (attention levels refer to it)
  int64_t channels = 128;                   ///< base width (a multiple of 32: GroupNorm(32))
  std::vector<int64_t> mult = {1, 2, 2, 2}; ///< width multiplier per level
  int64_t res_blocks = 2;                   ///< residual blocks per level (down; up has one more)
  std::vector<int64_t> attn_res = {16};     ///< resolutions with self-attention
  double dropout = 0.1;                     ///< in every residual block (train mode only)
  int64_t num_classes = 0;                  ///< K > 0: a class embedding of K + 1 rows (row K:
                                            ///< no class) added to the time embedding
  bool guidance = false;                    ///< a guidance embedding (Network::forward_guided)
  double norm_eps = 1e-5;                   ///< every GroupNorm's epsilon (the original DDPM and
                                            ///< diffusers' UNet2DModel configs: 1e-6)
  bool time_flip = false;                   ///< time embedding [cos, sin] instead of DDPM's [sin, cos]
  double time_shift = 1;                    ///< its frequencies 10000^(-i / (h - shift)) (DDPM: 1;
                                            ///< diffusers' UNet2DModel default: flip, shift 0)
  int64_t attn_head_dim = 0;                ///< channels per attention head (0: one head over
                                            ///< all channels, DDPM's; diffusers' default is 8)
  int64_t downsample_padding = 1;           ///< 1: the stride-2 conv pads one pixel on every side;
                                            ///< 0: one on the right and bottom, none in the conv
                                            ///< (TensorFlow's SAME; diffusers' downsample_padding=0)
};

/// Residual block: x + c2(drop(silu(n2(c1(silu(n1(x))) + t(silu(temb)))))), 1x1 skip if widths differ.
/// The dropout is keyed (models/keyed_dropout.h); `layer` numbers the network's dropout layers.
class ResBlockImpl : public torch::nn::Module {
 public:
  ResBlockImpl(int64_t in, int64_t out, int64_t temb_dim, double dropout, int64_t layer, double eps = 1e-5);
  torch::Tensor forward(const torch::Tensor& x, const torch::Tensor& temb);
  /// Runs n1 + SiLU and (time embedding + n2 + SiLU) as fused operations (models/group_norm_act.h).
  void set_fused_group_norm(bool fused) { fused_ = fused; }

 private:
  torch::nn::GroupNorm n1_{nullptr}, n2_{nullptr};
  torch::nn::Conv2d c1_{nullptr}, c2_{nullptr}, skip_{nullptr};
  torch::nn::Linear t_{nullptr};
  double dropout_;
  int64_t layer_;
  bool fused_ = false;
};
TORCH_MODULE(ResBlock);

/// Self-attention over the H*W positions: x + o(softmax(q k^T / sqrt(d)) v), one head over all C
/// channels (d = C) or C / d heads of d channels each (channels [h d, (h + 1) d) are head h's).
class AttnBlockImpl : public torch::nn::Module {
 public:
  explicit AttnBlockImpl(int64_t channels, double eps = 1e-5, int64_t head_dim = 0);
  torch::Tensor forward(const torch::Tensor& x);
  void set_fused_group_norm(bool fused) { fused_ = fused; }

 private:
  torch::nn::GroupNorm n_{nullptr};
  torch::nn::Conv2d qkv_{nullptr}, o_{nullptr};
  int64_t heads_ = 1;
  bool fused_ = false;
};
TORCH_MODULE(AttnBlock);

class UnetImpl : public Network {
 public:
  explicit UnetImpl(const UnetOptions& options);
  /// x: [B, C, H, W]; t: [B] (the DDPM step, or the objective's model time). Returns [B, C, H, W].
  torch::Tensor forward(const torch::Tensor& x, const torch::Tensor& t) override;
  /// labels int64 [B] in 0..K (K: no class); undefined labels mean "no class" for every sample.
  torch::Tensor forward_cond(const torch::Tensor& x, const torch::Tensor& t,
                             const torch::Tensor& labels) override;
  int64_t num_classes() const override { return options.num_classes; }
  torch::Tensor forward_guided(const torch::Tensor& x, const torch::Tensor& t, const torch::Tensor& labels,
                               const torch::Tensor& w) override;
  bool guided() const override { return options.guidance; }
  /// The middle block's output averaged over space, [B, channels x the last multiplier].
  torch::Tensor features(const torch::Tensor& x, const torch::Tensor& t, const torch::Tensor& labels) override;
  int64_t feature_dim() const override { return options.channels * options.mult.back(); }
  /// Every GroupNorm (+ bias) (+ SiLU) of the network as one fused operation
  /// (models/group_norm_act.h) or, the default, as ATen's separate operations. Same parameters and
  /// results up to rounding; the fused path saves memory traffic (see set_fused_group_norm below).
  void set_fused_group_norm(bool fused);

  UnetOptions options;

 private:
  /// The forward pass; with `features_only`, it stops after the middle block (pooled over space).
  torch::Tensor run(const torch::Tensor& x, const torch::Tensor& t, const torch::Tensor& labels, bool features_only,
                    const torch::Tensor& w = {});
  // One entry of `down` or `up`: a residual block (+ attention), or a resampling step.
  struct Stage {
    ResBlock res{nullptr};
    AttnBlock attn{nullptr};
    torch::nn::Conv2d conv{nullptr};  // downsample (stride 2) or the conv after upsampling
    bool upsample = false;
    bool pad_right = false;  // downsample: pad right and bottom by one before an unpadded conv
  };
  torch::nn::Sequential temb_{nullptr}, out_{nullptr};
  torch::nn::Conv2d cin_{nullptr};
  torch::nn::Embedding cemb_{nullptr};
  torch::nn::Linear gemb_{nullptr};  // guidance: sinusoid of w 1000 -> the time embedding's width (zero init)
  torch::nn::ModuleList down_, mid_, up_;
  std::vector<Stage> down_stages_, up_stages_;
  ResBlock mid1_{nullptr}, mid2_{nullptr};
  AttnBlock mid_attn_{nullptr};
  bool fused_ = false;
};
TORCH_MODULE(Unet);

/// Switches the fused GroupNorm path of `net` when it has one (the UNet); returns whether it has.
bool set_fused_group_norm(Network& net, bool fused);

}  // namespace unidiff::models
