// Test helper: the forward pass of a unidiff model file on given inputs, for the diffusers interop
// test (tests/interop/diffusers_test.py), which compares it with diffusers' UNet2DModel.
//   unet_forward MODEL.h5 IN.h5 OUT.h5
// IN.h5: /x float32 [B, C, H, W], /t float32 [B] (the DDPM step), optional /labels int64 [B].
// OUT.h5: /y float32 [B, C, H, W], the network in eval mode with its raw (not EMA) weights.
#include <iostream>

#include "core/h5.h"
#include "experiments/model_io.h"

int main(int argc, char** argv) {
  if (argc != 4) {
    std::cerr << "usage: unet_forward MODEL.h5 IN.h5 OUT.h5\n";
    return 2;
  }
  namespace h5 = unidiff::h5;
  torch::set_num_threads(1);
  auto m = unidiff::experiments::load_model(argv[1], /*use_ema=*/false);
  m.module->eval();
  const h5::File in = h5::File::open_read(argv[2]);
  const torch::Tensor x = h5::read_tensor(in, "/x");
  const torch::Tensor t = h5::read_tensor(in, "/t");
  torch::Tensor y;
  {
    torch::NoGradGuard no_grad;
    y = in.has("/labels") ? m.module->forward_cond(x, t, h5::read_tensor(in, "/labels")) : m.module->forward(x, t);
  }
  h5::write_atomically(argv[3], [&](h5::File& f) { h5::write_tensor(f, "/y", y.contiguous()); });
  return 0;
}
