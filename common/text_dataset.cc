#include "common/text_dataset.h"

#include <algorithm>
#include <cmath>
#include <cctype>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>

namespace psforge {
namespace {

constexpr std::size_t kMaxCorpusBytes = std::size_t{1} << 30;

Status ReadFile(const std::string& path, std::string* out) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return NotFound(path + ": cannot open");
  in.seekg(0, std::ios::end);
  const auto size = static_cast<std::size_t>(std::max<std::streamoff>(0, in.tellg()));
  if (size > kMaxCorpusBytes) return InvalidArgument(path + ": larger than the 1 GiB a text corpus may have");
  in.seekg(0);
  out->resize(size);
  in.read(out->data(), static_cast<std::streamsize>(size));
  if (static_cast<std::size_t>(in.gcount()) != size) return DataLoss(path + ": read error");
  return Status::Ok();
}

}  // namespace

Result<TextCorpus> ReadTextCorpus(const std::vector<std::string>& paths) {
  TextCorpus c;
  for (const std::string& path : paths) {
    std::error_code ec;
    std::vector<std::string> files;
    if (std::filesystem::is_directory(path, ec)) {
      for (const auto& entry : std::filesystem::directory_iterator(path, ec)) {
        if (entry.is_symlink(ec)) {
          c.skipped.push_back(entry.path().string() + ": a symbolic link");
        } else if (entry.is_regular_file(ec)) {
          files.push_back(entry.path().string());
        }
      }
      if (ec) return Unavailable(path + ": cannot list the folder: " + ec.message());
      std::sort(files.begin(), files.end());
    } else {
      files.push_back(path);
    }
    const bool named = !std::filesystem::is_directory(path, ec);
    std::string text;
    for (const std::string& file : files) {
      PSF_RETURN_IF_ERROR(ReadFile(file, &text));
      if (std::memchr(text.data(), 0, text.size()) != nullptr) {
        if (named) return InvalidArgument(file + ": holds NUL bytes, so it is not text");
        c.skipped.push_back(file + ": holds NUL bytes (not text)");
        continue;
      }
      if (c.bytes.size() + text.size() > kMaxCorpusBytes)
        return InvalidArgument(file + ": the corpus passes the 1 GiB a text corpus may have");
      c.bytes += text;
      c.files.push_back(file);
    }
  }
  if (c.bytes.empty()) return InvalidArgument("data.text: the files hold no text");
  std::array<int64_t, 256> count{};
  for (unsigned char b : c.bytes) ++count[b];
  c.id.fill(-1);
  const double n = static_cast<double>(c.bytes.size());
  for (int b = 0; b < 256; ++b) {
    if (count[b] == 0) continue;
    c.id[b] = static_cast<int16_t>(c.vocabulary.size());
    c.vocabulary.push_back(static_cast<uint8_t>(b));
    const double p = static_cast<double>(count[b]) / n;
    c.unigram_bits -= p * std::log2(p);
  }
  return c;
}

Result<TrainTestData> WindowText(const TextCorpus& corpus, int64_t window, int64_t validation_every) {
  const int64_t windows = (static_cast<int64_t>(corpus.bytes.size()) - 1) / window;
  if (windows < validation_every + 1)
    return InvalidArgument("data.text: " + std::to_string(corpus.bytes.size()) + " characters make " +
                           std::to_string(windows) + " windows of " + std::to_string(window) +
                           "; at least " + std::to_string(validation_every + 1) +
                           " are needed (data.window, data.validation_every)");
  TrainTestData d;
  d.vocabulary = corpus.vocabulary;
  for (Dataset* s : {&d.train, &d.test}) {
    s->features = window;
    s->target_width = window;
    s->classes = static_cast<int64_t>(corpus.vocabulary.size());
  }
  char report[256];
  std::snprintf(report, sizeof report,
                "text: %zu files, %zu characters, vocabulary of %zu characters, unigram entropy %.3f bits/char; "
                "%lld training and %lld validation windows of %lld",
                corpus.files.size(), corpus.bytes.size(), corpus.vocabulary.size(), corpus.unigram_bits,
                static_cast<long long>(windows - windows / validation_every),
                static_cast<long long>(windows / validation_every), static_cast<long long>(window));
  d.report = report;
  if (!corpus.skipped.empty())
    d.report += "; skipped " + std::to_string(corpus.skipped.size()) + " files (e.g. " + corpus.skipped.front() + ")";
  const int64_t validation = windows / validation_every;
  d.test.rows = validation;
  d.train.rows = windows - validation;
  for (Dataset* s : {&d.train, &d.test}) {
    s->x.reserve(static_cast<std::size_t>(s->rows * window));
    s->targets.reserve(static_cast<std::size_t>(s->rows * window));
  }
  for (int64_t w = 0; w < windows; ++w) {
    Dataset& s = (w + 1) % validation_every == 0 ? d.test : d.train;
    const auto* p = reinterpret_cast<const unsigned char*>(corpus.bytes.data()) + w * window;
    for (int64_t i = 0; i < window; ++i) s.x.push_back(static_cast<float>(corpus.id[p[i]]));
    for (int64_t i = 1; i <= window; ++i) s.targets.push_back(static_cast<float>(corpus.id[p[i]]));
  }
  return d;
}

Result<std::vector<float>> EncodeText(const TextCorpus& corpus, const std::string& text) {
  std::vector<float> ids;
  ids.reserve(text.size());
  for (unsigned char b : text) {
    if (corpus.id[b] < 0) {
      char hex[8];
      std::snprintf(hex, sizeof hex, "0x%02x", b);
      const std::string shown = std::isprint(b) ? std::string(" ('") + static_cast<char>(b) + "')" : "";
      return NotFound(std::string("the character ") + hex + shown + " is not in the model's vocabulary");
    }
    ids.push_back(static_cast<float>(corpus.id[b]));
  }
  return ids;
}

}  // namespace psforge
