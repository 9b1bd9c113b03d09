// How a trainer exchanges weights and gradients: with an optimizer in the
// same process (LocalParameterClient, used by ps-train) or with parameter
// servers over the network. The trainer is written against this interface
// only, so it runs unchanged over either.
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <vector>

#include "common/coordinator_link.h"
#include "common/model_spec.h"
#include "common/status.h"
#include "common/wire.h"
#include "paramserver/embedding_table.h"
#include "paramserver/optimizer.h"

namespace psforge {

// A batch's rows of one sparse table: their sorted unique row ids, and
// rows x dim floats: the rows' weights (which PullRows fills) or their
// gradient (which Push sends).
struct SparseRows {
  uint16_t table = 0;
  int64_t dim = 0;
  std::span<const uint64_t> rows;
  std::span<float> values;
};

class ParameterClient {
 public:
  virtual ~ParameterClient() = default;

  // Makes `weights` (the whole key space) hold the parameters of version
  // `step`: the initial weights for step 0, after `step` updates otherwise.
  virtual Status Pull(int64_t step, std::span<float> weights) = 0;

  // Sends the gradient of the mean loss over `samples` records, computed on
  // the weights of `step` (0 samples: an empty step, which only keeps pace).
  // `mark` says where the records came from (servers account for them).
  // `rows`: the gradient of the rows of sparse tables the batch touched
  // (each table once, its rows sorted and unique).
  virtual Status Push(int64_t step, std::span<const float> gradient, int64_t samples,
                      const DataMark& mark, std::span<const SparseRows> rows) = 0;
  Status Push(int64_t step, std::span<const float> gradient, int64_t samples, const DataMark& mark) {
    return Push(step, gradient, samples, mark, {});
  }

  // Where the next step's gradient should be written, when this client
  // sends a gradient in place from buffers of its own while the next step
  // computes (Model::UseGradientBuffer; Push then copies nothing); empty:
  // anywhere (Push copies what it must). Called once before each step.
  virtual Result<std::span<float>> GradientBuffer() { return std::span<float>(); }

  // During backward, before Push(step, gradient, samples, mark): the
  // gradient of keys [begin, end) has become final (as have the ranges
  // reported before for this step), and a client may send what is final
  // now (Push then sends the rest). Not for steps with sparse rows. The
  // default sends nothing ahead.
  virtual Status PushReady(int64_t step, std::span<const float> gradient, int64_t samples, const DataMark& mark,
                           int64_t begin, int64_t end) {
    (void)step, (void)gradient, (void)samples, (void)mark, (void)begin, (void)end;
    return Status::Ok();
  }

  // Where this client's parts begin (ascending keys), when it moves a
  // step's weights and gradient in parts that PushReady and AwaitWeights
  // can take one at a time (Model::SetPartStarts cuts the first layer
  // there); empty otherwise. Known after the first Pull.
  virtual std::vector<int64_t> part_starts() const { return {}; }
  // Pull, but the client may return before every part has come: keys
  // [0, end) are in `weights` once AwaitWeights(end) has returned, all of
  // them after AwaitWeights(num_params) (which also lets the caller
  // overwrite the gradient it pushed, as Pull's return does). Any other
  // call of the client completes the pull first. The default is Pull.
  virtual Status PullFirst(int64_t step, std::span<float> weights) { return Pull(step, weights); }
  virtual Status AwaitWeights(int64_t end) {
    (void)end;
    return Status::Ok();
  }

  // Fills each entry's values with its rows' weights at `version` (the
  // consistency bound as for Pull). A model without sparse tables has none.
  virtual Status PullRows(int64_t version, std::span<const SparseRows> rows) = 0;

  // How many of this process's steps are applied for certain: their pushes
  // were answered, so they cannot be lost any more.
  virtual int64_t applied_steps() const = 0;
  // What went over the wire so far (an in-process client moves nothing).
  virtual WireBytes wire_bytes() const { return {}; }
  // How many parts PushReady sent ahead of their Push so far.
  virtual int64_t parts_sent_ahead() const { return 0; }
  // How many parts of pulled weights came in after PullFirst had returned
  // (while the next forward pass ran) so far.
  virtual int64_t parts_pulled_during_forward() const { return 0; }

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
// place to the weight buffer given at construction, and the model's sparse
// tables in this process. Not thread-safe.
class LocalParameterClient final : public ParameterClient {
 public:
  // `weights` is the model's buffer; it is initialised from `spec` here.
  static Result<std::unique_ptr<LocalParameterClient>> Create(const ModelSpec& spec,
                                                              const OptimizerOptions& options,
                                                              std::span<float> weights);

  using ParameterClient::Push;
  Status Pull(int64_t step, std::span<float> weights) override;
  Status Push(int64_t step, std::span<const float> gradient, int64_t samples,
              const DataMark& mark, std::span<const SparseRows> rows) override;
  Status PullRows(int64_t version, std::span<const SparseRows> rows) override;
  int64_t applied_steps() const override { return version_; }

  // For checkpoints: the optimizer, and going back to a checkpoint's step
  // (its weights and optimizer state already loaded).
  Optimizer& optimizer() { return *optimizer_; }
  void set_version(int64_t version) { version_ = version; }

 private:
  LocalParameterClient(std::unique_ptr<Optimizer> optimizer, std::span<float> weights,
                       std::vector<std::unique_ptr<EmbeddingTable>> tables)
      : optimizer_(std::move(optimizer)), weights_(weights), tables_(std::move(tables)) {}
  // The table `r` names, once its sizes and rows are checked.
  Result<EmbeddingTable*> TableOf(const SparseRows& r);

  std::unique_ptr<Optimizer> optimizer_;
  std::span<float> weights_;
  std::vector<std::unique_ptr<EmbeddingTable>> tables_;  // the model's sparse tables, by index
  int64_t version_ = 0;
};

}  // namespace psforge
