#include "worker/nn/layout_harness.h"

#include <cstring>

#include "worker/nn/conv.h"
#include "worker/nn/dnnl_util.h"

namespace psforge::nn {

const char* InputLayoutName(InputLayout in) { return in == InputLayout::kPlain ? "plain" : "model"; }

void LayoutHarness::Side::Make(const dnnl::memory::desc& md, const dnnl::engine& eng) {
  buffer.assign(md.get_size() / sizeof(float), 0.0f);
  laid = dnnl::memory(md, eng, buffer.data());
  plain = Unbound(PlainLike(md), eng);
  same = IsPlain(md);
  if (same) return;
  to_laid = dnnl::reorder(plain, laid);
  to_plain = dnnl::reorder(laid, plain);
}

void LayoutHarness::Side::In(dnnl::stream& s, const float* p) {
  if (same) {
    std::memcpy(buffer.data(), p, buffer.size() * sizeof(float));
    return;
  }
  Point(plain, p);
  to_laid.execute(s, {{DNNL_ARG_FROM, plain}, {DNNL_ARG_TO, laid}});
  s.wait();
}

void LayoutHarness::Side::Out(dnnl::stream& s, float* p) {
  if (same) {
    std::memcpy(p, buffer.data(), buffer.size() * sizeof(float));
    return;
  }
  Point(plain, p);
  to_plain.execute(s, {{DNNL_ARG_FROM, laid}, {DNNL_ARG_TO, plain}});
  s.wait();
}

LayoutHarness::LayoutHarness(DnnlContext* ctx, Layer* layer, int64_t n, int64_t c, int64_t h, int64_t w,
                             InputLayout in)
    : ctx_(ctx), layer_(layer), n_(n) {
  const auto in_md = in == InputLayout::kPlain ? Tensor(n, c, h, w) : PreferredImageLayout(ctx->engine, n, c, h, w);
  const auto out_md = layer->Prepare(n, in_md);
  x_.Make(in_md, ctx->engine);
  dx_.Make(in_md, ctx->engine);
  y_.Make(out_md, ctx->engine);
  dy_.Make(out_md, ctx->engine);
  out_floats_ = PlainLike(out_md).get_size() / sizeof(float);
}

void LayoutHarness::Forward(const std::vector<float>& x, std::vector<float>& y, Pass pass) {
  x_.In(ctx_->stream, x.data());
  LayerForward(pass);
  y.resize(out_floats_);
  y_.Out(ctx_->stream, y.data());
}

void LayoutHarness::Backward(const std::vector<float>& dy, std::vector<float>* dx) {
  dy_.In(ctx_->stream, dy.data());
  LayerBackward(dx != nullptr);
  if (dx != nullptr) dx_.Out(ctx_->stream, dx->data());
}

void LayoutHarness::LayerForward(Pass pass) { layer_->Forward(x_.buffer.data(), y_.buffer.data(), n_, pass); }

void LayoutHarness::LayerBackward(bool with_dx) {
  layer_->Backward(x_.buffer.data(), y_.buffer.data(), dy_.buffer.data(), with_dx ? dx_.buffer.data() : nullptr,
                   n_);
}

}  // namespace psforge::nn
