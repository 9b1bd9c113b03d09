// For fuzz targets of readers that take a path: the input's bytes written
// to a file of this process's own temporary folder (removed at exit).
#pragma once

#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <string>

namespace psforge::fuzz {

class ScratchDir {
 public:
  ScratchDir() {
    char tmpl[] = "/tmp/psforge_fuzz_XXXXXX";
    if (!mkdtemp(tmpl)) std::abort();
    dir_ = tmpl;
  }
  ~ScratchDir() {
    std::error_code ec;
    std::filesystem::remove_all(dir_, ec);
  }
  // Writes `size` bytes to file `name` (mode `mode`); its path.
  std::string Write(const std::string& name, const uint8_t* data, size_t size, int mode = 0644) const {
    const std::string path = dir_ + "/" + name;
    std::FILE* f = std::fopen(path.c_str(), "wb");
    if (!f || (size > 0 && std::fwrite(data, 1, size, f) != size) || std::fclose(f) != 0) std::abort();
    std::filesystem::permissions(path, static_cast<std::filesystem::perms>(mode));
    return path;
  }

 private:
  std::string dir_;
};

inline const ScratchDir& Scratch() {
  static ScratchDir dir;
  return dir;
}

}  // namespace psforge::fuzz
