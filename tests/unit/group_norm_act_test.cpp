// The fused GroupNorm (+ bias) (+ SiLU) (models/group_norm_act.h): its block program, run on the
// host thread after thread, against ATen's composite in float64 with autograd (values and the
// gradients of x, bias, gamma and beta) over shapes that exercise every branch of the thread
// layout; the UNet with and without it; on a GPU, the CUDA kernels against the same references.
#include <gtest/gtest.h>
#include <torch/cuda.h>
#include <torch/torch.h>

#include <string>
#include <vector>

#include "models/group_norm_act.h"
#include "models/group_norm_act_block.h"
#include "models/mlp.h"
#include "models/unet.h"
#include "test_util.h"

namespace ud = unidiff;

namespace {

struct Case {
  int64_t n, c, groups, h, w;
  bool channels_last, bias, silu;
  std::string name() const {
    return std::to_string(n) + "x" + std::to_string(c) + "x" + std::to_string(h) + "x" + std::to_string(w) +
           " G" + std::to_string(groups) + (channels_last ? " NHWC" : " NCHW") + (bias ? " +bias" : "") +
           (silu ? " silu" : " identity");
  }
};

// D = C / G and H * W cover: more threads per channel than positions (35 < 64), D not a power of
// two (3: 255 threads, a partial tree), one channel per group (256 threads on 16 positions),
// several positions per thread, D above the target block (one thread per channel, 300 threads),
// a 1x1 map (contiguous both ways), and a group of 16 channels on a 32x32 map.
std::vector<Case> cases() {
  return {{2, 8, 2, 5, 7, false, true, true},    {3, 12, 4, 9, 9, true, true, true},
          {2, 32, 32, 4, 4, true, false, true},  {1, 64, 32, 16, 16, false, false, false},
          {2, 600, 2, 3, 3, false, true, true},  {2, 16, 4, 1, 1, true, true, false},
          {1, 64, 4, 32, 32, true, true, true},  {2, 48, 16, 6, 6, true, false, false}};
}

struct Inputs {
  torch::Tensor x, bias, gamma, beta, dy;
};

/// x with a mean of 3 (the statistics must not lose it), gamma around 1, random beta, bias, dy.
Inputs make_inputs(const Case& k, torch::ScalarType dtype, torch::Device device) {
  torch::manual_seed(k.c * 131 + k.h * 7 + k.w);
  Inputs in;
  const auto fmt = k.channels_last ? at::MemoryFormat::ChannelsLast : at::MemoryFormat::Contiguous;
  in.x = (torch::randn({k.n, k.c, k.h, k.w}) * 2 + 3).to(dtype).contiguous(fmt).to(device);
  in.bias = k.bias ? torch::randn({k.n, k.c}).to(device) : torch::Tensor();
  in.gamma = (1 + 0.3 * torch::randn({k.c})).to(device);
  in.beta = (0.5 * torch::randn({k.c})).to(device);
  in.dy = torch::randn({k.n, k.c, k.h, k.w}).to(dtype).contiguous(fmt).to(device);
  return in;
}

struct Outputs {
  torch::Tensor y, dx, dbias, dgamma, dbeta;
};

/// y and the gradients of sum(y * dy) with respect to every input, as fresh leaves in `dtype`
/// (x in `x_dtype`); `fused` picks the path.
Outputs run(const Inputs& in, const Case& k, bool fused, torch::ScalarType x_dtype, torch::ScalarType dtype) {
  const auto leaf = [](const torch::Tensor& t, torch::ScalarType d) {
    return t.defined() ? t.detach().to(d).requires_grad_(true) : torch::Tensor();
  };
  const torch::Tensor x = leaf(in.x, x_dtype), bias = leaf(in.bias, dtype), gamma = leaf(in.gamma, dtype),
                      beta = leaf(in.beta, dtype);
  const torch::Tensor y = ud::models::group_norm_act(x, bias, gamma, beta, k.groups, 1e-5, k.silu, fused);
  (y.to(torch::kDouble) * in.dy.to(torch::kDouble)).sum().backward();
  return {y.detach(), x.grad(), bias.defined() ? bias.grad() : torch::Tensor(), gamma.grad(), beta.grad()};
}

/// The float64 composite on the same input values: the reference.
Outputs reference(const Inputs& in, const Case& k) {
  Inputs cpu{in.x.cpu(), in.bias.defined() ? in.bias.cpu() : torch::Tensor(), in.gamma.cpu(), in.beta.cpu(),
             in.dy.cpu()};
  return run(cpu, k, false, torch::kDouble, torch::kDouble);
}

/// max |a - b| / (atol + rtol |b|) <= 1, with the worst element in the message.
::testing::AssertionResult close(const char* what, const torch::Tensor& a, const torch::Tensor& b, double rtol,
                                 double atol) {
  if (!a.defined() || !b.defined()) {
    if (a.defined() == b.defined()) return ::testing::AssertionSuccess();
    return ::testing::AssertionFailure() << what << ": one side has no tensor";
  }
  if (a.sizes() != b.sizes()) return ::testing::AssertionFailure() << what << ": shapes " << a.sizes() << " vs " << b.sizes();
  const torch::Tensor ad = a.detach().cpu().to(torch::kDouble), bd = b.detach().cpu().to(torch::kDouble);
  const torch::Tensor ratio = (ad - bd).abs() / (atol + rtol * bd.abs());
  const int64_t worst = ratio.flatten().argmax().item<int64_t>();
  const double r = ratio.flatten()[worst].item<double>();
  if (r <= 1.0) return ::testing::AssertionSuccess();
  return ::testing::AssertionFailure() << what << ": element " << worst << " is " << ad.flatten()[worst].item<double>()
                                       << ", expected " << bd.flatten()[worst].item<double>() << " (" << r
                                       << "x the tolerance)";
}

void expect_close(const Outputs& got, const Outputs& want, double rtol, double atol, const std::string& name) {
  SCOPED_TRACE(name);
  EXPECT_TRUE(close("y", got.y, want.y, rtol, atol));
  EXPECT_TRUE(close("dx", got.dx, want.dx, rtol, atol));
  EXPECT_TRUE(close("dbias", got.dbias, want.dbias, rtol, atol));
  // gamma and beta sum over N * H * W elements: their scale grows with it.
  EXPECT_TRUE(close("dgamma", got.dgamma, want.dgamma, rtol, atol * std::sqrt(static_cast<double>(got.dx.numel()))));
  EXPECT_TRUE(close("dbeta", got.dbeta, want.dbeta, rtol, atol * std::sqrt(static_cast<double>(got.dx.numel()))));
}

/// Checks one device and dtype of the fused path against the float64 reference.
void check_fused(torch::Device device, torch::ScalarType dtype, double rtol, double atol) {
  for (const Case& k : cases()) {
    const Inputs in = make_inputs(k, dtype, device);
    const Outputs got = run(in, k, true, dtype, torch::kFloat);
    expect_close(got, reference(in, k), rtol, atol, k.name() + " " + std::string(c10::toString(dtype)));
    EXPECT_EQ(got.y.scalar_type(), dtype) << k.name();
    EXPECT_EQ(got.dx.scalar_type(), dtype) << k.name();
    EXPECT_EQ(got.dgamma.scalar_type(), torch::kFloat) << k.name();
    if (k.channels_last && k.h * k.w > 1) {
      EXPECT_TRUE(got.y.is_contiguous(at::MemoryFormat::ChannelsLast)) << k.name();
      EXPECT_TRUE(got.dx.is_contiguous(at::MemoryFormat::ChannelsLast)) << k.name();
    }
  }
}

}  // namespace

TEST(FusedGroupNorm, ThreadLayoutCoversEveryElementOnce) {
  // slot() and thread_of() are inverse, the positions j, j + tpc, ... of each thread tile [0, HW),
  // reduction_slot() is a bijection that gives each group of the block a contiguous range, and
  // channels-last blocks span at least 32 channels where G allows.
  namespace gn = ud::models::gn;
  for (const bool cl : {false, true}) {
    for (const auto& [c, groups] : std::vector<std::pair<int64_t, int64_t>>{
             {32, 32}, {96, 32}, {128, 32}, {256, 32}, {600, 2}, {48, 16}, {12, 4}}) {
      const auto s = gn::make_shape(2, c, 49, groups, cl, true, 1e-5f);
      const std::string what = "C " + std::to_string(c) + " G " + std::to_string(groups) + (cl ? " NHWC" : " NCHW");
      EXPECT_LE(s.threads, gn::kMaxThreads) << what;
      EXPECT_EQ(groups % s.k, 0) << what;
      EXPECT_EQ(s.k == 1, !cl || s.d >= gn::kMinChannelsLastSpan || groups == 1) << what;
      if (cl) {
        EXPECT_TRUE(s.cb >= gn::kMinChannelsLastSpan || s.k == groups) << what;
      }
      std::vector<int> seen(static_cast<size_t>(s.cb * s.hw), 0), slots(static_cast<size_t>(s.threads), 0);
      for (int64_t t = 0; t < s.threads; ++t) {
        const auto sl = gn::slot(s, t);
        EXPECT_EQ(gn::thread_of(s, sl.c, sl.j), t);
        for (int64_t p = sl.j; p < s.hw; p += s.tpc) ++seen[static_cast<size_t>(sl.c * s.hw + p)];
        const int64_t r = gn::reduction_slot(s, t);
        ASSERT_TRUE(r >= 0 && r < s.threads) << what;
        ++slots[static_cast<size_t>(r)];
        EXPECT_EQ(r / s.group_threads(), sl.c / s.d) << what << ": thread " << t << " left its group's range";
      }
      for (const int v : seen) ASSERT_EQ(v, 1) << what;
      for (const int v : slots) ASSERT_EQ(v, 1) << what;
    }
  }
}

TEST(FusedGroupNorm, HostBlockProgramMatchesTheFloat64CompositeInFloat32) {
  check_fused(torch::kCPU, torch::kFloat, 1e-4, 2e-5);
}

TEST(FusedGroupNorm, HostBlockProgramMatchesTheFloat64CompositeInBFloat16AndHalf) {
  // Inputs are bfloat16 (half) values; y and dx are rounded to that type (relative step 2^-8).
  check_fused(torch::kCPU, torch::kBFloat16, 8e-3, 8e-3);
  check_fused(torch::kCPU, torch::kHalf, 2e-3, 2e-3);  // relative step 2^-11
}

TEST(FusedGroupNorm, CompositePathIsAtenGroupNormThenSilu) {
  const Case k{2, 64, 32, 8, 8, false, true, true};
  const Inputs in = make_inputs(k, torch::kFloat, torch::kCPU);
  const torch::Tensor y = ud::models::group_norm_act(in.x, in.bias, in.gamma, in.beta, 32, 1e-5, true, false);
  const torch::Tensor want =
      torch::silu(torch::group_norm(in.x + in.bias.unsqueeze(-1).unsqueeze(-1), 32, in.gamma, in.beta, 1e-5));
  EXPECT_TRUE(torch::equal(y, want));
}

TEST(FusedGroupNorm, UnetWithFusedNormsMatchesTheCompositeNetwork) {
  auto net = ud::models::make_network(ud::testing::small_unet_config({3, 16, 16}, 8, 0.0));
  torch::manual_seed(5);
  const torch::Tensor x = torch::randn({3, 3, 16, 16}), t = torch::tensor({1.0, 200.0, 900.0});
  const auto forward_backward = [&](bool fused) {
    EXPECT_TRUE(ud::models::set_fused_group_norm(*net, fused));
    net->zero_grad();
    const torch::Tensor y = net->forward(x, t);
    (y * torch::cos(x)).sum().backward();
    std::vector<torch::Tensor> grads;
    for (const auto& p : net->parameters()) grads.push_back(p.grad().clone());
    return std::make_pair(y.detach(), grads);
  };
  const auto [y_ref, g_ref] = forward_backward(false);
  const auto [y_fused, g_fused] = forward_backward(true);
  EXPECT_TRUE(close("unet output", y_fused, y_ref, 1e-3, 1e-4));
  const auto names = net->named_parameters().keys();
  for (size_t i = 0; i < g_ref.size(); ++i) {
    const double scale = g_ref[i].abs().max().item<double>();
    EXPECT_TRUE(close(names[i].c_str(), g_fused[i], g_ref[i], 1e-3, 1e-4 * (1 + scale)));
  }
  ud::models::NetworkConfig mlp;
  mlp.data_shape = {2};
  auto other = ud::models::make_network(mlp);
  EXPECT_FALSE(ud::models::set_fused_group_norm(*other, true)) << "an MLP has no group norms";
}

TEST(FusedGroupNorm, CudaKernelsMatchTheFloat64Composite) {
  if (!torch::cuda::is_available()) GTEST_SKIP() << "no CUDA device here (checked on the GPU host)";
  ASSERT_TRUE(ud::models::fused_group_norm_available(c10::DeviceType::CUDA)) << "this build has no CUDA kernels";
  check_fused(torch::kCUDA, torch::kFloat, 1e-4, 2e-5);
  check_fused(torch::kCUDA, torch::kBFloat16, 8e-3, 8e-3);
  check_fused(torch::kCUDA, torch::kHalf, 2e-3, 2e-3);
}

TEST(FusedGroupNorm, CudaKernelsMatchTheHostBlockProgram) {
  // Same program, same float32 arithmetic: only expf and the compiler's contractions differ.
  if (!torch::cuda::is_available()) GTEST_SKIP() << "no CUDA device here (checked on the GPU host)";
  for (const Case& k : cases()) {
    const Inputs in = make_inputs(k, torch::kFloat, torch::kCUDA);
    const Inputs host{in.x.cpu(), in.bias.defined() ? in.bias.cpu() : torch::Tensor(), in.gamma.cpu(),
                      in.beta.cpu(), in.dy.cpu()};
    expect_close(run(in, k, true, torch::kFloat, torch::kFloat), run(host, k, true, torch::kFloat, torch::kFloat),
                 1e-5, 1e-6, k.name());
  }
}
