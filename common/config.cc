#include "common/config.h"
#include "common/fault_transport.h"

#include <algorithm>
#include <cmath>
#include <numbers>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <limits>
#include <set>
#include <sstream>

#include <nlohmann/json.hpp>
#include <yaml-cpp/yaml.h>

#include "common/config_reader.h"

namespace psforge {

std::string config_internal::ResolvePath(const std::string& base_dir, const std::string& p) {
  if (p.empty() || std::filesystem::path(p).is_absolute() || base_dir.empty()) return p;
  return (std::filesystem::path(base_dir) / p).lexically_normal().string();
}

namespace {

using config_internal::Describe;
using config_internal::LayerToJson;
using config_internal::MapReader;
using config_internal::ReadModel;
using config_internal::ResolvePath;


void ReadData(const YAML::Node& n, const std::string& base_dir, DataOptions* d, Status* err) {
  MapReader r(n, "data", err);
  r.Enum("format", &d->format,
         {{"idx", DataFormat::kIdx}, {"csv", DataFormat::kCsv}, {"text", DataFormat::kText},
          {"criteo", DataFormat::kCriteo}});
  r.String("train_images", &d->train_images);
  r.String("train_labels", &d->train_labels);
  r.String("test_images", &d->test_images);
  r.String("test_labels", &d->test_labels);
  r.Float("pixel_scale", &d->pixel_scale, 0.0, 1e9, true);
  r.Bool("standardize", &d->standardize);
  r.String("train_csv", &d->train_csv);
  r.String("test_csv", &d->test_csv);
  r.Int("label_column", &d->label_column, -1, 1 << 20);
  r.Bool("csv_header", &d->csv_header);
  r.String("train_tsv", &d->train_tsv);
  r.String("test_tsv", &d->test_tsv);
  r.Bool("skip_malformed", &d->skip_malformed);
  r.Int("preload_mb", &d->preload_mb, 0, int64_t{1} << 30);
  r.Int("shard_size", &d->shard_size, 1, int64_t{1} << 40);
  r.StringList("text", &d->text);
  r.StringList("label_names", &d->label_names);
  r.Int("window", &d->window, 1, 1 << 20);
  r.Int("validation_every", &d->validation_every, 2, 1 << 20);
  r.Enum("task", &d->task, {{"next", TextTask::kNext}, {"masked", TextTask::kMasked}, {"classify", TextTask::kClassify}});
  r.StringList("classes", &d->classes);
  r.RejectUnknownKeys();
  if (!err->ok()) return;
  if (d->format != DataFormat::kText && (r.Has("task") || r.Has("classes")))
    return r.Fail(r.Field(r.Has("task") ? "task" : "classes"), "is for data.format text");
  if (d->format == DataFormat::kText) {
    if (d->text.empty())
      return r.Fail(r.Field("text"), "required when data.format is text: a list of files or folders");
    if (d->task == TextTask::kClassify && d->classes.size() < 2)
      return r.Fail(r.Field("classes"), "data.task classify needs at least two classes: the names of files under data.text");
    if (d->task != TextTask::kClassify && !d->classes.empty())
      return r.Fail(r.Field("classes"), "is for data.task classify");
    for (std::size_t i = 0; i < d->classes.size(); ++i)
      for (std::size_t j = 0; j < i; ++j)
        if (d->classes[i] == d->classes[j])
          return r.Fail(r.Field("classes") + "[" + std::to_string(i) + "]", "'" + d->classes[i] + "' is listed twice");
    for (std::size_t i = 0; i < d->text.size(); ++i) {
      d->text[i] = ResolvePath(base_dir, d->text[i]);
      std::error_code ec;
      if (!std::filesystem::exists(d->text[i], ec))
        return r.Fail(r.Field("text") + "[" + std::to_string(i) + "]",
                      "no such file or folder: " + d->text[i] +
                          (d->text[i].find("fortunes") != std::string::npos
                               ? " (it comes with Debian's fortunes package; run scripts/setup.sh)"
                               : ""));
    }
    return;
  }

  std::vector<std::pair<const char*, std::string*>> files;
  if (d->format == DataFormat::kIdx) {
    files = {{"train_images", &d->train_images}, {"train_labels", &d->train_labels},
             {"test_images", &d->test_images}, {"test_labels", &d->test_labels}};
  } else if (d->format == DataFormat::kCriteo) {
    files = {{"train_tsv", &d->train_tsv}, {"test_tsv", &d->test_tsv}};
  } else {
    files = {{"train_csv", &d->train_csv}, {"test_csv", &d->test_csv}};
  }
  for (auto& [key, value] : files) {
    if (value->empty())
      return r.Fail(r.Field(key), std::string("required when data.format is ") +
                                      DataFormatName(d->format));
    *value = ResolvePath(base_dir, *value);
    std::error_code ec;
    if (std::filesystem::is_directory(*value, ec))
      return r.Fail(r.Field(key), *value + " is a directory; expected a file");
    if (!std::filesystem::is_regular_file(*value, ec))
      return r.Fail(r.Field(key), "no such file: " + *value +
                                      (d->format == DataFormat::kIdx
                                           ? " (Fashion-MNIST comes with Debian's "
                                             "dataset-fashion-mnist package; run scripts/setup.sh)"
                                       : d->format == DataFormat::kCriteo
                                           ? " (ps-ctr-data DIR writes a synthetic click log there)"
                                           : ""));
  }
}

void ReadOptimizer(const YAML::Node& n, OptimizerOptions* o, Status* err) {
  MapReader r(n, "optimizer", err);
  r.Enum("kind", &o->kind,
         {{"sgd", OptimizerKind::kSgd}, {"momentum", OptimizerKind::kMomentum},
          {"adam", OptimizerKind::kAdam}, {"adagrad", OptimizerKind::kAdaGrad},
          {"adamw", OptimizerKind::kAdamW}, {"rmsprop", OptimizerKind::kRmsProp}});
  // torch.optim's defaults where a kind's differ from the others'.
  if (o->kind == OptimizerKind::kAdaGrad) o->epsilon = 1e-10;
  if (o->kind == OptimizerKind::kAdamW) o->weight_decay = 0.01;
  if (o->kind == OptimizerKind::kRmsProp) o->momentum = 0.0;
  r.Double("learning_rate", &o->learning_rate, 0.0, 1e6, true);
  r.Double("lr_decay_rate", &o->lr_decay_rate, 0.0, 1.0 + 1e-12, true);
  r.Int("lr_decay_steps", &o->lr_decay_steps, 0, int64_t{1} << 40);
  if (!r.Has("lr_schedule") && o->lr_decay_steps > 0) o->lr_schedule = LrSchedule::kExponential;
  r.Enum("lr_schedule", &o->lr_schedule,
         {{"constant", LrSchedule::kConstant}, {"exponential", LrSchedule::kExponential},
          {"cosine", LrSchedule::kCosine}});
  r.Double("lr_min", &o->lr_min, 0.0, 1e6);
  r.Int("lr_schedule_steps", &o->lr_schedule_steps, 0, int64_t{1} << 40);
  r.Int("lr_warmup_steps", &o->lr_warmup_steps, 0, int64_t{1} << 40);
  if (err->ok() && o->lr_schedule == LrSchedule::kExponential && o->lr_decay_steps == 0)
    r.Fail(r.Field("lr_decay_steps"), "needs a number of updates (>= 1) with lr_schedule: exponential");
  if (err->ok() && o->lr_schedule == LrSchedule::kCosine && o->lr_min > o->learning_rate)
    r.Fail(r.Field("lr_min"), "must not exceed optimizer.learning_rate (" + std::to_string(o->learning_rate) + ")");
  // With lr_schedule_steps 0 the cosine's length (the job's) is not known
  // here; a job shorter than its warm-up just ends in it.
  if (err->ok() && o->lr_schedule == LrSchedule::kCosine && o->lr_schedule_steps > 0 &&
      o->lr_warmup_steps > o->lr_schedule_steps)
    r.Fail(r.Field("lr_warmup_steps"), "must not exceed optimizer.lr_schedule_steps (" +
                                           std::to_string(o->lr_schedule_steps) +
                                           ") with lr_schedule: cosine, which falls over the updates after the warm-up");
  r.Double("momentum", &o->momentum, 0.0, 1.0);
  r.Bool("nesterov", &o->nesterov);
  r.Double("beta1", &o->beta1, 0.0, 1.0);
  r.Double("beta2", &o->beta2, 0.0, 1.0);
  r.Double("alpha", &o->alpha, 0.0, 1.0);
  r.Bool("centered", &o->centered);
  r.Double("epsilon", &o->epsilon, 0.0, 1.0, true);
  r.Double("weight_decay", &o->weight_decay, 0.0, 1e6);
  r.Double("l1", &o->l1, 0.0, 1e6);
  r.Double("clip_value", &o->clip_value, 0.0, 1e30);
  r.Double("clip_norm", &o->clip_norm, 0.0, 1e30);
  r.RejectUnknownKeys();
}

void ReadTraining(const YAML::Node& n, TrainingOptions* t, Status* err) {
  MapReader r(n, "training", err);
  r.Int("epochs", &t->epochs, 1, 1000000);
  r.Int("max_steps", &t->max_steps, 0, std::numeric_limits<int64_t>::max());
  r.Int("batch_size", &t->batch_size, 1, 1 << 20);
  r.Int("threads", &t->threads, 1, 1024);
  r.Uint("seed", &t->seed);
  r.Bool("shuffle", &t->shuffle);
  r.Double("progress_interval_s", &t->progress_interval_s, 0.0, 1e6);
  r.RejectUnknownKeys();
}

void ReadCluster(const YAML::Node& n, const std::string& base_dir, ClusterOptions* c, Status* err) {
  MapReader r(n, "cluster", err);
  r.Int("servers", &c->servers, 1, 4096);
  r.Int("workers", &c->workers, 1, 65536);
  r.Enum("consistency", &c->consistency,
         {{"bsp", Consistency::kBsp}, {"ssp", Consistency::kSsp}, {"asp", Consistency::kAsp}});
  r.Int("staleness", &c->staleness, 0, 1000000);
  r.Double("request_timeout_s", &c->request_timeout_s, 0.0, 1e6, true);
  r.Double("retry_interval_s", &c->retry_interval_s, 0.0, 1e6, true);
  r.Int("max_parked_pulls", &c->max_parked_pulls, 1, 1 << 20);
  r.Int("server_threads", &c->server_threads, 1, 1024);
  r.Int("memory_budget_mb", &c->memory_budget_mb, 0, int64_t{1} << 30);
  r.String("spill_dir", &c->spill_dir);
  c->spill_dir = ResolvePath(base_dir, c->spill_dir);
  r.Bool("shared_memory", &c->shared_memory);
  r.Enum("wire_dtype", &c->wire_dtype, {{"f32", DType::kF32}, {"bf16", DType::kBf16}, {"fp16", DType::kF16}});
  r.Int("chunk_kb", &c->chunk_kb, 0, int64_t{1} << 30);
  r.Bool("push_during_backward", &c->push_during_backward);
  r.Bool("priority_pulls", &c->priority_pulls);
  if (c->chunk_kb > 0 && c->chunk_kb < 4) r.Fail("cluster.chunk_kb", "0 (whole ranges) or at least 4 KiB, got " + std::to_string(c->chunk_kb));
  r.Double("heartbeat_interval_s", &c->heartbeat_interval_s, 0.0, 3600, true);
  r.Double("peer_timeout_s", &c->peer_timeout_s, 0.0, 1e6, true);
  r.Double("connect_timeout_s", &c->connect_timeout_s, 0.0, 1e6, true);
  r.Double("stall_report_s", &c->stall_report_s, 0.0, 1e6, true);
  r.Double("max_requests_per_s", &c->max_requests_per_s, 0.0, 1e9, true);
  r.Double("max_registrations_per_s", &c->max_registrations_per_s, 0.0, 1e9, true);
  r.Double("cutoff_s", &c->cutoff_s, 0.0, 1e6, true);
  r.Double("http_linger_s", &c->http_linger_s, 0.0, 3600);
  r.String("http", &c->http);
  r.String("faults", &c->faults);
  if (err->ok() && !c->faults.empty())
    if (auto f = ParseFaultOptions(c->faults); !f.ok()) r.Fail(r.Field("faults"), f.status().message());
  if (err->ok() && c->peer_timeout_s <= c->heartbeat_interval_s)
    r.Fail(r.Field("peer_timeout_s"), "must be longer than cluster.heartbeat_interval_s (" +
                                 std::to_string(c->heartbeat_interval_s) + ")");
  if (err->ok() && !c->http.empty()) {
    auto colon = c->http.rfind(':');
    bool ok = colon != std::string::npos && colon > 0 && colon + 1 < c->http.size() &&
              c->http.size() - colon - 1 <= 5 &&
              c->http.find_first_not_of("0123456789", colon + 1) == std::string::npos &&
              std::stol(c->http.substr(colon + 1)) <= 65535;
    if (!ok) r.Fail(r.Field("http"), "expected host:port with a port in [0, 65535], or \"\" to turn it off");
  }
  r.RejectUnknownKeys();
}

void ReadCheckpoint(const YAML::Node& n, const std::string& base_dir, CheckpointOptions* c, Status* err) {
  MapReader r(n, "checkpoint", err);
  // On by default (by time): a job that sets interval_steps alone checkpoints
  // by steps instead; both 0 turn checkpoints off.
  if (r.Has("interval_steps") && !r.Has("interval_s")) c->interval_s = 0;
  r.Int("interval_steps", &c->interval_steps, 0, int64_t{1} << 40);
  r.Double("interval_s", &c->interval_s, 0.0, 1e7);
  r.Int("keep", &c->keep, 1, 1000);
  r.String("dir", &c->dir);
  r.Double("write_timeout_s", &c->write_timeout_s, 0.0, 1e6, true);
  c->dir = ResolvePath(base_dir, c->dir);
  if (err->ok() && c->interval_steps > 0 && c->interval_s > 0)
    r.Fail(r.Field("interval_s"), "set either checkpoint.interval_steps or checkpoint.interval_s, not both");
  r.RejectUnknownKeys();
}

void ReadSecurity(const YAML::Node& n, const std::string& base_dir, SecurityOptions* s, Status* err) {
  MapReader r(n, "security", err);
  r.String("key", &s->key);
  r.String("cluster_keys", &s->cluster_keys);
  r.Bool("plaintext", &s->plaintext);
  s->key = ResolvePath(base_dir, s->key);
  s->cluster_keys = ResolvePath(base_dir, s->cluster_keys);
  if (err->ok() && s->key.empty() != s->cluster_keys.empty())
    r.Fail(r.Field(s->key.empty() ? "cluster_keys" : "key"),
           "needs security.key and security.cluster_keys both (ps-keys writes them), or neither");
  r.RejectUnknownKeys();
}

// Sets root[a][b]... = value, creating mappings on the way.
Status ApplyOverride(YAML::Node root, const ConfigOverride& o) {
  std::vector<std::string> parts;
  std::stringstream ss(o.first);
  for (std::string p; std::getline(ss, p, '.');) parts.push_back(p);
  YAML::Node value;
  try {
    // An empty value is the empty string (model.init_from= : no file).
    value = o.second.empty() ? YAML::Node(std::string()) : YAML::Load(o.second);
  } catch (const YAML::Exception& e) {
    return InvalidArgument("override " + o.first + "=" + o.second + ": " + e.msg);
  }
  std::vector<YAML::Node> path{root};
  for (std::size_t i = 0; i + 1 < parts.size(); ++i) {
    YAML::Node next = path.back()[parts[i]];
    if (next.IsDefined() && !next.IsNull() && !next.IsMap())
      return InvalidArgument("override " + o.first + ": '" + parts[i] + "' is not a section");
    path.push_back(next);
  }
  path.back()[parts.back()] = value;
  return Status::Ok();
}

}  // namespace

const char* DataFormatName(DataFormat f) {
  switch (f) {
    case DataFormat::kIdx: return "idx";
    case DataFormat::kCsv: return "csv";
    case DataFormat::kText: return "text";
    case DataFormat::kCriteo: return "criteo";
  }
  return "?";
}

const char* TextTaskName(TextTask t) {
  switch (t) {
    case TextTask::kNext: return "next";
    case TextTask::kMasked: return "masked";
    case TextTask::kClassify: return "classify";
  }
  return "?";
}

const char* MetricName(const JobConfig& c) {
  if (c.data.format == DataFormat::kText) {
    if (c.data.task == TextTask::kMasked) return "masked_accuracy";
    if (c.data.task == TextTask::kClassify) return "test_accuracy";
    return "validation_bits_per_char";
  }
  if (c.model.kind == ModelKind::kCtr) return "test_auc";
  return c.model.kind == ModelKind::kLinearRegression ? "test_mse" : "test_accuracy";
}

const char* SecondMetricName(const JobConfig& c) {
  if (c.model.kind == ModelKind::kCtr) return "test_logloss";
  if (c.data.format == DataFormat::kText && c.data.task == TextTask::kMasked) return "masked_bits_per_char";
  return nullptr;
}

const char* ConsistencyName(Consistency c) {
  switch (c) {
    case Consistency::kBsp: return "bsp";
    case Consistency::kSsp: return "ssp";
    case Consistency::kAsp: return "asp";
  }
  return "?";
}

const char* LrScheduleName(LrSchedule s) {
  switch (s) {
    case LrSchedule::kConstant: return "constant";
    case LrSchedule::kExponential: return "exponential";
    case LrSchedule::kCosine: return "cosine";
  }
  return "?";
}

int64_t JobUpdates(const JobConfig& config, int64_t records) {
  const int64_t per_epoch = (records + config.training.batch_size - 1) / config.training.batch_size;
  int64_t updates = per_epoch * config.training.epochs;
  if (config.training.max_steps > 0) updates = std::min(updates, config.training.max_steps);
  return std::max<int64_t>(updates, 1);
}

void ResolveJobLength(JobConfig* config, int64_t records) {
  OptimizerOptions& o = config->optimizer;
  if (o.lr_schedule == LrSchedule::kCosine && o.lr_schedule_steps == 0)
    o.lr_schedule_steps = JobUpdates(*config, records);
}

const char* OptimizerKindName(OptimizerKind k) {
  switch (k) {
    case OptimizerKind::kSgd: return "sgd";
    case OptimizerKind::kMomentum: return "momentum";
    case OptimizerKind::kAdam: return "adam";
    case OptimizerKind::kAdaGrad: return "adagrad";
    case OptimizerKind::kAdamW: return "adamw";
    case OptimizerKind::kRmsProp: return "rmsprop";
  }
  return "?";
}

Result<ConfigOverride> ParseOverride(const std::string& text) {
  auto eq = text.find('=');
  if (eq == std::string::npos || eq == 0)
    return InvalidArgument("override '" + text + "': expected section.field=value (an empty value: \"\")");
  std::string key = text.substr(0, eq);
  if (key.front() == '.' || key.back() == '.' || key.find("..") != std::string::npos)
    return InvalidArgument("override '" + text + "': malformed field name '" + key + "'");
  return ConfigOverride{key, text.substr(eq + 1)};
}

Result<JobConfig> ParseJobConfig(const std::string& yaml_text, const std::string& origin,
                                 const std::string& base_dir,
                                 const std::vector<ConfigOverride>& overrides) {
  YAML::Node root;
  try {
    root = YAML::Load(yaml_text);
  } catch (const YAML::ParserException& e) {
    return InvalidArgument(origin + ": not valid YAML at line " + std::to_string(e.mark.line + 1) +
                           ", column " + std::to_string(e.mark.column + 1) + ": " + e.msg);
  }
  if (root.IsNull()) root = YAML::Node(YAML::NodeType::Map);
  if (!root.IsMap()) return InvalidArgument(origin + ": expected a mapping of sections at the top");
  for (const auto& o : overrides) PSF_RETURN_IF_ERROR(ApplyOverride(root, o).WithContext(origin));

  JobConfig c;
  c.path = origin;
  Status err;
  MapReader top(root, "", &err);
  // Reading each section through `top` marks it as known.
  for (const char* s : {"model", "data", "optimizer", "training", "cluster", "checkpoint", "security"}) {
    if (top.Has(s) && !root[s].IsMap() && !root[s].IsNull())
      top.Fail(s, "expected a mapping of fields, got " + Describe(root[s]));
  }
  const YAML::Node& croot = root;
  ReadModel(croot["model"], base_dir, &c.model, &err);
  ReadData(croot["data"], base_dir, &c.data, &err);
  ReadOptimizer(croot["optimizer"], &c.optimizer, &err);
  ReadTraining(croot["training"], &c.training, &err);
  ReadCluster(croot["cluster"], base_dir, &c.cluster, &err);
  ReadCheckpoint(croot["checkpoint"], base_dir, &c.checkpoint, &err);
  ReadSecurity(croot["security"], base_dir, &c.security, &err);
  if (err.ok()) {
    for (const auto& kv : root) {
      std::string key = kv.first.Scalar();
      if (key != "model" && key != "data" && key != "optimizer" && key != "training" &&
          key != "cluster" && key != "checkpoint" && key != "security") {
        top.Fail(key, "unknown section; allowed sections are model, data, optimizer, training, cluster, "
                      "checkpoint, security");
        break;
      }
    }
  }
  if (err.ok() && !c.data.label_names.empty() && c.data.format != DataFormat::kText &&
      (c.model.kind == ModelKind::kMlp || c.model.kind == ModelKind::kSequential) &&
      static_cast<int64_t>(c.data.label_names.size()) != c.model.classes)
    top.Fail("data.label_names", "has " + std::to_string(c.data.label_names.size()) + " names for model.classes=" +
                                     std::to_string(c.model.classes) + " classes");
  // The ctr model reads click logs and only click logs.
  if (err.ok() && (c.model.kind == ModelKind::kCtr) != (c.data.format == DataFormat::kCriteo))
    top.Fail(c.model.kind == ModelKind::kCtr ? "data.format" : "model.kind",
             c.model.kind == ModelKind::kCtr
                 ? std::string("model.kind ctr trains on click logs: data.format must be criteo, not ") +
                       DataFormatName(c.data.format)
                 : std::string("data.format criteo holds click logs for model.kind ctr, not ") +
                       ModelKindName(c.model.kind));
  // BSP splits each step's batch among the workers: more workers than
  // records in a batch would train steps of one record each.
  if (err.ok() && c.cluster.consistency == Consistency::kBsp && c.cluster.workers > c.training.batch_size)
    top.Fail("cluster.workers", std::to_string(c.cluster.workers) + " workers for BSP steps of training.batch_size=" +
                                    std::to_string(c.training.batch_size) +
                                    " records: each step's batch is split among the workers, so at most " +
                                    std::to_string(c.training.batch_size) + " (a few records each is better)");
  if (!err.ok()) return err.WithContext(origin);
  return c;
}

Result<JobConfig> LoadJobConfig(const std::string& path,
                                const std::vector<ConfigOverride>& overrides) {
  std::error_code ec;
  if (std::filesystem::is_directory(path, ec))
    return InvalidArgument("config file " + path + ": is a directory; give a .yaml file (configs/ has examples)");
  std::ifstream in(path, std::ios::binary);
  if (!in) return NotFound("config file " + path + ": cannot open it: " + std::strerror(errno));
  std::stringstream text;
  text << in.rdbuf();
  // Absolute, so that the paths mean the same in every process of a job.
  std::string base = std::filesystem::absolute(path).parent_path().string();
  return ParseJobConfig(text.str(), path, base, overrides);
}

nlohmann::json ConfigToJson(const JobConfig& c) {
  nlohmann::json model = {{"kind", ModelKindName(c.model.kind)}, {"init_seed", c.model.init_seed}};
  if (!c.model.init_from.empty()) model.update({{"init_from", c.model.init_from}, {"init_fresh", c.model.init_fresh}});
  if (!c.model.freeze.empty()) model["freeze"] = c.model.freeze;
  if (c.model.kind == ModelKind::kMlp || c.model.kind == ModelKind::kCtr) {
    model["hidden"] = c.model.hidden;
    model["activation"] = ActivationName(c.model.activation);
  }
  if (c.model.kind == ModelKind::kMlp) model["classes"] = c.model.classes;
  if (!c.model.tables.empty()) {
    nlohmann::json tables = nlohmann::json::array();
    for (const TableOptions& t : c.model.tables) tables.push_back(config_internal::TableToJson(t));
    model["tables"] = tables;
  }
  if (c.model.kind == ModelKind::kSequential) {
    model["classes"] = c.model.classes;
    if (!c.model.input_shape.empty()) model["input_shape"] = c.model.input_shape;
    nlohmann::json layers = nlohmann::json::array();
    for (const LayerOptions& l : c.model.layers) layers.push_back(LayerToJson(l));
    model["layers"] = layers;
  }
  nlohmann::json data = {{"format", DataFormatName(c.data.format)},
                         {"standardize", c.data.standardize},
                         {"shard_size", c.data.shard_size}};
  if (!c.data.label_names.empty()) data["label_names"] = c.data.label_names;
  if (c.data.format == DataFormat::kIdx) {
    data.update({{"train_images", c.data.train_images}, {"train_labels", c.data.train_labels},
                 {"test_images", c.data.test_images}, {"test_labels", c.data.test_labels},
                 {"pixel_scale", c.data.pixel_scale}});
  } else if (c.data.format == DataFormat::kCsv) {
    data.update({{"train_csv", c.data.train_csv}, {"test_csv", c.data.test_csv},
                 {"label_column", c.data.label_column}, {"csv_header", c.data.csv_header}});
  } else if (c.data.format == DataFormat::kCriteo) {
    data.update({{"train_tsv", c.data.train_tsv}, {"test_tsv", c.data.test_tsv},
                 {"skip_malformed", c.data.skip_malformed}, {"preload_mb", c.data.preload_mb}});
  } else {
    data.update({{"text", c.data.text}, {"window", c.data.window}, {"validation_every", c.data.validation_every},
                 {"task", TextTaskName(c.data.task)}});
    if (c.data.task == TextTask::kClassify) data["classes"] = c.data.classes;
  }
  const auto& o = c.optimizer;
  nlohmann::json opt = {{"kind", OptimizerKindName(o.kind)}, {"learning_rate", o.learning_rate},
                        {"lr_schedule", LrScheduleName(o.lr_schedule)},
                        {"lr_decay_rate", o.lr_decay_rate}, {"lr_decay_steps", o.lr_decay_steps},
                        {"lr_min", o.lr_min}, {"lr_schedule_steps", o.lr_schedule_steps},
                        {"lr_warmup_steps", o.lr_warmup_steps},
                        {"momentum", o.momentum},  {"nesterov", o.nesterov},
                        {"beta1", o.beta1},        {"beta2", o.beta2},
                        {"alpha", o.alpha},        {"centered", o.centered},
                        {"epsilon", o.epsilon},    {"weight_decay", o.weight_decay},
                        {"l1", o.l1},
                        {"clip_value", o.clip_value}, {"clip_norm", o.clip_norm}};
  const auto& t = c.training;
  nlohmann::json training = {{"epochs", t.epochs}, {"max_steps", t.max_steps}, {"batch_size", t.batch_size},
                             {"threads", t.threads}, {"seed", t.seed}, {"shuffle", t.shuffle},
                             {"progress_interval_s", t.progress_interval_s}};
  const auto& cl = c.cluster;
  nlohmann::json cluster = {{"servers", cl.servers}, {"workers", cl.workers},
                            {"consistency", ConsistencyName(cl.consistency)},
                            {"staleness", cl.staleness}, {"request_timeout_s", cl.request_timeout_s},
                            {"retry_interval_s", cl.retry_interval_s},
                            {"max_parked_pulls", cl.max_parked_pulls},
                            {"server_threads", cl.server_threads},
                            {"memory_budget_mb", cl.memory_budget_mb}, {"spill_dir", cl.spill_dir},
                            {"shared_memory", cl.shared_memory}, {"wire_dtype", DTypeName(cl.wire_dtype)},
                            {"chunk_kb", cl.chunk_kb}, {"push_during_backward", cl.push_during_backward},
                            {"priority_pulls", cl.priority_pulls},
                            {"heartbeat_interval_s", cl.heartbeat_interval_s},
                            {"peer_timeout_s", cl.peer_timeout_s},
                            {"connect_timeout_s", cl.connect_timeout_s},
                            {"stall_report_s", cl.stall_report_s},
                            {"max_requests_per_s", cl.max_requests_per_s},
                            {"max_registrations_per_s", cl.max_registrations_per_s},
                            {"cutoff_s", cl.cutoff_s}, {"http", cl.http}, {"http_linger_s", cl.http_linger_s},
                            {"faults", cl.faults}};
  nlohmann::json checkpoint = {{"interval_steps", c.checkpoint.interval_steps},
                               {"interval_s", c.checkpoint.interval_s}, {"keep", c.checkpoint.keep},
                               {"dir", c.checkpoint.dir}, {"write_timeout_s", c.checkpoint.write_timeout_s}};
  nlohmann::json security = {{"key", c.security.key}, {"cluster_keys", c.security.cluster_keys},
                              {"plaintext", c.security.plaintext}};
  return {{"path", c.path},         {"model", model},          {"data", data},
          {"optimizer", opt},       {"training", training},    {"cluster", cluster},
          {"checkpoint", checkpoint}, {"security", security}};
}

double ScheduledLearningRate(const OptimizerOptions& o, int64_t steps) {
  double rate = o.learning_rate;
  switch (o.lr_schedule) {
    case LrSchedule::kConstant: break;
    case LrSchedule::kExponential:
      if (o.lr_decay_steps > 0)
        rate *= std::pow(o.lr_decay_rate, static_cast<double>(steps) / static_cast<double>(o.lr_decay_steps));
      break;
    case LrSchedule::kCosine: {
      if (o.lr_schedule_steps <= 0) break;  // not resolved: the job's length is unknown
      // The cosine starts when the warm-up ends: at its top during the
      // warm-up, at lr_min from update lr_schedule_steps on (also when a
      // job's length left no updates after the warm-up).
      const int64_t after = steps - o.lr_warmup_steps, span = o.lr_schedule_steps - o.lr_warmup_steps;
      const double t = after < 0       ? 0.0
                       : after >= span ? 1.0
                                       : static_cast<double>(after) / static_cast<double>(span);
      rate = o.lr_min + 0.5 * (o.learning_rate - o.lr_min) * (1.0 + std::cos(std::numbers::pi * t));
      break;
    }
  }
  if (steps < o.lr_warmup_steps) rate *= static_cast<double>(steps + 1) / static_cast<double>(o.lr_warmup_steps);
  return rate;
}

}  // namespace psforge
