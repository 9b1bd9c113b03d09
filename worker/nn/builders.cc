// The worker's half of each layer kind (common/layer_kinds.h): how its
// oneDNN layer is built from its LayerSpec, keyed by the kind's name.
#include <string_view>
#include <utility>

#include "worker/nn/conv.h"
#include "worker/nn/norm.h"
#include "worker/nn/sequence.h"
#include "worker/nn/stack.h"
#include "worker/nn/transformer.h"

namespace psforge::nn {
namespace {

template <typename L>
BuiltLayer Made(std::unique_ptr<L> layer, int64_t rows = 1) {
  return {std::move(layer), rows};
}

// A linear layer whose weight is the first rows of the embedding table
// (linear `tied`): its backward writes those rows' gradient and clears the
// table's other rows ([MASK]'s), before the embedding adds its own.
class TiedLinear final : public Layer {
 public:
  TiedLinear(std::unique_ptr<Linear> linear, float* other_rows, int64_t other_floats)
      : linear_(std::move(linear)), other_rows_(other_rows), other_floats_(other_floats) {}
  dnnl::memory::desc Prepare(int64_t n, const dnnl::memory::desc& in) override { return linear_->Prepare(n, in); }
  void Forward(const float* x, float* y, int64_t n, Pass pass) override { linear_->Forward(x, y, n, pass); }
  void MoveGradients(const float* from, float* to) override {
    linear_->MoveGradients(from, to);
    other_rows_ = MovedTo(other_rows_, from, to);
  }
  void Backward(const float* x, const float* y, const float* dy, float* dx, int64_t n) override {
    linear_->Backward(x, y, dy, dx, n);
    std::fill(other_rows_, other_rows_ + other_floats_, 0.0f);
  }
  void AppendImplementations(const std::string& name, std::vector<std::string>* out) const override {
    linear_->AppendImplementations(name, out);
  }

 private:
  std::unique_ptr<Linear> linear_;
  float* other_rows_;
  int64_t other_floats_;
};

BuiltLayer BuildLinear(const LayerBuild& b) {
  const LayerSpec& l = b.spec();
  // On [positions, features]: the same layer at every position (n * positions rows).
  const int64_t rows = l.in_shape.size() == 2 ? l.in_shape[0] : 1;
  auto linear = std::make_unique<Linear>(b.context.ctx, l.in_shape.back(), l.out_shape.back());
  linear->Bind(b.weight(0), b.weight(1), b.grad(0), b.grad(1));
  if (!l.As<LinearLayer>()->tied) return Made(std::move(linear), rows);
  const TensorSpec& table = (*b.context.tensors)[l.tensors[0]];
  const int64_t used = l.out_shape.back() * l.in_shape.back();
  return Made(std::make_unique<TiedLinear>(std::move(linear), b.grad(0) + used, table.size() - used), rows);
}

BuiltLayer BuildConv(const LayerBuild& b) {
  const LayerSpec& l = b.spec();
  const ConvLayer& o = *l.As<ConvLayer>();
  auto conv = std::make_unique<Conv2d>(
      b.context.ctx, Window{l.in_shape[0], l.in_shape[1], l.in_shape[2], o.filters, o.kernel, o.stride, o.padding},
      b.context.choose_layouts);
  conv->Bind(b.weight(0), b.weight(1), b.grad(0), b.grad(1));
  return Made(std::move(conv));
}

BuiltLayer BuildMaxPool(const LayerBuild& b) {
  const LayerSpec& l = b.spec();
  const MaxPoolLayer& o = *l.As<MaxPoolLayer>();
  return Made(std::make_unique<MaxPool2d>(
      b.context.ctx, Window{l.in_shape[0], l.in_shape[1], l.in_shape[2], l.in_shape[0], o.kernel, o.stride, o.padding}));
}

BuiltLayer BuildBatchNorm(const LayerBuild& b) {
  const LayerSpec& l = b.spec();
  auto image = [&](int d) { return l.in_shape.size() == 3 ? l.in_shape[d] : 0; };
  // A ReLU right after is fused into it (its builder makes no layer).
  const bool relu_next = b.next() != nullptr && b.next()->As<ReluLayer>() != nullptr;
  auto bn = std::make_unique<BatchNorm>(b.context.ctx, l.in_shape[0], image(1), image(2), relu_next);
  bn->Bind(b.weight(0), b.weight(1), b.grad(0), b.grad(1));
  return Made(std::move(bn));
}

BuiltLayer BuildDropout(const LayerBuild& b) {
  const LayerSpec& l = b.spec();
  return Made(std::make_unique<Dropout>(b.context.ctx, l.As<DropoutLayer>()->rate, l.in_size(),
                                        b.context.seed + b.index));
}

template <dnnl::algorithm kAlg>
BuiltLayer BuildEltwise(const LayerBuild& b) {
  return Made(std::make_unique<Eltwise>(b.context.ctx, kAlg, b.spec().in_size()));
}

BuiltLayer BuildRelu(const LayerBuild& b) {
  if (b.prev() != nullptr && b.prev()->As<BatchNormLayer>() != nullptr) return {};  // fused into the batchnorm
  return BuildEltwise<dnnl::algorithm::eltwise_relu_use_dst_for_bwd>(b);
}

BuiltLayer BuildFlatten(const LayerBuild& b) {
  const LayerSpec& l = b.spec();
  return Made(l.in_shape.size() == 3 ? std::make_unique<Flatten>(b.context.ctx, l.in_shape[0], l.in_shape[1], l.in_shape[2])
                                     : std::make_unique<Flatten>(b.context.ctx, l.in_size(), 1, 1));
}

// An embedding right before an LSTM is fused into it (Lstm::BindTable):
// the LSTM embeds the ids itself and projects the table rather than every
// position. Not a table a tied head shares (its gradient accumulates).
bool FusedIntoLstm(const LayerSpec* embedding, const LayerSpec* next) {
  return embedding != nullptr && next != nullptr && embedding->As<EmbeddingLayer>() != nullptr &&
         next->As<LstmLayer>() != nullptr && !embedding->gradient_shared;
}

BuiltLayer MakeLstm(const LayerBuild& b, const LayerSpec& l) {
  const auto& tensors = *b.context.tensors;
  auto weight = [&](int k) { return b.context.weights + tensors[l.tensors[k]].offset; };
  auto grad = [&](int k) { return b.context.grads + tensors[l.tensors[k]].offset; };
  auto lstm = std::make_unique<Lstm>(b.context.ctx, l.in_shape[0], l.in_shape[1], l.out_shape[1]);
  lstm->Bind(weight(0), weight(1), weight(2), grad(0), grad(1), grad(2));
  return Made(std::move(lstm));
}

BuiltLayer BuildEmbedding(const LayerBuild& b) {
  const LayerSpec& l = b.spec();
  const TensorSpec& table = (*b.context.tensors)[l.tensors[0]];
  if (FusedIntoLstm(&l, b.next())) {
    BuiltLayer built = MakeLstm(b, *b.next());
    static_cast<Lstm*>(built.layer.get())->BindTable(b.weight(0), b.grad(0), table.shape[0]);
    return built;
  }
  auto embedding = std::make_unique<Embedding>(table.shape[0], table.shape[1], l.in_shape[0]);
  embedding->Bind(b.weight(0), b.grad(0));
  embedding->set_accumulate(l.gradient_shared);
  return Made(std::move(embedding));
}

BuiltLayer BuildLstm(const LayerBuild& b) {
  if (FusedIntoLstm(b.prev(), &b.spec())) return {};  // the embedding before built it
  return MakeLstm(b, b.spec());
}

BuiltLayer BuildPosition(const LayerBuild& b) {
  const LayerSpec& l = b.spec();
  auto position = std::make_unique<PositionEmbedding>(l.in_shape[0], l.in_shape[1]);
  position->Bind(b.weight(0), b.grad(0));
  return Made(std::move(position));
}

BuiltLayer BuildLayerNorm(const LayerBuild& b) {
  const LayerSpec& l = b.spec();
  auto norm = std::make_unique<LayerNorm>(b.context.ctx, l.in_shape.back());
  norm->Bind(b.weight(0), b.weight(1), b.grad(0), b.grad(1));
  // On [positions, features]: each position is a row.
  return Made(std::move(norm), l.in_shape.size() == 2 ? l.in_shape[0] : 1);
}

BuiltLayer BuildAttention(const LayerBuild& b) {
  const LayerSpec& l = b.spec();
  const AttentionLayer& o = *l.As<AttentionLayer>();
  auto attention = std::make_unique<Attention>(b.context.ctx, l.in_shape[0], l.in_shape[1], o.heads, o.causal,
                                               o.dropout, b.context.seed + b.index);
  attention->Bind(b.weight(0), b.weight(1), b.weight(2), b.weight(3), b.grad(0), b.grad(1), b.grad(2), b.grad(3));
  return Made(std::move(attention));
}

BuiltLayer BuildMeanPool(const LayerBuild& b) {
  const LayerSpec& l = b.spec();
  return Made(std::make_unique<MeanPool>(l.in_shape[0], l.in_shape[1]));
}

BuiltLayer BuildResidual(const LayerBuild& b) {
  const LayerSpec& l = b.spec();
  BuildContext inner = b.context;
  inner.seed = (b.context.seed + b.index) * 1000003;  // its dropouts draw apart from the outer stack's
  return Made(std::make_unique<Block>(b.context.ctx, Stack::Build(l.body, inner, l.name + "."), true));
}

// Its layers (two residual blocks) in sequence.
BuiltLayer BuildTransformer(const LayerBuild& b) {
  const LayerSpec& l = b.spec();
  BuildContext inner = b.context;
  inner.seed = (b.context.seed + b.index) * 1000003;
  return Made(std::make_unique<Block>(b.context.ctx, Stack::Build(l.body, inner, l.name + "."), false));
}

struct Entry {
  std::string_view type;
  LayerBuilder build;
};

constexpr Entry kBuilders[] = {
    {LinearLayer::kType, BuildLinear},
    {ConvLayer::kType, BuildConv},
    {MaxPoolLayer::kType, BuildMaxPool},
    {BatchNormLayer::kType, BuildBatchNorm},
    {DropoutLayer::kType, BuildDropout},
    {FlattenLayer::kType, BuildFlatten},
    {ReluLayer::kType, BuildRelu},
    {SigmoidLayer::kType, BuildEltwise<dnnl::algorithm::eltwise_logistic_use_dst_for_bwd>},
    {TanhLayer::kType, BuildEltwise<dnnl::algorithm::eltwise_tanh_use_dst_for_bwd>},
    {EmbeddingLayer::kType, BuildEmbedding},
    {LstmLayer::kType, BuildLstm},
    {PositionLayer::kType, BuildPosition},
    {LayerNormLayer::kType, BuildLayerNorm},
    {GeluLayer::kType, BuildEltwise<dnnl::algorithm::eltwise_gelu_erf>},
    {AttentionLayer::kType, BuildAttention},
    {TransformerLayer::kType, BuildTransformer},
    {MeanPoolLayer::kType, BuildMeanPool},
    {ResidualLayer::kType, BuildResidual},
};

}  // namespace

LayerBuilder FindLayerBuilder(std::string_view type) {
  for (const Entry& e : kBuilders)
    if (e.type == type) return e.build;
  return nullptr;
}

}  // namespace psforge::nn
