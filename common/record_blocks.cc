#include "common/record_blocks.h"

#include <string>

namespace psforge {

Result<std::unique_ptr<RecordBlocks>> RecordBlocks::Open(const Dataset& data, std::size_t max_blocks) {
  if (!data.stream) return FailedPrecondition("the data set is held in memory, not read from its file");
  PSF_ASSIGN_OR_RETURN(auto reader, CriteoReader::Open(data.stream->path, data.stream->skip_malformed));
  return std::unique_ptr<RecordBlocks>(
      new RecordBlocks(data.stream, data.rows, std::move(reader), std::max<std::size_t>(max_blocks, 2)));
}

RecordBlocks::RecordBlocks(std::shared_ptr<const RecordIndex> index, int64_t rows,
                           std::unique_ptr<CriteoReader> reader, std::size_t max_blocks)
    : index_(std::move(index)), rows_(rows), reader_(std::move(reader)), blocks_(max_blocks) {
  for (Block& b : blocks_) {
    b.x.resize(kStreamBlock * kCriteoDense);
    b.targets.resize(kStreamBlock);
    b.keys.resize(kStreamBlock * kCriteoCategorical);
  }
}

Result<const RecordBlocks::Block*> RecordBlocks::BlockOf(int64_t row) {
  if (row < 0 || row >= rows_)
    return InvalidArgument("record " + std::to_string(row) + " of " + index_->path + ", which has " +
                      std::to_string(rows_));
  const int64_t first = row / kStreamBlock * kStreamBlock;
  Block* victim = &blocks_[0];
  for (Block& b : blocks_) {
    if (b.first == first) {
      b.used = ++clock_;
      return &b;
    }
    if (b.used < victim->used) victim = &b;
  }
  const std::size_t k = static_cast<std::size_t>(first / kStreamBlock);
  if (k >= index_->offsets.size()) return InvalidArgument("record " + std::to_string(row) + " beyond the index");
  PSF_RETURN_IF_ERROR(reader_->Seek(index_->offsets[k], index_->lines[k]));
  victim->first = -1;
  const int64_t n = std::min<int64_t>(kStreamBlock, rows_ - first);
  for (int64_t i = 0; i < n; ++i) {
    auto more = reader_->Next(&record_);
    if (!more.ok())
      return DataLoss(more.status().message() + " (the file changed since it was read at the start of the job)");
    if (!*more)
      return DataLoss(index_->path + " ends after line " + std::to_string(reader_->line_number()) +
                      ": it is shorter than when it was read at the start of the job");
    DecodeCtrRecord(record_, victim->x.data() + i * kCriteoDense, &victim->targets[static_cast<std::size_t>(i)],
                    victim->keys.data() + i * kCriteoCategorical);
  }
  victim->first = first;
  victim->rows = n;
  victim->used = ++clock_;
  ++blocks_read_;
  return victim;
}

}  // namespace psforge
