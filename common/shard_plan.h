// ShardPlan: how a training set is cut into data shards and visited.
//
// The records are put once in a seeded permutation (training.seed) and cut
// into shards of consecutive positions of it: ceil(records / data.shard_size)
// of them, rounded up to a multiple of the number of workers, all of the same
// size give or take one record (so that W workers, each leasing every W-th
// shard of an epoch's order, get the same number of records). Every epoch visits all shards in an order that depends only
// on (seed, epoch), and each shard's records in an order that depends only on
// (seed, epoch, shard). The coordinator leases shards from this plan and the
// worker holding a lease derives its records from it, so every process agrees
// without shipping record lists; ps-train walks the same plan alone. With
// shuffle off, both orders are the identity.
//
// Contiguous plans (click logs, read from their files on demand: block
// shuffling) skip the permutation: a shard is a run of consecutive records
// of the file, so a worker reads its shard in one sequential read; the
// shards of an epoch and the records of a shard are still shuffled, and
// the plan holds no list of records. Immutable after construction;
// thread-safe for reading.
#pragma once

#include <cstdint>
#include <vector>

#include "common/config.h"
#include "common/model_spec.h"

namespace psforge {

// Fills `order` (its size is the length) with a permutation of [0, size) that
// depends only on `seed`, the same on every platform.
void SeededPermutation(uint64_t seed, std::vector<int64_t>* order);

class ShardPlan {
 public:
  ShardPlan(int64_t records, int64_t shard_size, uint64_t seed, bool shuffle, int64_t workers = 1,
            bool contiguous = false);
  // The plan of a job's training set of `records` (contiguous for data read on demand).
  static ShardPlan ForJob(const JobConfig& config, int64_t records, int64_t workers = 1);

  int64_t records() const { return records_; }
  int64_t shards() const { return shards_; }
  // The positions of `shard` in the permutation.
  KeyRange Positions(int64_t shard) const;
  // Shard ids of `epoch` (1-based) in visiting order.
  std::vector<int64_t> EpochOrder(int64_t epoch) const;
  // The record ids of `shard` in the order `epoch` visits them.
  void Records(int64_t epoch, int64_t shard, std::vector<int64_t>* out) const;

  // A lease names (epoch, shard) as one number.
  uint64_t LeaseId(int64_t epoch, int64_t shard) const {
    return static_cast<uint64_t>(epoch) * static_cast<uint64_t>(shards_) + static_cast<uint64_t>(shard);
  }
  int64_t EpochOf(uint64_t lease) const { return static_cast<int64_t>(lease / shards_); }
  int64_t ShardOf(uint64_t lease) const { return static_cast<int64_t>(lease % shards_); }

 private:
  int64_t records_, shards_;
  int64_t base_, extra_;  // every shard has base_ records, the first extra_ one more
  uint64_t seed_;
  bool shuffle_;
  std::vector<int64_t> permutation_;
};

}  // namespace psforge
