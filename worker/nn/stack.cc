#include "worker/nn/stack.h"

#include <algorithm>
#include <cstring>
#include <new>

#include "common/vector_clones.h"
#include "worker/nn/dnnl_util.h"

namespace psforge::nn {

Buffer AllocateFloats(int64_t floats) {
  // 64-byte alignment suits AVX-512 loads; zeroed so that tails are defined.
  std::size_t bytes = (static_cast<std::size_t>(floats) * sizeof(float) + 63) / 64 * 64;
  auto* p = static_cast<float*>(std::aligned_alloc(64, bytes == 0 ? 64 : bytes));
  if (p == nullptr) throw std::bad_alloc();
  std::memset(p, 0, bytes);
  return Buffer(p);
}

// ---- Stack ------------------------------------------------------------------

std::unique_ptr<Stack> Stack::Build(const std::vector<LayerSpec>& specs, const BuildContext& context,
                                    std::string name_prefix) {
  std::unique_ptr<Stack> s(new Stack(specs, std::move(name_prefix)));
  for (std::size_t i = 0; i < specs.size(); ++i) {
    LayerBuilder build = FindLayerBuilder(specs[i].type());
    // Every kind common/ reads has a builder (model_test checks the tables agree).
    if (build == nullptr) throw std::logic_error(std::string("nn: no builder for layer type ") + specs[i].type());
    BuiltLayer built = build(LayerBuild{context, specs, i});
    s->layers_.push_back(std::move(built.layer));
    s->rows_.push_back(built.rows);
  }
  const std::size_t n = s->layers_.size();
  s->last_ = n - 1;
  while (s->last_ > 0 && s->layers_[s->last_] == nullptr) --s->last_;
  s->out_buffers_.resize(n);
  s->dout_buffers_.resize(n);
  s->out_.resize(n);
  s->dout_.resize(n);
  s->capacity_.assign(n, 0);
  return s;
}

std::string Stack::NameOf(std::size_t i) const {
  return specs_[i].name.empty() ? name_prefix_ + specs_[i].type() + std::to_string(i) : specs_[i].name;
}

dnnl::memory::desc Stack::Prepare(int64_t n, const dnnl::memory::desc& in) {
  // Image layers hand each other their layouts; everything else reads
  // plain rows (nn/layers.h).
  auto plain = [&](const std::vector<int64_t>& shape, int64_t rows) {
    if (shape.size() == 3) return Tensor(n, shape[0], shape[1], shape[2]);
    int64_t size = 1;
    for (int64_t d : shape) size *= d;
    return Matrix(n * rows, size / rows);
  };
  dnnl::memory::desc md = in;
  for (std::size_t i = 0; i < layers_.size(); ++i) {
    const LayerSpec& l = specs_[i];
    if (layers_[i] == nullptr) {  // fused: the layer before computes its output
      out_[i] = out_[i - 1];
      dout_[i] = dout_[i - 1];
      continue;
    }
    const bool image_in = l.in_shape.size() == 3 && md.dims().size() == 4;
    md = layers_[i]->Prepare(n * rows_[i], image_in ? md : plain(l.in_shape, rows_[i]));
    const auto floats = static_cast<int64_t>(std::max<std::size_t>(md.get_size() / sizeof(float),
                                                                   static_cast<std::size_t>(n * l.out_size())));
    if (floats > capacity_[i]) {
      out_buffers_[i] = AllocateFloats(floats);
      dout_buffers_[i] = AllocateFloats(floats);
      out_[i] = out_buffers_[i].get();
      dout_[i] = dout_buffers_[i].get();
      capacity_[i] = floats;
    }
  }
  return md;
}

const float* Stack::Forward(const float* x, int64_t n, Pass pass, const std::function<void(std::size_t)>& before_layer) {
  const float* in = x;
  for (std::size_t i = 0; i < layers_.size(); ++i) {
    if (layers_[i] != nullptr) {
      // A layer computing the ones fused into it needs their weights too.
      if (before_layer)
        for (std::size_t j = i; j == i || (j < layers_.size() && layers_[j] == nullptr); ++j) before_layer(j);
      layers_[i]->Forward(in, out_[i], n * rows_[i], pass);
    }
    in = out_[i];
  }
  return in;
}

void Stack::Backward(const float* x, const float* dy, float* dx, int64_t n,
                     const std::function<void(std::size_t)>& after_layer) {
  for (std::size_t i = layers_.size(); i-- > 0;) {
    if (layers_[i] == nullptr) continue;
    const float* input = i == 0 ? x : out_[i - 1];
    float* dinput = i == 0 ? dx : dout_[i - 1];
    // The last layer that computes reads the caller's gradient where it
    // gives one (a fused layer after it shares its buffers).
    layers_[i]->Backward(input, out_[i], i == last_ && dy != nullptr ? dy : dout_[i], dinput, n * rows_[i]);
    if (after_layer) after_layer(i);
  }
}

void Stack::set_samples(const PassSamples& samples) {
  for (auto& l : layers_)
    if (l != nullptr) l->set_samples(samples);
}

void Stack::BeginStatistics() {
  for (auto& l : layers_)
    if (l != nullptr) l->BeginStatistics();
}

void Stack::EndStatistics() {
  for (auto& l : layers_)
    if (l != nullptr) l->EndStatistics();
}

void Stack::AppendStatistics(Layer::NamedValues* out) const {
  for (std::size_t i = 0; i < layers_.size(); ++i)
    if (layers_[i] != nullptr) layers_[i]->AppendStatistics(specs_[i].name, out);
}

void Stack::AppendImplementations(std::vector<std::string>* out) const {
  for (std::size_t i = 0; i < layers_.size(); ++i)
    if (layers_[i] != nullptr) layers_[i]->AppendImplementations(NameOf(i), out);
}

// ---- Block ------------------------------------------------------------------

namespace {

// y = a + b and y += b, elementwise, in the CPU's widest vectors (a
// residual block's sum and its input gradient; y may be a or b).
PSF_VECTOR_CLONES void AddInto(float* y, const float* a, const float* b, int64_t n) {
  for (int64_t i = 0; i < n; ++i) y[i] = a[i] + b[i];
}
PSF_VECTOR_CLONES void AddTo(float* y, const float* b, int64_t n) {
  for (int64_t i = 0; i < n; ++i) y[i] += b[i];
}

}  // namespace

struct Block::Plan {
  int64_t floats;  // of y (padding included)
  // A residual block whose body's output layout differs from x's: the
  // reorders between them.
  bool reorder = false;
  dnnl::memory x_view, body_view;  // unbound, in x's and the body's layouts
  dnnl::reorder to_x, to_body;
};

Block::Block(DnnlContext* ctx, std::unique_ptr<Stack> body, bool residual)
    : ctx_(ctx), body_(std::move(body)), residual_(residual) {}
Block::~Block() = default;

dnnl::memory::desc Block::Prepare(int64_t n, const dnnl::memory::desc& in) {
  const dnnl::memory::desc out = body_->Prepare(n, in);
  const dnnl::memory::desc& y = residual_ ? in : out;
  Plan& plan = FindOrMake(plans_, n, [&] {
    auto p = std::make_unique<Plan>();
    p->floats = static_cast<int64_t>(y.get_size() / sizeof(float));
    // Plain rows are the same bytes however a layer groups them ([n, positions
    // * features] or [n * positions, features]); blocked images may differ.
    p->reorder = residual_ && out != in && !(IsPlain(out) && IsPlain(in));
    if (p->reorder) {
      p->x_view = Unbound(in, ctx_->engine);
      p->body_view = Unbound(out, ctx_->engine);
      p->to_x = dnnl::reorder(p->body_view, p->x_view);
      p->to_body = dnnl::reorder(p->x_view, p->body_view);
    }
    return p;
  });
  if (plan.reorder) Record("reorder", ImplOf(plan.to_x));
  return y;
}

void Block::Forward(const float* x, float* y, int64_t n, Pass pass) {
  Plan& p = Find(plans_, n);
  const float* out = body_->Forward(x, n, pass);
  if (!residual_) {
    std::memcpy(y, out, static_cast<std::size_t>(p.floats) * sizeof(float));
    return;
  }
  if (p.reorder) {
    Point(p.body_view, out);
    Point(p.x_view, y);
    p.to_x.execute(ctx_->stream, {{DNNL_ARG_FROM, p.body_view}, {DNNL_ARG_TO, p.x_view}});
    ctx_->stream.wait();
    out = y;
  }
  AddInto(y, x, out, p.floats);
}

void Block::Backward(const float* x, const float*, const float* dy, float* dx, int64_t n) {
  Plan& p = Find(plans_, n);
  if (p.reorder) {
    Point(p.x_view, dy);
    Point(p.body_view, body_->output_gradient());
    p.to_body.execute(ctx_->stream, {{DNNL_ARG_FROM, p.x_view}, {DNNL_ARG_TO, p.body_view}});
    ctx_->stream.wait();
    body_->Backward(x, nullptr, dx, n);
  } else {
    body_->Backward(x, dy, dx, n);
  }
  // A residual block's input gradient comes through the body and around it.
  if (residual_ && dx != nullptr) AddTo(dx, dy, p.floats);
}

void Block::AppendImplementations(const std::string& name, std::vector<std::string>* out) const {
  Layer::AppendImplementations(name, out);
  body_->AppendImplementations(out);
}

}  // namespace psforge::nn
