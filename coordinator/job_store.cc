#include "coordinator/job_store.h"

#include <rocksdb/db.h>
#include <rocksdb/options.h>
#include <rocksdb/write_batch.h>

#include <charconv>
#include <cstdio>
#include <limits>
#include <optional>
#include <string_view>
#include <utility>

#include <nlohmann/json.hpp>

namespace psforge {
namespace {

// Keys (numbers zero-padded so that they sort):
//   fingerprint                  the job's identity
//   gen/<g>                      generation g's starting lease state (JSON)
//   grant/<g>/<seq>              "worker lease offset"
//   commit/<step>                the generation of that committed checkpoint
//   eval/<epoch>                 an epoch's evaluation (JSON)
std::string Key(const char* prefix, uint64_t a) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "%s%020llu", prefix, static_cast<unsigned long long>(a));
  return buf;
}

std::string GrantPrefix(uint32_t g) { return Key("grant/", g) + "/"; }

Status FromRocks(const rocksdb::Status& s, const std::string& where, const std::string& what) {
  if (s.ok()) return Status::Ok();
  const std::string message = "job store " + where + ": " + what + ": " + s.ToString();
  if (s.IsCorruption()) return DataLoss(message);
  if (s.IsNoSpace()) return ResourceExhausted(message);
  return Unavailable(message);
}

// Keys are written by this file: 20 digits at `at`.
uint64_t Number(const std::string& key, std::size_t at) {
  uint64_t n = 0;
  for (std::size_t i = at; i < key.size() && i < at + 20 && key[i] >= '0' && key[i] <= '9'; ++i)
    n = n * 10 + static_cast<uint64_t>(key[i] - '0');
  return n;
}

// A whole decimal number in `text` and nothing else.
template <typename T>
std::optional<T> Whole(std::string_view text) {
  T v{};
  auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), v);
  if (ec != std::errc() || end != text.data() + text.size()) return std::nullopt;
  return v;
}

// An integer field: a JSON integer that fits in *out (a float, or a number
// out of range, is damage: converting it would be undefined).
template <typename T>
bool IntegerOf(const nlohmann::json& v, T* out) {
  if (v.is_number_unsigned()) {
    const auto u = v.get<uint64_t>();
    if (!std::in_range<T>(u)) return false;
    *out = static_cast<T>(u);
    return true;
  }
  if (!v.is_number_integer()) return false;
  const auto i = v.get<int64_t>();
  if (!std::in_range<T>(i)) return false;
  *out = static_cast<T>(i);
  return true;
}

}  // namespace

Result<LeaseState> DecodeGeneration(const std::string& value, const std::string& name) {
  auto j = nlohmann::json::parse(value, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded() || !j.is_object()) return DataLoss(name + " is damaged: not a JSON object");
  auto damaged = [&](const char* what) { return DataLoss(name + " is damaged: " + what); };
  LeaseState state;
  if (!j.contains("epoch") || !IntegerOf(j["epoch"], &state.epoch)) return damaged("epoch is not an integer");
  if (!j.contains("done") || !j["done"].is_array()) return damaged("done is not a list");
  for (const auto& shard : j["done"]) {
    if (!IntegerOf(shard, &state.done.emplace_back())) return damaged("done lists a shard that is not an integer");
  }
  if (!j.contains("partial") || !j["partial"].is_array()) return damaged("partial is not a list");
  for (const auto& p : j["partial"]) {
    auto& [shard, records] = state.partial.emplace_back();
    if (!p.is_array() || p.size() != 2 || !IntegerOf(p[0], &shard) || !IntegerOf(p[1], &records))
      return damaged("partial lists an entry that is not [shard, records]");
  }
  if (j.contains("owner")) {  // [[shard, worker], ...]
    if (!j["owner"].is_array()) return damaged("owner is not a list");
    for (const auto& p : j["owner"]) {
      int64_t shard = 0;
      if (!p.is_array() || p.size() != 2 || !IntegerOf(p[0], &shard) || !IntegerOf(p[1], &state.owner[shard]))
        return damaged("owner lists an entry that is not [shard, worker]");
    }
  }
  return state;
}

Result<GrantRecord> DecodeGrant(const std::string& value, const std::string& name) {
  // "worker lease offset"
  const auto a = value.find(' '), b = a == std::string::npos ? a : value.find(' ', a + 1);
  if (b == std::string::npos) return DataLoss(name + " is damaged: '" + value.substr(0, 64) + "'");
  auto worker = Whole<uint32_t>(std::string_view(value).substr(0, a));
  auto lease = Whole<uint64_t>(std::string_view(value).substr(a + 1, b - a - 1));
  auto offset = Whole<int64_t>(std::string_view(value).substr(b + 1));
  if (!worker || !lease || !offset || *offset < 0) return DataLoss(name + " is damaged: '" + value.substr(0, 64) + "'");
  return GrantRecord{*worker, *lease, *offset};
}

Result<uint32_t> DecodeCommitGeneration(const std::string& value, const std::string& name) {
  auto g = Whole<uint32_t>(value);
  if (!g) return DataLoss(name + " is damaged: generation '" + value.substr(0, 64) + "'");
  return *g;
}

Result<EvaluationRecord> DecodeEvaluation(const std::string& value, const std::string& name) {
  auto j = nlohmann::json::parse(value, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded() || !j.is_object()) return DataLoss(name + " is damaged: not a JSON object");
  EvaluationRecord e;
  if (!j.contains("epoch") || !IntegerOf(j["epoch"], &e.epoch) || !j.contains("step") || !IntegerOf(j["step"], &e.step) ||
      !j.contains("metric") || !j["metric"].is_number() || !j.contains("time_s") || !j["time_s"].is_number())
    return DataLoss(name + " is damaged: it needs integers epoch and step and numbers metric and time_s");
  e.metric = j["metric"].get<double>();
  e.time_s = j["time_s"].get<double>();
  if (j.contains("train_loss") && j["train_loss"].is_number()) e.train_loss = j["train_loss"].get<double>();
  if (j.contains("train_loss") && j["train_loss"].is_null()) e.train_loss = std::numeric_limits<double>::quiet_NaN();
  if (j.contains("test_logloss") && j["test_logloss"].is_number()) e.test_logloss = j["test_logloss"].get<double>();
  return e;
}

JobStore::JobStore(std::unique_ptr<rocksdb::DB> db, std::string where)
    : db_(std::move(db)), where_(std::move(where)) {}

JobStore::~JobStore() = default;

Result<std::unique_ptr<JobStore>> JobStore::Open(const std::string& path) {
  rocksdb::Options options;
  options.create_if_missing = true;
  options.paranoid_checks = true;
  rocksdb::DB* db = nullptr;
  PSF_RETURN_IF_ERROR(FromRocks(rocksdb::DB::Open(options, path, &db), path, "open"));
  return std::unique_ptr<JobStore>(new JobStore(std::unique_ptr<rocksdb::DB>(db), path));
}

Result<std::unique_ptr<JobStore>> JobStore::OpenReadOnly(const std::string& path) {
  rocksdb::Options options;
  options.paranoid_checks = true;
  rocksdb::DB* db = nullptr;
  PSF_RETURN_IF_ERROR(FromRocks(rocksdb::DB::OpenForReadOnly(options, path, &db), path, "open to read"));
  return std::unique_ptr<JobStore>(new JobStore(std::unique_ptr<rocksdb::DB>(db), path));
}

Status JobStore::Put(const std::string& key, const std::string& value, bool sync) {
  rocksdb::WriteOptions options;
  options.sync = sync;
  return FromRocks(db_->Put(options, key, value), where_, "write " + key);
}

Status JobStore::DeleteRange(const std::string& begin, const std::string& end, bool sync) {
  rocksdb::WriteOptions options;
  options.sync = sync;
  rocksdb::WriteBatch batch;
  batch.DeleteRange(begin, end);
  return FromRocks(db_->Write(options, &batch), where_, "delete");
}

Result<std::vector<std::pair<std::string, std::string>>> JobStore::Scan(const std::string& prefix) const {
  std::vector<std::pair<std::string, std::string>> out;
  std::unique_ptr<rocksdb::Iterator> it(db_->NewIterator(rocksdb::ReadOptions()));
  for (it->Seek(prefix); it->Valid() && it->key().starts_with(prefix); it->Next())
    out.emplace_back(it->key().ToString(), it->value().ToString());
  PSF_RETURN_IF_ERROR(FromRocks(it->status(), where_, "read " + prefix));
  return out;
}

nlohmann::json JobIdentity(const JobConfig& config) {
  nlohmann::json all = ConfigToJson(config);
  nlohmann::json id = {{"model", all["model"]}, {"optimizer", all["optimizer"]}};
  for (const char* f : {"shard_size"}) id["data." + std::string(f)] = all["data"][f];
  for (const char* f : {"seed", "shuffle", "batch_size"}) id["training." + std::string(f)] = all["training"][f];
  for (const char* f : {"servers", "workers", "consistency", "staleness"})
    id["cluster." + std::string(f)] = all["cluster"][f];
  return id;
}

Status CheckSameJob(const std::string& stored, const nlohmann::json& identity, const std::string& where) {
  auto old = nlohmann::json::parse(stored, nullptr, false);
  std::string differ;
  for (auto& [field, value] : identity.items())
    if (old.is_discarded() || !old.is_object() || !old.contains(field) || old[field] != value)
      differ += (differ.empty() ? "" : ", ") + field;
  if (!differ.empty())
    return FailedPrecondition("--resume: the checkpoints in " + where + " belong to a job with another " + differ);
  return Status::Ok();
}

Result<std::string> JobStore::Fingerprint() const {
  std::string value;
  rocksdb::Status s = db_->Get(rocksdb::ReadOptions(), "fingerprint", &value);
  if (s.IsNotFound()) return std::string();
  PSF_RETURN_IF_ERROR(FromRocks(s, where_, "read the job's identity"));
  return value;
}

Status JobStore::Reset(const std::string& fingerprint) {
  rocksdb::WriteOptions options;
  options.sync = true;
  rocksdb::WriteBatch batch;
  batch.DeleteRange("", "\xff");
  batch.Put("fingerprint", fingerprint);
  next_grant_ = 0;
  return FromRocks(db_->Write(options, &batch), where_, "start a new job");
}

Status JobStore::BeginGeneration(uint32_t g, const LeaseState& base) {
  nlohmann::json j = {{"epoch", base.epoch}, {"done", base.done}, {"partial", base.partial}, {"owner", base.owner}};
  next_grant_ = 0;
  PSF_RETURN_IF_ERROR(DeleteRange(GrantPrefix(g), GrantPrefix(g + 1), false));  // an abandoned attempt's
  return Put(Key("gen/", g), j.dump(), true);
}

Result<uint32_t> JobStore::LastGeneration() const {
  PSF_ASSIGN_OR_RETURN(auto gens, Scan("gen/"));
  return gens.empty() ? 0u : static_cast<uint32_t>(Number(gens.back().first, 4));
}

Result<LeaseState> JobStore::Base(uint32_t g) const {
  std::string value;
  rocksdb::Status s = db_->Get(rocksdb::ReadOptions(), Key("gen/", g), &value);
  if (s.IsNotFound()) return DataLoss("job store " + where_ + ": generation " + std::to_string(g) + " is missing");
  PSF_RETURN_IF_ERROR(FromRocks(s, where_, "read generation " + std::to_string(g)));
  return DecodeGeneration(value, "job store " + where_ + ": generation " + std::to_string(g));
}

Status JobStore::AddGrant(uint32_t g, const GrantRecord& grant) {
  char value[96];
  std::snprintf(value, sizeof value, "%u %llu %lld", grant.worker, static_cast<unsigned long long>(grant.lease),
                static_cast<long long>(grant.offset));
  return Put(GrantPrefix(g) + Key("", static_cast<uint64_t>(next_grant_++)), value, false);
}

Result<std::vector<GrantRecord>> JobStore::Grants(uint32_t g) const {
  PSF_ASSIGN_OR_RETURN(auto rows, Scan(GrantPrefix(g)));
  std::vector<GrantRecord> grants;
  for (const auto& [key, value] : rows) {
    PSF_ASSIGN_OR_RETURN(GrantRecord r, DecodeGrant(value, "job store " + where_ + ": grant " + key));
    grants.push_back(r);
  }
  return grants;
}

Status JobStore::Commit(int64_t step, uint32_t g, int64_t keep) {
  PSF_RETURN_IF_ERROR(Put(Key("commit/", static_cast<uint64_t>(step)), std::to_string(g), true));
  PSF_ASSIGN_OR_RETURN(auto commits, Committed());
  if (static_cast<int64_t>(commits.size()) <= keep) return Status::Ok();
  const CommittedCheckpoint& oldest_kept = commits[commits.size() - static_cast<std::size_t>(keep)];
  PSF_RETURN_IF_ERROR(DeleteRange("commit/", Key("commit/", static_cast<uint64_t>(oldest_kept.step)), false));
  uint32_t needed = oldest_kept.generation;
  for (std::size_t i = commits.size() - static_cast<std::size_t>(keep); i < commits.size(); ++i)
    needed = std::min(needed, commits[i].generation);
  PSF_RETURN_IF_ERROR(DeleteRange("gen/", Key("gen/", needed), false));
  return DeleteRange("grant/", GrantPrefix(needed), false);
}

Result<std::vector<CommittedCheckpoint>> JobStore::Committed() const {
  PSF_ASSIGN_OR_RETURN(auto rows, Scan("commit/"));
  std::vector<CommittedCheckpoint> out;
  for (const auto& [key, value] : rows) {
    PSF_ASSIGN_OR_RETURN(uint32_t g, DecodeCommitGeneration(value, "job store " + where_ + ": commit " + key));
    out.push_back({static_cast<int64_t>(Number(key, 7)), g});
  }
  return out;
}

Status JobStore::ForgetCommitsAfter(int64_t step) {
  return DeleteRange(Key("commit/", static_cast<uint64_t>(step) + 1), "commit0", true);
}

Status JobStore::PutEvaluation(const EvaluationRecord& e) {
  nlohmann::json j = {{"epoch", e.epoch}, {"step", e.step}, {"metric", e.metric}, {"time_s", e.time_s},
                      {"train_loss", e.train_loss}, {"test_logloss", e.test_logloss}};
  return Put(Key("eval/", static_cast<uint64_t>(e.epoch)), j.dump(), false);
}

Result<std::vector<EvaluationRecord>> JobStore::Evaluations() const {
  PSF_ASSIGN_OR_RETURN(auto rows, Scan("eval/"));
  std::vector<EvaluationRecord> out;
  for (const auto& [key, value] : rows) {
    PSF_ASSIGN_OR_RETURN(EvaluationRecord e, DecodeEvaluation(value, "job store " + where_ + ": evaluation " + key));
    out.push_back(e);
  }
  return out;
}

}  // namespace psforge
