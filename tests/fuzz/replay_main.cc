// Replays a fuzz target's inputs without libFuzzer (the GCC build): every
// file in the folders named on the command line goes through
// LLVMFuzzerTestOneInput once. A missing folder is empty (regressions/<name>
// exists once a crash was found); the first, the seed corpus, must not be.
// A crash or sanitizer report fails the CTest test; so does an empty corpus.
#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size);

int main(int argc, char** argv) {
  namespace fs = std::filesystem;
  if (argc < 2) {
    std::fprintf(stderr, "usage: %s CORPUS_DIR [MORE_DIRS...]\n", argv[0]);
    return 2;
  }
  for (int i = 1; i < argc; ++i) {
    std::vector<fs::path> files;
    std::error_code ec;
    if (fs::is_directory(argv[i], ec))
      for (const auto& e : fs::directory_iterator(argv[i]))
        if (e.is_regular_file()) files.push_back(e.path());
    if (i == 1 && files.empty()) {
      std::fprintf(stderr, "%s: the seed corpus %s is empty or missing\n", argv[0], argv[i]);
      return 1;
    }
    for (const auto& f : files) {
      std::ifstream in(f, std::ios::binary);
      std::vector<char> bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
      LLVMFuzzerTestOneInput(reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size());
    }
    std::printf("%s: %zu inputs from %s\n", argv[0], files.size(), argv[i]);
  }
  return 0;
}
