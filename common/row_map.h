// RowMap: a hash map from row ids to 32-bit values (a row's slot, its place
// in a batch), open addressing with linear probing over one flat array of
// entries: a lookup is one or two cache lines, where std::unordered_map
// chases a node pointer per entry. Rows are below 2^40 (kMaxTableRows), so
// ~0 marks an empty entry. The capacity is a power of two, doubled past
// half full; Erase leaves no tombstones (Clear empties it, keeping the capacity).
// Not thread-safe.
#pragma once

#include <cstddef>
#include <cstdint>
#include <utility>
#include <vector>

namespace psforge {

class RowMap {
 public:
  explicit RowMap(std::size_t expected = 8) { Rehash(Capacity(expected)); }

  // The value of `row`, and whether it was absent (then it is now `value`).
  std::pair<uint32_t, bool> TryEmplace(uint64_t row, uint32_t value) {
    if (2 * (size_ + 1) > entries_.size()) Rehash(2 * entries_.size());
    for (std::size_t i = Home(row);; i = (i + 1) & mask_) {
      Entry& e = entries_[i];
      if (e.row == row) return {e.value, false};
      if (e.row == kEmpty) {
        e = {row, value};
        ++size_;
        return {value, true};
      }
    }
  }
  // The value of `row`, or nullptr.
  const uint32_t* Find(uint64_t row) const {
    for (std::size_t i = Home(row);; i = (i + 1) & mask_) {
      const Entry& e = entries_[i];
      if (e.row == row) return &e.value;
      if (e.row == kEmpty) return nullptr;
    }
  }
  // Starts loading the entry where a lookup of `row` begins (a batch's
  // lookups, issued ahead, overlap their cache misses).
  void Prefetch(uint64_t row) const { __builtin_prefetch(&entries_[Home(row)]); }
  std::size_t size() const { return size_; }
  // Removes `row`; false when it was absent. Backward-shift deletion: the
  // entries after it in its probe run move up, so no tombstones are left.
  bool Erase(uint64_t row) {
    std::size_t i = Home(row);
    for (;; i = (i + 1) & mask_) {
      if (entries_[i].row == row) break;
      if (entries_[i].row == kEmpty) return false;
    }
    for (std::size_t j = (i + 1) & mask_; entries_[j].row != kEmpty; j = (j + 1) & mask_) {
      // Entry j may fill the hole at i unless its home lies cyclically in (i, j].
      const std::size_t home = Home(entries_[j].row);
      const bool stays = i <= j ? (i < home && home <= j) : (i < home || home <= j);
      if (!stays) {
        entries_[i] = entries_[j];
        i = j;
      }
    }
    entries_[i].row = kEmpty;
    --size_;
    return true;
  }
  void Clear() {
    for (Entry& e : entries_) e.row = kEmpty;
    size_ = 0;
  }

 private:
  static constexpr uint64_t kEmpty = ~uint64_t{0};
  struct Entry {
    uint64_t row = kEmpty;
    uint32_t value = 0;
  };
  static std::size_t Capacity(std::size_t expected) {
    std::size_t c = 16;
    while (c < 2 * expected) c *= 2;
    return c;
  }

 public:
  // Bytes of the entries of a map made for `expected` rows (it grows past them).
  static std::size_t BytesFor(std::size_t expected) { return Capacity(expected) * sizeof(Entry); }

 private:
  // Fibonacci hashing: the row's bits spread over the table's index bits
  // (rows of a batch are already hashes, but a table's may be counters).
  std::size_t Home(uint64_t row) const { return static_cast<std::size_t>((row * 0x9E3779B97F4A7C15ULL) >> shift_); }
  void Rehash(std::size_t capacity) {
    std::vector<Entry> old;
    old.swap(entries_);
    entries_.assign(capacity, Entry{});
    mask_ = capacity - 1;
    shift_ = 64;
    for (std::size_t c = capacity; c > 1; c >>= 1) --shift_;
    size_ = 0;
    for (const Entry& e : old)
      if (e.row != kEmpty) TryEmplace(e.row, e.value);
  }

  std::vector<Entry> entries_;
  std::size_t mask_ = 0, size_ = 0;
  int shift_ = 64;
};

}  // namespace psforge
