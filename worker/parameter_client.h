// How a trainer exchanges weights and gradients: with an optimizer in the
// same process (LocalParameterClient, used by ps-train) or with parameter
// servers over the network. The trainer is written against this interface
// only, so it runs unchanged over either.
#pragma once

#include <cstdint>
#include <memory>
#include <span>

#include "common/model_spec.h"
#include "common/status.h"
#include "common/wire.h"
#include "paramserver/optimizer.h"

namespace psforge {

class ParameterClient {
 public:
  virtual ~ParameterClient() = default;

  // Makes `weights` (the whole key space) hold the parameters of version
  // `step`: the initial weights for step 0, after `step` updates otherwise.
  virtual Status Pull(int64_t step, std::span<float> weights) = 0;

  // Sends the gradient of the mean loss over `samples` records, computed on
  // the weights of `step` (0 samples: an empty step, which only keeps pace).
  // `mark` says where the records came from (servers account for them).
  virtual Status Push(int64_t step, std::span<const float> gradient, int64_t samples,
                      const DataMark& mark) = 0;

  // How many of this process's steps are applied for certain: their pushes
  // were answered, so they cannot be lost any more.
  virtual int64_t applied_steps() const = 0;

  // Among how many workers the job's batch is split at the step just
  // pulled: under BSP, the workers the servers wait for (fewer while one
  // is missing, so the others take its share and every step keeps the
  // job's batch size); otherwise the job's worker count.
  virtual int64_t workers_in_step() const { return 1; }

  // This process pushes no more: nobody waits for it any longer. Pulls
  // still work (the final evaluation pulls after leaving).
  virtual Status Leave() { return Status::Ok(); }
};

// The in-process path: one optimizer over the whole key space, applied in
// place to the weight buffer given at construction. Not thread-safe.
class LocalParameterClient final : public ParameterClient {
 public:
  // `weights` is the model's buffer; it is initialised from `spec` here.
  static Result<std::unique_ptr<LocalParameterClient>> Create(const ModelSpec& spec,
                                                              const OptimizerOptions& options,
                                                              std::span<float> weights);

  Status Pull(int64_t step, std::span<float> weights) override;
  Status Push(int64_t step, std::span<const float> gradient, int64_t samples,
              const DataMark& mark) override;
  int64_t applied_steps() const override { return version_; }

  // For checkpoints: the optimizer, and going back to a checkpoint's step
  // (its weights and optimizer state already loaded).
  Optimizer& optimizer() { return *optimizer_; }
  void set_version(int64_t version) { version_ = version; }

 private:
  LocalParameterClient(std::unique_ptr<Optimizer> optimizer, std::span<float> weights)
      : optimizer_(std::move(optimizer)), weights_(weights) {}

  std::unique_ptr<Optimizer> optimizer_;
  std::span<float> weights_;
  int64_t version_ = 0;
};

}  // namespace psforge
