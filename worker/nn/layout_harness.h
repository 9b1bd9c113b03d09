// Runs one image layer as a model runs it, for the op-test harness: its
// input in the layout the model would hand it, its output in the layout it
// chose, and the plain (nchw) vectors the naive references work on
// converted to and from those layouts around each call.
#pragma once

#include <cstdint>
#include <vector>

#include <dnnl.hpp>

#include "worker/nn/layers.h"

namespace psforge::nn {

// kPlain: nchw, as the data comes (a model's first layer); kModel: the
// layout this CPU's convolutions produce (a layer after a convolution).
enum class InputLayout { kPlain, kModel };

const char* InputLayoutName(InputLayout in);

class LayoutHarness {
 public:
  // Prepares `layer` (owned by the caller, living as long as this) for n
  // samples of [c, h, w].
  LayoutHarness(DnnlContext* ctx, Layer* layer, int64_t n, int64_t c, int64_t h, int64_t w, InputLayout in);

  // y (plain, resized) = layer(x (plain)).
  void Forward(const std::vector<float>& x, std::vector<float>& y, Pass pass);
  // After Forward: the plain dx of a plain dy (dx null: none asked for).
  void Backward(const std::vector<float>& dy, std::vector<float>* dx);

  // The layer's calls alone on the converted buffers (for timing).
  void LayerForward(Pass pass);
  void LayerBackward(bool with_dx);

 private:
  struct Side {  // one tensor: a plain view, the layer-side buffer, the reorders between
    dnnl::memory plain, laid;
    dnnl::reorder to_laid, to_plain;
    std::vector<float> buffer;
    bool same = false;
    void Make(const dnnl::memory::desc& md, const dnnl::engine& eng);
    void In(dnnl::stream& s, const float* p);
    void Out(dnnl::stream& s, float* p);
  };
  DnnlContext* ctx_;
  Layer* layer_;
  int64_t n_;
  Side x_, y_, dy_, dx_;
  std::size_t out_floats_ = 0;
};

}  // namespace psforge::nn
