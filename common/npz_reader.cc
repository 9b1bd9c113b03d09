#include "common/npz_reader.h"

#include <zlib.h>

#include <cstring>
#include <fstream>
#include <iterator>
#include <limits>

namespace psforge {
namespace {

uint64_t Get(const std::string& b, std::size_t at, int bytes) {
  uint64_t v = 0;
  for (int i = bytes - 1; i >= 0; --i) v = (v << 8) | static_cast<unsigned char>(b[at + static_cast<std::size_t>(i)]);
  return v;
}

// One member's bytes, inflated when the archive compressed it.
Result<std::string> MemberBytes(const std::string& file, const std::string& where, uint64_t local, uint64_t packed,
                                uint64_t size, uint64_t method) {
  if (local + 30 > file.size() || Get(file, local, 4) != 0x04034b50)
    return DataLoss(where + ": no local header where the directory points");
  const uint64_t data = local + 30 + Get(file, local + 26, 2) + Get(file, local + 28, 2);
  if (data > file.size() || packed > file.size() - data) return DataLoss(where + ": truncated");
  if (method == 0) {
    if (packed != size) return DataLoss(where + ": a stored member whose sizes differ");
    return file.substr(data, size);
  }
  if (method != 8) return InvalidArgument(where + ": compression method " + std::to_string(method) + " (only stored or deflated members are read)");
  if (size > (uint64_t{1} << 36)) return InvalidArgument(where + ": larger than 64 GiB");
  std::string out(size, '\0');
  z_stream z{};
  if (inflateInit2(&z, -MAX_WBITS) != Z_OK) return Internal(where + ": zlib would not start");
  z.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(file.data() + data));
  z.avail_in = static_cast<uInt>(std::min<uint64_t>(packed, std::numeric_limits<uInt>::max()));
  z.next_out = reinterpret_cast<Bytef*>(out.data());
  z.avail_out = static_cast<uInt>(std::min<uint64_t>(size, std::numeric_limits<uInt>::max()));
  const int r = inflate(&z, Z_FINISH);
  const uint64_t produced = z.total_out;
  inflateEnd(&z);
  if (r != Z_STREAM_END || produced != size) return DataLoss(where + ": the deflated data does not inflate to its size");
  return out;
}

// The NPY encoding of one array (numpy.lib.format, versions 1 to 3).
Result<NpzArray> ParseNpy(const std::string& b, const std::string& where) {
  if (b.size() < 10 || b.compare(0, 6, "\x93NUMPY") != 0) return DataLoss(where + ": not an NPY array");
  const int major = static_cast<unsigned char>(b[6]);
  const std::size_t len_bytes = major == 1 ? 2 : 4;
  if (major < 1 || major > 3 || b.size() < 8 + len_bytes) return DataLoss(where + ": NPY version " + std::to_string(major));
  const std::size_t header_len = Get(b, 8, static_cast<int>(len_bytes)), start = 8 + len_bytes;
  if (header_len > b.size() - start) return DataLoss(where + ": truncated NPY header");
  const std::string header = b.substr(start, header_len);
  auto value_of = [&](const std::string& key) -> std::string {
    const std::size_t k = header.find("'" + key + "'");
    if (k == std::string::npos) return "";
    std::size_t v = header.find(':', k);
    if (v == std::string::npos) return "";
    ++v;
    while (v < header.size() && header[v] == ' ') ++v;
    const char open = v < header.size() ? header[v] : '\0';
    const char close = open == '(' ? ')' : open == '\'' ? '\'' : ',';
    const std::size_t end = header.find(close, v + 1);
    return end == std::string::npos ? "" : header.substr(v, end - v + (close == ',' ? 0 : 1));
  };
  const std::string descr = value_of("descr"), order = value_of("fortran_order"), shape_text = value_of("shape");
  if (order.rfind("False", 0) != 0) return InvalidArgument(where + ": a Fortran-order array (save it C-contiguous)");
  int item = 0;
  if (descr == "'<f4'") item = 4;
  if (descr == "'<f8'") item = 8;
  if (item == 0) return InvalidArgument(where + ": dtype " + descr + "; float32 or float64 arrays are read");
  NpzArray a;
  uint64_t count = 1;
  for (std::size_t i = 1; i + 1 < shape_text.size();) {
    while (i + 1 < shape_text.size() && (shape_text[i] == ' ' || shape_text[i] == ',')) ++i;
    if (i + 1 >= shape_text.size()) break;
    std::size_t used = 0;
    int64_t d = -1;
    try {
      d = std::stoll(shape_text.substr(i), &used);
    } catch (const std::exception&) {
    }
    if (d < 0 || used == 0) return DataLoss(where + ": shape " + shape_text);
    a.shape.push_back(d);
    count *= static_cast<uint64_t>(d);
    if (count > (uint64_t{1} << 36)) return InvalidArgument(where + ": more than 2^36 values");
    i += used;
  }
  const std::size_t data = start + header_len;
  if (b.size() - data != count * static_cast<uint64_t>(item))
    return DataLoss(where + ": " + std::to_string(b.size() - data) + " bytes of data for shape " + shape_text);
  a.values.resize(count);
  for (uint64_t i = 0; i < count; ++i) {
    if (item == 4) {
      std::memcpy(&a.values[i], b.data() + data + 4 * i, 4);
    } else {
      double v;
      std::memcpy(&v, b.data() + data + 8 * i, 8);
      a.values[i] = static_cast<float>(v);
    }
  }
  return a;
}

}  // namespace

Result<std::vector<NpzArray>> ReadNpz(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return NotFound(path + ": cannot open it");
  const std::string file((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  // The end of central directory record, within the last 64 KiB + 22 bytes.
  std::size_t eocd = std::string::npos;
  if (file.size() >= 22) {
    const std::size_t lowest = file.size() > 65557 ? file.size() - 65557 : 0;
    for (std::size_t i = file.size() - 21; i-- > lowest;)
      if (Get(file, i, 4) == 0x06054b50) {
        eocd = i;
        break;
      }
  }
  if (eocd == std::string::npos) return DataLoss(path + ": not a ZIP archive (.npz); no end of central directory");
  uint64_t entries = Get(file, eocd + 10, 2), dir = Get(file, eocd + 16, 4);
  if (dir == 0xffffffff || entries == 0xffff) {  // ZIP64: its own end record, located just before
    if (eocd < 20 || Get(file, eocd - 20, 4) != 0x07064b50) return DataLoss(path + ": a ZIP64 archive without its locator");
    const uint64_t end64 = Get(file, eocd - 12, 8);
    if (end64 + 56 > file.size() || Get(file, end64, 4) != 0x06064b50) return DataLoss(path + ": bad ZIP64 end record");
    entries = Get(file, end64 + 32, 8);
    dir = Get(file, end64 + 48, 8);
  }
  std::vector<NpzArray> arrays;
  uint64_t at = dir;
  for (uint64_t e = 0; e < entries; ++e) {
    if (at + 46 > file.size() || Get(file, at, 4) != 0x02014b50) return DataLoss(path + ": truncated ZIP directory");
    const uint64_t method = Get(file, at + 10, 2), name_len = Get(file, at + 28, 2), extra_len = Get(file, at + 30, 2),
                   comment_len = Get(file, at + 32, 2);
    uint64_t packed = Get(file, at + 20, 4), size = Get(file, at + 24, 4), local = Get(file, at + 42, 4);
    if (at + 46 + name_len + extra_len > file.size()) return DataLoss(path + ": truncated ZIP directory");
    const std::string name = file.substr(at + 46, name_len);
    // ZIP64 sizes and offset, in that order, for each field that is 0xffffffff.
    for (uint64_t x = at + 46 + name_len; x + 4 <= at + 46 + name_len + extra_len;) {
      const uint64_t id = Get(file, x, 2), len = Get(file, x + 2, 2);
      uint64_t f = x + 4;
      if (id == 1) {
        for (uint64_t* field : {&size, &packed, &local})
          if (*field == 0xffffffff && f + 8 <= x + 4 + len) *field = Get(file, f, 8), f += 8;
      }
      x += 4 + len;
    }
    at += 46 + name_len + extra_len + comment_len;
    if (name.size() < 4 || name.compare(name.size() - 4, 4, ".npy") != 0) continue;  // text members
    const std::string where = path + ": " + name;
    PSF_ASSIGN_OR_RETURN(std::string bytes, MemberBytes(file, where, local, packed, size, method));
    PSF_ASSIGN_OR_RETURN(NpzArray a, ParseNpy(bytes, where));
    a.name = name.substr(0, name.size() - 4);
    arrays.push_back(std::move(a));
  }
  return arrays;
}

}  // namespace psforge
