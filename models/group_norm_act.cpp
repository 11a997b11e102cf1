// models/group_norm_act.h.
#include "models/group_norm_act.h"

#include <ATen/Parallel.h>
#include <c10/util/BFloat16.h>
#include <c10/util/Half.h>
#include <torch/csrc/autograd/custom_function.h>

#include <vector>

#include "core/error.h"
#include "models/group_norm_act_block.h"

#ifdef UNIDIFF_WITH_CUDA_KERNELS
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>

#include "models/group_norm_act_cuda.h"
#endif

namespace unidiff::models {
namespace {

using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

// ---- The block program on the host: each phase for every thread of the block, in order. ----

template <typename T>
void forward_host(const gn::Forward<T>& f) {
  at::parallel_for(0, f.s.blocks(), 1, [&](int64_t begin, int64_t end) {
    std::vector<gn::Welford> sh(static_cast<size_t>(f.s.threads));
    for (int64_t block = begin; block < end; ++block) {
      for (int64_t t = 0; t < f.s.threads; ++t) f.stats(block, t, sh.data());
      for (int64_t stride = gn::first_stride(f.s.group_threads()); stride > 0; stride >>= 1) {
        for (int64_t t = 0; t < f.s.threads; ++t) f.reduce(t, stride, sh.data());
      }
      for (int64_t t = 0; t < f.s.threads; ++t) f.apply(block, t, sh.data());
    }
  });
}

template <typename T>
void backward_host(const gn::Backward<T>& b) {
  at::parallel_for(0, b.s.blocks(), 1, [&](int64_t begin, int64_t end) {
    std::vector<float> smem(static_cast<size_t>(gn::backward_shared_floats(b.s)));
    float* sh = smem.data();
    float* shc = sh + 3 * b.s.threads;
    for (int64_t block = begin; block < end; ++block) {
      for (int64_t t = 0; t < b.s.threads; ++t) b.partial_sums(block, t, sh);
      for (int64_t t = 0; t < b.s.threads; ++t) b.channel_sums(block, t, sh, shc);
      for (int64_t t = 0; t < b.s.threads; ++t) b.group_sums(block, t, shc);
      for (int64_t t = 0; t < b.s.threads; ++t) b.input_grads(block, t, shc);
    }
  });
}

/// Runs `fn` with the host element type of x's dtype (float, c10::BFloat16, c10::Half).
template <typename Fn>
void with_host_type(c10::ScalarType dtype, Fn&& fn) {
  switch (dtype) {
    case torch::kFloat: fn(float{}); return;
    case torch::kBFloat16: fn(c10::BFloat16{}); return;
    case torch::kHalf: fn(c10::Half{}); return;
    default: UD_ASSERT(false, "fused group norm: unsupported dtype ", dtype);
  }
}

#ifdef UNIDIFF_WITH_CUDA_KERNELS
gn::cuda::Dtype cuda_dtype(c10::ScalarType dtype) {
  switch (dtype) {
    case torch::kFloat: return gn::cuda::Dtype::kFloat;
    case torch::kBFloat16: return gn::cuda::Dtype::kBFloat16;
    case torch::kHalf: return gn::cuda::Dtype::kHalf;
    default: UD_ASSERT(false, "fused group norm: unsupported dtype ", dtype);
  }
  return gn::cuda::Dtype::kFloat;
}

void* stream_of(const torch::Tensor& x) { return c10::cuda::getCurrentCUDAStream(x.device().index()).stream(); }
#endif

const float* data_or_null(const torch::Tensor& t) { return t.defined() ? t.data_ptr<float>() : nullptr; }
float* mutable_data_or_null(const torch::Tensor& t) { return t.defined() ? t.data_ptr<float>() : nullptr; }

at::MemoryFormat format_of(bool channels_last) {
  return channels_last ? at::MemoryFormat::ChannelsLast : at::MemoryFormat::Contiguous;
}

gn::Shape shape_of(const torch::Tensor& x, int64_t groups, bool channels_last, bool silu, double eps) {
  return gn::make_shape(x.size(0), x.size(1), x.size(2) * x.size(3), groups, channels_last, silu,
                        static_cast<float>(eps));
}

/// The fused operation as an autograd function (inputs x, bias, gamma, beta; x is saved, not y).
/// Autograd functions take defined tensors only: "no bias" is an empty tensor. CUDA tensors come
/// here only when the build has the kernels (group_norm_act checks fused_group_norm_available).
class FusedGroupNormAct : public torch::autograd::Function<FusedGroupNormAct> {
 public:
  static torch::Tensor forward(AutogradContext* ctx, const torch::Tensor& x, const torch::Tensor& bias,
                               const torch::Tensor& gamma, const torch::Tensor& beta, int64_t groups, double eps,
                               bool silu) {
    // x's own layout when it is channels-last (a tensor contiguous both ways counts as NCHW).
    const bool cl = !x.is_contiguous() && x.is_contiguous(at::MemoryFormat::ChannelsLast);
    const torch::Tensor xc = cl ? x : x.contiguous();
    const torch::Tensor bf = bias.numel() > 0 ? bias.to(torch::kFloat).contiguous() : torch::Tensor();
    const torch::Tensor gf = gamma.to(torch::kFloat).contiguous(), bef = beta.to(torch::kFloat).contiguous();
    const gn::Shape s = shape_of(xc, groups, cl, silu, eps);
    torch::Tensor y = torch::empty(xc.sizes(), xc.options().memory_format(format_of(cl)));
    const auto stat_options = xc.options().dtype(torch::kFloat);
    torch::Tensor mean = torch::empty({s.n, s.groups}, stat_options), rstd = torch::empty({s.n, s.groups}, stat_options);
    if (xc.is_cuda()) {
#ifdef UNIDIFF_WITH_CUDA_KERNELS
      const c10::cuda::CUDAGuard guard(xc.device());
      gn::cuda::launch_forward(cuda_dtype(xc.scalar_type()), s, xc.data_ptr(), data_or_null(bf), gf.data_ptr<float>(),
                               bef.data_ptr<float>(), y.data_ptr(), mean.data_ptr<float>(), rstd.data_ptr<float>(),
                               stream_of(xc));
#endif
    } else {
      with_host_type(xc.scalar_type(), [&](auto tag) {
        using T = decltype(tag);
        forward_host(gn::Forward<T>{s, static_cast<const T*>(xc.data_ptr()), data_or_null(bf), gf.data_ptr<float>(),
                                    bef.data_ptr<float>(), static_cast<T*>(y.data_ptr()), mean.data_ptr<float>(),
                                    rstd.data_ptr<float>()});
      });
    }
    ctx->save_for_backward({xc, bf, gf, bef, mean, rstd});
    ctx->saved_data["groups"] = groups;
    ctx->saved_data["eps"] = eps;
    ctx->saved_data["silu"] = silu;
    ctx->saved_data["cl"] = cl;
    ctx->saved_data["bias_dtype"] = static_cast<int64_t>(bias.scalar_type());
    ctx->saved_data["gamma_dtype"] = static_cast<int64_t>(gamma.scalar_type());
    ctx->saved_data["beta_dtype"] = static_cast<int64_t>(beta.scalar_type());
    return y;
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    const variable_list saved = ctx->get_saved_variables();
    const torch::Tensor &xc = saved[0], &bf = saved[1], &gf = saved[2], &bef = saved[3], &mean = saved[4],
                        &rstd = saved[5];
    const bool cl = ctx->saved_data["cl"].toBool();
    const auto dtype_of = [&](const char* key) {
      return static_cast<c10::ScalarType>(ctx->saved_data[key].toInt());
    };
    if (!grads[0].defined()) return {torch::Tensor(), torch::Tensor(), torch::Tensor(), torch::Tensor(),
                                     torch::Tensor(), torch::Tensor(), torch::Tensor()};
    const torch::Tensor dy = grads[0].to(xc.scalar_type()).contiguous(format_of(cl));
    const gn::Shape s = shape_of(xc, ctx->saved_data["groups"].toInt(), cl, ctx->saved_data["silu"].toBool(),
                                 ctx->saved_data["eps"].toDouble());
    torch::Tensor dx = torch::empty(xc.sizes(), xc.options().memory_format(format_of(cl)));
    const auto sum_options = xc.options().dtype(torch::kFloat);
    torch::Tensor a_sum = torch::empty({s.n, s.c}, sum_options), b_sum = torch::empty({s.n, s.c}, sum_options);
    torch::Tensor dbias = bf.defined() ? torch::empty({s.n, s.c}, sum_options) : torch::Tensor();
    if (xc.is_cuda()) {
#ifdef UNIDIFF_WITH_CUDA_KERNELS
      const c10::cuda::CUDAGuard guard(xc.device());
      gn::cuda::launch_backward(cuda_dtype(xc.scalar_type()), s, dy.data_ptr(), xc.data_ptr(), data_or_null(bf),
                                gf.data_ptr<float>(), bef.data_ptr<float>(), mean.data_ptr<float>(),
                                rstd.data_ptr<float>(), dx.data_ptr(), a_sum.data_ptr<float>(),
                                b_sum.data_ptr<float>(), mutable_data_or_null(dbias),
                                stream_of(xc));
#endif
    } else {
      with_host_type(xc.scalar_type(), [&](auto tag) {
        using T = decltype(tag);
        backward_host(gn::Backward<T>{s, static_cast<const T*>(dy.data_ptr()), static_cast<const T*>(xc.data_ptr()),
                                      data_or_null(bf), gf.data_ptr<float>(), bef.data_ptr<float>(),
                                      mean.data_ptr<float>(), rstd.data_ptr<float>(), static_cast<T*>(dx.data_ptr()),
                                      a_sum.data_ptr<float>(), b_sum.data_ptr<float>(), mutable_data_or_null(dbias)});
      });
    }
    return {dx, bf.defined() ? dbias.to(dtype_of("bias_dtype")) : torch::Tensor(),
            a_sum.sum(0).to(dtype_of("gamma_dtype")), b_sum.sum(0).to(dtype_of("beta_dtype")), torch::Tensor(),
            torch::Tensor(), torch::Tensor()};
  }
};

torch::Tensor composite(const torch::Tensor& x, const torch::Tensor& bias, const torch::Tensor& gamma,
                        const torch::Tensor& beta, int64_t groups, double eps, bool silu) {
  torch::Tensor h = x;
  if (bias.defined()) {
    std::vector<int64_t> shape = bias.sizes().vec();
    shape.resize(static_cast<size_t>(x.dim()), 1);  // [N, C, 1, ...]
    h = x + bias.view(shape);
  }
  h = torch::group_norm(h, groups, gamma, beta, eps);
  return silu ? torch::silu(h) : h;
}

}  // namespace

bool has_forward_grad(const torch::Tensor& t) { return t.defined() && t._fw_grad(/*level=*/0).defined(); }

bool fused_group_norm_available(c10::DeviceType device) {
  if (device == c10::DeviceType::CPU) return true;
#ifdef UNIDIFF_WITH_CUDA_KERNELS
  return device == c10::DeviceType::CUDA;
#else
  return false;
#endif
}

void check_fused_group_norm(torch::Device device) {
  UD_CHECK_INPUT(device.is_cuda(), "--fused_group_norm runs CUDA kernels; this run is on ", device.str(),
                 " (the composite GroupNorm and SiLU are the CPU's fast path)");
  UD_CHECK_INPUT(fused_group_norm_available(device.type()),
                 "--fused_group_norm: this build has no CUDA kernels (configured without nvcc?)");
}

torch::Tensor group_norm_act(const torch::Tensor& x, const torch::Tensor& bias, const torch::Tensor& gamma,
                             const torch::Tensor& beta, int64_t groups, double eps, bool silu, bool fused) {
  UD_CHECK_INPUT(x.dim() >= 2 && groups > 0 && x.size(1) % groups == 0, "group norm: ", groups,
                 " groups need [N, C, ...] input with C divisible by them, got ", x.sizes());
  UD_CHECK_INPUT(!bias.defined() || (bias.dim() == 2 && bias.size(0) == x.size(0) && bias.size(1) == x.size(1)),
                 "group norm: the bias must be [N, C] = [", x.size(0), ", ", x.size(1), "], got ",
                 bias.defined() ? bias.sizes() : at::IntArrayRef{});
  const auto dtype = x.scalar_type();
  const bool fusable = x.dim() == 4 && gamma.defined() && beta.defined() &&
                       (dtype == torch::kFloat || dtype == torch::kBFloat16 || dtype == torch::kHalf) &&
                       x.size(1) / groups <= gn::kMaxThreads && fused_group_norm_available(x.device().type());
  // Forward-mode AD (sCM's JVP) goes through the composite: the fused autograd function has no
  // forward-mode rule. The same values either way.
  const bool dual = has_forward_grad(x) || has_forward_grad(bias) || has_forward_grad(gamma) || has_forward_grad(beta);
  if (!fused || !fusable || dual) return composite(x, bias, gamma, beta, groups, eps, silu);
  return FusedGroupNormAct::apply(x, bias.defined() ? bias : torch::empty({0}, x.options().dtype(torch::kFloat)),
                                  gamma, beta, groups, eps, silu);
}

}  // namespace unidiff::models
