// The model section of the job config: the model kinds, sequential
// models' layers, and their names.
#include <filesystem>

#include <nlohmann/json.hpp>

#include "common/config_reader.h"

namespace psforge {
namespace config_internal {

void ReadLayer(const YAML::Node& n, const std::string& section, LayerOptions* l, Status* err) {
  if (n.IsScalar()) {  // "- relu": a layer without settings
    YAML::Node map;
    map["type"] = n.Scalar();
    return ReadLayer(map, section, l, err);
  }
  MapReader r(n, section, err);
  if (!r.Has("type")) return r.Fail(r.Field("type"), "required: the layer's type");
  std::string type;
  r.String("type", &type);
  if (!err->ok()) return;
  const LayerKindInfo* kind = FindLayerKind(type);
  if (kind == nullptr) {
    std::string allowed;
    for (const LayerKindInfo& k : LayerKinds()) allowed += (allowed.empty() ? "" : ", ") + std::string(k.type);
    return r.Fail(r.Field("type"), "must be one of " + allowed + "; got '" + type + "'");
  }
  l->settings = kind->read(r);
  r.RejectUnknownKeys();
}

void ReadLayers(const YAML::Node& n, const std::string& section, std::vector<LayerOptions>* layers, Status* err) {
  if (!n || !n.IsSequence() || n.size() == 0)
    return void(*err = InvalidArgument("field '" + section + "': expected a list of layers, each a type (relu, "
                                       "flatten, ...) or {type: ..., settings}"));
  if (n.size() > 256) return void(*err = InvalidArgument("field '" + section + "': at most 256 layers"));
  layers->clear();
  for (std::size_t i = 0; i < n.size() && err->ok(); ++i)
    ReadLayer(n[i], section + "[" + std::to_string(i) + "]", &layers->emplace_back(), err);
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

void ReadModel(const YAML::Node& n, const std::string& base_dir, ModelOptions* m, Status* err) {
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
  r.String("init_from", &m->init_from);
  r.StringList("init_fresh", &m->init_fresh);
  r.StringList("freeze", &m->freeze);
  if (err->ok() && !m->init_from.empty()) {
    m->init_from = ResolvePath(base_dir, m->init_from);
    std::error_code ec;
    if (!std::filesystem::exists(m->init_from, ec))
      return r.Fail("model.init_from", "no such file or folder: " + m->init_from +
                                           " (an .npz of tensors, a job's config, or a run directory)");
  }
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
  if (m->input_shape.size() > 3) return r.Fail("model.input_shape", "expected [features] or [channels, height, width]");
  ReadLayers(layers, "model.layers", &m->layers, err);
}

nlohmann::json LayerToJson(const LayerOptions& l) {
  nlohmann::json j = {{"type", l.type()}};
  l.settings->ToJson(&j);
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

const char* ActivationName(Activation a) {
  switch (a) {
    case Activation::kRelu: return "relu";
    case Activation::kSigmoid: return "sigmoid";
    case Activation::kTanh: return "tanh";
  }
  return "?";
}

}  // namespace psforge
