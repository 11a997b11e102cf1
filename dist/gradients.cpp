// Parameter broadcast and replica checks over flat buffers (dist/gradients.h): tensors are
// grouped by dtype and device, packed into one contiguous buffer per group, communicated in one
// call, and unpacked.
#include "dist/gradients.h"

#include <map>

#include "core/error.h"

namespace unidiff::dist {
namespace {

/// Indices of `tensors` grouped by (dtype, device), in a fixed order.
std::map<std::pair<int, std::string>, std::vector<size_t>> group_by_kind(
    const std::vector<torch::Tensor>& tensors) {
  std::map<std::pair<int, std::string>, std::vector<size_t>> groups;
  for (size_t i = 0; i < tensors.size(); ++i) {
    groups[{static_cast<int>(tensors[i].scalar_type()), tensors[i].device().str()}].push_back(i);
  }
  return groups;
}

torch::Tensor pack(const std::vector<torch::Tensor>& parts) {
  std::vector<torch::Tensor> flat;
  flat.reserve(parts.size());
  for (const auto& p : parts) flat.push_back(p.reshape({-1}));
  return torch::cat(flat);
}

void unpack(const torch::Tensor& buffer, const std::vector<torch::Tensor>& parts) {
  int64_t offset = 0;
  for (const auto& p : parts) {
    const int64_t n = p.numel();
    p.copy_(buffer.slice(0, offset, offset + n).view_as(p));
    offset += n;
  }
}

}  // namespace

void broadcast_tensors(const std::vector<torch::Tensor>& tensors, Communicator& comm, int root) {
  if (comm.size() == 1) return;
  torch::NoGradGuard no_grad;
  for (const auto& [kind, idx] : group_by_kind(tensors)) {
    std::vector<torch::Tensor> parts;
    for (size_t i : idx) parts.push_back(tensors[i]);
    torch::Tensor buffer = pack(parts);
    comm.broadcast(buffer, root);
    unpack(buffer, parts);
  }
}

double max_divergence(const std::vector<torch::Tensor>& tensors, Communicator& comm) {
  if (comm.size() == 1 || tensors.empty()) return 0.0;
  torch::NoGradGuard no_grad;
  std::vector<torch::Tensor> parts;
  for (const auto& t : tensors) parts.push_back(t.detach().to(torch::kCPU, torch::kFloat64));
  torch::Tensor mine = pack(parts);
  torch::Tensor root = mine.clone();
  comm.broadcast(root, 0);
  torch::Tensor diff = (mine - root).abs().max().reshape({1});
  comm.all_reduce(diff, ReduceOp::kMax);
  return diff.item<double>();
}

}  // namespace unidiff::dist
