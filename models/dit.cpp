#include "models/dit.h"

#include <cmath>

#include <torch/nn/functional/activation.h>
#include <torch/nn/functional/normalization.h>

#include "core/error.h"

namespace unidiff::models {
namespace {

namespace F = torch::nn::functional;

torch::Tensor layer_norm(const torch::Tensor& x) {
  return F::layer_norm(x, F::LayerNormFuncOptions({x.size(-1)}).eps(1e-6));
}

/// x (1 + scale) + shift, scale and shift [B, H] broadcast over the tokens of x [B, N, H].
torch::Tensor modulate(const torch::Tensor& x, const torch::Tensor& shift, const torch::Tensor& scale) {
  return x * (1 + scale.unsqueeze(1)) + shift.unsqueeze(1);
}

}  // namespace

torch::Tensor dit_timestep_embedding(const torch::Tensor& t, int64_t dim) {
  const int64_t half = dim / 2;
  // float32, or float64 for a float64 t (derivative checks in double precision).
  const auto dtype = t.scalar_type() == torch::kFloat64 ? torch::kFloat64 : torch::kFloat32;
  const torch::Tensor freqs = torch::exp(
      -std::log(10000.0) * torch::arange(half, torch::TensorOptions().dtype(dtype).device(t.device())) /
      static_cast<double>(half));
  const torch::Tensor args = t.to(dtype).unsqueeze(1) * freqs.unsqueeze(0);
  return torch::cat({torch::cos(args), torch::sin(args)}, 1);
}

torch::Tensor dit_pos_embed(int64_t dim, int64_t grid) {
  UD_ASSERT(dim % 4 == 0, "position embedding width must be divisible by 4, got ", dim);
  const int64_t quarter = dim / 4;
  const torch::Tensor omega =
      1.0 / torch::pow(10000.0, torch::arange(quarter, torch::kFloat64) / static_cast<double>(quarter));
  const torch::Tensor idx = torch::arange(grid * grid, torch::kInt64);
  const torch::Tensor row = idx.div(grid, "floor").to(torch::kFloat64), col = idx.remainder(grid).to(torch::kFloat64);
  auto one_d = [&](const torch::Tensor& pos) {
    const torch::Tensor out = pos.unsqueeze(1) * omega.unsqueeze(0);
    return torch::cat({torch::sin(out), torch::cos(out)}, 1);
  };
  return torch::cat({one_d(col), one_d(row)}, 1).to(torch::kFloat32);
}

DitBlockImpl::DitBlockImpl(int64_t hidden, int64_t heads) : heads_(heads) {
  namespace nn = torch::nn;
  qkv_ = register_module("qkv", nn::Linear(hidden, 3 * hidden));
  proj_ = register_module("proj", nn::Linear(hidden, hidden));
  fc1_ = register_module("fc1", nn::Linear(hidden, 4 * hidden));
  fc2_ = register_module("fc2", nn::Linear(4 * hidden, hidden));
  ada_ = register_module("ada", nn::Linear(hidden, 6 * hidden));
  // adaLN-Zero: every block starts as the identity.
  torch::NoGradGuard no_grad;
  ada_->weight.zero_();
  ada_->bias.zero_();
}

torch::Tensor DitBlockImpl::forward(const torch::Tensor& x, const torch::Tensor& c) {
  const auto mods = ada_->forward(torch::silu(c)).chunk(6, 1);
  const int64_t b = x.size(0), n = x.size(1), h = x.size(2), d = h / heads_;
  // Multi-head attention on the modulated, normalised tokens.
  const torch::Tensor qkv = qkv_->forward(modulate(layer_norm(x), mods[0], mods[1]))
                                .view({b, n, 3, heads_, d})
                                .permute({2, 0, 3, 1, 4});
  // Written out rather than scaled_dot_product_attention: its CPU kernel has no forward-mode
  // derivative, which sCM's JVP needs.
  const torch::Tensor w = torch::softmax(qkv[0].matmul(qkv[1].transpose(-2, -1)) / std::sqrt(static_cast<double>(d)), -1);
  const torch::Tensor a = w.matmul(qkv[2]);
  torch::Tensor out = x + mods[2].unsqueeze(1) * proj_->forward(a.transpose(1, 2).reshape({b, n, h}));
  const torch::Tensor m = fc2_->forward(
      F::gelu(fc1_->forward(modulate(layer_norm(out), mods[3], mods[4])), F::GELUFuncOptions().approximate("tanh")));
  return out + mods[5].unsqueeze(1) * m;
}

DitImpl::DitImpl(const DitOptions& o) : options(o) {
  namespace nn = torch::nn;
  UD_CHECK_INPUT(o.patch > 0 && o.resolution % o.patch == 0, "dit: resolution ", o.resolution,
                 " is not a multiple of the patch ", o.patch);
  UD_CHECK_INPUT(o.heads > 0 && o.hidden % o.heads == 0 && o.hidden % 4 == 0, "dit: width ", o.hidden,
                 " must be divisible by 4 and by the heads (", o.heads, ")");
  UD_CHECK_INPUT(o.depth > 0, "dit: depth must be positive, got ", o.depth);
  patch_embed_ = register_module("patch_embed",
                                 nn::Conv2d(nn::Conv2dOptions(o.in_channels, o.hidden, o.patch).stride(o.patch)));
  pos_ = register_buffer("pos", dit_pos_embed(o.hidden, o.resolution / o.patch));
  t1_ = register_module("t1", nn::Linear(256, o.hidden));
  t2_ = register_module("t2", nn::Linear(o.hidden, o.hidden));
  if (o.num_classes > 0) label_ = register_module("label", nn::Embedding(o.num_classes + 1, o.hidden));
  for (int64_t i = 0; i < o.depth; ++i) blocks_->push_back(DitBlock(o.hidden, o.heads));
  register_module("blocks", blocks_);
  final_ada_ = register_module("final_ada", nn::Linear(o.hidden, 2 * o.hidden));
  final_ = register_module("final", nn::Linear(o.hidden, o.patch * o.patch * o.in_channels));
  torch::NoGradGuard no_grad;
  for (auto* p : {&final_ada_->weight, &final_ada_->bias, &final_->weight, &final_->bias}) p->zero_();
  // Registered last, so an unguided network's parameters are a prefix of its guided version's.
  if (o.guidance) {
    UD_CHECK_INPUT(o.num_classes > 0, "a guidance embedding needs a class-conditional dit");
    guidance_ = register_module("guidance", nn::Linear(256, o.hidden));
    guidance_->weight.zero_();
    guidance_->bias.zero_();
  }
}

torch::Tensor DitImpl::forward(const torch::Tensor& x, const torch::Tensor& t) { return forward_cond(x, t, {}); }

std::pair<torch::Tensor, torch::Tensor> DitImpl::trunk(const torch::Tensor& x, const torch::Tensor& t,
                                                       const torch::Tensor& labels, const torch::Tensor& w) {
  const auto& o = options;
  UD_CHECK_INPUT(x.dim() == 4 && x.size(1) == o.in_channels && x.size(2) == o.resolution && x.size(3) == o.resolution,
                 "dit takes [B, ", o.in_channels, ", ", o.resolution, ", ", o.resolution, "], got ", x.sizes());
  const int64_t b = x.size(0);
  torch::Tensor tok = patch_embed_->forward(x).flatten(2).transpose(1, 2) + pos_;
  torch::Tensor c = t2_->forward(torch::silu(t1_->forward(dit_timestep_embedding(t))));
  if (guidance_) {
    UD_CHECK_INPUT(w.defined(), "this dit is guidance-conditioned: it is called with w (forward_guided)");
    c = c + guidance_->forward(dit_timestep_embedding(w.to(c.scalar_type()) * 1000.0));
  }
  if (label_) {
    const torch::Tensor y = labels.defined()
                                ? labels.to(x.device(), torch::kInt64)
                                : torch::full({b}, o.num_classes, torch::TensorOptions().dtype(torch::kInt64).device(x.device()));
    c = c + label_->forward(y);
  } else {
    UD_CHECK_INPUT(!labels.defined(), "this dit is unconditional: it takes no labels");
  }
  for (const auto& blk : *blocks_) tok = blk->as<DitBlock>()->forward(tok, c);
  return {tok, c};
}

torch::Tensor DitImpl::forward_cond(const torch::Tensor& x, const torch::Tensor& t, const torch::Tensor& labels) {
  const auto [tok, c] = trunk(x, t, labels);
  return head(tok, c);
}

torch::Tensor DitImpl::forward_guided(const torch::Tensor& x, const torch::Tensor& t, const torch::Tensor& labels,
                                      const torch::Tensor& w) {
  UD_CHECK_INPUT(guidance_, "this dit has no guidance embedding: it is guided by two calls (--cfg_scale), not by w");
  UD_CHECK_INPUT(w.defined() && w.dim() == 1 && w.size(0) == x.size(0), "forward_guided takes w [B]");
  const auto [tok, c] = trunk(x, t, labels, w);
  return head(tok, c);
}

torch::Tensor DitImpl::head(const torch::Tensor& tok, const torch::Tensor& c) {
  const auto& o = options;
  const int64_t b = tok.size(0), g = o.resolution / o.patch, p = o.patch;
  const auto sm = final_ada_->forward(torch::silu(c)).chunk(2, 1);
  const torch::Tensor out = final_->forward(modulate(layer_norm(tok), sm[0], sm[1]));  // [B, N, p p C]
  return out.reshape({b, g, g, p, p, o.in_channels}).permute({0, 5, 1, 3, 2, 4}).reshape({b, o.in_channels, g * p, g * p});
}

torch::Tensor DitImpl::features(const torch::Tensor& x, const torch::Tensor& t, const torch::Tensor& labels) {
  return trunk(x, t, labels).first.mean(1);
}

}  // namespace unidiff::models
