// oneDNN layers with forward and backward passes.
//
// A layer owns its oneDNN primitives, created once per batch size and reused
// (a Plan per size; a training run sees at most two: the batch and the last
// partial batch). Layers own no tensors: inputs, outputs and gradients are
// caller-owned row-major buffers, and Linear's parameters are views into the
// model's flattened weight and gradient buffers. Hot-path calls allocate
// nothing once a batch size has been seen. Not thread-safe: one layer, one
// compute thread (oneDNN parallelises inside a call).
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <unordered_map>
#include <vector>

#include <dnnl.hpp>

#include "common/config.h"
#include "worker/nn/buffer.h"
#include "worker/nn/scores.h"

namespace psforge::nn {

// The engine and stream every layer of one model executes on.
struct DnnlContext {
  dnnl::engine engine{dnnl::engine::kind::cpu, 0};
  dnnl::stream stream{engine};
};

// What a forward pass is for. kTraining: dropout drops, batchnorm normalises
// with the batch's own statistics (and Backward may follow). kStatistics:
// as kTraining for batchnorm, which also accumulates the batch's statistics
// for evaluation; dropout passes through. kInference: dropout passes
// through, batchnorm uses its estimated statistics.
enum class Pass { kTraining, kStatistics, kInference };

// The samples of the next training pass, which dropout masks are drawn
// from: the step, and each sample's record (its row in the data set;
// rows == nullptr: `first` + its index in the pass). A mask is a hash of (seed,
// step, record, position in the sample), so a record is masked alike
// whichever process trains it and wherever it sits in its batch: two BSP
// workers on b/2 each draw what one process draws on b, and a step a
// rolled-back job replays draws what it drew the first time.
struct PassSamples {
  uint64_t step = 0;
  const int64_t* rows = nullptr;
  int64_t n = 0;
  int64_t first = 0;
};

// Fills `mask` (`size` floats, the pass's samples one after another, each
// in logical order) with 0 where a unit drops (its 16 random bits below
// `threshold`) and `keep` elsewhere. A size that does not divide into
// samples.n equal parts is drawn as one sample.
void DrawDropoutMask(uint64_t seed, const PassSamples& samples, uint16_t threshold, float keep, float* mask,
                     int64_t size);

// p's place in the buffer at `from`, in the buffer at `to` (null stays null).
inline float* MovedTo(float* p, const float* from, float* to) { return p ? to + (p - from) : p; }

// A layer of a sequential model: n samples in, n samples out. Image
// activations ([n, channels, height, width]) are in whatever layout the
// layers choose on this CPU (oneDNN's format_tag::any: nChw16c where
// AVX-512 runs, nChw8c on AVX2, plain nchw where that is fastest): each
// layer is told the layout of its input and says the layout of its output,
// and reorders only where it cannot work on what it is handed. Everything
// else is plain row-major ([features], or [positions, features] for a
// sequence); the model's input and output always are.
class Layer {
 public:
  virtual ~Layer() = default;
  // Makes the primitives for batches of n samples whose input is laid out
  // as `in`, and returns the layout of the output (a size that may exceed
  // the logical one: blocked layouts pad channels). Once per batch size,
  // before Forward or Backward of that size. Layers whose input is plain by
  // definition (linear, embedding, LSTM) need only its dimensions.
  virtual dnnl::memory::desc Prepare(int64_t n, const dnnl::memory::desc& in) = 0;
  virtual void Forward(const float* x, float* y, int64_t n, Pass pass) = 0;
  // After a kTraining Forward of the same n with the same x and y: writes the
  // parameters' gradients (overwriting) and dx, unless dx is null (the first
  // layer needs no input gradient). dy and dx are in the layouts of y and x.
  virtual void Backward(const float* x, const float* y, const float* dy, float* dx, int64_t n) = 0;

  // What oneDNN chose for each primitive this layer made, as "what: impl"
  // (e.g. "convolution forward: jit:avx2"), once each.
  const std::vector<std::string>& implementations() const { return implementations_; }
  // Adds "name: what: impl" for each (a block: for each of its layers, by their names).
  virtual void AppendImplementations(const std::string& name, std::vector<std::string>* out) const;

  // The samples of the next training pass (dropout masks: PassSamples).
  virtual void set_samples(const PassSamples&) {}
  // Batch statistics for evaluation (batchnorm: nn/norm.h); no-ops for layers without.
  virtual void BeginStatistics() {}
  virtual void EndStatistics() {}
  // Adds the estimated statistics under the layer's name ("bn0.running_mean").
  using NamedValues = std::vector<std::pair<std::string, std::vector<float>>>;
  virtual void AppendStatistics(const std::string& name, NamedValues* out) const { (void)name, (void)out; }

  // Points the layer's gradients, which lie in the buffer that begins at
  // `from`, at the same offsets of the buffer that begins at `to` (a model
  // writing each step's gradient into one of two buffers: Model::UseGradientBuffer).
  virtual void MoveGradients(const float* from, float* to) { (void)from, (void)to; }

 protected:
  void Record(const std::string& what, const std::string& impl);

 private:
  std::vector<std::string> implementations_;
};

// y = x W^T + b, x: [n, in], W: [out, in], b: [out], y: [n, out].
class Linear final : public Layer {
 public:
  Linear(DnnlContext* ctx, int64_t in, int64_t out);
  ~Linear();
  Linear(Linear&&) noexcept;

  int64_t in() const { return in_; }
  int64_t out() const { return out_; }

  // Points the layer at its parameters and their gradients.
  void Bind(const float* weight, const float* bias, float* dweight, float* dbias);
  void MoveGradients(const float* from, float* to) override {
    dweight_ = MovedTo(dweight_, from, to);
    dbias_ = MovedTo(dbias_, from, to);
  }

  dnnl::memory::desc Prepare(int64_t n, const dnnl::memory::desc& in) override;
  void Forward(const float* x, float* y, int64_t n, Pass pass) override;
  // Writes dW and db (overwriting), and dx unless dx is null (which saves
  // the largest backward matmul of an MLP). y is not used.
  void Backward(const float* x, const float* y, const float* dy, float* dx, int64_t n) override;

  // Training in blocks of output rows, so that a parameter client can move
  // each block's weights and gradient on its own (a model's first layer
  // cut where the client's parts begin: Model::SetPartStarts). A kTraining
  // Forward computes y's columns [f[j], f[j+1]) one block at a time, block
  // j once need_rows(f[j+1]) has returned (the weight's rows below that
  // are this step's), then adds the bias once need_bias() has returned. A
  // Backward without dx writes db (then final_bias()) and dW's rows
  // [b[j], b[j+1]) one block at a time, lowest first, calling
  // final_rows(b[j], b[j+1]) after each. Every block is one oneDNN matmul
  // on views of the layer's plain buffers (forward into a buffer of the
  // layer's, gathered into y with the bias); inference and a Backward with
  // dx stay whole. Both lists begin with 0 and ascend; fewer than two
  // blocks: whole again. Hooks may be empty.
  struct RowBlockHooks {
    std::function<void(int64_t end)> need_rows;
    std::function<void()> need_bias;
    std::function<void(int64_t begin, int64_t end)> final_rows;
    std::function<void()> final_bias;
  };
  void SetRowBlocks(std::vector<int64_t> forward_starts, std::vector<int64_t> backward_starts,
                    const RowBlockHooks* hooks);
  bool in_row_blocks() const { return forward_starts_.size() > 1 || backward_starts_.size() > 1; }

 private:
  struct Plan;
  struct BlockPlan;
  // The matmul of a block of `rows` output rows for batches of n (forward
  // or backward), made once.
  BlockPlan& BlockOf(int64_t n, int64_t rows, bool backward);
  void MakeBlocks(int64_t n);

  DnnlContext* ctx_;
  int64_t in_, out_;
  const float* weight_ = nullptr;
  const float* bias_ = nullptr;
  float* dweight_ = nullptr;
  float* dbias_ = nullptr;
  std::vector<std::pair<int64_t, std::unique_ptr<Plan>>> plans_;
  std::vector<int64_t> forward_starts_, backward_starts_;
  const RowBlockHooks* hooks_ = nullptr;
  std::vector<std::unique_ptr<BlockPlan>> blocks_;
  // The forward blocks' outputs, each [n, rows] at n * its first row,
  // before Forward gathers them into y (sized for the largest n prepared).
  Buffer block_out_;
  int64_t block_out_size_ = 0;
};

// y = f(x) elementwise, `alg` one of oneDNN's eltwise algorithms: those
// whose backward pass uses the forward output y (eltwise_*_use_dst_for_bwd:
// ReLU, logistic, tanh), or x (eltwise_gelu_erf, PyTorch's nn.GELU).
// `width` is the logical size of a sample.
class Eltwise final : public Layer {
 public:
  Eltwise(DnnlContext* ctx, dnnl::algorithm alg, int64_t width);
  ~Eltwise();
  Eltwise(Eltwise&&) noexcept;

  // Works in the layout it is handed.
  dnnl::memory::desc Prepare(int64_t n, const dnnl::memory::desc& in) override;
  void Forward(const float* x, float* y, int64_t n, Pass pass) override;
  void Backward(const float* x, const float* y, const float* dy, float* dx, int64_t n) override;

 private:
  struct Plan;

  DnnlContext* ctx_;
  bool uses_dst() const {
    return alg_ == dnnl::algorithm::eltwise_relu_use_dst_for_bwd ||
           alg_ == dnnl::algorithm::eltwise_logistic_use_dst_for_bwd ||
           alg_ == dnnl::algorithm::eltwise_tanh_use_dst_for_bwd;
  }

  dnnl::algorithm alg_;
  int64_t width_;
  std::vector<std::pair<int64_t, std::unique_ptr<Plan>>> plans_;
};

// A loss over a batch of model outputs and targets. Forward returns the mean
// loss and remembers what Backward needs; Backward writes dL/doutput of the
// mean loss. `Score` evaluates a batch (nn::Scores).

class Loss {
 public:
  virtual ~Loss() = default;
  virtual float Forward(const float* outputs, const float* targets, int64_t n) = 0;
  virtual void Backward(float* doutputs) = 0;
  virtual Scores Score(const float* outputs, const float* targets, int64_t n) const = 0;
  // As Layer::implementations().
  virtual std::vector<std::string> implementations() const { return {}; }
};

// Softmax over `classes` outputs, cross-entropy against a class index.
// Log-softmax runs as a oneDNN primitive. `masked`: a negative target means
// no loss at that row, and the loss is the sum over the other rows divided
// by the number of rows masking is expected to leave (n * kMaskRate,
// common/text_dataset.h): a fixed divisor, so that the gradient of a batch
// split among workers and summed by the servers in proportion to their
// rows is the gradient of the whole batch.
class SoftmaxCrossEntropy final : public Loss {
 public:
  SoftmaxCrossEntropy(DnnlContext* ctx, int64_t classes, int64_t max_batch, bool masked = false);
  ~SoftmaxCrossEntropy() override;
  float Forward(const float* outputs, const float* targets, int64_t n) override;
  void Backward(float* doutputs) override;
  Scores Score(const float* outputs, const float* targets, int64_t n) const override;
  std::vector<std::string> implementations() const override;

 private:
  struct Plan;
  Plan& PlanFor(int64_t n);

  friend class SequenceCrossEntropy;
  DnnlContext* ctx_;
  int64_t classes_;
  bool masked_;
  std::vector<float> log_probs_;  // [max_batch, classes]
  const float* targets_ = nullptr;
  int64_t n_ = 0;
  std::vector<std::pair<int64_t, std::unique_ptr<Plan>>> plans_;
};

// A softmax cross-entropy at every one of `positions` positions of each
// sample ([positions, classes] outputs, [positions] targets), the mean over
// positions and samples. Score: each sample's mean over its positions, in
// bits (so the metric is bits per character). `masked` (as
// SoftmaxCrossEntropy's): only the positions with a target count; Score is
// the correct predictions among them (masked accuracy) and the second
// metric their bits.
class SequenceCrossEntropy final : public Loss {
 public:
  SequenceCrossEntropy(DnnlContext* ctx, int64_t positions, int64_t classes, int64_t max_batch, bool masked = false);
  float Forward(const float* outputs, const float* targets, int64_t n) override;
  void Backward(float* doutputs) override;
  Scores Score(const float* outputs, const float* targets, int64_t n) const override;
  std::vector<std::string> implementations() const override { return inner_.implementations(); }

 private:
  int64_t positions_;
  mutable SoftmaxCrossEntropy inner_;  // Score runs a forward pass
};

// Sigmoid of one output, binary cross-entropy against a 0/1 target.
class SigmoidBinaryCrossEntropy final : public Loss {
 public:
  float Forward(const float* outputs, const float* targets, int64_t n) override;
  void Backward(float* doutputs) override;
  Scores Score(const float* outputs, const float* targets, int64_t n) const override;

 private:
  const float* outputs_ = nullptr;
  const float* targets_ = nullptr;
  int64_t n_ = 0;
};

// Mean over the batch of the squared error of one output.
class MeanSquaredError final : public Loss {
 public:
  float Forward(const float* outputs, const float* targets, int64_t n) override;
  void Backward(float* doutputs) override;
  Scores Score(const float* outputs, const float* targets, int64_t n) const override;

 private:
  const float* outputs_ = nullptr;
  const float* targets_ = nullptr;
  int64_t n_ = 0;
};

}  // namespace psforge::nn
