// The UNet (models/unet.h) as diffusers' UNet2DModel (diffusers 0.42; the DDPM configuration of
// google/ddpm-cifar10-32 and every size the unet flags allow): the config.json <-> UnetOptions
// mapping and the state-dict key mapping, both ways.
//
// The two networks compute the same function when their configs map: ResnetBlock2D is ResBlock
// (norm1 = n1, conv1 = c1, time_emb_proj = t, norm2 = n2, conv2 = c2, conv_shortcut = skip), the
// single-head Attention is AttnBlock (group_norm = n; to_q, to_k, to_v [C, C] stacked are the 1x1
// conv qkv [3C, C, 1, 1]; to_out.0 is o), time_embedding.linear_1/2 = temb.0/2, conv_in = cin,
// conv_norm_out = out.0, conv_out = out.2, class_embedding = cemb (diffusers' num_class_embeds =
// unidiff's classes + 1: the last row is "no class"). Down block i holds level i; up block j holds
// level L-1-j. The time embedding is DDPM's (flip_sin_to_cos false, freq_shift 1).
#pragma once

#include <torch/types.h>

#include <map>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "models/unet.h"

namespace unidiff::models::diffusers {

/// The diffusers version whose UNet2DModel this mapping was checked against (written into exported configs).
inline constexpr const char* kVersion = "0.42.1";

/// UnetOptions from a UNet2DModel config.json object; `what` names the file in errors. A key whose
/// value unidiff's UNet cannot reproduce (multi-head attention, a Fourier time embedding,
/// scale-shift norms, mismatched attention levels, an unknown key, ...) throws InputError naming
/// the key and its value.
UnetOptions unet_options_from_config(const nlohmann::json& config, const std::string& what);

/// The UNet2DModel config.json object of a unet. Throws InputError for a guidance-conditioned unet
/// (UNet2DModel has no guidance embedding).
nlohmann::ordered_json unet_config(const UnetOptions& options);

/// Our parameters (named as Unet's named_parameters(), float32) from a diffusers state dict:
/// every tensor of `state` used exactly once; a missing tensor, an unused one or a shape that
/// differs throws InputError naming the diffusers key. Accepts the attention names of older
/// diffusers files (query, key, value, proj_attn) beside to_q, to_k, to_v, to_out.0. Half and
/// bfloat16 tensors are widened to float32.
std::map<std::string, torch::Tensor> parameters_from_diffusers(
    const UnetOptions& options, const std::vector<std::pair<std::string, torch::Tensor>>& state,
    const std::string& what);

/// The diffusers state dict of our parameters (named as Unet's named_parameters()), float32.
std::vector<std::pair<std::string, torch::Tensor>> parameters_to_diffusers(
    const UnetOptions& options, const std::vector<std::pair<std::string, torch::Tensor>>& ours);

}  // namespace unidiff::models::diffusers
