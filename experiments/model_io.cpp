#include "experiments/model_io.h"

#include <sstream>

#include "core/error.h"
#include "core/h5.h"

namespace unidiff::experiments {
namespace {

constexpr const char* kFormat = "unidiff-model-v1";

std::string join_shape(const std::vector<int64_t>& shape) {
  std::ostringstream os;
  for (size_t i = 0; i < shape.size(); ++i) os << (i ? "," : "") << shape[i];
  return os.str();
}

std::vector<int64_t> parse_shape(const std::string& s) {
  std::vector<int64_t> out;
  std::stringstream ss(s);
  std::string item;
  while (std::getline(ss, item, ',')) out.push_back(std::stoll(item));
  return out;
}

}  // namespace

void save_model(const std::filesystem::path& path, const models::NetworkConfig& network,
                const DiffusionConfig& diffusion, const models::Network& module,
                const models::Ema& ema, int64_t step) {
  h5::write_atomically(path, [&](h5::File& f) {
    h5::write_attr(f, "/", "format", std::string(kFormat));
    h5::write_attr(f, "/", "step", step);
    h5::write_attr(f, "/", "arch", network.arch);
    h5::write_attr(f, "/", "data_shape", join_shape(network.data_shape));
    h5::write_attr(f, "/", "hidden", network.hidden);
    h5::write_attr(f, "/", "layers", network.layers);
    h5::write_attr(f, "/", "time_dim", network.time_dim);
    h5::write_attr(f, "/", "fourier", network.fourier);
    h5::write_attr(f, "/", "channels", network.channels);
    h5::write_attr(f, "/", "channel_mult", join_shape(network.channel_mult));
    h5::write_attr(f, "/", "res_blocks", network.res_blocks);
    h5::write_attr(f, "/", "attn_res", join_shape(network.attn_res));
    h5::write_attr(f, "/", "dropout", network.dropout);
    h5::write_attr(f, "/", "num_classes", network.num_classes);
    h5::write_attr(f, "/", "depth", network.depth);
    h5::write_attr(f, "/", "heads", network.heads);
    h5::write_attr(f, "/", "patch", network.patch);
    h5::write_attr(f, "/", "schedule", diffusion.schedule);
    h5::write_attr(f, "/", "timesteps", diffusion.timesteps);
    h5::write_attr(f, "/", "beta_start", diffusion.beta_start);
    h5::write_attr(f, "/", "beta_end", diffusion.beta_end);
    h5::write_attr(f, "/", "prediction", diffusion.prediction);
    h5::write_attr(f, "/", "objective", diffusion.objective);
    h5::write_attr(f, "/", "sigma_min", diffusion.sigma_min);
    h5::write_attr(f, "/", "sigma_max", diffusion.sigma_max);
    h5::write_attr(f, "/", "sigma_d", diffusion.sigma_d);
    h5::write_attr(f, "/", "ema_decay", ema.decay());
    for (const auto& p : module.named_parameters()) {
      h5::write_tensor(f, "/params/" + p.key(), p.value().detach().to(torch::kCPU));
    }
    for (const auto& [name, t] : ema.shadow()) {
      h5::write_tensor(f, "/ema/" + name, t.detach().to(torch::kCPU));
    }
  });
}

LoadedModel load_model(const std::filesystem::path& given, bool use_ema) {
  std::filesystem::path path = given;
  if (std::filesystem::is_directory(path)) path /= "model.h5";
  const h5::File f = h5::File::open_read(path);
  const auto format = h5::read_attr_string(f, "/", "format");
  UD_CHECK_INPUT(format && *format == kFormat, "'", path.string(),
                 "' is not a unidiff model file (format attribute ", format ? *format : "missing",
                 ", expected ", kFormat, ")");
  auto need_int = [&](const char* key) {
    const auto v = h5::read_attr_int(f, "/", key);
    UD_CHECK_INPUT(v.has_value(), "'", path.string(), "' lacks the attribute ", key);
    return *v;
  };
  auto need_str = [&](const char* key) {
    const auto v = h5::read_attr_string(f, "/", key);
    UD_CHECK_INPUT(v.has_value(), "'", path.string(), "' lacks the attribute ", key);
    return *v;
  };
  auto need_double = [&](const char* key) {
    const auto v = h5::read_attr_double(f, "/", key);
    UD_CHECK_INPUT(v.has_value(), "'", path.string(), "' lacks the attribute ", key);
    return *v;
  };
  LoadedModel m;
  m.step = need_int("step");
  m.network.arch = need_str("arch");
  m.network.data_shape = parse_shape(need_str("data_shape"));
  m.network.hidden = need_int("hidden");
  m.network.layers = need_int("layers");
  m.network.time_dim = need_int("time_dim");
  m.network.fourier = h5::read_attr_int(f, "/", "fourier").value_or(0);  // older files: none
  // The unet's settings (files written before the unet existed lack them: defaults).
  m.network.channels = h5::read_attr_int(f, "/", "channels").value_or(m.network.channels);
  if (const auto v = h5::read_attr_string(f, "/", "channel_mult")) m.network.channel_mult = parse_shape(*v);
  m.network.res_blocks = h5::read_attr_int(f, "/", "res_blocks").value_or(m.network.res_blocks);
  if (const auto v = h5::read_attr_string(f, "/", "attn_res")) m.network.attn_res = parse_shape(*v);
  m.network.dropout = h5::read_attr_double(f, "/", "dropout").value_or(m.network.dropout);
  m.network.num_classes = h5::read_attr_int(f, "/", "num_classes").value_or(0);
  m.network.depth = h5::read_attr_int(f, "/", "depth").value_or(m.network.depth);
  m.network.heads = h5::read_attr_int(f, "/", "heads").value_or(m.network.heads);
  m.network.patch = h5::read_attr_int(f, "/", "patch").value_or(m.network.patch);
  m.diffusion.schedule = need_str("schedule");
  m.diffusion.timesteps = need_int("timesteps");
  m.diffusion.beta_start = need_double("beta_start");
  m.diffusion.beta_end = need_double("beta_end");
  m.diffusion.prediction = need_str("prediction");
  // Files written before the objective registry: ddpm, or rf on the rf schedule.
  m.diffusion.objective = h5::read_attr_string(f, "/", "objective").value_or("");
  m.diffusion.sigma_min = h5::read_attr_double(f, "/", "sigma_min").value_or(m.diffusion.sigma_min);
  m.diffusion.sigma_max = h5::read_attr_double(f, "/", "sigma_max").value_or(m.diffusion.sigma_max);
  m.diffusion.sigma_d = h5::read_attr_double(f, "/", "sigma_d").value_or(m.diffusion.sigma_d);
  m.module = models::make_network(m.network);
  read_parameters(f, path, use_ema ? "/ema" : "/params", *m.module);
  return m;
}

void read_parameters(const h5::File& f, const std::filesystem::path& path, const std::string& group,
                     torch::nn::Module& module) {
  torch::NoGradGuard no_grad;
  for (auto& p : module.named_parameters()) {
    const std::string name = group + "/" + p.key();
    UD_CHECK_INPUT(f.has(name), "'", path.string(), "' lacks tensor ", name);
    const torch::Tensor t = h5::read_tensor(f, name);
    UD_CHECK_INPUT(t.sizes() == p.value().sizes(), "'", path.string(), "' tensor ", name,
                   " has shape ", t.sizes(), ", the network expects ", p.value().sizes());
    p.value().copy_(t);
  }
}

}  // namespace unidiff::experiments
