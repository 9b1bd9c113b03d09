// Layers for sequences: a character embedding and an LSTM (our recurrence
// around oneDNN matmuls), which embeds its ids itself where an embedding
// comes right before it.
//
// Activations are [n, positions, features] row-major (oneDNN's ntc). As
// for Linear, parameters are views into the model's flattened weight and
// gradient buffers in PyTorch's layouts: the embedding table [vocabulary,
// dim]; the LSTM's weight_ih [4 hidden, in], weight_hh [4 hidden, hidden]
// (gates input, forget, cell, output) and one bias [4 hidden]. The LSTM
// reads its weights and writes their gradients in place, and keeps the
// forward pass's gates and states (time-major, in buffers its plan owns)
// for the backward pass. Every window starts from zero hidden and
// cell states (truncated back-propagation through time over fixed windows).
// Buffers are made once per batch size; not thread-safe.
#pragma once

#include <cstdint>
#include <memory>
#include <vector>

#include "worker/nn/layers.h"

namespace psforge::nn {

// y[s, t] = weight[x[s, t]]: x holds ids as floats. dx is never produced
// (ids have no gradient); the table's gradient sums the rows' gradients.
class Embedding final : public Layer {
 public:
  Embedding(int64_t vocabulary, int64_t dim, int64_t positions);

  void Bind(const float* weight, float* dweight);
  void MoveGradients(const float* from, float* to) override { dweight_ = MovedTo(dweight_, from, to); }
  // Adds its gradient to the table's instead of overwriting it: a tied head
  // (a linear layer sharing the table) has written its part first.
  void set_accumulate(bool accumulate) { accumulate_ = accumulate; }
  dnnl::memory::desc Prepare(int64_t n, const dnnl::memory::desc& in) override;
  void Forward(const float* x, float* y, int64_t n, Pass pass) override;
  void Backward(const float* x, const float* y, const float* dy, float* dx, int64_t n) override;

 private:
  int64_t vocabulary_, dim_, positions_;
  bool accumulate_ = false;
  const float* weight_ = nullptr;
  float* dweight_ = nullptr;
};

class Lstm final : public Layer {
 public:
  Lstm(DnnlContext* ctx, int64_t positions, int64_t in, int64_t hidden);
  ~Lstm() override;

  void Bind(const float* weight_ih, const float* weight_hh, const float* bias, float* dweight_ih,
            float* dweight_hh, float* dbias);
  // Takes ids (as floats, [n, positions]) and embeds them itself through
  // `table` [vocabulary, in], writing the table's gradient: an embedding
  // layer right before the LSTM, fused into it (builders.cc). Where the
  // table has fewer rows than a batch has positions, the input projection
  // is the table's, (table W_ih^T + b) [vocabulary, 4 hidden], computed once
  // a step and gathered per position; backward sums dgates per id (dP) and
  // takes the weight and table gradients from dP: three matmuls of
  // `vocabulary` rows instead of n * positions. An id out of range embeds
  // as zeros (as Embedding's).
  void BindTable(const float* table, float* dtable, int64_t vocabulary);
  void MoveGradients(const float* from, float* to) override {
    dw_ih_ = MovedTo(dw_ih_, from, to);
    dw_hh_ = MovedTo(dw_hh_, from, to);
    dbias_ = MovedTo(dbias_, from, to);
    dtable_ = MovedTo(dtable_, from, to);
  }
  dnnl::memory::desc Prepare(int64_t n, const dnnl::memory::desc& in) override;
  void Forward(const float* x, float* y, int64_t n, Pass pass) override;
  // Uses the workspace of the last Forward of this n.
  void Backward(const float* x, const float* y, const float* dy, float* dx, int64_t n) override;

 private:
  struct Plan;

  DnnlContext* ctx_;
  int64_t positions_, in_, hidden_;
  const float* w_ih_ = nullptr;
  const float* w_hh_ = nullptr;
  const float* bias_ = nullptr;
  float* dw_ih_ = nullptr;
  float* dw_hh_ = nullptr;
  float* dbias_ = nullptr;
  const float* table_ = nullptr;  // BindTable's
  float* dtable_ = nullptr;
  int64_t vocabulary_ = 0;
  std::vector<std::pair<int64_t, std::unique_ptr<Plan>>> plans_;
};

}  // namespace psforge::nn
