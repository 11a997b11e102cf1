// The network registry (models/network.h).
#include "models/network.h"

#include <functional>
#include <map>

#include "core/error.h"
#include "models/mlp.h"
#include "models/dit.h"
#include "models/unet.h"

namespace unidiff::models {
namespace {

using Factory = std::function<std::shared_ptr<Network>(const NetworkConfig&)>;

/// DiT of the given width, depth and heads on the config's image shape, patch and classes.
std::shared_ptr<Network> make_dit(const NetworkConfig& c, int64_t hidden, int64_t depth, int64_t heads) {
  UD_CHECK_INPUT(c.data_shape.size() == 3 && c.data_shape[1] == c.data_shape[2],
                 "arch '", c.arch, "' takes square images or latents [N, C, H, H]; the data has samples of shape ",
                 torch::IntArrayRef(c.data_shape));
  UD_CHECK_INPUT(c.num_classes >= 0, "num_classes must be >= 0, got ", c.num_classes);
  DitOptions o;
  o.in_channels = c.data_shape[0];
  o.resolution = c.data_shape[1];
  o.patch = c.patch;
  o.hidden = hidden;
  o.depth = depth;
  o.heads = heads;
  o.num_classes = c.num_classes;
  o.guidance = c.guidance == 1;
  return std::make_shared<DitImpl>(o);
}

const std::map<std::string, Factory>& registry() {
  static const std::map<std::string, Factory> r = {
      {"mlp",
       [](const NetworkConfig& c) -> std::shared_ptr<Network> {
         UD_CHECK_INPUT(c.data_shape.size() == 1, "arch 'mlp' takes vector data [N, D]; the data ",
                        "has samples of ", c.data_shape.size(), " dimensions");
         UD_CHECK_INPUT(c.hidden > 0 && c.layers > 0, "mlp needs hidden > 0 and layers > 0");
         UD_CHECK_INPUT(c.time_dim > 0 && c.time_dim % 2 == 0, "time_dim must be even and > 0, got ",
                        c.time_dim);
         UD_CHECK_INPUT(c.fourier >= 0 && c.fourier <= 16, "the mlp's Fourier octaves must be in [0, 16], got ",
                        c.fourier);
         return std::make_shared<MlpImpl>(
             MlpOptions(c.data_shape[0]).hidden(c.hidden).layers(c.layers).time_dim(c.time_dim).fourier(c.fourier));
       }},
      {"unet",
       [](const NetworkConfig& c) -> std::shared_ptr<Network> {
         UD_CHECK_INPUT(c.data_shape.size() == 3 && c.data_shape[1] == c.data_shape[2],
                        "arch 'unet' takes square images [N, C, H, H]; the data has samples of shape ",
                        torch::IntArrayRef(c.data_shape));
         UD_CHECK_INPUT(c.dropout >= 0 && c.dropout < 1, "dropout must be in [0, 1), got ", c.dropout);
         UnetOptions o;
         o.in_channels = c.data_shape[0];
         o.resolution = c.data_shape[1];
         o.channels = c.channels;
         o.mult = c.channel_mult;
         o.res_blocks = c.res_blocks;
         o.attn_res = c.attn_res;
         o.dropout = c.dropout;
         o.norm_eps = c.norm_eps;
         o.downsample_padding = c.downsample_padding;
         o.attn_head_dim = c.attn_head_dim;
         o.time_flip = c.time_flip == 1;
         o.time_shift = c.time_shift;
         UD_CHECK_INPUT(c.num_classes >= 0, "num_classes must be >= 0, got ", c.num_classes);
         o.num_classes = c.num_classes;
         o.guidance = c.guidance == 1;
         return std::make_shared<UnetImpl>(o);
       }},
      {"dit", [](const NetworkConfig& c) { return make_dit(c, c.hidden, c.depth, c.heads); }},
      {"dit-s", [](const NetworkConfig& c) { return make_dit(c, 384, 12, 6); }},
      {"dit-b", [](const NetworkConfig& c) { return make_dit(c, 768, 12, 12); }},
  };
  return r;
}

}  // namespace

torch::Tensor Network::forward_cond(const torch::Tensor& x, const torch::Tensor& t,
                                    const torch::Tensor& labels) {
  UD_CHECK_INPUT(!labels.defined(), "this network is unconditional: it takes no class labels");
  return forward(x, t);
}

std::vector<std::string> network_names() {
  std::vector<std::string> names;
  for (const auto& [k, v] : registry()) names.push_back(k);
  return names;
}

std::shared_ptr<Network> make_network(const NetworkConfig& config) {
  const auto it = registry().find(config.arch);
  if (it == registry().end()) {
    std::string known;
    for (const auto& k : network_names()) known += (known.empty() ? "" : ", ") + k;
    UD_FAIL_INPUT("unknown network architecture '", config.arch, "' (valid: ", known, ")");
  }
  UD_CHECK_INPUT(config.guidance == 0 || (config.guidance == 1 && config.arch != "mlp" && config.num_classes > 0),
                 "a guidance embedding needs a class-conditional unet or dit (guidance 1), got arch '", config.arch,
                 "' with ", config.num_classes, " classes and guidance ", config.guidance);
  UD_CHECK_INPUT(config.fourier == 0 || config.arch == "mlp", "input Fourier features (--model_fourier) are ",
                 "for the mlp, not for arch '", config.arch, "'");
  return it->second(config);
}

torch::Tensor Network::forward_guided(const torch::Tensor&, const torch::Tensor&, const torch::Tensor&,
                                      const torch::Tensor&) {
  UD_FAIL_INPUT("this network has no guidance embedding: it is guided by two calls (--cfg_scale), not by w");
}

torch::Tensor Network::features(const torch::Tensor&, const torch::Tensor&, const torch::Tensor&) {
  UD_FAIL_INPUT("this network has no bottleneck features for a discriminator head");
}

HeadImpl::HeadImpl(int64_t features, int64_t hidden, int64_t layers) {
  UD_ASSERT(features > 0 && layers >= 1, "a head needs features and a layer");
  const int64_t h = hidden > 0 ? hidden : features;
  hidden_ = register_module("hidden", torch::nn::ModuleList());
  for (int64_t i = 0; i < layers; ++i) hidden_->push_back(torch::nn::Linear(i == 0 ? features : h, h));
  out_ = register_module("out", torch::nn::Linear(h, 1));
}

torch::Tensor HeadImpl::forward(const torch::Tensor& f) {
  torch::Tensor h = f.to(out_->weight.scalar_type());
  for (const auto& layer : *hidden_) h = torch::silu(layer->as<torch::nn::Linear>()->forward(h));
  return out_->forward(h).view({-1});
}

const settings::Table<NetworkConfig>& network_settings() {
  static const settings::Table<NetworkConfig> t = [] {
    using settings::Decl;
    using C = NetworkConfig;
    const auto pos = settings::positive();
    settings::Table<C> t;
    t.add(Decl("model_arch", "network architecture: mlp (vectors), unet, dit (width --model_hidden), dit-s, dit-b "
                             "(images, latents)")
              .guarded()
              .attr("arch")
              .required(),
          &C::arch);
    t.add(Decl("", "shape of one sample").guarded().attr("data_shape").required(), &C::data_shape);
    t.add(Decl("model_hidden", "hidden width").guarded().attr("hidden").required().check(pos).check(
              settings::at_most(65536)),
          &C::hidden);
    t.add(Decl("model_layers", "hidden layers").guarded().attr("layers").required().check(pos).check(
              settings::at_most(1024)),
          &C::layers);
    t.add(Decl("model_time_dim", "size of the sinusoidal time embedding (even)")
              .guarded()
              .attr("time_dim")
              .required()
              .check(pos)
              .check(settings::at_most(65536)),
          &C::time_dim);
    t.add(Decl("model_fourier", "mlp: K octaves of input Fourier features [x, sin(2^k pi x), cos(2^k pi x)], k < K "
                                "(0: x alone)")
              .guarded()
              .attr("fourier")
              .check(settings::non_negative()),
          &C::fourier);
    t.add(Decl("model_channels", "unet: base width (a multiple of 32)").guarded().attr("channels").check(pos).check(
              settings::at_most(8192)),
          &C::channels);
    t.add(Decl("model_mult", "unet: width multiplier per level, comma-separated").guarded().attr("channel_mult"),
          &C::channel_mult);
    t.add(Decl("model_res_blocks", "unet: residual blocks per level").guarded().attr("res_blocks").check(pos).check(
              settings::at_most(64)),
          &C::res_blocks);
    t.add(Decl("model_attn_res", "unet: resolutions with self-attention, comma-separated (empty: none)")
              .guarded()
              .attr("attn_res"),
          &C::attn_res);
    t.add(Decl("model_dropout", "unet: dropout in the residual blocks").guarded().attr("dropout").check(
              settings::unit_interval()),
          &C::dropout);
    t.add(Decl("model_norm_eps", "unet: GroupNorm epsilon (imported DDPM/diffusers models: 1e-6)")
              .guarded()
              .attr("norm_eps")
              .check(pos)
              .check(settings::at_most(0.5)),
          &C::norm_eps);
    t.add(Decl("model_time_flip", "unet: 1 = time embedding [cos, sin] (diffusers' flip_sin_to_cos), 0 = DDPM's "
                                  "[sin, cos]")
              .guarded()
              .attr("time_flip")
              .check(settings::non_negative())
              .check(settings::at_most(1)),
          &C::time_flip);
    t.add(Decl("model_time_shift", "unet: time embedding frequencies 10000^(-i / (h - shift)) (DDPM: 1; diffusers' "
                                   "freq_shift)")
              .guarded()
              .attr("time_shift")
              .check(settings::non_negative())
              .check(settings::at_most(1)),
          &C::time_shift);
    t.add(Decl("model_attn_head_dim", "unet: channels per attention head (0: one head over all channels; diffusers' "
                                      "UNet2DModel default: 8)")
              .guarded()
              .attr("attn_head_dim")
              .check(settings::non_negative()),
          &C::attn_head_dim);
    t.add(Decl("model_downsample_padding", "unet: downsampling pads 1 = every side, 0 = right and bottom only "
                                           "(TensorFlow's SAME, as the original DDPM and diffusers' "
                                           "downsample_padding=0)")
              .guarded()
              .attr("downsample_padding")
              .check(settings::non_negative())
              .check(settings::at_most(1)),
          &C::downsample_padding);
    t.add(Decl("", "classes of a conditional network (0: unconditional)")
              .guarded()
              .attr("num_classes")
              .check(settings::non_negative())
              .check(settings::at_most(1000000)),
          &C::num_classes);
    t.add(Decl("", "1: a guidance-conditioned network (LCM, guided distillation), else 0").guarded().attr("guidance"),
          &C::guidance);
    t.add(Decl("model_depth", "dit: transformer blocks (dit-s and dit-b: 12)").guarded().attr("depth").check(pos).check(
              settings::at_most(1024)),
          &C::depth);
    t.add(Decl("model_heads", "dit: attention heads (dit-s: 6, dit-b: 12)").guarded().attr("heads").check(pos),
          &C::heads);
    t.add(Decl("model_patch", "dit, dit-s, dit-b: patch side (2 or 4 for the standard sizes)").guarded().attr(
              "patch").check(pos),
          &C::patch);
    return t;
  }();
  return t;
}

}  // namespace unidiff::models
