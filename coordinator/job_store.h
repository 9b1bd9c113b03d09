// JobStore: the coordinator's durable record of its job, in RocksDB at
// <checkpoint.dir>/coordinator, so that a stopped or crashed job resumes.
//
// It holds what the servers' checkpoints do not: which job this is (the
// config fields a resumed run must share), the job's generations (each
// start or restart from a checkpoint begins one, with the lease state it
// started from), every lease granted in a generation, the checkpoints every
// server has written (committed, with their generation), and the epoch
// evaluations. The lease state at a committed checkpoint is its
// generation's start replayed with that generation's grants up to the
// workers' positions the servers stored in the checkpoint (ReplayLeases).
//
// A commit, a new generation and a reset are synced before they return;
// grants and evaluations are written without a sync (they survive a crash
// of the process, and a commit syncs what came before it). Not thread-safe:
// the coordinator's loop owns it.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "common/config.h"
#include "common/status.h"
#include "coordinator/lease_table.h"
#include "coordinator/run_records.h"

namespace rocksdb {
class DB;
}

namespace psforge {

struct CommittedCheckpoint {
  int64_t step = 0;
  uint32_t generation = 0;
};

// The store's records, decoded: a damaged one is a DataLoss naming it
// (`name`: which record, for messages), never an exception. Free functions
// so that the fuzzer (tests/fuzz/job_store_fuzz.cc) reaches them without a
// database.
Result<LeaseState> DecodeGeneration(const std::string& value, const std::string& name);
Result<GrantRecord> DecodeGrant(const std::string& value, const std::string& name);
Result<uint32_t> DecodeCommitGeneration(const std::string& value, const std::string& name);
Result<EvaluationRecord> DecodeEvaluation(const std::string& value, const std::string& name);

// What a resumed job must share with the one that wrote its checkpoints:
// the model, the optimizer, the data's order and the cluster's shape.
nlohmann::json JobIdentity(const JobConfig& config);
// Ok when `stored` (a store's fingerprint) is of the job `identity`
// describes; otherwise the error names the fields that differ and `where`.
Status CheckSameJob(const std::string& stored, const nlohmann::json& identity, const std::string& where);

class JobStore {
 public:
  // Opens (creating it if missing) the store in directory `path`.
  static Result<std::unique_ptr<JobStore>> Open(const std::string& path);
  // Opens an existing store to read (writes fail), also while the
  // coordinator runs.
  static Result<std::unique_ptr<JobStore>> OpenReadOnly(const std::string& path);
  ~JobStore();

  // The job's identity ("" when the store is new).
  Result<std::string> Fingerprint() const;
  // A new job: forgets everything and records `fingerprint`.
  Status Reset(const std::string& fingerprint);

  // Generation `g` starts from `base`; grants are recorded under it.
  Status BeginGeneration(uint32_t g, const LeaseState& base);
  Result<uint32_t> LastGeneration() const;  // 0: none
  Result<LeaseState> Base(uint32_t g) const;
  Status AddGrant(uint32_t g, const GrantRecord& grant);
  Result<std::vector<GrantRecord>> Grants(uint32_t g) const;

  // Every server has written the checkpoint at `step` of generation `g`.
  // Keeps the newest `keep` commits, and the generations they need.
  Status Commit(int64_t step, uint32_t g, int64_t keep);
  Result<std::vector<CommittedCheckpoint>> Committed() const;  // ascending
  // The job goes back to `step`: later commits belong to the abandoned run.
  Status ForgetCommitsAfter(int64_t step);

  Status PutEvaluation(const EvaluationRecord& e);
  Result<std::vector<EvaluationRecord>> Evaluations() const;  // by epoch

  const std::string& where() const { return where_; }

 private:
  JobStore(std::unique_ptr<rocksdb::DB> db, std::string where);
  Status Put(const std::string& key, const std::string& value, bool sync);
  Result<std::vector<std::pair<std::string, std::string>>> Scan(const std::string& prefix) const;
  Status DeleteRange(const std::string& begin, const std::string& end, bool sync);

  std::unique_ptr<rocksdb::DB> db_;
  std::string where_;
  int64_t next_grant_ = 0;  // sequence number within the current generation
};

}  // namespace psforge
