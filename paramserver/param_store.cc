#include "paramserver/param_store.h"

#include "paramserver/checkpoint_format.h"

#include <rocksdb/convenience.h>
#include <rocksdb/db.h>
#include <rocksdb/options.h>
#include <rocksdb/sst_file_writer.h>
#include <rocksdb/write_batch.h>
#include <zlib.h>

#include <algorithm>
#include <cstddef>
#include <cstdio>
#include <cstring>
#include <map>
#include <string_view>

namespace psforge {
namespace {

using namespace checkpoint_format;

std::string Bytes(const void* data, std::size_t bytes) {
  return std::string(static_cast<const char*>(data), bytes);
}

// A sorted key-value table with atomic batches: RocksDB, or a map.
class Table {
 public:
  virtual ~Table() = default;
  // Values are views: the caller keeps them alive for the call.
  virtual Status Apply(const std::vector<std::pair<std::string, std::string_view>>& puts,
                       const std::vector<std::string>& deletes) = 0;
  // NotFound when absent.
  virtual Status Get(const std::string& key, std::string* value) const = 0;
  virtual Result<std::vector<std::string>> Keys(const std::string& prefix) const = 0;
  // The checkpoint ids present, ascending, reading no values.
  virtual Result<std::vector<int64_t>> Ids() const = 0;
  // Deletes every key in [begin, end).
  virtual Status RemoveRange(const std::string& begin, const std::string& end) = 0;
  // Deletes the table files whose keys all lie in [begin, end), unread.
  virtual Status RemoveFiles(const std::string& begin, const std::string& end) = 0;
};

int64_t IdOf(const std::string& key) { return std::stoll(key.substr(2, 20)); }

// The first key after every key of checkpoint `id`.
std::string PrefixEnd(int64_t id) {
  std::string p = Prefix(id);
  p.back() = static_cast<char>(p.back() + 1);
  return p;
}

class MapTable final : public Table {
 public:
  MapTable() = default;
  explicit MapTable(std::map<std::string, std::string> entries) : map_(std::move(entries)) {}
  Status Apply(const std::vector<std::pair<std::string, std::string_view>>& puts,
               const std::vector<std::string>& deletes) override {
    for (const auto& k : deletes) map_.erase(k);
    for (const auto& [k, v] : puts) map_[k] = std::string(v);
    return Status::Ok();
  }
  Status Get(const std::string& key, std::string* value) const override {
    auto it = map_.find(key);
    if (it == map_.end()) return NotFound(key);
    *value = it->second;
    return Status::Ok();
  }
  Result<std::vector<std::string>> Keys(const std::string& prefix) const override {
    std::vector<std::string> out;
    for (auto it = map_.lower_bound(prefix); it != map_.end() && it->first.compare(0, prefix.size(), prefix) == 0; ++it)
      out.push_back(it->first);
    return out;
  }
  Result<std::vector<int64_t>> Ids() const override {
    std::vector<int64_t> ids;
    for (auto it = map_.lower_bound("c/"); it != map_.end() && it->first.size() >= 23 &&
                                           it->first.compare(0, 2, "c/") == 0;
         it = map_.lower_bound(PrefixEnd(ids.back())))
      ids.push_back(IdOf(it->first));
    return ids;
  }
  Status RemoveRange(const std::string& begin, const std::string& end) override {
    map_.erase(map_.lower_bound(begin), map_.lower_bound(end));
    return Status::Ok();
  }
  Status RemoveFiles(const std::string& begin, const std::string& end) override { return RemoveRange(begin, end); }

 private:
  std::map<std::string, std::string> map_;
};

Status FromRocks(const rocksdb::Status& s, const std::string& where, const std::string& what) {
  if (s.ok()) return Status::Ok();
  const std::string message = "RocksDB store " + where + ": " + what + ": " + s.ToString();
  if (s.IsNotFound()) return NotFound(message);
  if (s.IsCorruption()) return DataLoss(message);
  if (s.IsNoSpace()) return ResourceExhausted(message);
  return Unavailable(message);
}

class RocksTable final : public Table {
 public:
  RocksTable(std::unique_ptr<rocksdb::DB> db, rocksdb::Options options, std::string where)
      : db_(std::move(db)), options_(std::move(options)), where_(std::move(where)) {}

  // A checkpoint goes in as one table file, written once and synced by
  // SstFileWriter, then ingested: atomically (all of its keys appear at
  // once, or none) and without a copy through the memtable, the
  // write-ahead log or a flush.
  Status Apply(const std::vector<std::pair<std::string, std::string_view>>& puts,
               const std::vector<std::string>& deletes) override {
    if (puts.empty()) {
      rocksdb::WriteBatch batch;
      for (const auto& k : deletes) batch.Delete(k);
      rocksdb::WriteOptions options;
      options.sync = true;
      return FromRocks(db_->Write(options, &batch), where_, "delete");
    }
    std::vector<std::pair<const std::string*, const std::string_view*>> entries;  // key, value (null: delete)
    for (const auto& [k, v] : puts) entries.emplace_back(&k, &v);
    for (const auto& k : deletes) entries.emplace_back(&k, nullptr);
    std::sort(entries.begin(), entries.end(), [](const auto& a, const auto& b) { return *a.first < *b.first; });
    const std::string file = where_ + ".incoming.sst";
    rocksdb::SstFileWriter writer(rocksdb::EnvOptions(), options_, nullptr, /*invalidate_page_cache=*/false);
    PSF_RETURN_IF_ERROR(FromRocks(writer.Open(file), where_, "create " + file));
    for (const auto& [k, v] : entries) {
      PSF_RETURN_IF_ERROR(FromRocks(v ? writer.Put(*k, rocksdb::Slice(v->data(), v->size())) : writer.Delete(*k),
                                    where_, "write " + file));
    }
    PSF_RETURN_IF_ERROR(FromRocks(writer.Finish(), where_, "finish " + file));
    rocksdb::IngestExternalFileOptions ingest;
    ingest.move_files = true;
    return FromRocks(db_->IngestExternalFile({file}, ingest), where_, "ingest " + file);
  }
  Status Get(const std::string& key, std::string* value) const override {
    rocksdb::ReadOptions options;
    options.verify_checksums = true;
    return FromRocks(db_->Get(options, key, value), where_, "read " + key);
  }
  Result<std::vector<std::string>> Keys(const std::string& prefix) const override {
    rocksdb::ReadOptions options;
    options.verify_checksums = true;
    std::unique_ptr<rocksdb::Iterator> it(db_->NewIterator(options));
    std::vector<std::string> out;
    for (it->Seek(prefix); it->Valid() && it->key().starts_with(prefix); it->Next())
      out.push_back(it->key().ToString());
    PSF_RETURN_IF_ERROR(FromRocks(it->status(), where_, "list"));
    return out;
  }
  Result<std::vector<int64_t>> Ids() const override {
    // Seeking from one checkpoint's first key to the next reads the small
    // blocks that start each checkpoint, not its values.
    rocksdb::ReadOptions options;
    options.verify_checksums = true;
    std::unique_ptr<rocksdb::Iterator> it(db_->NewIterator(options));
    std::vector<int64_t> ids;
    for (it->Seek("c/"); it->Valid() && it->key().starts_with("c/") && it->key().size() >= 23;
         it->Seek(PrefixEnd(ids.back())))
      ids.push_back(IdOf(it->key().ToString()));
    PSF_RETURN_IF_ERROR(FromRocks(it->status(), where_, "list"));
    return ids;
  }
  Status RemoveFiles(const std::string& begin, const std::string& end) override {
    rocksdb::Slice b(begin), e(end);
    return FromRocks(rocksdb::DeleteFilesInRange(db_.get(), db_->DefaultColumnFamily(), &b, &e), where_,
                     "delete files");
  }
  Status RemoveRange(const std::string& begin, const std::string& end) override {
    // Whole table files of the checkpoint go at once; a tombstone covers the rest.
    PSF_RETURN_IF_ERROR(RemoveFiles(begin, end));
    rocksdb::Slice b(begin), e(end);
    rocksdb::WriteOptions options;
    options.sync = true;
    return FromRocks(db_->DeleteRange(options, db_->DefaultColumnFamily(), b, e), where_, "delete range");
  }

 private:
  std::unique_ptr<rocksdb::DB> db_;
  rocksdb::Options options_;
  std::string where_;
};

class TableStore final : public ParamStore {
 public:
  TableStore(std::unique_ptr<Table> table, std::string where) : table_(std::move(table)), where_(std::move(where)) {}

  Status Write(const ServerCheckpoint& c) override {
    std::vector<std::pair<std::string, std::string_view>> puts;  // views of `c` and of the locals below
    Meta meta{};
    std::memcpy(meta.magic, kMagic, sizeof kMagic);
    meta.id = c.id;
    meta.version = c.version;
    meta.begin = c.range.begin;
    meta.end = c.range.end;
    meta.optimizer_steps = c.optimizer_steps;
    meta.weights = static_cast<int64_t>(c.weights.size());
    meta.state = static_cast<int64_t>(c.optimizer_state.size());
    meta.positions = static_cast<int64_t>(c.positions.size());
    meta.weights_crc = Chunks(c.id, 'w', c.weights, &puts);
    meta.state_crc = Chunks(c.id, 's', c.optimizer_state, &puts);
    std::string positions;
    for (const DataPosition& p : c.positions) {
      positions += Bytes(&p.worker, sizeof p.worker);
      positions += Bytes(&p.lease, sizeof p.lease);
      positions += Bytes(&p.lease_offset, sizeof p.lease_offset);
    }
    for (const EpochAudit& a : c.audit) {
      positions += Bytes(&a.epoch, sizeof a.epoch);
      positions += Bytes(&a.records, sizeof a.records);
      positions += Bytes(&a.id_sum, sizeof a.id_sum);
      positions += Bytes(&a.id_square_sum, sizeof a.id_square_sum);
    }
    meta.positions_crc = Crc(0, positions.data(), positions.size());
    puts.emplace_back(Prefix(c.id) + "p", positions);
    meta.meta_crc = Crc(0, &meta, offsetof(Meta, meta_crc));
    puts.emplace_back(Prefix(c.id) + "meta", std::string_view(reinterpret_cast<const char*>(&meta), sizeof meta));
    std::string rows_header;
    if (c.rows_base >= 0) {
      RowsHeader h{};
      std::memcpy(h.magic, kRowsMagic, sizeof kRowsMagic);
      h.base = c.rows_base;
      h.tables = static_cast<uint32_t>(c.tables.size());
      rows_header = Bytes(&h, sizeof h);
      for (const TableRowsCheckpoint& t : c.tables) {
        RowsEntry e{};
        e.table = t.table;
        e.record_floats = static_cast<uint32_t>(t.record_floats);
        e.rows = static_cast<int64_t>(t.rows.size());
        e.crc = ByteChunks(c.id, t.table, 'i', t.rows.data(), t.rows.size() * sizeof(uint64_t), 0, &puts);
        e.crc = ByteChunks(c.id, t.table, 'r', t.records.data(), t.records.size() * sizeof(float), e.crc, &puts);
        e.crc = ByteChunks(c.id, t.table, 'k', t.steps.data(), t.steps.size() * sizeof(uint32_t), e.crc, &puts);
        rows_header += Bytes(&e, sizeof e);
      }
      const uint32_t crc = Crc(0, rows_header.data(), rows_header.size());
      rows_header += Bytes(&crc, sizeof crc);
      puts.emplace_back(Prefix(c.id) + "t", rows_header);
    }
    // Whatever an older checkpoint of this id left (more chunks) goes in the same batch.
    PSF_ASSIGN_OR_RETURN(auto old, table_->Keys(Prefix(c.id)));
    std::vector<std::string> deletes;
    for (auto& k : old)
      if (std::none_of(puts.begin(), puts.end(), [&](const auto& p) { return p.first == k; }))
        deletes.push_back(std::move(k));
    return table_->Apply(puts, deletes);
  }

  Result<ServerCheckpoint> Read(int64_t id) const override {
    const std::string name = "checkpoint " + std::to_string(id) + " in " + where_;
    std::string raw;
    Status got = table_->Get(Prefix(id) + "meta", &raw);
    if (got.code() == StatusCode::kNotFound) return NotFound(name + " does not exist");
    PSF_RETURN_IF_ERROR(got.WithContext(name));
    Meta meta;
    if (raw.size() != sizeof meta) return DataLoss(name + ": header of " + std::to_string(raw.size()) + " bytes");
    std::memcpy(&meta, raw.data(), sizeof meta);
    if (std::memcmp(meta.magic, kMagic, sizeof kMagic) != 0 || meta.meta_crc != Crc(0, &meta, offsetof(Meta, meta_crc)))
      return DataLoss(name + ": header checksum does not match");
    if (meta.id != id || meta.begin < 0 || meta.end < meta.begin || meta.weights != meta.end - meta.begin ||
        meta.state < 0 || meta.positions < 0)
      return DataLoss(name + ": header is inconsistent");
    ServerCheckpoint c;
    c.id = meta.id;
    c.version = meta.version;
    c.range = {meta.begin, meta.end};
    c.optimizer_steps = meta.optimizer_steps;
    PSF_RETURN_IF_ERROR(ReadChunks(id, 'w', meta.weights, meta.weights_crc, name, "weights", &c.weights));
    PSF_RETURN_IF_ERROR(ReadChunks(id, 's', meta.state, meta.state_crc, name, "optimizer state", &c.optimizer_state));
    std::string positions;
    got = table_->Get(Prefix(id) + "p", &positions);
    if (got.code() == StatusCode::kNotFound) return DataLoss(name + ": worker positions are missing");
    PSF_RETURN_IF_ERROR(got.WithContext(name));
    constexpr std::size_t kEntry = sizeof(uint32_t) + sizeof(uint64_t) + sizeof(int64_t);
    constexpr std::size_t kAudit = 4 * sizeof(int64_t);
    if (static_cast<uint64_t>(meta.positions) > positions.size() / kEntry)
      return DataLoss(name + ": the header counts " + std::to_string(meta.positions) + " worker positions, " +
                      std::to_string(positions.size()) + " bytes hold fewer");
    const std::size_t audit_at = static_cast<std::size_t>(meta.positions) * kEntry;
    if ((positions.size() - audit_at) % kAudit != 0 ||
        Crc(0, positions.data(), positions.size()) != meta.positions_crc)
      return DataLoss(name + ": worker positions do not match their checksum");
    for (std::size_t off = audit_at; off < positions.size(); off += kAudit) {
      EpochAudit a;
      std::memcpy(&a.epoch, positions.data() + off, 8);
      std::memcpy(&a.records, positions.data() + off + 8, 8);
      std::memcpy(&a.id_sum, positions.data() + off + 16, 8);
      std::memcpy(&a.id_square_sum, positions.data() + off + 24, 8);
      c.audit.push_back(a);
    }
    for (std::size_t off = 0; off < audit_at; off += kEntry) {
      DataPosition p;
      std::memcpy(&p.worker, positions.data() + off, sizeof p.worker);
      std::memcpy(&p.lease, positions.data() + off + 4, sizeof p.lease);
      std::memcpy(&p.lease_offset, positions.data() + off + 12, sizeof p.lease_offset);
      c.positions.push_back(p);
    }
    PSF_RETURN_IF_ERROR(ReadRows(id, name, &c));
    return c;
  }

  Result<std::vector<int64_t>> List() const override { return table_->Ids(); }

  Result<int64_t> RowsBase(int64_t id) const override {
    std::string raw;
    Status got = table_->Get(Prefix(id) + "t", &raw);
    if (got.code() == StatusCode::kNotFound) return int64_t{-1};
    PSF_RETURN_IF_ERROR(got.WithContext("checkpoint " + std::to_string(id) + " in " + where_));
    RowsHeader h;
    if (raw.size() < sizeof h || std::memcmp(raw.data(), kRowsMagic, sizeof kRowsMagic) != 0)
      return DataLoss("checkpoint " + std::to_string(id) + " in " + where_ + ": table rows header is damaged");
    std::memcpy(&h, raw.data(), sizeof h);
    return h.base;
  }

  // Whole checkpoints go at once (one table file each, in RocksDB): never
  // half a checkpoint, and a damaged one is not read to be deleted.
  Status Remove(int64_t id) override { return table_->RemoveRange(Prefix(id), PrefixEnd(id)); }

  Status RemoveNewerThan(int64_t id) override {
    // Their table files first, unread ('0' follows '/'); then what is left
    // of them, one checkpoint's range at a time: a tombstone over all later
    // keys would make every later checkpoint overlap it, land in level 0 and
    // be compacted together with its neighbours.
    PSF_RETURN_IF_ERROR(table_->RemoveFiles(Prefix(id + 1), "c0"));
    PSF_ASSIGN_OR_RETURN(auto ids, table_->Ids());
    for (int64_t other : ids)
      if (other > id) PSF_RETURN_IF_ERROR(Remove(other));
    return Status::Ok();
  }

  const std::string& where() const override { return where_; }

 private:
  // Adds `values` as chunks of checkpoint `id`; returns their CRC.
  static uint32_t Chunks(int64_t id, char part, const std::vector<float>& values,
                         std::vector<std::pair<std::string, std::string_view>>* puts) {
    uint32_t crc = 0;
    for (int64_t begin = 0, chunk = 0; begin < static_cast<int64_t>(values.size()); begin += kChunkFloats, ++chunk) {
      const int64_t n = std::min<int64_t>(kChunkFloats, static_cast<int64_t>(values.size()) - begin);
      const std::size_t bytes = static_cast<std::size_t>(n) * sizeof(float);
      crc = Crc(crc, values.data() + begin, bytes);
      puts->emplace_back(ChunkKey(id, part, chunk),
                         std::string_view(reinterpret_cast<const char*>(values.data() + begin), bytes));
    }
    return crc;
  }

  Status ReadChunks(int64_t id, char part, int64_t count, uint32_t crc_expected, const std::string& name,
                    const char* what, std::vector<float>* out) const {
    // The last chunk first: a header that claims more than is stored is
    // refused before anything is allocated for it.
    std::string value;
    if (count > 0) {
      const int64_t last = (count - 1) / kChunkFloats;
      Status got = table_->Get(ChunkKey(id, part, last), &value);
      if (got.code() == StatusCode::kNotFound)
        return DataLoss(name + ": " + what + " chunk " + std::to_string(last) + " (the last of " +
                        std::to_string(count) + " values) is missing");
      PSF_RETURN_IF_ERROR(got.WithContext(name));
    }
    out->resize(static_cast<std::size_t>(count));
    uint32_t crc = 0;
    for (int64_t begin = 0, chunk = 0; begin < count; begin += kChunkFloats, ++chunk) {
      const int64_t n = std::min(kChunkFloats, count - begin);
      Status got = table_->Get(ChunkKey(id, part, chunk), &value);
      if (got.code() == StatusCode::kNotFound)
        return DataLoss(name + ": " + what + " chunk " + std::to_string(chunk) + " is missing");
      PSF_RETURN_IF_ERROR(got.WithContext(name));
      if (value.size() != static_cast<std::size_t>(n) * sizeof(float))
        return DataLoss(name + ": " + what + " chunk " + std::to_string(chunk) + " has " +
                        std::to_string(value.size()) + " bytes, expected " + std::to_string(n * sizeof(float)));
      std::memcpy(out->data() + begin, value.data(), value.size());
      crc = Crc(crc, value.data(), value.size());
    }
    if (crc != crc_expected) return DataLoss(name + ": " + what + " do not match their checksum");
    return Status::Ok();
  }

  // Adds `bytes` bytes at `data` as the chunks of `part` of table `table`
  // of checkpoint `id`; returns `crc` extended over them.
  static uint32_t ByteChunks(int64_t id, uint32_t table, char part, const void* data, std::size_t bytes, uint32_t crc,
                             std::vector<std::pair<std::string, std::string_view>>* puts) {
    const auto* p = static_cast<const char*>(data);
    for (std::size_t begin = 0, chunk = 0; begin < bytes; begin += kChunkBytes, ++chunk) {
      const std::size_t n = std::min<std::size_t>(kChunkBytes, bytes - begin);
      crc = Crc(crc, p + begin, n);
      puts->emplace_back(RowsChunkKey(id, table, part, static_cast<int64_t>(chunk)), std::string_view(p + begin, n));
    }
    return crc;
  }

  // Reads `bytes` bytes of `part` of table `table` into `out`, extending *crc.
  Status ReadByteChunks(int64_t id, uint32_t table, char part, std::size_t bytes, const std::string& name,
                        const std::string& what, void* out, uint32_t* crc) const {
    std::string value;
    auto* dest = static_cast<char*>(out);
    for (std::size_t begin = 0, chunk = 0; begin < bytes; begin += kChunkBytes, ++chunk) {
      const std::size_t n = std::min<std::size_t>(kChunkBytes, bytes - begin);
      Status got = table_->Get(RowsChunkKey(id, table, part, static_cast<int64_t>(chunk)), &value);
      if (got.code() == StatusCode::kNotFound)
        return DataLoss(name + ": " + what + " chunk " + std::to_string(chunk) + " is missing");
      PSF_RETURN_IF_ERROR(got.WithContext(name));
      if (value.size() != n)
        return DataLoss(name + ": " + what + " chunk " + std::to_string(chunk) + " has " +
                        std::to_string(value.size()) + " bytes, expected " + std::to_string(n));
      std::memcpy(dest + begin, value.data(), n);
      *crc = Crc(*crc, value.data(), n);
    }
    return Status::Ok();
  }

  // The sparse table rows of checkpoint `id`, if it has any (rows_base
  // stays -1 without them).
  Status ReadRows(int64_t id, const std::string& name, ServerCheckpoint* c) const {
    std::string raw;
    Status got = table_->Get(Prefix(id) + "t", &raw);
    if (got.code() == StatusCode::kNotFound) return Status::Ok();
    PSF_RETURN_IF_ERROR(got.WithContext(name));
    RowsHeader h;
    if (raw.size() < sizeof h + sizeof(uint32_t)) return DataLoss(name + ": table rows header of " + std::to_string(raw.size()) + " bytes");
    std::memcpy(&h, raw.data(), sizeof h);
    uint32_t crc = 0;
    std::memcpy(&crc, raw.data() + raw.size() - sizeof crc, sizeof crc);
    if (std::memcmp(h.magic, kRowsMagic, sizeof kRowsMagic) != 0 ||
        raw.size() != sizeof h + static_cast<std::size_t>(h.tables) * sizeof(RowsEntry) + sizeof crc ||
        crc != Crc(0, raw.data(), raw.size() - sizeof crc))
      return DataLoss(name + ": table rows header does not match its checksum");
    if (h.base < 0 || h.base >= id) return DataLoss(name + ": table rows based on checkpoint " + std::to_string(h.base));
    c->rows_base = h.base;
    for (uint32_t i = 0; i < h.tables; ++i) {
      RowsEntry e;
      std::memcpy(&e, raw.data() + sizeof h + i * sizeof e, sizeof e);
      const std::string what = "table " + std::to_string(e.table) + " rows";
      // A header that claims more than can be stored is refused before
      // anything is allocated for it (kMaxRowsPerCheckpoint: 2^32 rows).
      if (e.table > 0xffff || e.record_floats == 0 || e.record_floats > 4096 || e.rows < 0 || e.rows > (int64_t{1} << 32))
        return DataLoss(name + ": " + what + ": header is inconsistent");
      const auto rows = static_cast<std::size_t>(e.rows);
      if (rows > 0) {  // the last chunk of the records must be there
        const std::size_t record_bytes = rows * e.record_floats * sizeof(float);
        std::string last;
        Status there = table_->Get(RowsChunkKey(id, e.table, 'r', static_cast<int64_t>((record_bytes - 1) / kChunkBytes)), &last);
        if (there.code() == StatusCode::kNotFound) return DataLoss(name + ": " + what + ": records are missing");
        PSF_RETURN_IF_ERROR(there.WithContext(name));
      }
      TableRowsCheckpoint t;
      t.table = static_cast<uint16_t>(e.table);
      t.record_floats = e.record_floats;
      t.rows.resize(rows);
      t.records.resize(rows * e.record_floats);
      t.steps.resize(rows);
      uint32_t sum = 0;
      PSF_RETURN_IF_ERROR(ReadByteChunks(id, e.table, 'i', rows * sizeof(uint64_t), name, what + " ids", t.rows.data(), &sum));
      PSF_RETURN_IF_ERROR(ReadByteChunks(id, e.table, 'r', t.records.size() * sizeof(float), name, what + " records",
                                         t.records.data(), &sum));
      PSF_RETURN_IF_ERROR(ReadByteChunks(id, e.table, 'k', rows * sizeof(uint32_t), name, what + " counts", t.steps.data(), &sum));
      if (sum != e.crc) return DataLoss(name + ": " + what + " do not match their checksum");
      for (std::size_t k = 1; k < rows; ++k)
        if (t.rows[k] <= t.rows[k - 1]) return DataLoss(name + ": " + what + " are not sorted");
      c->tables.push_back(std::move(t));
    }
    return Status::Ok();
  }

  std::unique_ptr<Table> table_;
  std::string where_;
};

}  // namespace

Status MergeTableRows(const std::vector<TableRowsCheckpoint>& older, std::vector<TableRowsCheckpoint>* newer) {
  for (const TableRowsCheckpoint& o : older) {
    auto it = std::find_if(newer->begin(), newer->end(), [&](const TableRowsCheckpoint& n) { return n.table == o.table; });
    if (it == newer->end()) {
      newer->push_back(o);
      continue;
    }
    TableRowsCheckpoint& n = *it;
    if (n.record_floats != o.record_floats)
      return DataLoss("table " + std::to_string(n.table) + " rows of " + std::to_string(o.record_floats) + " and of " +
                      std::to_string(n.record_floats) + " floats in two checkpoints of one chain");
    const auto f = static_cast<std::size_t>(n.record_floats);
    TableRowsCheckpoint merged;
    merged.table = n.table;
    merged.record_floats = n.record_floats;
    merged.rows.reserve(o.rows.size() + n.rows.size());
    merged.records.reserve((o.rows.size() + n.rows.size()) * f);
    std::size_t i = 0, j = 0;
    auto take = [&](const TableRowsCheckpoint& from, std::size_t k) {
      merged.rows.push_back(from.rows[k]);
      merged.records.insert(merged.records.end(), from.records.begin() + k * f, from.records.begin() + (k + 1) * f);
      merged.steps.push_back(from.steps[k]);
    };
    while (i < o.rows.size() || j < n.rows.size()) {
      if (j == n.rows.size() || (i < o.rows.size() && o.rows[i] < n.rows[j])) {
        take(o, i++);
      } else {
        if (i < o.rows.size() && o.rows[i] == n.rows[j]) ++i;  // newer's record wins
        take(n, j++);
      }
    }
    n = std::move(merged);
  }
  std::sort(newer->begin(), newer->end(), [](const auto& a, const auto& b) { return a.table < b.table; });
  return Status::Ok();
}

std::unique_ptr<ParamStore> ParamStore::CreateInMemory() {
  return std::make_unique<TableStore>(std::make_unique<MapTable>(), "memory");
}

std::unique_ptr<ParamStore> ParamStore::CreateInMemoryFrom(std::map<std::string, std::string> entries) {
  return std::make_unique<TableStore>(std::make_unique<MapTable>(std::move(entries)), "memory");
}

Result<std::unique_ptr<ParamStore>> ParamStore::OpenRocksDb(const std::string& path) {
  rocksdb::Options options;
  options.create_if_missing = true;
  options.paranoid_checks = true;
  options.compression = rocksdb::kNoCompression;  // float values do not compress
  rocksdb::DB* db = nullptr;
  rocksdb::Status s = rocksdb::DB::Open(options, path, &db);
  if (!s.ok()) return FromRocks(s, path, "open");
  return std::unique_ptr<ParamStore>(std::make_unique<TableStore>(
      std::make_unique<RocksTable>(std::unique_ptr<rocksdb::DB>(db), options, path), path));
}

Result<std::unique_ptr<ParamStore>> ParamStore::OpenRocksDbReadOnly(const std::string& path) {
  rocksdb::Options options;
  options.paranoid_checks = true;
  rocksdb::DB* db = nullptr;
  rocksdb::Status s = rocksdb::DB::OpenForReadOnly(options, path, &db);
  if (!s.ok()) return FromRocks(s, path, "open to read");
  return std::unique_ptr<ParamStore>(std::make_unique<TableStore>(
      std::make_unique<RocksTable>(std::unique_ptr<rocksdb::DB>(db), options, path), path));
}

}  // namespace psforge
