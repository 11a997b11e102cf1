// Gradient synchronisation overlap: an MLP of a few million parameters trained data-parallel
// under mpirun, with the simple reducer (one bucket, all-reduced after backward) and the bucketed
// reducer (all-reduce of each bucket started during backward). Reports ms per step, the
// communication time per step, how much of it finalize() still waited for (exposed) and the
// fraction hidden behind backward, and the bytes all-reduced per step. Prints a Markdown table
// on rank 0.
//   mpirun -np 2 build/bench/reducer_bench [--hidden=768] [--layers=4] [--batch=64] [--steps=30] [--bucket_mb=2]
#include <torch/torch.h>

#include <chrono>
#include <cstdio>
#include <cstring>

#include "core/memory.h"
#include "dist/communicator.h"
#include "dist/flat_adamw.h"
#include "dist/gradients.h"
#include "dist/reducer.h"
#include "dist/world.h"
#include "models/network.h"

namespace {

namespace d = unidiff::dist;

struct Options {
  int64_t hidden = 768, layers = 4, batch = 64, steps = 30;
  double bucket_mb = 2;
};

struct Result {
  double ms_per_step, comm_ms, exposed_ms, hidden, mb_per_step;
  int buckets;
};

Result run(const Options& o, d::Communicator& comm, bool bucketed, int64_t& params) {
  unidiff::models::NetworkConfig c;
  c.data_shape = {64};
  c.hidden = o.hidden;
  c.layers = o.layers;
  torch::manual_seed(0);
  auto net = unidiff::models::make_network(c);
  params = 0;
  for (const auto& p : net->parameters()) params += p.numel();
  d::ReducerOptions ro;
  ro.bucket_bytes = bucketed ? static_cast<int64_t>(o.bucket_mb * (1 << 20)) : (int64_t{1} << 40);
  ro.overlap = bucketed;
  d::Reducer reducer(net->parameters(), comm, ro);
  d::FlatAdamW opt(reducer, {});
  const auto step = [&](int64_t k) {
    torch::manual_seed(static_cast<uint64_t>(k * 131 + comm.rank()));
    const torch::Tensor x = torch::randn({o.batch, 64});
    const torch::Tensor t = torch::rand({o.batch}) * 1000;
    reducer.zero_grad();
    (net->forward(x, t) - x).pow(2).mean().backward();
    reducer.finalize();
    opt.step(1e-4);
  };
  for (int64_t k = 0; k < 5; ++k) step(k);  // warm-up
  comm.barrier();
  reducer.reset_stats();
  const auto t0 = std::chrono::steady_clock::now();
  for (int64_t k = 0; k < o.steps; ++k) step(k);
  const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  const auto& st = reducer.stats();
  const double n = static_cast<double>(o.steps);
  return {1e3 * s / n, 1e3 * st.comm_seconds / n, 1e3 * st.exposed_seconds / n, st.hidden_fraction(),
          static_cast<double>(st.bytes) / n / 1e6, reducer.num_buckets()};
}

}  // namespace

int main(int argc, char** argv) {
  unidiff::memory::keep_freed_pages();
  d::init(&argc, &argv);
  Options o;
  for (int i = 1; i < argc; ++i) {
    if (!std::strncmp(argv[i], "--hidden=", 9)) o.hidden = std::atol(argv[i] + 9);
    else if (!std::strncmp(argv[i], "--layers=", 9)) o.layers = std::atol(argv[i] + 9);
    else if (!std::strncmp(argv[i], "--batch=", 8)) o.batch = std::atol(argv[i] + 8);
    else if (!std::strncmp(argv[i], "--steps=", 8)) o.steps = std::atol(argv[i] + 8);
    else if (!std::strncmp(argv[i], "--bucket_mb=", 12)) o.bucket_mb = std::atof(argv[i] + 12);
  }
  torch::set_num_threads(1);
  auto comm = d::make_world_communicator();
  int64_t params = 0;
  const Result simple = run(o, *comm, false, params);
  const Result bucketed = run(o, *comm, true, params);
  if (comm->rank() == 0) {
    std::printf("MLP %ld parameters, %d ranks, batch %ld per rank, %ld steps\n\n", params,
                comm->size(), o.batch, o.steps);
    std::printf("| reducer | buckets | ms/step | comm ms/step | exposed ms/step | hidden | MB all-reduced/step |\n"
                "|---|---|---|---|---|---|---|\n");
    for (const auto& [name, r] : {std::pair{"simple (after backward)", simple},
                                  std::pair{"bucketed, overlapped", bucketed}}) {
      std::printf("| %s | %d | %.2f | %.2f | %.2f | %.0f%% | %.1f |\n", name, r.buckets,
                  r.ms_per_step, r.comm_ms, r.exposed_ms, 100 * r.hidden, r.mb_per_step);
    }
  }
  d::finalize();
  return 0;
}
