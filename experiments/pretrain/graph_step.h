// The whole pre-training step in one CUDA graph: zeroing the gradients, the objective's forward
// and loss under autocast, backward, the reducer, clipping, fused AdamW and the EMA, captured once
// and replayed every step, so the step costs one graph launch instead of thousands of kernel
// launches from the host.
//
// What makes a replay equal to the eager step (experiments::pretrain_step): every per-step number
// lives in device memory that the host rewrites between replays with kernels that never
// synchronise: the batch (copied into static input buffers), the step counter that keys the
// draws (core/rng.h StepKey: timesteps, noise, dropout masks), the learning rate and the EMA
// weight (ModelGroup::schedule). The objective's host-side work runs in prepare() before each step;
// when its key changes (the iCT curriculum's grid) the step is captured again.
//
// The first `warmup` steps run eagerly (lazy initialisation, cuDNN autotuning), the next one is
// captured and replayed; from then on every step is a replay. Warm-up steps and captures run on
// one stream of their own (not the default stream, which cannot be captured), and the reducer's
// gradient hooks are moved onto accumulators of that stream at construction: the autograd engine
// runs the accumulators the reducer keeps alive on the stream they were made on, and one made on
// the default stream would break the capture. Needs a CUDA device; on several ranks NCCL, whose
// collectives the reducer queues on the device from the gradient hooks (dist/reducer.h), so they
// are captured too, still overlapping backward. (MPI's collectives run on a host thread, which a
// capture cannot follow.)
#pragma once

#include <memory>
#include <string>

#include "dist/communicator.h"
#include "experiments/run/model_group.h"
#include "experiments/pretrain/objectives.h"
#include "experiments/pretrain/pretrain.h"

namespace unidiff::experiments {

class GraphedPretrainStep {
 public:
  /// Whether this build can capture CUDA graphs (LibTorch with CUDA).
  static bool available();
  /// InputError naming what is missing when a run on `device` whose gradients travel through
  /// `comm` cannot use a captured step (call before touching the run directory): a CUDA build and
  /// device, and with several ranks a stream-ordered communicator (NCCL), whose collectives the
  /// graph takes in.
  static void check_supported(torch::Device device, const dist::Communicator& comm);

  /// InputError when the build or the device cannot capture, or the group's communicator cannot.
  /// `emulate` (tests, any device): a "capture" only records the step's host values and a
  /// "replay" runs the step's kernels again with those stale host values and the live device
  /// buffers, as a graph would: everything a replay depends on is checked except CUDA itself.
  GraphedPretrainStep(ModelGroup& group, PretrainObjective& objective, uint32_t seed, std::string precision,
                      bool channels_last, int warmup = 3, bool emulate = false);
  ~GraphedPretrainStep();
  GraphedPretrainStep(const GraphedPretrainStep&) = delete;
  GraphedPretrainStep& operator=(const GraphedPretrainStep&) = delete;

  /// One optimizer step, the same as pretrain_step(group, objective, data, ...). The loss is a
  /// tensor the next step overwrites: use (or copy) it before then, on the current stream.
  StepOutcome run(const StepData& data);

  /// Graph captures so far (1 in a steady run; more when the objective's key changed).
  int captures() const { return captures_; }

 private:
  struct State;
  std::unique_ptr<State> state_;
  int captures_ = 0;
};

/// While one is alive, anything that makes the host wait for the GPU (a device-to-host copy, a
/// synchronous host-to-device copy, `item()`, a stream or device synchronisation) throws instead:
/// LibTorch's CUDA synchronisation debug mode set to "error" for the process. The tests hold one
/// around training steps to check that a step never waits for the device. Not reentrant.
class HostSyncTrap {
 public:
  /// Whether this build can set the mode (LibTorch with CUDA); without it the trap does nothing.
  static bool available();
  HostSyncTrap();
  ~HostSyncTrap();
  HostSyncTrap(const HostSyncTrap&) = delete;
  HostSyncTrap& operator=(const HostSyncTrap&) = delete;
};

}  // namespace unidiff::experiments
