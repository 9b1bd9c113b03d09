#include "common/shard_plan.h"

#include <algorithm>
#include <numeric>
#include <utility>

namespace psforge {
namespace {

uint64_t SplitMix64(uint64_t& state) {
  uint64_t z = (state += 0x9e3779b97f4a7c15ULL);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
  return z ^ (z >> 31);
}

uint64_t Mix(uint64_t a, uint64_t b) {
  uint64_t s = a * 0x9e3779b97f4a7c15ULL + b;
  return SplitMix64(s);
}

}  // namespace

void SeededPermutation(uint64_t seed, std::vector<int64_t>* order) {
  std::iota(order->begin(), order->end(), int64_t{0});
  uint64_t state = seed;
  // Fisher-Yates with our own generator: the order is the same on every platform.
  for (std::size_t i = order->size(); i > 1; --i) {
    std::size_t j = static_cast<std::size_t>(SplitMix64(state) % i);
    std::swap((*order)[i - 1], (*order)[j]);
  }
}

namespace {
// ceil(records / shard_size) shards, rounded up to a multiple of `workers`
// (at most one per record).
int64_t ShardCount(int64_t records, int64_t shard_size, int64_t workers) {
  int64_t shards = (records + shard_size - 1) / shard_size;
  if (workers > 1) shards = (shards + workers - 1) / workers * workers;
  return std::max<int64_t>(1, std::min(shards, records));
}
}  // namespace

ShardPlan ShardPlan::ForJob(const JobConfig& config, int64_t records, int64_t workers) {
  return ShardPlan(records, config.data.shard_size, config.training.seed, config.training.shuffle, workers,
                   /*contiguous=*/config.data.format == DataFormat::kCriteo);
}

ShardPlan::ShardPlan(int64_t records, int64_t shard_size, uint64_t seed, bool shuffle, int64_t workers,
                     bool contiguous)
    : records_(records),
      shards_(ShardCount(records, std::max<int64_t>(1, shard_size), std::max<int64_t>(1, workers))),
      base_(records / shards_),
      extra_(records % shards_),
      seed_(seed),
      shuffle_(shuffle),
      permutation_(shuffle && !contiguous ? records : 0) {
  if (!permutation_.empty()) SeededPermutation(Mix(seed_, 0), &permutation_);
}

KeyRange ShardPlan::Positions(int64_t shard) const {
  const int64_t begin = shard * base_ + std::min(shard, extra_);
  return {begin, begin + base_ + (shard < extra_ ? 1 : 0)};
}

std::vector<int64_t> ShardPlan::EpochOrder(int64_t epoch) const {
  std::vector<int64_t> order(shards_);
  if (shuffle_) SeededPermutation(Mix(seed_, static_cast<uint64_t>(epoch) << 1), &order);
  else std::iota(order.begin(), order.end(), int64_t{0});
  return order;
}

void ShardPlan::Records(int64_t epoch, int64_t shard, std::vector<int64_t>* out) const {
  KeyRange p = Positions(shard);
  out->resize(p.size());
  if (shuffle_) {
    SeededPermutation(Mix(Mix(seed_, (static_cast<uint64_t>(epoch) << 1) | 1), shard), out);
    for (auto& i : *out) i = permutation_.empty() ? p.begin + i : permutation_[p.begin + i];
  } else {
    std::iota(out->begin(), out->end(), p.begin);
  }
}

}  // namespace psforge
