// Keyed randomness on the CPU (core/rng.h). The numbers here are the reference that any device
// implementation must reproduce.
#include "core/rng.h"

#include <ATen/record_function.h>
#include <cmath>
#include <numbers>
#include <numeric>
#include <vector>

#include "core/error.h"
#include "core/philox.h"

#ifdef UNIDIFF_WITH_CUDA_KERNELS
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>

#include "core/rng_cuda.h"
#endif

namespace unidiff::rng {

std::string to_string(Purpose purpose) {
  switch (purpose) {
    case Purpose::kDataOrder: return "data_order";
    case Purpose::kTimestep: return "timestep";
    case Purpose::kNoise: return "noise";
    case Purpose::kLabelDrop: return "label_drop";
    case Purpose::kDropout: return "dropout";
    case Purpose::kSampling: return "sampling";
    case Purpose::kInit: return "init";
    case Purpose::kEval: return "eval";
    case Purpose::kDataGen: return "data_gen";
    case Purpose::kAugment: return "augment";
    case Purpose::kBackwardSim: return "backward_sim";
    case Purpose::kGeneratorStep: return "generator_step";
    case Purpose::kClassLabel: return "class_label";
    case Purpose::kGanTimestep: return "gan_timestep";
    case Purpose::kGanNoise: return "gan_noise";
    case Purpose::kGuidance: return "guidance";
  }
  return "unknown";
}

uint32_t StepKey::word() const {
  if (!counter.defined()) {
    UD_ASSERT(host <= 0xFFFFFFFFull, "step ", host, " exceeds the 32-bit counter word");
    return static_cast<uint32_t>(host);
  }
  UD_ASSERT(counter.dim() == 0 && counter.scalar_type() == torch::kInt64, "a step counter is a 0-dim int64 tensor");
  return static_cast<uint32_t>((static_cast<uint64_t>(counter.item<int64_t>()) << shift) | low);
}

void fill_bits(Stream stream, uint64_t step, uint64_t index, uint32_t* out, int64_t count) {
  UD_ASSERT(step <= 0xFFFFFFFFull, "step ", step, " exceeds the 32-bit counter word");
  const PhiloxKey key{stream.seed, stream.key_word()};
  for (int64_t block = 0; block * 4 < count; ++block) {
    const PhiloxCounter ctr{static_cast<uint32_t>(block), static_cast<uint32_t>(index),
                            static_cast<uint32_t>(index >> 32), static_cast<uint32_t>(step)};
    const PhiloxCounter r = philox4x32_10(ctr, key);
    for (int64_t j = 0; j < 4 && block * 4 + j < count; ++j) out[block * 4 + j] = r[j];
  }
}

namespace {

torch::Tensor check_indices(const torch::Tensor& indices) {
  UD_ASSERT(indices.dim() == 1, "indices must be [B]");
  return indices.to(torch::kCPU, torch::kInt64).contiguous();
}

std::vector<int64_t> out_shape(int64_t batch, at::IntArrayRef shape) {
  std::vector<int64_t> s{batch};
  s.insert(s.end(), shape.begin(), shape.end());
  return s;
}

}  // namespace

namespace {

torch::Tensor normal_cpu(Stream stream, uint64_t step, const torch::Tensor& indices,
                         at::IntArrayRef shape) {
  const torch::Tensor idx = check_indices(indices);
  const int64_t batch = idx.size(0);
  int64_t per = 1;
  for (int64_t s : shape) per *= s;
  torch::Tensor out = torch::empty(out_shape(batch, shape), torch::kFloat32);
  float* o = out.data_ptr<float>();
  const int64_t* ip = idx.data_ptr<int64_t>();
  const int64_t pairs = (per + 1) / 2;
  std::vector<uint32_t> bits(static_cast<size_t>(pairs * 2));
  for (int64_t b = 0; b < batch; ++b) {
    fill_bits(stream, step, static_cast<uint64_t>(ip[b]), bits.data(), pairs * 2);
    for (int64_t p = 0; p < pairs; ++p) {
      // Box-Muller: u1 in (0, 1) keeps the log finite.
      float z0 = 0, z1 = 0;
      box_muller(bits[2 * p], bits[2 * p + 1], &z0, &z1);
      o[b * per + 2 * p] = z0;
      if (2 * p + 1 < per) o[b * per + 2 * p + 1] = z1;
    }
  }
  return out;
}

torch::Tensor uniform_cpu(Stream stream, uint64_t step, const torch::Tensor& indices,
                          at::IntArrayRef shape) {
  const torch::Tensor idx = check_indices(indices);
  const int64_t batch = idx.size(0);
  int64_t per = 1;
  for (int64_t s : shape) per *= s;
  torch::Tensor out = torch::empty(out_shape(batch, shape), torch::kFloat32);
  float* o = out.data_ptr<float>();
  const int64_t* ip = idx.data_ptr<int64_t>();
  std::vector<uint32_t> bits(static_cast<size_t>(per));
  for (int64_t b = 0; b < batch; ++b) {
    fill_bits(stream, step, static_cast<uint64_t>(ip[b]), bits.data(), per);
    for (int64_t j = 0; j < per; ++j) {
      o[b * per + j] = bits_to_unit_float(bits[j]);
    }
  }
  return out;
}

torch::Tensor randint_cpu(Stream stream, uint64_t step, const torch::Tensor& indices, int64_t n) {
  const torch::Tensor idx = check_indices(indices);
  torch::Tensor out = torch::empty({idx.size(0)}, torch::kInt64);
  int64_t* o = out.data_ptr<int64_t>();
  const int64_t* ip = idx.data_ptr<int64_t>();
  for (int64_t b = 0; b < idx.size(0); ++b) {
    uint32_t bits = 0;
    fill_bits(stream, step, static_cast<uint64_t>(ip[b]), &bits, 1);
    o[b] = bits_to_below(bits, static_cast<uint64_t>(n));
  }
  return out;
}

#ifdef UNIDIFF_WITH_CUDA_KERNELS
/// The indices as int64 on `device`, without a trip through the host when they are there already;
/// from pinned host memory (the loader's) the copy is queued without waiting. Callers that draw
/// several times from host indices should copy them over once themselves.
torch::Tensor device_indices(const torch::Tensor& indices, torch::Device device) {
  UD_ASSERT(indices.dim() == 1, "indices must be [B]");
  const bool pinned = indices.device().is_cpu() && indices.is_pinned();
  return indices.to(device, torch::kInt64, /*non_blocking=*/pinned).contiguous();
}

/// Indices on `device`, the output allocated there, and the current stream of that device.
struct CudaLaunch {
  torch::Tensor idx;
  c10::cuda::CUDAGuard guard;
  void* stream;
  cuda::StepWord step;
  CudaLaunch(const torch::Tensor& indices, const StepKey& key, torch::Device device)
      : idx(device_indices(indices, device)),
        guard(device),
        stream(c10::cuda::getCurrentCUDAStream(device.index()).stream()) {
    if (key.counter.defined()) {
      UD_ASSERT(key.counter.device() == idx.device() && key.counter.dim() == 0 &&
                    key.counter.scalar_type() == torch::kInt64,
                "a step counter is a 0-dim int64 tensor on the draw's device, got ", key.counter.sizes(), " on ",
                key.counter.device().str());
      step.counter = key.counter.data_ptr<int64_t>();
      step.shift = key.shift;
      step.low = key.low;
    } else {
      step.host = key.word();
    }
  }
};
#endif

[[maybe_unused]] int64_t numel_of(at::IntArrayRef shape) {
  int64_t per = 1;
  for (int64_t s : shape) per *= s;
  return per;
}

}  // namespace

torch::Tensor apply_dropout_mask(Stream stream, const StepKey& step, const torch::Tensor& indices,
                                 const torch::Tensor& x, double p) {
  UD_ASSERT(x.dim() >= 1 && indices.dim() == 1 && indices.size(0) == x.size(0), "a dropout mask over ",
            indices.sizes(), " indices for a batch shaped ", x.sizes());
  const double scale = 1.0 / (1.0 - p);
#ifdef UNIDIFF_WITH_CUDA_KERNELS
  const auto dtype = x.scalar_type();
  if (x.is_cuda() && (dtype == torch::kFloat || dtype == torch::kBFloat16 || dtype == torch::kHalf)) {
    // A tensor dense in both layouts (one channel, or a 1x1 map) counts as NCHW: the same numbering.
    const bool cl = x.dim() == 4 && !x.is_contiguous() && x.is_contiguous(at::MemoryFormat::ChannelsLast);
    const torch::Tensor xc = cl ? x : x.contiguous();
    torch::Tensor out = torch::empty_like(xc);  // keeps the layout of a dense input
    CudaLaunch l(indices, step, x.device());
    const auto elem = dtype == torch::kFloat      ? cuda::Elem::kFloat
                      : dtype == torch::kBFloat16 ? cuda::Elem::kBFloat16
                                                  : cuda::Elem::kHalf;
    cuda::launch_dropout(stream.seed, stream.key_word(), l.step, l.idx.data_ptr<int64_t>(),
                         l.idx.size(0), numel_of(x.sizes().slice(1)), cl ? x.size(1) : 1, cl, static_cast<float>(p),
                         static_cast<float>(scale), elem, xc.data_ptr(), out.data_ptr(), l.stream);
    return out;
  }
#endif
  return x * (uniform(stream, step, indices, x.sizes().slice(1), x.device()) >= p).to(x.scalar_type()) * scale;
}

bool has_cuda_kernels() {
#ifdef UNIDIFF_WITH_CUDA_KERNELS
  return true;
#else
  return false;
#endif
}

#ifdef UNIDIFF_WITH_CUDA_KERNELS
namespace {

using CudaFloatKernel = void (*)(uint32_t, uint32_t, cuda::StepWord, const int64_t*, int64_t, int64_t,
                                 float*, void*);

/// float32 [B, *shape] drawn on `device` by one of the kernels of core/rng_cuda.h.
torch::Tensor draw_on_cuda(CudaFloatKernel kernel, Stream stream, const StepKey& step,
                           const torch::Tensor& indices, at::IntArrayRef shape, torch::Device device) {
  CudaLaunch l(indices, step, device);
  torch::Tensor out = torch::empty(out_shape(l.idx.size(0), shape),
                                   torch::dtype(torch::kFloat32).device(device));
  kernel(stream.seed, stream.key_word(), l.step,
         l.idx.data_ptr<int64_t>(), l.idx.size(0), numel_of(shape), out.data_ptr<float>(), l.stream);
  return out;
}

}  // namespace
#endif

torch::Tensor normal(Stream stream, const StepKey& step, const torch::Tensor& indices,
                     at::IntArrayRef shape, torch::Device device) {
  RECORD_FUNCTION("unidiff::keyed_normal", std::vector<c10::IValue>());  // one operator in profiles
#ifdef UNIDIFF_WITH_CUDA_KERNELS
  if (device.is_cuda()) return draw_on_cuda(cuda::launch_normal, stream, step, indices, shape, device);
#endif
  return normal_cpu(stream, step.word(), indices, shape).to(device);
}

torch::Tensor uniform(Stream stream, const StepKey& step, const torch::Tensor& indices,
                      at::IntArrayRef shape, torch::Device device) {
  RECORD_FUNCTION("unidiff::keyed_uniform", std::vector<c10::IValue>());  // one operator in profiles
#ifdef UNIDIFF_WITH_CUDA_KERNELS
  if (device.is_cuda()) return draw_on_cuda(cuda::launch_uniform, stream, step, indices, shape, device);
#endif
  return uniform_cpu(stream, step.word(), indices, shape).to(device);
}

torch::Tensor randint(Stream stream, const StepKey& step, const torch::Tensor& indices, int64_t n,
                      torch::Device device) {
  RECORD_FUNCTION("unidiff::keyed_randint", std::vector<c10::IValue>());  // one operator in profiles
  UD_ASSERT(n > 0 && n <= 0xFFFFFFFFll, "randint range ", n);
#ifdef UNIDIFF_WITH_CUDA_KERNELS
  if (device.is_cuda()) {
    CudaLaunch l(indices, step, device);
    torch::Tensor out = torch::empty({l.idx.size(0)}, torch::dtype(torch::kInt64).device(device));
    cuda::launch_randint(stream.seed, stream.key_word(), l.step,
                         l.idx.data_ptr<int64_t>(), l.idx.size(0), static_cast<uint64_t>(n),
                         out.data_ptr<int64_t>(), l.stream);
    return out;
  }
#endif
  return randint_cpu(stream, step.word(), indices, n).to(device);
}

torch::Tensor permutation(Stream stream, uint64_t step, int64_t n) {
  std::vector<std::pair<uint64_t, int64_t>> keyed(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) {
    uint32_t bits[2];
    fill_bits(stream, step, static_cast<uint64_t>(i), bits, 2);
    keyed[i] = {(static_cast<uint64_t>(bits[0]) << 32) | bits[1], i};
  }
  std::sort(keyed.begin(), keyed.end());  // ties (p ~ n^2 / 2^65) break by index: still pure
  torch::Tensor out = torch::empty({n}, torch::kInt64);
  int64_t* o = out.data_ptr<int64_t>();
  for (int64_t i = 0; i < n; ++i) o[i] = keyed[i].second;
  return out;
}

torch::Tensor arange_indices(int64_t begin, int64_t end) {
  return torch::arange(begin, end, torch::kInt64);
}

}  // namespace unidiff::rng
