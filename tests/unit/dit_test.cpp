// DiT (models/dit.h): parameter counts of DiT-S/2 and DiT-B/4 against the plain-PyTorch network of
// tests/reference/dit_reference.py, its output on the reference's weights, adaLN-Zero's identity
// start, and a forward-mode JVP through it (what sCM needs) against finite differences.
#include <gtest/gtest.h>

#include <cstdlib>

#include "core/error.h"
#include "core/h5.h"
#include "test_util.h"
#include "models/network.h"
#include "objectives/jvp.h"

namespace unidiff::models {
namespace {

NetworkConfig dit(const std::string& arch, int64_t patch) {
  NetworkConfig c;
  c.arch = arch;
  c.data_shape = {4, 32, 32};
  c.patch = patch;
  c.num_classes = 1000;
  return c;
}

TEST(Dit, StandardSizesHaveTheReferenceParameterCounts) {
  // Per block 18 h^2 + 15 h; patch embedding C p^2 h + h; timestep MLP 256 h + h^2 + 2 h; classes
  // (K + 1) h; final layer 2 h^2 + 2 h + h p^2 C + p^2 C.
  auto formula = [](int64_t h, int64_t depth, int64_t p) {
    const int64_t c = 4, k = 1000;
    return depth * (18 * h * h + 15 * h) + (c * p * p * h + h) + (256 * h + h * h + 2 * h) + (k + 1) * h +
           (2 * h * h + 2 * h + h * p * p * c + p * p * c);
  };
  const int64_t s2 = testing::count_parameters(*make_network(dit("dit-s", 2))), b4 = testing::count_parameters(*make_network(dit("dit-b", 4)));
  EXPECT_EQ(s2, formula(384, 12, 2));
  EXPECT_EQ(b4, formula(768, 12, 4));
  EXPECT_EQ(s2, 32858896);
  if (const char* p = std::getenv("UNIDIFF_DIT_REFERENCE")) {
    const h5::File f = h5::File::open_read(p);
    EXPECT_EQ(s2, *h5::read_attr_int(f, "/", "s2_params"));
    EXPECT_EQ(b4, *h5::read_attr_int(f, "/", "b4_params"));
  }
}

NetworkConfig small() {
  NetworkConfig c;
  c.arch = "dit";
  c.data_shape = {3, 8, 8};
  c.patch = 2;
  c.hidden = 64;
  c.depth = 2;
  c.heads = 4;
  c.num_classes = 10;
  return c;
}

TEST(Dit, ForwardMatchesThePyTorchReferenceOnItsWeights) {
  UD_REFERENCE_FILE(p, "UNIDIFF_DIT_REFERENCE");
  const h5::File f = h5::File::open_read(p);
  auto net = make_network(small());
  testing::load_reference_params(*net, f, "/small/params");
  if (::testing::Test::HasFatalFailure()) return;
  torch::NoGradGuard no_grad;
  const torch::Tensor out = net->forward_cond(h5::read_tensor(f, "/small/x"), h5::read_tensor(f, "/small/t"),
                                              h5::read_tensor(f, "/small/y"));
  const torch::Tensor want = h5::read_tensor(f, "/small/out");
  ASSERT_EQ(out.sizes(), want.sizes());
  EXPECT_TRUE(torch::allclose(out, want, 1e-4, 1e-5)) << (out - want).abs().max();
}

TEST(Dit, StartsAtZeroAndRefusesBadShapes) {
  auto net = make_network(small());
  const torch::Tensor x = torch::randn({2, 3, 8, 8});
  EXPECT_EQ(net->forward(x, torch::tensor({1.0, 500.0})).abs().max().item<double>(), 0.0);  // adaLN-Zero
  EXPECT_THROW(net->forward(torch::randn({2, 3, 6, 6}), torch::zeros({2})), unidiff::InputError);
  NetworkConfig bad = small();
  bad.patch = 3;
  EXPECT_THROW(make_network(bad), unidiff::InputError);
  bad = small();
  bad.data_shape = {2};
  EXPECT_THROW(make_network(bad), unidiff::InputError);
}

TEST(Dit, ForwardModeJvpMatchesFiniteDifferences) {
  auto net = make_network(small());
  {
    torch::NoGradGuard no_grad;  // leave adaLN-Zero so the output depends on its inputs
    for (auto& p : net->parameters()) p.copy_(torch::randn_like(p) * 0.1);
  }
  net->to(torch::kFloat64);
  const torch::Tensor x = torch::randn({2, 3, 8, 8}, torch::kFloat64), t = torch::tensor({0.3, 1.2}, torch::kFloat64);
  const torch::Tensor vx = torch::randn_like(x), vt = torch::ones_like(t);
  const objectives::TensorFn f = [&](const std::vector<torch::Tensor>& in) { return net->forward(in[0], in[1]); };
  const auto [y, dy] = objectives::jvp_forward_ad(f, {x, t}, {vx, vt});
  const auto [y2, dy2] = objectives::jvp_finite_difference(f, {x, t}, {vx, vt}, 1e-6);
  EXPECT_GT(dy.abs().max().item<double>(), 1e-3);
  EXPECT_TRUE(torch::allclose(dy, dy2, 1e-5, 1e-7)) << (dy - dy2).abs().max();
}

}  // namespace
}  // namespace unidiff::models
