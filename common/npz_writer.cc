#include "common/npz_writer.h"

#include <zlib.h>

#include <bit>
#include <cctype>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <limits>

namespace psforge {
namespace {

static_assert(std::endian::native == std::endian::little, "NPY '<f4' and ZIP fields are written as in memory");

void Put16(std::string* s, uint16_t v) { s->append(reinterpret_cast<const char*>(&v), 2); }
void Put32(std::string* s, uint32_t v) { s->append(reinterpret_cast<const char*>(&v), 4); }

bool ValidName(const std::string& name) {
  if (name.empty() || name.size() > 200) return false;
  for (char c : name)
    if (!(std::isalnum(static_cast<unsigned char>(c)) || c == '_' || c == '.' || c == '-')) return false;
  return true;
}

}  // namespace

std::string EncodeNpy(const std::vector<int64_t>& shape, std::span<const float> values) {
  std::string dims;  // "3, 4"; a 1-d shape is "3," as a Python tuple needs
  for (std::size_t i = 0; i < shape.size(); ++i) {
    if (i > 0) dims += ", ";
    dims += std::to_string(shape[i]);
  }
  if (shape.size() == 1) dims += ',';
  std::string header = "{'descr': '<f4', 'fortran_order': False, 'shape': (" + dims + "), }";
  // Magic (6) + version (2) + length (2) + header + '\n', padded to 64 bytes.
  const std::size_t unpadded = 10 + header.size() + 1;
  header.append((64 - unpadded % 64) % 64, ' ');
  header += '\n';
  std::string out("\x93NUMPY\x01\x00", 8);
  Put16(&out, static_cast<uint16_t>(header.size()));
  out += header;
  out.append(reinterpret_cast<const char*>(values.data()), values.size_bytes());
  return out;
}

Status NpzWriter::AddArray(const std::string& name, const std::vector<int64_t>& shape,
                           std::span<const float> values) {
  if (!ValidName(name)) return InvalidArgument("npz: array name '" + name + "' is not [A-Za-z0-9_.-]+");
  int64_t count = 1;
  for (int64_t d : shape) count *= d;
  if (count != static_cast<int64_t>(values.size()))
    return InvalidArgument("npz: array " + name + " has " + std::to_string(values.size()) +
                           " values for a shape of " + std::to_string(count));
  return AddText(name + ".npy", EncodeNpy(shape, values));
}

Status NpzWriter::AddText(const std::string& file_name, const std::string& text) {
  if (!ValidName(file_name)) return InvalidArgument("npz: member name '" + file_name + "' is not [A-Za-z0-9_.-]+");
  for (const Member& m : members_)
    if (m.file_name == file_name) return InvalidArgument("npz: two members named " + file_name);
  if (text.size() >= std::numeric_limits<uint32_t>::max())
    return InvalidArgument("npz: " + file_name + " has " + std::to_string(text.size()) +
                           " bytes; members of 4 GiB and more need ZIP64, which this writer does not do");
  members_.push_back({file_name, text});
  return Status::Ok();
}

Status NpzWriter::Write(const std::string& path) const {
  std::string central;
  uint64_t offset = 0;
  const std::string tmp = path + ".tmp";
  std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
  if (!out) return Unavailable("npz: cannot create " + tmp);
  for (const Member& m : members_) {
    uLong c = crc32(0L, Z_NULL, 0);
    for (std::size_t at = 0; at < m.bytes.size(); at += 1u << 30) {
      const std::size_t len = std::min<std::size_t>(1u << 30, m.bytes.size() - at);
      c = crc32(c, reinterpret_cast<const Bytef*>(m.bytes.data() + at), static_cast<uInt>(len));
    }
    const auto size = static_cast<uint32_t>(m.bytes.size());
    if (offset >= std::numeric_limits<uint32_t>::max())
      return InvalidArgument("npz: the archive passes 4 GiB, which needs ZIP64; this writer does not do it");
    // Local file header: stored, no data descriptor, DOS time 1980-01-01.
    std::string local;
    Put32(&local, 0x04034b50);
    Put16(&local, 20);  // version needed
    Put16(&local, 0);   // flags
    Put16(&local, 0);   // stored
    Put16(&local, 0);   // time
    Put16(&local, 0x21);  // date: 1980-01-01
    Put32(&local, static_cast<uint32_t>(c));
    Put32(&local, size);
    Put32(&local, size);
    Put16(&local, static_cast<uint16_t>(m.file_name.size()));
    Put16(&local, 0);
    local += m.file_name;
    Put32(&central, 0x02014b50);
    Put16(&central, 20);  // made by
    central.append(local, 4, 26);  // version needed .. extra length, as in the local header
    Put16(&central, 0);   // comment length
    Put16(&central, 0);   // disk
    Put16(&central, 0);   // internal attributes
    Put32(&central, 0);   // external attributes
    Put32(&central, static_cast<uint32_t>(offset));
    central += m.file_name;
    out.write(local.data(), static_cast<std::streamsize>(local.size()));
    out.write(m.bytes.data(), static_cast<std::streamsize>(m.bytes.size()));
    offset += local.size() + m.bytes.size();
  }
  if (offset >= std::numeric_limits<uint32_t>::max() || members_.size() >= 0xffff)
    return InvalidArgument("npz: the archive passes 4 GiB or 65535 members, which needs ZIP64");
  std::string end;
  Put32(&end, 0x06054b50);
  Put16(&end, 0);
  Put16(&end, 0);
  Put16(&end, static_cast<uint16_t>(members_.size()));
  Put16(&end, static_cast<uint16_t>(members_.size()));
  Put32(&end, static_cast<uint32_t>(central.size()));
  Put32(&end, static_cast<uint32_t>(offset));
  Put16(&end, 0);
  out.write(central.data(), static_cast<std::streamsize>(central.size()));
  out.write(end.data(), static_cast<std::streamsize>(end.size()));
  out.close();
  if (!out) return Unavailable("npz: writing " + tmp + " failed (disk full?)");
  std::error_code ec;
  std::filesystem::rename(tmp, path, ec);
  if (ec) return Unavailable("npz: cannot rename " + tmp + " to " + path + ": " + ec.message());
  return Status::Ok();
}

}  // namespace psforge
