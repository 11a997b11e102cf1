// DiT, the diffusion transformer (Peebles & Xie 2023) for latents or small images: a p x p
// stride-p convolution patchifies [B, C, H, W] into (H/p)^2 tokens with a fixed 2-D sin-cos
// position embedding; the conditioning c = MLP(timestep embedding) (+ class embedding with a null
// class K for guidance) drives adaLN-Zero blocks (LayerNorm without affine, x (1 + scale) + shift,
// gated residual attention and GELU(tanh) MLP of ratio 4, the modulation initialised to zero) and
// the adaLN final layer, whose output is unpatchified back to [B, C, H, W]. Sizes S (384 wide,
// 12 blocks, 6 heads) and B (768, 12, 12) with patch 2 or 4. Parameter names follow
// tests/reference/dit_reference.py one to one.
#pragma once

#include <torch/nn/modules/container/modulelist.h>
#include <torch/nn/modules/conv.h>
#include <torch/nn/modules/embedding.h>
#include <torch/nn/modules/linear.h>

#include "models/network.h"

namespace unidiff::models {

struct DitOptions {
  int64_t in_channels = 4;   ///< C of [B, C, H, W]
  int64_t resolution = 32;   ///< H = W (a multiple of patch)
  int64_t patch = 2;         ///< patch side p
  int64_t hidden = 384;      ///< token width (divisible by heads and by 4)
  int64_t depth = 12;        ///< transformer blocks
  int64_t heads = 6;         ///< attention heads
  int64_t num_classes = 0;   ///< K > 0: class embedding of K + 1 rows (row K: no class)
  bool guidance = false;     ///< a guidance embedding (Network::forward_guided)
};

/// adaLN-Zero block: x + g1 * attn(mod(LN(x))), then x + g2 * mlp(mod(LN(x))).
class DitBlockImpl : public torch::nn::Module {
 public:
  DitBlockImpl(int64_t hidden, int64_t heads);
  torch::Tensor forward(const torch::Tensor& x, const torch::Tensor& c);

 private:
  int64_t heads_;
  torch::nn::Linear qkv_{nullptr}, proj_{nullptr}, fc1_{nullptr}, fc2_{nullptr}, ada_{nullptr};
};
TORCH_MODULE(DitBlock);

class DitImpl : public Network {
 public:
  explicit DitImpl(const DitOptions& options);
  torch::Tensor forward(const torch::Tensor& x, const torch::Tensor& t) override;
  torch::Tensor forward_cond(const torch::Tensor& x, const torch::Tensor& t,
                             const torch::Tensor& labels) override;
  int64_t num_classes() const override { return options.num_classes; }
  torch::Tensor forward_guided(const torch::Tensor& x, const torch::Tensor& t, const torch::Tensor& labels,
                               const torch::Tensor& w) override;
  bool guided() const override { return options.guidance; }
  /// The last block's tokens averaged over the tokens, [B, hidden].
  torch::Tensor features(const torch::Tensor& x, const torch::Tensor& t, const torch::Tensor& labels) override;
  int64_t feature_dim() const override { return options.hidden; }

  DitOptions options;

 private:
  /// The tokens after the last block and the conditioning vector.
  std::pair<torch::Tensor, torch::Tensor> trunk(const torch::Tensor& x, const torch::Tensor& t, const torch::Tensor& labels,
                                                const torch::Tensor& w = {});
  /// The output head on the trunk's tokens and conditioning.
  torch::Tensor head(const torch::Tensor& tok, const torch::Tensor& c);
  torch::nn::Conv2d patch_embed_{nullptr};
  torch::nn::Linear t1_{nullptr}, t2_{nullptr}, final_ada_{nullptr}, final_{nullptr};
  torch::nn::Linear guidance_{nullptr};  // sinusoid of w 1000 -> hidden (zero init), added to the conditioning
  torch::nn::Embedding label_{nullptr};
  torch::nn::ModuleList blocks_;
  torch::Tensor pos_;  // buffer [N, hidden]
};
TORCH_MODULE(Dit);

/// DiT's timestep embedding: [cos(t f_i), sin(t f_i)], f_i = 10000^(-i / (dim / 2)).
torch::Tensor dit_timestep_embedding(const torch::Tensor& t, int64_t dim = 256);
/// The fixed 2-D sin-cos position embedding [grid * grid, dim]: the first half of the channels
/// embeds the column, the second half the row, each [sin, cos] of 10000^(-i / (dim / 4)).
torch::Tensor dit_pos_embed(int64_t dim, int64_t grid);

}  // namespace unidiff::models
