#include "common/criteo.h"

#include <cerrno>
#include <charconv>
#include <cstring>
#include <string_view>

namespace psforge {
namespace {

// No real line comes near this (40 fields of at most 20 characters); a
// longer one is an error, not an allocation.
constexpr std::size_t kMaxLineBytes = 4096;
constexpr std::size_t kReadChunkBytes = 64 << 10;

std::string Column(int i) {
  if (i == 0) return "the label";
  if (i <= kCriteoDense) return std::string("integer feature I").append(std::to_string(i));
  return std::string("categorical feature C").append(std::to_string(i - kCriteoDense));
}

std::string Quoted(std::string_view s) {
  std::string q = "'";
  q.append(s.substr(0, 24));
  if (s.size() > 24) q.append("...");
  return q.append("'");
}

}  // namespace

Status ParseCriteoLine(std::string_view line, CtrRecord* out) {
  if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
  *out = CtrRecord{};
  constexpr int kColumns = 1 + kCriteoDense + kCriteoCategorical;
  int column = 0;
  std::size_t at = 0;
  while (true) {
    const std::size_t tab = line.find('\t', at);
    const std::string_view field = line.substr(at, tab == std::string_view::npos ? std::string_view::npos : tab - at);
    if (column >= kColumns)
      return InvalidArgument("more than " + std::to_string(kColumns) + " tab-separated columns (label, " +
                             std::to_string(kCriteoDense) + " integer and " + std::to_string(kCriteoCategorical) +
                             " categorical features)");
    const char* begin = field.data();
    const char* end = field.data() + field.size();
    if (column == 0) {
      if (field != "0" && field != "1") return InvalidArgument("the label is " + Quoted(field) + ", expected 0 or 1");
      out->label = field == "1" ? 1.0f : 0.0f;
    } else if (column <= kCriteoDense) {
      if (field.empty()) {
        out->dense_missing |= 1u << (column - 1);
      } else {
        int64_t v = 0;
        auto [p, ec] = std::from_chars(begin, end, v);
        if (ec != std::errc() || p != end)
          return InvalidArgument(Column(column) + " is " + Quoted(field) + ", expected a whole number");
        out->dense[column - 1] = v;
      }
    } else {
      const int c = column - 1 - kCriteoDense;
      if (field.empty()) {
        out->categorical_missing |= 1u << c;
      } else {
        uint64_t v = 0;
        auto [p, ec] = std::from_chars(begin, end, v, 16);
        if (ec != std::errc() || p != end || field.size() > 16)
          return InvalidArgument(Column(column) + " is " + Quoted(field) + ", expected up to 16 hexadecimal digits");
        out->categorical[c] = v;
      }
    }
    ++column;
    if (tab == std::string_view::npos) break;
    at = tab + 1;
  }
  if (column != kColumns)
    return InvalidArgument(std::to_string(column) + " tab-separated columns, expected " + std::to_string(kColumns) +
                           " (label, " + std::to_string(kCriteoDense) + " integer and " +
                           std::to_string(kCriteoCategorical) + " categorical features)");
  return Status::Ok();
}

Result<std::unique_ptr<CriteoReader>> CriteoReader::Open(const std::string& path, bool skip_malformed) {
  std::FILE* f = std::fopen(path.c_str(), "rb");
  if (!f) return NotFound("cannot open click log " + path + ": " + std::strerror(errno));
  auto reader = std::unique_ptr<CriteoReader>(new CriteoReader(path, f, skip_malformed));
  reader->line_buffer_.resize(kMaxLineBytes);
  reader->read_buffer_.resize(kReadChunkBytes);
  std::setvbuf(f, nullptr, _IONBF, 0);
  return reader;
}

CriteoReader::~CriteoReader() {
  if (file_) std::fclose(file_);
}

Status CriteoReader::Seek(int64_t offset, int64_t line) {
  if (fseeko(file_, static_cast<off_t>(offset), SEEK_SET) != 0)
    return DataLoss(path_ + ": cannot seek to byte " + std::to_string(offset) + ": " + std::strerror(errno));
  std::clearerr(file_);
  read_pos_ = read_end_ = 0;
  offset_ = offset;
  line_ = line;
  return Status::Ok();
}

Result<bool> CriteoReader::Next(CtrRecord* out) {
  while (true) {
    // One line, up to kMaxLineBytes (a NUL byte is content, not an end).
    std::size_t n = 0;
    bool too_long = false, newline = false;
    int64_t read = 0;
    while (true) {
      if (read_pos_ == read_end_) {
        read_pos_ = 0;
        read_end_ = std::fread(read_buffer_.data(), 1, read_buffer_.size(), file_);
        if (read_end_ == 0) break;
      }
      const char* start = read_buffer_.data() + read_pos_;
      const std::size_t avail = read_end_ - read_pos_;
      const char* nl = static_cast<const char*>(std::memchr(start, '\n', avail));
      const std::size_t take = nl ? static_cast<std::size_t>(nl - start) : avail;
      const std::size_t kept = std::min(take, kMaxLineBytes - n);
      std::memcpy(line_buffer_.data() + n, start, kept);
      n += kept;
      too_long = too_long || kept < take;
      read += static_cast<int64_t>(take);
      read_pos_ += take;
      if (nl) {
        ++read_pos_;
        newline = true;
        break;
      }
    }
    offset_ += read + (newline ? 1 : 0);
    if (!newline && std::ferror(file_))
      return DataLoss("reading " + path_ + " after line " + std::to_string(line_) + ": " + std::strerror(errno));
    if (!newline && n == 0 && !too_long) return false;
    ++line_;
    const std::string_view line(line_buffer_.data(), n);
    Status s;
    if (too_long) {
      s = InvalidArgument("longer than " + std::to_string(kMaxLineBytes) + " bytes");
    } else if (line.empty() || line == "\r") {
      s = InvalidArgument("empty line");
    } else {
      s = ParseCriteoLine(line, out);
    }
    if (s.ok()) return true;
    if (!skip_malformed_) return InvalidArgument(path_ + " line " + std::to_string(line_) + ": " + s.message());
    ++malformed_;
  }
}

}  // namespace psforge
