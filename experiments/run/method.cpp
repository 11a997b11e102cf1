// experiments/run/method.h.
#include "experiments/run/method.h"

#include <algorithm>

#include "core/error.h"

namespace unidiff::experiments {
namespace {

std::vector<MethodInfo>& registry() {
  static std::vector<MethodInfo> r;
  return r;
}

int family_rank(const std::string& f) {
  if (f == "pretrain") return 0;
  if (f == "distill") return 1;
  if (f == "reward") return 2;
  return 3;
}

}  // namespace

bool register_method(MethodInfo info) {
  for (const auto& m : registry()) UD_ASSERT(m.name != info.name, "method ", info.name, " registered twice");
  registry().push_back(std::move(info));
  return true;
}

std::vector<const MethodInfo*> methods() {
  std::vector<const MethodInfo*> out;
  for (const auto& m : registry()) out.push_back(&m);
  std::stable_sort(out.begin(), out.end(), [](const MethodInfo* a, const MethodInfo* b) {
    const int fa = family_rank(a->family), fb = family_rank(b->family);
    return fa != fb ? fa < fb : a->name < b->name;
  });
  return out;
}

std::string method_names() {
  std::string s;
  for (const MethodInfo* m : methods()) {
    s += (s.empty() ? "" : ", ") + m->name;
    for (const auto& a : m->aliases) s += " (alias " + a + ")";
  }
  return s;
}

const MethodInfo& find_method(const std::string& name) {
  for (const MethodInfo* m : methods()) {
    if (m->name == name || std::find(m->aliases.begin(), m->aliases.end(), name) != m->aliases.end()) return *m;
  }
  UD_FAIL_INPUT("unknown --method '", name, "' (valid: ", method_names(), ")");
}

}  // namespace unidiff::experiments
