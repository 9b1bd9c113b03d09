// The model section of the job config: the model kinds, sequential
// models' layers, and their names.
#include <nlohmann/json.hpp>

#include "common/config_reader.h"

namespace psforge {
namespace config_internal {

void ReadLayer(const YAML::Node& n, const std::string& section, LayerOptions* l, Status* err) {
  static const std::initializer_list<std::pair<const char*, LayerKind>> kKinds = {
      {"linear", LayerKind::kLinear},       {"conv", LayerKind::kConv},
      {"maxpool", LayerKind::kMaxPool},     {"batchnorm", LayerKind::kBatchNorm},
      {"dropout", LayerKind::kDropout},     {"flatten", LayerKind::kFlatten},
      {"relu", LayerKind::kRelu},           {"sigmoid", LayerKind::kSigmoid},
      {"tanh", LayerKind::kTanh},           {"embedding", LayerKind::kEmbedding},
      {"lstm", LayerKind::kLstm}};
  if (n.IsScalar()) {  // "- relu": a layer without settings
    YAML::Node map;
    map["type"] = n.Scalar();
    return ReadLayer(map, section, l, err);
  }
  MapReader r(n, section, err);
  if (!r.Has("type")) return r.Fail(r.Field("type"), "required: the layer's type");
  r.Enum("type", &l->kind, kKinds);
  if (!err->ok()) return;
  switch (l->kind) {
    case LayerKind::kLinear:
      r.Int("out", &l->size, 1, 1 << 24);  // absent: the number of classes
      break;
    case LayerKind::kConv:
      l->kernel = 3;
      l->stride = 1;
      r.Int("filters", &l->size, 1, 1 << 16);
      if (!r.Has("filters")) r.Fail(r.Field("filters"), "required for a conv layer: its output channels");
      r.Int("kernel", &l->kernel, 1, 64);
      r.Int("stride", &l->stride, 1, 64);
      r.Int("padding", &l->padding, 0, 64);
      break;
    case LayerKind::kMaxPool:
      l->kernel = 2;
      r.Int("kernel", &l->kernel, 1, 64);
      l->stride = l->kernel;
      r.Int("stride", &l->stride, 1, 64);
      r.Int("padding", &l->padding, 0, 64);
      if (err->ok() && l->padding >= l->kernel)
        r.Fail(r.Field("padding"), "must be smaller than the kernel (" + std::to_string(l->kernel) + ")");
      break;
    case LayerKind::kDropout:
      r.Double("rate", &l->rate, 0.0, 1.0);
      break;
    case LayerKind::kEmbedding:
      r.Int("dim", &l->size, 1, 1 << 16);
      if (!r.Has("dim")) r.Fail(r.Field("dim"), "required for an embedding: the size of each character's vector");
      break;
    case LayerKind::kLstm:
      r.Int("hidden", &l->size, 1, 1 << 16);
      if (!r.Has("hidden")) r.Fail(r.Field("hidden"), "required for an lstm layer: its hidden units");
      break;
    default:
      break;
  }
  r.RejectUnknownKeys();
}

void ReadTable(const YAML::Node& n, const std::string& section, TableOptions* t, Status* err) {
  MapReader r(n, section, err);
  r.String("name", &t->name);
  if (err->ok() && t->name.empty()) return r.Fail(r.Field("name"), "required: the table's name");
  r.Int("rows", &t->rows, 1, int64_t{1} << 40);
  r.Int("dim", &t->dim, 1, 1024);
  r.Enum("init", &t->init, {{"uniform", RowInit::kUniform}, {"normal", RowInit::kNormal}});
  r.Double("init_scale", &t->init_scale, 0.0, 1e3);
  r.Enum("optimizer", &t->optimizer,
         {{"sgd", RowOptimizerKind::kSgd}, {"adagrad", RowOptimizerKind::kAdaGrad},
          {"lazy_adam", RowOptimizerKind::kLazyAdam}});
  r.Double("learning_rate", &t->learning_rate, 0.0, 1e6, true);
  r.Double("epsilon", &t->epsilon, 0.0, 1.0, true);
  r.Double("beta1", &t->beta1, 0.0, 1.0 - 1e-12);
  r.Double("beta2", &t->beta2, 0.0, 1.0 - 1e-12);
  r.Double("initial_accumulator", &t->initial_accumulator, 0.0, 1e6);
  r.Uint("seed", &t->seed);
  r.RejectUnknownKeys();
}

nlohmann::json TableToJson(const TableOptions& t) {
  static const char* kInit[] = {"uniform", "normal"};
  static const char* kOptimizer[] = {"sgd", "adagrad", "lazy_adam"};
  return {{"name", t.name},
          {"rows", t.rows},
          {"dim", t.dim},
          {"init", kInit[static_cast<int>(t.init)]},
          {"init_scale", t.init_scale},
          {"optimizer", kOptimizer[static_cast<int>(t.optimizer)]},
          {"learning_rate", t.learning_rate},
          {"epsilon", t.epsilon},
          {"beta1", t.beta1},
          {"beta2", t.beta2},
          {"initial_accumulator", t.initial_accumulator},
          {"seed", t.seed}};
}

void ReadModel(const YAML::Node& n, ModelOptions* m, Status* err) {
  MapReader r(n, "model", err);
  r.Enum("kind", &m->kind,
         {{"mlp", ModelKind::kMlp},
          {"linear_regression", ModelKind::kLinearRegression},
          {"logistic_regression", ModelKind::kLogisticRegression},
          {"sequential", ModelKind::kSequential},
          {"ctr", ModelKind::kCtr}});
  r.IntList("hidden", &m->hidden, 1, 1 << 20);
  r.Enum("activation", &m->activation,
         {{"relu", Activation::kRelu}, {"sigmoid", Activation::kSigmoid}, {"tanh", Activation::kTanh}});
  r.Int("classes", &m->classes, 2, 1 << 20);
  r.Uint("init_seed", &m->init_seed);
  r.IntList("input_shape", &m->input_shape, 1, 1 << 24);
  YAML::Node layers = r.Node("layers");
  YAML::Node tables = r.Node("tables");
  r.RejectUnknownKeys();
  if (!err->ok()) return;
  const bool mlp = m->kind == ModelKind::kMlp, sequential = m->kind == ModelKind::kSequential;
  const bool ctr = m->kind == ModelKind::kCtr;
  if (!mlp && !sequential && r.Has("classes"))
    return r.Fail("model.classes",
                  std::string("only allowed with model.kind mlp or sequential, not ") + ModelKindName(m->kind));
  if (!mlp && !ctr && (r.Has("hidden") || r.Has("activation")))
    return r.Fail(r.Has("hidden") ? "model.hidden" : "model.activation",
                  std::string("only allowed with model.kind mlp or ctr, not ") + ModelKindName(m->kind));
  if (ctr && !r.Has("hidden")) m->hidden = {256, 128};
  if (!ctr && r.Has("tables"))
    return r.Fail("model.tables", std::string("only allowed with model.kind ctr, not ") + ModelKindName(m->kind));
  if (ctr) {
    if (!tables || !tables.IsSequence() || tables.size() == 0)
      return r.Fail("model.tables", "required with model.kind ctr: a list of tables, each {name, rows, dim, ...}: "
                                    "one shared by every categorical field, or one per field");
    if (tables.size() > 64) return r.Fail("model.tables", "at most 64 tables");
    m->tables.clear();
    for (std::size_t i = 0; i < tables.size() && err->ok(); ++i)
      ReadTable(tables[i], "model.tables[" + std::to_string(i) + "]", &m->tables.emplace_back(), err);
    return;
  }
  if (!sequential && (r.Has("layers") || r.Has("input_shape")))
    return r.Fail(r.Has("layers") ? "model.layers" : "model.input_shape",
                  std::string("only allowed with model.kind sequential, not ") + ModelKindName(m->kind));
  if (!sequential) return;
  if (!layers || !layers.IsSequence() || layers.size() == 0)
    return r.Fail("model.layers", "required with model.kind sequential: a list of layers, "
                                  "each a type (relu, flatten, ...) or {type: ..., settings}");
  if (layers.size() > 256) return r.Fail("model.layers", "at most 256 layers");
  if (m->input_shape.size() > 3) return r.Fail("model.input_shape", "expected [features] or [channels, height, width]");
  m->layers.clear();
  for (std::size_t i = 0; i < layers.size() && err->ok(); ++i)
    ReadLayer(layers[i], "model.layers[" + std::to_string(i) + "]", &m->layers.emplace_back(), err);
}

nlohmann::json LayerToJson(const LayerOptions& l) {
  nlohmann::json j = {{"type", LayerKindName(l.kind)}};
  switch (l.kind) {
    case LayerKind::kLinear:
      if (l.size > 0) j["out"] = l.size;
      break;
    case LayerKind::kConv:
      j.update({{"filters", l.size}, {"kernel", l.kernel}, {"stride", l.stride}, {"padding", l.padding}});
      break;
    case LayerKind::kMaxPool:
      j.update({{"kernel", l.kernel}, {"stride", l.stride}, {"padding", l.padding}});
      break;
    case LayerKind::kDropout: j["rate"] = l.rate; break;
    case LayerKind::kEmbedding: j["dim"] = l.size; break;
    case LayerKind::kLstm: j["hidden"] = l.size; break;
    default: break;
  }
  return j;
}

}  // namespace config_internal

const char* ModelKindName(ModelKind k) {
  switch (k) {
    case ModelKind::kMlp: return "mlp";
    case ModelKind::kLinearRegression: return "linear_regression";
    case ModelKind::kLogisticRegression: return "logistic_regression";
    case ModelKind::kSequential: return "sequential";
    case ModelKind::kCtr: return "ctr";
  }
  return "?";
}

const char* LayerKindName(LayerKind k) {
  switch (k) {
    case LayerKind::kLinear: return "linear";
    case LayerKind::kConv: return "conv";
    case LayerKind::kMaxPool: return "maxpool";
    case LayerKind::kBatchNorm: return "batchnorm";
    case LayerKind::kDropout: return "dropout";
    case LayerKind::kFlatten: return "flatten";
    case LayerKind::kRelu: return "relu";
    case LayerKind::kSigmoid: return "sigmoid";
    case LayerKind::kTanh: return "tanh";
    case LayerKind::kEmbedding: return "embedding";
    case LayerKind::kLstm: return "lstm";
  }
  return "?";
}

const char* ActivationName(Activation a) {
  switch (a) {
    case Activation::kRelu: return "relu";
    case Activation::kSigmoid: return "sigmoid";
    case Activation::kTanh: return "tanh";
  }
  return "?";
}

}  // namespace psforge
