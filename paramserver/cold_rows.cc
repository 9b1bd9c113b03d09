#include "paramserver/cold_rows.h"

#include <rocksdb/db.h>
#include <rocksdb/filter_policy.h>
#include <rocksdb/options.h>
#include <rocksdb/table.h>
#include <rocksdb/write_batch.h>
#include <unistd.h>

#include <atomic>
#include <cstring>
#include <filesystem>

namespace psforge {
namespace {

constexpr std::size_t kKeyBytes = 10;

void Key(uint16_t table, uint64_t row, char* out) {
  out[0] = static_cast<char>(table >> 8);
  out[1] = static_cast<char>(table & 0xff);
  for (int i = 0; i < 8; ++i) out[2 + i] = static_cast<char>((row >> (56 - 8 * i)) & 0xff);
}

}  // namespace

Result<std::unique_ptr<RocksColdRows>> RocksColdRows::Create(const std::string& parent,
                                                             std::vector<int64_t> record_floats) {
  static std::atomic<int> generation{0};
  std::error_code ec;
  std::filesystem::create_directories(parent, ec);
  if (ec) return Unavailable("spill folder " + parent + ": cannot create it: " + ec.message());
  const std::string path = parent + "/rows-" + std::to_string(::getpid()) + "-" + std::to_string(generation++);
  std::filesystem::remove_all(path, ec);
  std::unique_ptr<RocksColdRows> store(new RocksColdRows(path, std::move(record_floats)));
  rocksdb::Options options;
  options.create_if_missing = true;
  options.error_if_exists = true;
  // Small memtables and cache: the memory is the tables' budget's to use.
  options.write_buffer_size = 16 << 20;
  options.max_write_buffer_number = 2;
  options.max_background_jobs = 2;
  options.compression = rocksdb::kNoCompression;  // floats do not compress
  options.max_open_files = 256;
  rocksdb::BlockBasedTableOptions table;
  table.block_cache = rocksdb::NewLRUCache(8 << 20);
  // Most reads of a row not in memory are of a row never evicted: the
  // filter answers those without reading a block.
  table.filter_policy.reset(rocksdb::NewBloomFilterPolicy(10, false));
  table.cache_index_and_filter_blocks = false;
  options.table_factory.reset(rocksdb::NewBlockBasedTableFactory(table));
  rocksdb::DB* db = nullptr;
  rocksdb::Status s = rocksdb::DB::Open(options, path, &db);
  if (!s.ok()) return Unavailable("spill store " + path + ": cannot open it: " + s.ToString());
  store->db_.reset(db);
  return store;
}

RocksColdRows::RocksColdRows(std::string path, std::vector<int64_t> record_floats)
    : path_(std::move(path)), record_floats_(std::move(record_floats)) {}

RocksColdRows::~RocksColdRows() {
  db_.reset();
  std::error_code ec;
  std::filesystem::remove_all(path_, ec);
}

Status RocksColdRows::Put(uint16_t table, std::span<const uint64_t> rows, std::span<const float> records,
                          std::span<const uint32_t> steps) {
  const auto f = static_cast<std::size_t>(record_floats_.at(table));
  if (records.size() != rows.size() * f || steps.size() != rows.size())
    return InvalidArgument("spill store: records do not match their rows");
  rocksdb::WriteBatch batch(0, 0);
  char key[kKeyBytes];
  value_.resize(f * sizeof(float) + sizeof(uint32_t));
  for (std::size_t i = 0; i < rows.size(); ++i) {
    Key(table, rows[i], key);
    std::memcpy(value_.data(), records.data() + i * f, f * sizeof(float));
    std::memcpy(value_.data() + f * sizeof(float), &steps[i], sizeof(uint32_t));
    if (rocksdb::Status s = batch.Put(rocksdb::Slice(key, kKeyBytes), value_); !s.ok())
      return Unavailable("spill store " + path_ + ": " + s.ToString());
  }
  rocksdb::WriteOptions w;
  w.disableWAL = true;  // a cache of memory: a crash loses the process with it
  if (rocksdb::Status s = db_->Write(w, &batch); !s.ok())
    return Unavailable("spill store " + path_ + ": writing " + std::to_string(rows.size()) + " rows: " + s.ToString());
  return Status::Ok();
}

Status RocksColdRows::Get(uint16_t table, std::span<const uint64_t> rows, std::span<float> records,
                          std::span<uint32_t> steps, std::vector<uint8_t>* found) {
  const auto f = static_cast<std::size_t>(record_floats_.at(table));
  found->assign(rows.size(), 0);
  std::vector<char> keys(rows.size() * kKeyBytes);
  std::vector<rocksdb::Slice> slices(rows.size());
  for (std::size_t i = 0; i < rows.size(); ++i) {
    Key(table, rows[i], keys.data() + i * kKeyBytes);
    slices[i] = rocksdb::Slice(keys.data() + i * kKeyBytes, kKeyBytes);
  }
  std::vector<rocksdb::PinnableSlice> values(rows.size());
  std::vector<rocksdb::Status> statuses(rows.size());
  db_->MultiGet(rocksdb::ReadOptions(), db_->DefaultColumnFamily(), rows.size(), slices.data(), values.data(),
                statuses.data(), /*sorted_input=*/false);
  const std::size_t bytes = f * sizeof(float) + sizeof(uint32_t);
  for (std::size_t i = 0; i < rows.size(); ++i) {
    if (statuses[i].IsNotFound()) continue;
    if (!statuses[i].ok())
      return Unavailable("spill store " + path_ + ": reading row " + std::to_string(rows[i]) + ": " +
                         statuses[i].ToString());
    if (values[i].size() != bytes)
      return DataLoss("spill store " + path_ + ": row " + std::to_string(rows[i]) + " holds " +
                      std::to_string(values[i].size()) + " bytes, not " + std::to_string(bytes));
    std::memcpy(records.data() + i * f, values[i].data(), f * sizeof(float));
    std::memcpy(&steps[i], values[i].data() + f * sizeof(float), sizeof(uint32_t));
    (*found)[i] = 1;
  }
  return Status::Ok();
}

int64_t RocksColdRows::disk_bytes() const {
  uint64_t sst = 0, mem = 0;
  db_->GetIntProperty("rocksdb.live-sst-files-size", &sst);
  db_->GetIntProperty("rocksdb.cur-size-all-mem-tables", &mem);
  return static_cast<int64_t>(sst + mem);
}

}  // namespace psforge
