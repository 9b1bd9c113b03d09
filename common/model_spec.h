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
#include <span>
#include <string>
#include <vector>

#include "common/config.h"

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
  kSoftmaxCrossEntropy, kSigmoidBinaryCrossEntropy, kMeanSquaredError, kSequenceSoftmaxCrossEntropy
};

// One layer with its per-sample input and output shapes ([channels, height,
// width], [features] or [positions, features]) and the tensors it owns:
// weight and bias for linear and conv, scale and shift for batchnorm, the
// table (weight [vocabulary, dim]) for an embedding, and for an lstm
// weight_ih [4 hidden, in], weight_hh [4 hidden, hidden] (PyTorch's layout,
// gates in the order input, forget, cell, output) and one bias [4 hidden]
// (PyTorch's bias_ih + bias_hh).
struct LayerSpec {
  LayerOptions options;
  std::string name;  // "fc0", "conv1", "bn0", ...: its tensors are name.weight, name.bias
  std::vector<int64_t> in_shape, out_shape;
  int weight_tensor = -1, bias_tensor = -1;  // indices into ModelSpec::tensors
  int recurrent_tensor = -1;                 // lstm: weight_hh
  LayerKind kind() const { return options.kind; }
  int64_t in_size() const;
  int64_t out_size() const;
};

class ModelSpec {
 public:
  // `inputs` is the number of features per sample (from the data set);
  // `classes` > 0 replaces model.classes (text: the vocabulary's size);
  // `categorical`: the categorical fields of a click log (ctr). An error
  // names the layer or table whose shape does not work out.
  static Result<ModelSpec> FromConfig(const ModelOptions& model, int64_t inputs, int64_t classes = 0,
                                      int64_t categorical = 0);

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
    return loss_ == LossKind::kSequenceSoftmaxCrossEntropy ? layers_.back().out_shape[0] : 1;
  }
  LossKind loss() const { return loss_; }
  // Whether evaluation needs batch statistics estimated first (batchnorm).
  bool has_batch_statistics() const;

  // Writes the initial values of keys [range.begin, range.end) into `out`
  // (out.size() == range.size()).
  void Initialize(KeyRange range, std::span<float> out) const;

 private:
  std::vector<TensorSpec> tensors_;
  std::vector<LayerSpec> layers_;
  std::vector<TableOptions> tables_;
  int64_t num_params_ = 0;
  int64_t inputs_ = 0;
  int64_t dense_inputs_ = 0;
  std::vector<uint16_t> field_tables_;
  std::vector<int64_t> field_offsets_;
  LossKind loss_ = LossKind::kSoftmaxCrossEntropy;
  uint64_t init_seed_ = 0;
};

}  // namespace psforge
