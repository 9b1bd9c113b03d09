// The op-test harness's cases: every oneDNN layer next to a naive reference.
//
// An OpUnderTest holds its inputs (data and parameters) as flat float
// vectors. Forward/Backward run the real layer; the Reference* versions are
// plain loops written from the definitions. The test compares the two and
// checks Backward against central finite differences of Forward; the
// benchmark times Forward and Backward of the same cases.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <random>
#include <string>
#include <vector>

namespace psforge::nn {

using Vec = std::vector<float>;

class OpUnderTest {
 public:
  virtual ~OpUnderTest() = default;
  // The inputs a gradient is taken with respect to (x, then parameters).
  std::vector<Vec>& inputs() { return inputs_; }
  // The layer's output and gradients live in buffers allocated once, so that
  // timing them measures the layer, not page faults.
  virtual const Vec& Forward() = 0;
  virtual Vec ReferenceForward() = 0;
  // Gradients of sum(y * dy) with respect to each input (an empty vector for
  // an input the layer does not differentiate).
  virtual const std::vector<Vec>& Backward(const Vec& dy) = 0;
  virtual std::vector<Vec> ReferenceBackward(const Vec& dy) = 0;
  // The layer's own calls, without the harness's conversions between plain
  // vectors and the layouts the layer works in (for timing). After Forward.
  virtual void TimeForward() { Forward(); }
  virtual void TimeBackward(const Vec& dy) { Backward(dy); }

 protected:
  std::vector<Vec> inputs_;
  Vec y_;
  std::vector<Vec> grads_;
};

struct OpCase {
  std::string name;
  std::function<std::unique_ptr<OpUnderTest>(uint64_t seed)> make;
  double forward_tol;    // max |layer - reference| / (1 + |reference|)
  double backward_tol;   // same, for gradients
  double fd_tol;         // |analytic - finite difference| / (1 + |fd|)
  double fd_eps;         // step of the central difference
};

std::vector<OpCase> AllOpCases();
// Convolution, pooling, batchnorm, dropout and activations on images
// (op_cases_conv.cc), each with its input plain (as a first layer gets it)
// and in the layout this CPU's convolutions produce (as a layer after one
// does): the names end in _plain and _model.
std::vector<OpCase> ConvOpCases();
// The embedding, the LSTM and the two fused (op_cases_sequence.cc).
std::vector<OpCase> SequenceOpCases();
// Layer normalisation, the position embedding, GELU and multi-head
// self-attention, with and without the causal mask (op_cases_transformer.cc).
std::vector<OpCase> TransformerOpCases();

// n values uniform in [lo, hi).
Vec Random(std::mt19937_64& rng, std::size_t n, float lo, float hi);

}  // namespace psforge::nn
