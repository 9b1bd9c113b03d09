// The model spec: the named tensors of a job's model, laid out in one
// flattened key space [0, P), each with a seeded initialiser.
//
// Derived deterministically from the config, so every process that reads the
// same config agrees on names, shapes, offsets and initial values. A tensor's
// initial value at element i depends only on (init_seed, tensor name, i), so
// any key range can be initialised on its own (a server fills its shard
// without a round trip). Immutable after construction; thread-safe to read.
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "common/config.h"
#include "common/layer_kinds.h"

namespace psforge {

enum class InitKind { kZeros, kOnes, kUniform, kNormal };

struct TensorSpec {
  std::string name;            // e.g. "fc0.weight"
  std::vector<int64_t> shape;  // row-major; Linear weights are [out, in], conv [out, in, kh, kw]
  InitKind init = InitKind::kZeros;
  float bound = 0.0f;          // kUniform: values in [-bound, bound); kNormal: the standard deviation
  int64_t offset = 0;          // first key of the tensor in the flattened space
  int64_t size() const;
};

// A half-open range of keys [begin, end).
struct KeyRange {
  int64_t begin = 0;
  int64_t end = 0;
  int64_t size() const { return end - begin; }
  bool operator==(const KeyRange&) const = default;
};

// Splits [0, total) into `parts` contiguous ranges whose sizes differ by at most one.
KeyRange PartitionKeys(int64_t total, int64_t parts, int64_t index);
// The part of PartitionKeys(total, parts, *) that holds key `key`.
int64_t PartOfKey(int64_t total, int64_t parts, int64_t key);
// How many parts a server's range of `keys` travels in through ZeroMQ
// frames (cluster.chunk_kb): the count that brings each of its equal parts
// (PartitionKeys) nearest `chunk_kb` KiB of float32 keys; 1 when chunk_kb is 0.
int64_t PartCount(int64_t keys, int64_t chunk_kb);

// How a layer stack is derived from the config.
// kSequenceSoftmaxCrossEntropy: one softmax cross-entropy per position of
// a [positions, classes] output, averaged over positions and samples.
enum class LossKind {
  kSoftmaxCrossEntropy, kSigmoidBinaryCrossEntropy, kMeanSquaredError, kSequenceSoftmaxCrossEntropy,
  kMaskedSequenceSoftmaxCrossEntropy  // the same at the masked positions only (data.task masked)
};

// One layer with its per-sample input and output shapes and the tensors it
// owns (indices into ModelSpec::tensors, in the order its kind declares
// them: common/layer_kinds.h); a residual block has its layers as `body`.
struct LayerSpec {
  LayerOptions options;
  std::string name;  // "fc0", "conv1", "res0.bn0", ...: its tensors are name.weight, name.bias
  std::vector<int64_t> in_shape, out_shape;
  std::vector<int> tensors;
  std::vector<LayerSpec> body;
  // A tied head later in the stack writes part of this layer's (the
  // embedding's) weight gradient before this layer's backward runs, which
  // then adds to it instead of overwriting it.
  bool gradient_shared = false;
  const char* type() const { return options.type(); }
  template <typename S>
  const S* As() const {
    return options.As<S>();
  }
  int64_t in_size() const;
  int64_t out_size() const;
  // Its tensors and those of its body's layers.
  std::vector<int> AllTensors() const;
};

class ModelSpec;

// What a layer kind's Infer works with (LayerSettings::Infer): its input,
// the model around it, and the means to declare its name, output shape and
// tensors, and a block's own stack of layers.
class LayerShaper {
 public:
  const std::vector<int64_t>& in() const { return layer_->in_shape; }
  // The classes of the loss: model.classes, or the data's (text: the
  // vocabulary's size, or data.classes).
  int64_t classes() const { return classes_; }
  // The ids an input holds (DataShape::tokens).
  int64_t tokens() const;
  // Whether the model is a linear or logistic regression (zero initial weights).
  bool regression() const { return regression_; }
  // An InvalidArgument naming the layer, its kind and its input.
  Status Error(const std::string& what) const;
  // Names the layer `prefix` and how many layers of its stack took the
  // prefix before it ("fc0", "fc1"); inside a block, under the block's name.
  void Name(const std::string& prefix);
  // Names the layer exactly `name` (under a block's name).
  void SetName(const std::string& name);
  void SetOut(std::vector<int64_t> shape) { layer_->out_shape = std::move(shape); }
  // Declares the tensor <layer name>.<suffix> (after Name).
  void AddTensor(const std::string& suffix, std::vector<int64_t> shape, InitKind init, float bound);
  // Makes the model's embedding table (an embedding layer earlier in the
  // model's own list, [ids, in] with ids >= out) the layer's first tensor,
  // shared (after Name); an error names what does not fit.
  Status TieToEmbedding(int64_t in, int64_t out);
  // Makes `layers` the layer's body, on its input (after Name); returns the
  // body's output shape.
  Result<std::vector<int64_t>> AddBody(const std::vector<LayerOptions>& layers);

 private:
  friend class ModelSpec;
  LayerShaper(ModelSpec* spec, LayerSpec* layer, std::vector<std::pair<std::string, int>>* counts,
              std::string name_prefix, std::string where, int64_t classes, bool regression)
      : spec_(spec), layer_(layer), counts_(counts), name_prefix_(std::move(name_prefix)),
        where_(std::move(where)), classes_(classes), regression_(regression) {}
  ModelSpec* spec_;
  LayerSpec* layer_;
  std::vector<std::pair<std::string, int>>* counts_;  // per name prefix, in this stack
  std::string name_prefix_;                          // "" or the enclosing block's name and "."
  std::string where_;                                // "model.layers[3]"
  int64_t classes_;
  bool regression_;
};

// The shape of the data a model is built for: features per sample; the
// number of classes when the data decides it (text: the vocabulary, or
// data.classes; 0: model.classes); the ids an input may hold (text: the
// vocabulary's, and [MASK] for the tasks masked and classify; 0: classes);
// whether the loss is over masked positions only (data.task masked).
struct DataShape {
  int64_t features = 0;
  int64_t classes = 0;
  int64_t categorical = 0;  // click logs: categorical fields a row
  int64_t tokens = 0;
  bool masked = false;
};

class ModelSpec {
 public:
  // `inputs` is the number of features per sample (from the data set);
  // `classes` > 0 replaces model.classes (text: the vocabulary's size);
  // `categorical`: the categorical fields of a click log (ctr). An error
  // names the layer or table whose shape does not work out.
  static Result<ModelSpec> FromConfig(const ModelOptions& model, const DataShape& data);
  static Result<ModelSpec> FromConfig(const ModelOptions& model, int64_t inputs, int64_t classes = 0,
                                      int64_t categorical = 0) {
    return FromConfig(model, DataShape{inputs, classes, categorical});
  }

  const std::vector<TensorSpec>& tensors() const { return tensors_; }
  const std::vector<LayerSpec>& layers() const { return layers_; }
  int64_t num_params() const { return num_params_; }
  // The sparse tables, outside the key space: each table's seed is its
  // own, or (0) derived from init_seed and its index.
  const std::vector<TableOptions>& tables() const { return tables_; }
  // The features of the network's input: the data's dense features, then
  // (ctr) each categorical field's pooled embedding.
  int64_t inputs() const { return inputs_; }
  // ctr: the data's dense features (inputs() without the embeddings), and
  // per categorical field its table and the first input of its embedding.
  int64_t dense_inputs() const { return dense_inputs_; }
  int64_t categorical() const { return static_cast<int64_t>(field_tables_.size()); }
  uint16_t field_table(int64_t field) const { return field_tables_[field]; }
  int64_t field_offset(int64_t field) const { return field_offsets_[field]; }
  int64_t outputs() const { return layers_.back().out_size(); }
  // Classes of the softmax (the last dimension of the output).
  int64_t classes() const { return layers_.back().out_shape.back(); }
  // Positions per sample with a target each: 1, or a sequence's length.
  int64_t target_width() const {
    return loss_ == LossKind::kSequenceSoftmaxCrossEntropy || loss_ == LossKind::kMaskedSequenceSoftmaxCrossEntropy
               ? layers_.back().out_shape[0]
               : 1;
  }
  LossKind loss() const { return loss_; }
  // The keys of the tensors model.freeze names, as sorted disjoint ranges
  // relative to `range`'s start and cut to it (an optimizer's keys).
  std::vector<KeyRange> FrozenIn(KeyRange range) const;
  // Whether evaluation needs batch statistics estimated first (batchnorm).
  bool has_batch_statistics() const;

  // Reads model.init_from (an .npz of named tensors, model.init_fresh
  // excepted; see ModelOptions), whose values Initialize then gives those
  // tensors. One error names every tensor missing from the file, of another
  // shape there, or there but not in the model. A no-op without init_from.
  Status LoadInitialValues(const ModelOptions& model);

  // Writes the initial values of keys [range.begin, range.end) into `out`
  // (out.size() == range.size()).
  void Initialize(KeyRange range, std::span<float> out) const;

 private:
  friend class LayerShaper;
  // Infers the layers of a stack (the model's, or a block's body) from
  // `shape` on; returns the last one's output shape. `where`: the stack's
  // config field ("model.layers"), `name_prefix`: its block's name and "."
  Result<std::vector<int64_t>> InferStack(const std::vector<LayerOptions>& layers, std::vector<int64_t> shape,
                                          const std::string& where, const std::string& name_prefix,
                                          int64_t classes, bool regression, std::vector<LayerSpec>* out);

  std::vector<TensorSpec> tensors_;
  std::vector<LayerSpec> layers_;
  std::vector<TableOptions> tables_;
  int64_t num_params_ = 0;
  int64_t inputs_ = 0;
  int64_t dense_inputs_ = 0;
  std::vector<uint16_t> field_tables_;
  std::vector<int64_t> field_offsets_;
  LossKind loss_ = LossKind::kSoftmaxCrossEntropy;
  int64_t tokens_ = 0;  // DataShape::tokens, or the classes
  std::vector<KeyRange> frozen_;  // model.freeze's tensors, merged, in key order
  uint64_t init_seed_ = 0;
  // Per tensor, the values read by LoadInitialValues (empty: its initialiser).
  std::shared_ptr<const std::vector<std::vector<float>>> initial_values_;
};

}  // namespace psforge
