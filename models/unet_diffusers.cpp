// models/unet_diffusers.h.
#include "models/unet_diffusers.h"

#include <algorithm>
#include <set>

#include "core/error.h"
#include "core/json_fields.h"

namespace unidiff::models::diffusers {
namespace {

using nlohmann::json;

/// How one of our parameters is made of diffusers tensors: one tensor of the same shape, one
/// linear weight [C, C] that is our 1x1 conv [C, C, 1, 1], or three (q, k, v) stacked along dim 0.
struct Link {
  std::vector<std::string> theirs;
  bool conv1x1 = false;
};

/// Our parameter name -> its link, for every parameter a unet of `o` can have (a residual block's
/// skip is listed whether or not the block has one: only our real parameters are looked up).
std::map<std::string, Link> links(const UnetOptions& o) {
  std::map<std::string, Link> m;
  const auto same = [&](const std::string& ours, const std::string& theirs) {
    m[ours + ".weight"] = {{theirs + ".weight"}, false};
    m[ours + ".bias"] = {{theirs + ".bias"}, false};
  };
  const auto res = [&](const std::string& ours, const std::string& theirs) {
    same(ours + ".n1", theirs + ".norm1");
    same(ours + ".c1", theirs + ".conv1");
    same(ours + ".t", theirs + ".time_emb_proj");
    same(ours + ".n2", theirs + ".norm2");
    same(ours + ".c2", theirs + ".conv2");
    same(ours + ".skip", theirs + ".conv_shortcut");
  };
  const auto attn = [&](const std::string& ours, const std::string& theirs) {
    same(ours + ".n", theirs + ".group_norm");
    for (const char* p : {".weight", ".bias"}) {
      const bool w = std::string(p) == ".weight";
      m[ours + ".qkv" + p] = {{theirs + ".to_q" + p, theirs + ".to_k" + p, theirs + ".to_v" + p}, w};
      m[ours + ".o" + p] = {{theirs + ".to_out.0" + p}, w};
    }
  };
  same("temb.0", "time_embedding.linear_1");
  same("temb.2", "time_embedding.linear_2");
  same("cin", "conv_in");
  same("out.0", "conv_norm_out");
  same("out.2", "conv_out");
  m["cemb.weight"] = {{"class_embedding.weight"}, false};
  const int64_t levels = static_cast<int64_t>(o.mult.size());
  const auto has_attn = [&](int64_t r) {
    return std::find(o.attn_res.begin(), o.attn_res.end(), r) != o.attn_res.end();
  };
  int64_t k = 0, r = o.resolution;
  for (int64_t i = 0; i < levels; ++i) {
    const std::string block = "down_blocks." + std::to_string(i);
    for (int64_t j = 0; j < o.res_blocks; ++j, ++k) {
      res("down." + std::to_string(k) + ".0", block + ".resnets." + std::to_string(j));
      if (has_attn(r)) attn("down." + std::to_string(k) + ".1", block + ".attentions." + std::to_string(j));
    }
    if (i != levels - 1) {
      same("down." + std::to_string(k++) + ".0", block + ".downsamplers.0.conv");
      r /= 2;
    }
  }
  res("mid.0", "mid_block.resnets.0");
  attn("mid.1", "mid_block.attentions.0");
  res("mid.2", "mid_block.resnets.1");
  k = 0;
  for (int64_t i = levels - 1; i >= 0; --i) {
    const std::string block = "up_blocks." + std::to_string(levels - 1 - i);
    for (int64_t j = 0; j < o.res_blocks + 1; ++j, ++k) {
      res("up." + std::to_string(k) + ".0", block + ".resnets." + std::to_string(j));
      if (has_attn(r)) attn("up." + std::to_string(k) + ".1", block + ".attentions." + std::to_string(j));
    }
    if (i != 0) {
      same("up." + std::to_string(k++) + ".1", block + ".upsamplers.0.conv");
      r *= 2;
    }
  }
  return m;
}

/// Older diffusers files name the attention projections query, key, value and proj_attn.
std::string legacy_name(const std::string& key) {
  for (const auto& [now, before] : std::vector<std::pair<std::string, std::string>>{
           {".to_q.", ".query."}, {".to_k.", ".key."}, {".to_v.", ".value."}, {".to_out.0.", ".proj_attn."}}) {
    const size_t at = key.rfind(now);
    if (at != std::string::npos) return key.substr(0, at) + before + key.substr(at + now.size());
  }
  return "";
}

}  // namespace

UnetOptions unet_options_from_config(const json& config, const std::string& what) {
  JsonFields c(config, what, "unidiff's unet");
  c.one_of("_class_name", {"UNet2DModel"}, "only diffusers' UNet2DModel is imported");
  UnetOptions o;
  // sample_size: an int, or [H, W] with H = W.
  if (const json* s = c.get("sample_size")) {
    if (s->is_array() && s->size() == 2 && (*s)[0] == (*s)[1] && (*s)[0].is_number_integer()) {
      o.resolution = (*s)[0].get<int64_t>();
    } else if (s->is_number_integer()) {
      o.resolution = s->get<int64_t>();
    } else {
      c.refuse("sample_size", "a square size is expected");
    }
  } else {
    UD_FAIL_INPUT(what, ": sample_size is missing (the image size the unet was built for)");
  }
  if (o.resolution <= 0) c.refuse("sample_size", "a positive size is expected");
  o.in_channels = c.integer("in_channels", 3);
  if (o.in_channels <= 0 || o.in_channels > 64) c.refuse("in_channels", "1..64 channels");
  if (c.integer("out_channels", 3) != o.in_channels) {
    c.refuse("out_channels", "unidiff's unet predicts a tensor shaped like its input (" +
                                 std::to_string(o.in_channels) + " channels)");
  }
  const json* widths = c.get("block_out_channels");
  if (widths == nullptr || !widths->is_array() || widths->empty()) {
    UD_FAIL_INPUT(what, ": block_out_channels must be a non-empty list of widths");
  }
  std::vector<int64_t> w;
  for (const auto& x : *widths) {
    if (!x.is_number_integer() || x.get<int64_t>() <= 0) c.refuse("block_out_channels", "positive widths");
    w.push_back(x.get<int64_t>());
  }
  o.channels = w.front();
  o.mult.clear();
  for (int64_t x : w) {
    if (x % o.channels != 0) {
      c.refuse("block_out_channels", "every width must be a multiple of the first (unidiff's unet is a base width "
                                     "times per-level multipliers)");
    }
    o.mult.push_back(x / o.channels);
  }
  if (o.channels % 32 != 0) c.refuse("block_out_channels", "widths must be multiples of 32 (GroupNorm(32))");
  o.res_blocks = c.integer("layers_per_block", 2);
  if (o.res_blocks <= 0 || o.res_blocks > 64) c.refuse("layers_per_block", "1..64");
  const int64_t levels = static_cast<int64_t>(w.size());
  const auto down = c.strings("down_block_types");
  const auto up = c.strings("up_block_types");
  if (static_cast<int64_t>(down.size()) != levels) {
    c.refuse("down_block_types", "one block per entry of block_out_channels");
  }
  if (static_cast<int64_t>(up.size()) != levels) c.refuse("up_block_types", "one block per entry of block_out_channels");
  if (o.resolution % (int64_t{1} << (levels - 1)) != 0) {
    c.refuse("sample_size", "it must be divisible by 2^(levels - 1)");
  }
  o.attn_res.clear();
  for (int64_t i = 0; i < levels; ++i) {
    const std::string& d = down[i];
    const std::string& u = up[levels - 1 - i];
    if (d != "DownBlock2D" && d != "AttnDownBlock2D") {
      c.refuse("down_block_types", "'" + d + "' is neither DownBlock2D nor AttnDownBlock2D");
    }
    if (u != "UpBlock2D" && u != "AttnUpBlock2D") {
      c.refuse("up_block_types", "'" + u + "' is neither UpBlock2D nor AttnUpBlock2D");
    }
    if ((d == "AttnDownBlock2D") != (u == "AttnUpBlock2D")) {
      c.refuse("up_block_types", "level " + std::to_string(i) + " has attention on one side only (" + d + ", " + u +
                                     "); unidiff's unet attends at the same resolutions down and up");
    }
    if (d == "AttnDownBlock2D") o.attn_res.push_back(o.resolution >> i);
  }
  c.one_of("mid_block_type", {"UNetMidBlock2D"}, "unidiff's unet has the middle block resnet-attention-resnet");
  c.must_be("add_attention", true, "the middle block's attention is part of unidiff's unet");
  c.one_of("time_embedding_type", {"positional"}, "unidiff's unet embeds time with DDPM's sinusoid");
  // diffusers' defaults (absent or null): flip_sin_to_cos true, freq_shift 0.
  o.time_flip = true;
  if (const json* f = c.get("flip_sin_to_cos")) {
    if (!f->is_boolean()) c.refuse("flip_sin_to_cos", "true or false");
    o.time_flip = f->get<bool>();
  }
  o.time_shift = c.real("freq_shift", 0);
  if (!(o.time_shift >= 0 && o.time_shift <= 1)) {
    c.refuse("freq_shift", "a shift in [0, 1] (frequencies 10000^(-i / (h - shift)))");
  }
  if (const json* d = c.get("time_embedding_dim"); d != nullptr && *d != 4 * o.channels) {
    c.refuse("time_embedding_dim", "the time embedding is 4 x the base width");
  }
  c.must_be("center_input_sample", false, "the unet takes x as it is");
  c.one_of("act_fn", {"silu"}, "the unet's activation is SiLU");
  c.must_be("norm_num_groups", 32, "GroupNorm has 32 groups");
  c.must_be("attn_norm_num_groups", 32, "GroupNorm has 32 groups");
  c.one_of("resnet_time_scale_shift", {"default"}, "the time embedding is added, not a scale and shift");
  c.one_of("downsample_type", {"conv"}, "downsampling is a stride-2 conv");
  c.one_of("upsample_type", {"conv"}, "upsampling is nearest + conv");
  if (c.real("mid_block_scale_factor", 1) != 1) {
    c.refuse("mid_block_scale_factor", "the middle block's output is not rescaled");
  }
  c.one_of("class_embed_type", {"none"}, "classes are a lookup table (num_class_embeds)");
  // Channels per head: null = one head over each layer's channels; absent = diffusers' default 8.
  // Every attention layer (the attention levels', the middle block's) must split into whole heads.
  const bool head_dim_given = c.has("attention_head_dim");
  o.attn_head_dim = head_dim_given ? 0 : 8;
  if (const json* h = c.get("attention_head_dim")) {
    if (!h->is_number_integer() || h->get<int64_t>() <= 0) c.refuse("attention_head_dim", "a positive integer");
    o.attn_head_dim = h->get<int64_t>();
  }
  for (int64_t i = 0; o.attn_head_dim > 0 && i <= levels; ++i) {
    const bool attends = i == levels || down[i] == "AttnDownBlock2D";
    const int64_t width = i == levels ? w.back() : w[i];
    if (attends && width % o.attn_head_dim != 0) {
      c.refuse("attention_head_dim", "it does not divide the attention width " + std::to_string(width) +
                                         (head_dim_given ? "" : " (absent: diffusers' default 8)"));
    }
  }
  o.norm_eps = c.real("norm_eps", 1e-5);
  if (!(o.norm_eps > 0 && o.norm_eps <= 0.5)) c.refuse("norm_eps", "0 < eps <= 0.5");
  o.downsample_padding = c.integer("downsample_padding", 1);
  if (o.downsample_padding != 0 && o.downsample_padding != 1) {
    c.refuse("downsample_padding", "0 (right and bottom) or 1 (every side)");
  }
  o.dropout = c.real("dropout", 0.0);
  if (!(o.dropout >= 0 && o.dropout < 1)) c.refuse("dropout", "a probability in [0, 1)");
  if (c.get("num_class_embeds") != nullptr) {
    o.num_classes = c.integer("num_class_embeds", 0) - 1;
    if (o.num_classes < 1) c.refuse("num_class_embeds", "K + 1 >= 2 rows: K classes and a last row for \"no class\"");
  }
  c.get("num_train_timesteps");  // only read by diffusers' learned time embeddings
  for (const auto& key : c.unread()) {
    c.refuse(key, "an unknown UNet2DModel key (unidiff maps those of diffusers " + std::string(kVersion) + ")");
  }
  return o;
}

nlohmann::ordered_json unet_config(const UnetOptions& o) {
  UD_CHECK_INPUT(!o.guidance, "a guidance-conditioned unet has no UNet2DModel equivalent (no guidance embedding)");
  const int64_t levels = static_cast<int64_t>(o.mult.size());
  std::vector<int64_t> widths;
  std::vector<std::string> down, up;
  for (int64_t i = 0; i < levels; ++i) {
    widths.push_back(o.channels * o.mult[i]);
    const bool a = std::find(o.attn_res.begin(), o.attn_res.end(), o.resolution >> i) != o.attn_res.end();
    down.push_back(a ? "AttnDownBlock2D" : "DownBlock2D");
    up.insert(up.begin(), a ? "AttnUpBlock2D" : "UpBlock2D");
  }
  nlohmann::ordered_json j;
  j["_class_name"] = "UNet2DModel";
  j["_diffusers_version"] = kVersion;
  j["act_fn"] = "silu";
  j["add_attention"] = true;
  j["attention_head_dim"] = o.attn_head_dim > 0 ? json(o.attn_head_dim) : json(nullptr);
  j["attn_norm_num_groups"] = nullptr;
  j["block_out_channels"] = widths;
  j["center_input_sample"] = false;
  j["class_embed_type"] = nullptr;
  j["down_block_types"] = down;
  j["downsample_padding"] = o.downsample_padding;
  j["downsample_type"] = "conv";
  j["dropout"] = o.dropout;
  j["flip_sin_to_cos"] = o.time_flip;
  j["freq_shift"] = o.time_shift == static_cast<int64_t>(o.time_shift) ? json(static_cast<int64_t>(o.time_shift))
                                                                         : json(o.time_shift);
  j["in_channels"] = o.in_channels;
  j["layers_per_block"] = o.res_blocks;
  j["mid_block_scale_factor"] = 1;
  j["mid_block_type"] = "UNetMidBlock2D";
  j["norm_eps"] = o.norm_eps;
  j["norm_num_groups"] = 32;
  j["num_class_embeds"] = o.num_classes > 0 ? json(o.num_classes + 1) : json(nullptr);
  j["num_train_timesteps"] = nullptr;
  j["out_channels"] = o.in_channels;
  j["resnet_time_scale_shift"] = "default";
  j["sample_size"] = o.resolution;
  j["time_embedding_dim"] = nullptr;
  j["time_embedding_type"] = "positional";
  j["up_block_types"] = up;
  j["upsample_type"] = "conv";
  return j;
}

std::map<std::string, torch::Tensor> parameters_from_diffusers(
    const UnetOptions& options, const std::vector<std::pair<std::string, torch::Tensor>>& state,
    const std::string& what) {
  std::map<std::string, torch::Tensor> theirs;
  for (const auto& [k, t] : state) theirs[k] = t;
  std::set<std::string> used;
  const auto fetch = [&](const std::string& key) {
    auto it = theirs.find(key);
    if (it == theirs.end()) {
      const std::string old = legacy_name(key);
      if (!old.empty()) it = theirs.find(old);
    }
    UD_CHECK_INPUT(it != theirs.end(), what, " lacks tensor '", key, "' (a unet of this config has it)");
    used.insert(it->first);
    const torch::Tensor& t = it->second;
    UD_CHECK_INPUT(t.is_floating_point(), what, ": tensor '", it->first, "' has dtype ", t.scalar_type(),
                   ", not a floating-point weight");
    return std::make_pair(it->first, t.to(torch::kFloat32));
  };
  const auto table = links(options);
  const Unet reference(options);  // our parameter names and shapes
  std::map<std::string, torch::Tensor> out;
  for (const auto& p : reference->named_parameters()) {
    const auto link = table.find(p.key());
    UD_ASSERT(link != table.end(), "unet parameter ", p.key(), " has no diffusers name");
    const auto& l = link->second;
    std::vector<torch::Tensor> parts;
    std::vector<int64_t> expected = p.value().sizes().vec();
    if (l.theirs.size() == 3) expected[0] /= 3;
    if (l.conv1x1) expected.resize(2);
    for (const auto& key : l.theirs) {
      auto [name, t] = fetch(key);
      UD_CHECK_INPUT(t.sizes().vec() == expected, what, ": tensor '", name, "' has shape ", t.sizes(),
                     "; the unet of this config expects ", torch::IntArrayRef(expected));
      UD_CHECK_INPUT(torch::isfinite(t).all().item<bool>(), what, ": tensor '", name, "' holds non-finite values");
      parts.push_back(t);
    }
    torch::Tensor v = parts.size() == 1 ? parts[0] : torch::cat(parts, 0);
    out[p.key()] = v.reshape(p.value().sizes()).contiguous();
  }
  for (const auto& [k, t] : state) {
    UD_CHECK_INPUT(used.count(k), what, " has tensor '", k, "' of shape ", t.sizes(),
                   ", which a unet of this config does not have (", state.size() - used.size(), " such tensors)");
  }
  return out;
}

std::vector<std::pair<std::string, torch::Tensor>> parameters_to_diffusers(
    const UnetOptions& options, const std::vector<std::pair<std::string, torch::Tensor>>& ours) {
  const auto table = links(options);
  std::vector<std::pair<std::string, torch::Tensor>> out;
  for (const auto& [name, value] : ours) {
    const auto link = table.find(name);
    UD_CHECK_INPUT(link != table.end(), "unet parameter '", name, "' has no diffusers UNet2DModel name");
    const auto& l = link->second;
    torch::Tensor t = value.detach().to(torch::kCPU, torch::kFloat32);
    if (l.conv1x1) t = t.reshape({t.size(0), t.size(1)});
    const auto parts = l.theirs.size() == 3 ? t.chunk(3, 0) : std::vector<torch::Tensor>{t};
    for (size_t i = 0; i < l.theirs.size(); ++i) out.emplace_back(l.theirs[i], parts[i].contiguous());
  }
  return out;
}

}  // namespace unidiff::models::diffusers
