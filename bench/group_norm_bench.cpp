// GroupNorm + SiLU of the DDPM CIFAR-10 UNet, forward and backward, the way the network runs it
// under bf16 autocast (ATen's group_norm in float32 on a bfloat16 input, then silu) against the
// fused operation (models/group_norm_act.h, bfloat16 in and out), for the UNet's shapes at batch
// 128, NCHW and channels-last. Prints one line per shape and a Markdown table last:
//   build/bench/group_norm_bench [--device=cuda|cpu] [--batch=128] [--iters=50]
// "min GB/s" counts the bytes the fused operation must move at least (x twice and y once forward;
// x and dy twice and dx once backward; bfloat16): what a memory-bound kernel is measured by.
// On the CPU the fused path is the host emulation of the kernels (a correctness tool, not a fast
// path): --device=cpu is a smoke run at batch 2.
#include <torch/cuda.h>
#include <torch/torch.h>

#include <chrono>
#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

#include "core/error.h"
#include "core/memory.h"
#include "models/group_norm_act.h"
#include "models/precision.h"

namespace {

namespace ud = unidiff;

struct Shape {
  int64_t c, hw;
  bool bias;  // the residual block's second norm takes the time embedding as a bias
};

double time_ms(const torch::Device& device, int64_t iters, const std::function<void()>& fn) {
  for (int i = 0; i < 3; ++i) fn();
  if (device.is_cuda()) torch::cuda::synchronize();
  const auto t0 = std::chrono::steady_clock::now();
  for (int64_t i = 0; i < iters; ++i) fn();
  if (device.is_cuda()) torch::cuda::synchronize();
  return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count() /
         static_cast<double>(iters);
}

}  // namespace

int main(int argc, char** argv) {
  unidiff::memory::keep_freed_pages();
  std::string device_name = "cuda";
  int64_t batch = 128, iters = 50;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (a.rfind("--device=", 0) == 0) device_name = a.substr(9);
    else if (a.rfind("--batch=", 0) == 0) batch = std::stol(a.substr(8));
    else if (a.rfind("--iters=", 0) == 0) iters = std::stol(a.substr(8));
    else {
      std::fprintf(stderr, "group_norm_bench: unknown argument '%s'\n", argv[i]);
      return 2;
    }
  }
  const bool cuda = device_name == "cuda";
  if (cuda && !torch::cuda::is_available()) {
    std::fprintf(stderr, "group_norm_bench: --device=cuda but no CUDA device is visible\n");
    return 2;
  }
  if (!cuda) {
    batch = std::min<int64_t>(batch, 2);
    iters = std::min<int64_t>(iters, 2);
  }
  const torch::Device device = cuda ? torch::Device(torch::kCUDA, 0) : torch::Device(torch::kCPU);
  // The UNet's norms: 128 and 256 channels at 32x32 (level 1 and the up path's concatenations),
  // 256 at 16x16, 8x8, 4x4; with and without the time-embedding bias.
  const std::vector<Shape> shapes = {{128, 32 * 32, false}, {128, 32 * 32, true}, {256, 32 * 32, false},
                                     {256, 16 * 16, true},  {256, 8 * 8, true},   {256, 4 * 4, true}};
  std::vector<std::string> table;
  for (const bool cl : {false, true}) {
    for (const Shape& s : shapes) {
      const int64_t side = static_cast<int64_t>(std::lround(std::sqrt(static_cast<double>(s.hw))));
      const auto fmt = cl ? at::MemoryFormat::ChannelsLast : at::MemoryFormat::Contiguous;
      const auto bf16 = torch::TensorOptions().dtype(torch::kBFloat16).device(device);
      const torch::Tensor x0 = torch::randn({batch, s.c, side, side}, bf16).contiguous(fmt);
      const torch::Tensor dy = torch::randn({batch, s.c, side, side}, bf16).contiguous(fmt);
      const torch::Tensor bias0 = s.bias ? torch::randn({batch, s.c}, bf16) : torch::Tensor();
      const auto f32 = torch::TensorOptions().dtype(torch::kFloat).device(device);
      const torch::Tensor gamma = torch::ones({s.c}, f32).requires_grad_(true);
      const torch::Tensor beta = torch::zeros({s.c}, f32).requires_grad_(true);
      const auto step = [&](bool fused) {
        return [&, fused] {
          const torch::Tensor x = x0.detach().requires_grad_(true);
          const torch::Tensor bias = s.bias ? bias0.detach().requires_grad_(true) : torch::Tensor();
          torch::Tensor y;
          {
            const ud::models::AutocastScope autocast(device.type(), true);
            y = ud::models::group_norm_act(x, bias, gamma, beta, 32, 1e-5, true, fused);
          }
          y.backward(dy.to(y.scalar_type()));
        };
      };
      const double composite = time_ms(device, iters, step(false));
      const double fused = time_ms(device, iters, step(true));
      const double bytes = 8.0 * static_cast<double>(x0.numel()) * 2.0;
      char line[256];
      std::snprintf(line, sizeof line, "| %ldx%ldx%ldx%ld | %s | %s | %.3f | %.3f | %.2fx | %.1f |", batch, s.c, side,
                    side, cl ? "NHWC" : "NCHW", s.bias ? "yes" : "no", composite, fused, composite / fused,
                    bytes / (fused * 1e-3) / 1e9);
      std::printf("RESULT %s\n", line);
      std::fflush(stdout);
      table.emplace_back(line);
    }
  }
  std::printf("\n| shape | layout | bias | composite ms | fused ms | speed-up | fused min GB/s |\n");
  std::printf("|---|---|---|---|---|---|---|\n");
  for (const auto& l : table) std::printf("%s\n", l.c_str());
  return 0;
}
