#include "experiments/model_io.h"

#include <optional>
#include <variant>

#include "core/error.h"
#include "core/h5.h"

namespace unidiff::experiments {
namespace {

constexpr const char* kFormat = "unidiff-model-v1";

/// Writes every setting of `table` that has a model-file attribute.
template <class C>
void write_attrs(h5::File& f, const settings::Table<C>& table, const C& c) {
  for (const auto& s : table.all()) {
    if (s.decl.attribute.empty()) continue;
    const settings::Value v = s.value(c);
    if (const auto* b = std::get_if<bool>(&v)) h5::write_attr(f, "/", s.decl.attribute, static_cast<int64_t>(*b));
    else if (const auto* i = std::get_if<int64_t>(&v)) h5::write_attr(f, "/", s.decl.attribute, *i);
    else if (const auto* d = std::get_if<double>(&v)) h5::write_attr(f, "/", s.decl.attribute, *d);
    else h5::write_attr(f, "/", s.decl.attribute, std::get<std::string>(v));
  }
}

/// Reads them back: a missing attribute keeps the struct's default (files of earlier versions),
/// unless the setting is required.
template <class C>
void read_attrs(const h5::File& f, const std::filesystem::path& path, const settings::Table<C>& table, C& c) {
  for (const auto& s : table.all()) {
    const std::string& key = s.decl.attribute;
    if (key.empty()) continue;
    std::optional<settings::Value> v;
    // An optional setting is written as its text ("" when unset), whatever its kind.
    switch (s.optional ? settings::Kind::kString : s.kind) {
      case settings::Kind::kBool:
      case settings::Kind::kInt:
        if (const auto x = h5::read_attr_int(f, "/", key)) v = *x;
        break;
      case settings::Kind::kDouble:
        if (const auto x = h5::read_attr_double(f, "/", key)) v = *x;
        break;
      default:
        if (const auto x = h5::read_attr_string(f, "/", key)) v = *x;
        break;
    }
    if (!v) {
      UD_CHECK_INPUT(!s.decl.is_required, "'", path.string(), "' lacks the attribute ", key);
      continue;
    }
    try {
      s.assign(c, *v);
    } catch (const std::exception& e) {
      UD_FAIL_INPUT("'", path.string(), "' has a bad attribute ", key, ": ", e.what());
    }
  }
}

}  // namespace

void save_model(const std::filesystem::path& path, const models::NetworkConfig& network,
                const DiffusionConfig& diffusion, const models::Network& module,
                const models::Ema& ema, int64_t step) {
  h5::write_atomically(path, [&](h5::File& f) {
    h5::write_attr(f, "/", "format", std::string(kFormat));
    h5::write_attr(f, "/", "step", step);
    write_attrs(f, models::network_settings(), network);
    write_attrs(f, diffusion_settings(), diffusion);
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
  LoadedModel m;
  const auto step = h5::read_attr_int(f, "/", "step");
  UD_CHECK_INPUT(step.has_value(), "'", path.string(), "' lacks the attribute step");
  m.step = *step;
  read_attrs(f, path, models::network_settings(), m.network);
  // Files written before the objective registry have no objective: ddpm, or rf on the rf schedule.
  read_attrs(f, path, diffusion_settings(), m.diffusion);
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
    UD_CHECK_INPUT(torch::isfinite(t).all().item<bool>(), "'", path.string(), "' tensor ", name,
                   " holds non-finite values (a diverged or damaged model file)");
    p.value().copy_(t);
  }
}

}  // namespace unidiff::experiments
