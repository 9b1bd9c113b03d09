// Reading one YAML mapping of the job config field by field (config.cc,
// model_config.cc); not a public header.
#pragma once

#include <cstdint>
#include <initializer_list>
#include <limits>
#include <set>
#include <sstream>
#include <string>
#include <utility>
#include <vector>

#include <nlohmann/json_fwd.hpp>
#include <yaml-cpp/yaml.h>

#include "common/config.h"

namespace psforge::config_internal {

inline std::string Describe(const YAML::Node& node) {
  if (node.IsScalar()) return "'" + node.Scalar() + "'";
  if (node.IsSequence()) return "a list";
  if (node.IsMap()) return "a mapping";
  return "nothing";
}

inline std::string FormatNumber(double v) {
  std::ostringstream s;
  s << v;
  return s.str();
}

// Reads one YAML mapping of the config, field by field, remembering the first
// error and which keys were read so that unknown keys can be reported.
class MapReader {
 public:
  MapReader(const YAML::Node& node, std::string section, Status* error)
      // A missing section of a const tree is an invalid node; read it as empty.
      : node_(node.IsDefined() ? node : YAML::Node()), section_(std::move(section)), error_(error) {
    if (node_ && !node_.IsNull() && !node_.IsMap())
      Fail(section_, "expected a mapping of fields, got " + Describe(node_));
  }

  bool Has(const char* key) const { return node_.IsMap() && node_[key]; }

  void Int(const char* key, int64_t* out, int64_t min, int64_t max) {
    YAML::Node v = Get(key);
    if (!v) return;
    int64_t x = 0;
    try {
      x = v.as<int64_t>();
    } catch (const YAML::Exception&) {
      return Fail(Field(key), "expected a whole number, got " + Describe(v));
    }
    if (x < min || x > max)
      return Fail(Field(key), "must be in [" + std::to_string(min) + ", " + std::to_string(max) +
                                  "], got " + std::to_string(x));
    *out = x;
  }

  void Uint(const char* key, uint64_t* out) {
    int64_t x = static_cast<int64_t>(*out);
    Int(key, &x, 0, std::numeric_limits<int64_t>::max());
    *out = static_cast<uint64_t>(x);
  }

  // Accepts values in [min, max), or (min, max) when `min_exclusive`.
  void Double(const char* key, double* out, double min, double max, bool min_exclusive = false) {
    YAML::Node v = Get(key);
    if (!v) return;
    double x = 0;
    try {
      x = v.as<double>();
    } catch (const YAML::Exception&) {
      return Fail(Field(key), "expected a number, got " + Describe(v));
    }
    bool below = min_exclusive ? !(x > min) : !(x >= min);
    if (below || !(x < max))
      return Fail(Field(key), std::string("must be in ") + (min_exclusive ? "(" : "[") +
                                  FormatNumber(min) + ", " + FormatNumber(max) + "), got " +
                                  FormatNumber(x));
    *out = x;
  }

  void Float(const char* key, float* out, double min, double max, bool min_exclusive = false) {
    double x = *out;
    Double(key, &x, min, max, min_exclusive);
    *out = static_cast<float>(x);
  }

  void Bool(const char* key, bool* out) {
    YAML::Node v = Get(key);
    if (!v) return;
    try {
      *out = v.as<bool>();
    } catch (const YAML::Exception&) {
      Fail(Field(key), "expected true or false, got " + Describe(v));
    }
  }

  void String(const char* key, std::string* out) {
    YAML::Node v = Get(key);
    if (!v) return;
    if (!v.IsScalar()) return Fail(Field(key), "expected a string, got " + Describe(v));
    *out = v.Scalar();
  }

  template <typename E>
  void Enum(const char* key, E* out, std::initializer_list<std::pair<const char*, E>> choices) {
    YAML::Node v = Get(key);
    if (!v) return;
    std::string allowed;
    for (const auto& [name, value] : choices) {
      if (v.IsScalar() && v.Scalar() == name) {
        *out = value;
        return;
      }
      allowed += (allowed.empty() ? "" : ", ") + std::string(name);
    }
    Fail(Field(key), "must be one of " + allowed + "; got " + Describe(v));
  }

  void IntList(const char* key, std::vector<int64_t>* out, int64_t min, int64_t max) {
    YAML::Node v = Get(key);
    if (!v) return;
    if (!v.IsSequence())
      return Fail(Field(key), "expected a list of whole numbers, got " + Describe(v));
    std::vector<int64_t> list;
    for (std::size_t i = 0; i < v.size(); ++i) {
      int64_t x = 0;
      try {
        x = v[i].as<int64_t>();
      } catch (const YAML::Exception&) {
        return Fail(Field(key) + "[" + std::to_string(i) + "]",
                    "expected a whole number, got " + Describe(v[i]));
      }
      if (x < min || x > max)
        return Fail(Field(key) + "[" + std::to_string(i) + "]",
                    "must be in [" + std::to_string(min) + ", " + std::to_string(max) + "], got " +
                        std::to_string(x));
      list.push_back(x);
    }
    *out = std::move(list);
  }

  void StringList(const char* key, std::vector<std::string>* out) {
    YAML::Node v = Get(key);
    if (!v) return;
    if (v.IsScalar()) {  // one item may be written without the list
      *out = {v.Scalar()};
      return;
    }
    if (!v.IsSequence()) return Fail(Field(key), "expected a list of strings, got " + Describe(v));
    std::vector<std::string> list;
    for (std::size_t i = 0; i < v.size(); ++i) {
      if (!v[i].IsScalar())
        return Fail(Field(key) + "[" + std::to_string(i) + "]", "expected a string, got " + Describe(v[i]));
      list.push_back(v[i].Scalar());
    }
    *out = std::move(list);
  }

  // A sub-tree for the caller to read (undefined when absent).
  YAML::Node Node(const char* key) { return Get(key); }

  // Reports the first key that no reader asked for.
  void RejectUnknownKeys() {
    if (!error_->ok() || !node_.IsMap()) return;
    std::string known;
    for (const auto& k : read_) known += (known.empty() ? "" : ", ") + k;
    for (const auto& kv : node_) {
      std::string key = kv.first.Scalar();
      if (!read_.count(key))
        return Fail(Field(key.c_str()), "unknown field; allowed fields are " + known);
    }
  }

  std::string Field(const char* key) const {
    return section_.empty() ? std::string(key) : section_ + "." + key;
  }

  void Fail(const std::string& field, const std::string& what) {
    if (error_->ok()) *error_ = InvalidArgument("field '" + field + "': " + what);
  }

  bool ok() const { return error_->ok(); }
  // Where the first error goes, for readers of nested sections.
  Status* error() const { return error_; }

 private:
  YAML::Node Get(const char* key) {
    read_.insert(key);
    if (!error_->ok() || !node_.IsMap()) return YAML::Node(YAML::NodeType::Undefined);
    YAML::Node v = node_[key];
    if (v && v.IsNull()) return YAML::Node(YAML::NodeType::Undefined);
    return v;
  }

  const YAML::Node node_;
  std::string section_;
  Status* error_;
  std::set<std::string> read_;
};

// The model section (model_config.cc).
void ReadModel(const YAML::Node& n, const std::string& base_dir, ModelOptions* m, Status* err);
// A relative path against the config's folder (absolute paths and "" unchanged).
std::string ResolvePath(const std::string& base_dir, const std::string& p);
// A list of layers (model.layers, a block's layers) at `section`: each a
// type name or a mapping {type: ..., settings}.
void ReadLayers(const YAML::Node& n, const std::string& section, std::vector<LayerOptions>* layers, Status* err);
nlohmann::json LayerToJson(const LayerOptions& l);
nlohmann::json TableToJson(const TableOptions& t);

}  // namespace psforge::config_internal
