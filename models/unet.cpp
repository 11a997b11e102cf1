// models/unet.h.
#include "models/unet.h"

#include <torch/nn/functional/activation.h>
#include <torch/nn/functional/conv.h>
#include <torch/nn/modules/activation.h>
#include <torch/nn/modules/upsampling.h>

#include <algorithm>
#include <cmath>

#include "core/error.h"
#include "models/embeddings.h"
#include "models/group_norm_act.h"
#include "models/keyed_dropout.h"

namespace unidiff::models {
namespace {

namespace nn = torch::nn;

nn::Conv2d conv(int64_t in, int64_t out, int64_t k, int64_t stride = 1, int64_t padding = -1) {
  return nn::Conv2d(nn::Conv2dOptions(in, out, k).stride(stride).padding(padding < 0 ? k / 2 : padding));
}

nn::GroupNorm group_norm(int64_t c, double eps) { return nn::GroupNorm(nn::GroupNormOptions(32, c).eps(eps)); }

}  // namespace

ResBlockImpl::ResBlockImpl(int64_t in, int64_t out, int64_t temb_dim, double dropout, int64_t layer, double eps)
    : dropout_(dropout), layer_(layer) {
  n1_ = register_module("n1", group_norm(in, eps));
  c1_ = register_module("c1", conv(in, out, 3));
  t_ = register_module("t", nn::Linear(temb_dim, out));
  n2_ = register_module("n2", group_norm(out, eps));
  c2_ = register_module("c2", conv(out, out, 3));
  if (in != out) skip_ = register_module("skip", conv(in, out, 1));
}

torch::Tensor ResBlockImpl::forward(const torch::Tensor& x, const torch::Tensor& temb) {
  // silu(n1(x)), then silu(n2(c1(.) + t(silu(temb)))) with the time embedding as n2's bias:
  // ATen's operations, or one fused kernel each (models/group_norm_act.h). Fused, c1's own bias
  // joins the time embedding in n2's [N, C] bias instead of being a pass over c1's output (and a
  // reduction over its gradient) of its own.
  const int64_t groups = n1_->options.num_groups();
  const torch::Tensor h1 = group_norm_act(x, {}, n1_->weight, n1_->bias, groups, n1_->options.eps(), true, fused_);
  torch::Tensor h, bias = t_(torch::silu(temb));
  if (fused_) {
    const auto& o = c1_->options;
    h = torch::nn::functional::conv2d(
        h1, c1_->weight,
        torch::nn::functional::Conv2dFuncOptions().stride(o.stride()).padding(o.padding()).dilation(o.dilation()).groups(
            o.groups()));
    bias = bias + c1_->bias;
  } else {
    h = c1_(h1);
  }
  h = group_norm_act(h, bias, n2_->weight, n2_->bias, groups, n2_->options.eps(), true, fused_);
  h = c2_(keyed_dropout(h, dropout_, is_training(), layer_));
  return (skip_ ? skip_(x) : x) + h;
}

AttnBlockImpl::AttnBlockImpl(int64_t channels, double eps, int64_t head_dim) {
  UD_CHECK_INPUT(head_dim >= 0 && (head_dim == 0 || channels % head_dim == 0), "unet attention head dim ", head_dim,
                 " does not divide the attention width ", channels);
  heads_ = head_dim == 0 ? 1 : channels / head_dim;
  n_ = register_module("n", group_norm(channels, eps));
  qkv_ = register_module("qkv", conv(channels, 3 * channels, 1));
  o_ = register_module("o", conv(channels, channels, 1));
}

torch::Tensor AttnBlockImpl::forward(const torch::Tensor& x) {
  const int64_t b = x.size(0), c = x.size(1), h = x.size(2), w = x.size(3);
  // [B, 3C, H, W] -> three [B, HW, C] (the reference's reshape/transpose/unbind).
  const torch::Tensor hn =
      group_norm_act(x, {}, n_->weight, n_->bias, n_->options.num_groups(), n_->options.eps(), false, fused_);
  const auto qkv = qkv_(hn).reshape({b, 3, c, h * w}).transpose(-1, -2).unbind(1);
  // [B, HW, C] -> [B, heads, HW, d]; back to [B, C, HW] with head h in channels [h d, (h + 1) d).
  const auto split = [&](const torch::Tensor& v) { return v.view({b, h * w, heads_, c / heads_}).transpose(1, 2); };
  const torch::Tensor a = at::scaled_dot_product_attention(split(qkv[0]), split(qkv[1]), split(qkv[2]));
  return x + o_(a.permute({0, 1, 3, 2}).reshape({b, c, h, w}));
}

UnetImpl::UnetImpl(const UnetOptions& o) : options(o) {
  UD_CHECK_INPUT(o.channels > 0 && o.channels % 32 == 0, "unet channels must be a positive multiple ",
                 "of 32 (GroupNorm with 32 groups), got ", o.channels);
  UD_CHECK_INPUT(!o.mult.empty() && o.res_blocks > 0, "unet needs channel multipliers and res blocks");
  UD_CHECK_INPUT(o.time_shift >= 0 && o.time_shift <= 1, "unet time_shift must be in [0, 1], got ", o.time_shift);
  UD_CHECK_INPUT(o.norm_eps > 0 && o.norm_eps < 1, "unet norm_eps must be in (0, 1), got ", o.norm_eps);
  UD_CHECK_INPUT(o.downsample_padding == 0 || o.downsample_padding == 1,
                 "unet downsample_padding must be 0 (right and bottom) or 1 (every side), got ", o.downsample_padding);
  const int64_t levels = static_cast<int64_t>(o.mult.size());
  UD_CHECK_INPUT(o.resolution % (int64_t{1} << (levels - 1)) == 0, "the image size ", o.resolution,
                 " must be divisible by 2^", levels - 1, " for ", levels, " levels");
  const int64_t ch = o.channels, td = 4 * ch;
  int64_t layers = 0;  // dropout layer numbers (keyed_dropout)
  const auto has_attn = [&](int64_t r) {
    return std::find(o.attn_res.begin(), o.attn_res.end(), r) != o.attn_res.end();
  };
  temb_ = register_module("temb", nn::Sequential(nn::Linear(ch, td), nn::SiLU(), nn::Linear(td, td)));
  cin_ = register_module("cin", conv(o.in_channels, ch, 3));
  if (o.num_classes > 0) cemb_ = register_module("cemb", nn::Embedding(o.num_classes + 1, td));
  down_ = register_module("down", nn::ModuleList());
  std::vector<int64_t> chans{ch};
  int64_t c = ch, r = o.resolution;
  for (int64_t i = 0; i < levels; ++i) {
    for (int64_t k = 0; k < o.res_blocks; ++k) {
      nn::ModuleList blk;
      Stage s;
      s.res = ResBlock(c, ch * o.mult[i], td, o.dropout, layers++, o.norm_eps);
      blk->push_back(s.res);
      c = ch * o.mult[i];
      if (has_attn(r)) {
        s.attn = AttnBlock(c, o.norm_eps, o.attn_head_dim);
        blk->push_back(s.attn);
      }
      down_->push_back(blk);
      down_stages_.push_back(s);
      chans.push_back(c);
    }
    if (i != levels - 1) {
      nn::ModuleList blk;
      Stage s;
      s.pad_right = o.downsample_padding == 0;
      s.conv = conv(c, c, 3, 2, s.pad_right ? 0 : 1);
      blk->push_back(s.conv);
      down_->push_back(blk);
      down_stages_.push_back(s);
      chans.push_back(c);
      r /= 2;
    }
  }
  mid_ = register_module("mid", nn::ModuleList());
  mid1_ = ResBlock(c, c, td, o.dropout, layers++, o.norm_eps);
  mid_attn_ = AttnBlock(c, o.norm_eps, o.attn_head_dim);
  mid2_ = ResBlock(c, c, td, o.dropout, layers++, o.norm_eps);
  mid_->push_back(mid1_);
  mid_->push_back(mid_attn_);
  mid_->push_back(mid2_);
  up_ = register_module("up", nn::ModuleList());
  for (int64_t i = levels - 1; i >= 0; --i) {
    for (int64_t k = 0; k < o.res_blocks + 1; ++k) {
      nn::ModuleList blk;
      Stage s;
      s.res = ResBlock(c + chans.back(), ch * o.mult[i], td, o.dropout, layers++, o.norm_eps);
      chans.pop_back();
      blk->push_back(s.res);
      c = ch * o.mult[i];
      if (has_attn(r)) {
        s.attn = AttnBlock(c, o.norm_eps, o.attn_head_dim);
        blk->push_back(s.attn);
      }
      up_->push_back(blk);
      up_stages_.push_back(s);
    }
    if (i != 0) {
      nn::ModuleList blk;
      Stage s;
      s.upsample = true;
      s.conv = conv(c, c, 3);
      blk->push_back(nn::Upsample(nn::UpsampleOptions()
                                      .scale_factor(std::vector<double>{2.0, 2.0})
                                      .mode(torch::kNearest)));
      blk->push_back(s.conv);
      up_->push_back(blk);
      up_stages_.push_back(s);
      r *= 2;
    }
  }
  out_ = register_module("out", nn::Sequential(group_norm(c, o.norm_eps), nn::SiLU(), conv(c, o.in_channels, 3)));
  // Registered last, so an unguided network's parameters are a prefix of its guided version's.
  if (o.guidance) {
    UD_CHECK_INPUT(o.num_classes > 0, "a guidance embedding needs a class-conditional unet");
    gemb_ = register_module("gemb", nn::Linear(ch, td));
    torch::NoGradGuard no_grad;
    gemb_->weight.zero_();
    gemb_->bias.zero_();
  }
}

torch::Tensor UnetImpl::forward(const torch::Tensor& x, const torch::Tensor& t) {
  return forward_cond(x, t, {});
}

torch::Tensor UnetImpl::forward_cond(const torch::Tensor& x, const torch::Tensor& t,
                                     const torch::Tensor& labels) {
  return run(x, t, labels, false);
}

torch::Tensor UnetImpl::forward_guided(const torch::Tensor& x, const torch::Tensor& t, const torch::Tensor& labels,
                                       const torch::Tensor& w) {
  UD_CHECK_INPUT(gemb_, "this unet has no guidance embedding: it is guided by two calls (--cfg_scale), not by w");
  UD_CHECK_INPUT(w.defined() && w.dim() == 1 && w.size(0) == x.size(0), "forward_guided takes w [B]");
  return run(x, t, labels, false, w);
}

torch::Tensor UnetImpl::features(const torch::Tensor& x, const torch::Tensor& t, const torch::Tensor& labels) {
  return run(x, t, labels, true);
}

torch::Tensor UnetImpl::run(const torch::Tensor& x, const torch::Tensor& t, const torch::Tensor& labels,
                            bool features_only, const torch::Tensor& w) {
  torch::Tensor te = temb_->forward(timestep_embedding(t, options.channels, options.time_flip, options.time_shift));
  if (gemb_) {
    UD_CHECK_INPUT(w.defined(), "this unet is guidance-conditioned: it is called with w (forward_guided)");
    te = te + gemb_->forward(
                  timestep_embedding(w.to(te.scalar_type()) * 1000.0, options.channels, options.time_flip, options.time_shift));
  }
  if (cemb_) {
    const torch::Tensor y = labels.defined()
                                ? labels.to(x.device(), torch::kInt64)
                                : torch::full({x.size(0)}, options.num_classes,
                                              torch::TensorOptions().dtype(torch::kInt64).device(x.device()));
    te = te + cemb_(y);
  } else {
    UD_CHECK_INPUT(!labels.defined(), "this unet is unconditional (--model_classes=0): it takes no labels");
  }
  torch::Tensor h = cin_(x);
  std::vector<torch::Tensor> hs{h};
  for (Stage& s : down_stages_) {
    if (s.res) {
      h = s.res(h, te);
      if (s.attn) h = s.attn(h);
    } else {
      h = s.conv(s.pad_right ? torch::constant_pad_nd(h, {0, 1, 0, 1}) : h);
    }
    hs.push_back(h);
  }
  h = mid2_(mid_attn_(mid1_(h, te)), te);
  if (features_only) return h.mean({2, 3});
  for (Stage& s : up_stages_) {
    if (s.res) {
      h = s.res(torch::cat({h, hs.back()}, 1), te);
      hs.pop_back();
      if (s.attn) h = s.attn(h);
    } else {
      h = s.conv(torch::upsample_nearest2d(h, std::nullopt, std::vector<double>{2.0, 2.0}));
    }
  }
  // out = (GroupNorm, SiLU, conv) keeps the reference's module names; the first two run as one.
  auto* norm = out_[0]->as<nn::GroupNorm>();
  return out_[2]->as<nn::Conv2d>()->forward(group_norm_act(h, {}, norm->weight, norm->bias, norm->options.num_groups(),
                                                           norm->options.eps(), true, fused_));
}

void UnetImpl::set_fused_group_norm(bool fused) {
  fused_ = fused;
  for (const auto& m : modules(/*include_self=*/false)) {
    if (auto* r = m->as<ResBlockImpl>()) r->set_fused_group_norm(fused);
    if (auto* a = m->as<AttnBlockImpl>()) a->set_fused_group_norm(fused);
  }
}

bool set_fused_group_norm(Network& net, bool fused) {
  auto* unet = dynamic_cast<UnetImpl*>(&net);
  if (unet == nullptr) return false;
  unet->set_fused_group_norm(fused);
  return true;
}

}  // namespace unidiff::models
