#include "common/text_dataset.h"

#include <algorithm>
#include <cmath>
#include <cctype>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>

#include "common/split_mix.h"

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

// The records of a file's text: the text between lines holding only "%",
// each with its "%" line ("" for the last when the file ends without one).
struct Record {
  std::string_view text, separator;
};

std::vector<Record> RecordsOf(std::string_view file) {
  std::vector<Record> out;
  std::size_t start = 0, line = 0;
  while (line < file.size()) {
    std::size_t next = file.find('\n', line);
    next = next == std::string_view::npos ? file.size() : next + 1;
    std::string_view l = file.substr(line, next - line);
    if (l == "%\n" || l == "%") {
      if (line > start) out.push_back({file.substr(start, line - start), l});
      start = next;
    }
    line = next;
  }
  if (start < file.size()) out.push_back({file.substr(start), ""});
  return out;
}

// FNV-1a of a record's text: the same record is on the same side of the
// split in every job, whatever file or position it has.
bool IsValidation(std::string_view text, int64_t validation_every) {
  uint64_t h = 14695981039346656037ull;
  for (unsigned char b : text) h = (h ^ b) * 1099511628211ull;
  return SplitMix64(h) % static_cast<uint64_t>(validation_every) == 0;
}

std::string_view FileText(const TextCorpus& corpus, std::size_t f) {
  const int64_t begin = f == 0 ? 0 : corpus.file_ends[f - 1];
  return std::string_view(corpus.bytes).substr(static_cast<std::size_t>(begin),
                                               static_cast<std::size_t>(corpus.file_ends[f] - begin));
}

// `with_mask`: the input ids are the vocabulary's and [MASK] (the tasks
// masked and classify), else the vocabulary's.
void SetShape(TrainTestData* d, const TextCorpus& corpus, int64_t window, int64_t target_width, int64_t classes,
              bool with_mask) {
  d->vocabulary = corpus.vocabulary;
  for (Dataset* s : {&d->train, &d->test}) {
    s->features = window;
    s->target_width = target_width;
    s->classes = classes;
    s->tokens = static_cast<int64_t>(corpus.vocabulary.size()) + (with_mask ? 1 : 0);
  }
}

std::string SkippedNote(const TextCorpus& corpus) {
  if (corpus.skipped.empty()) return "";
  return "; skipped " + std::to_string(corpus.skipped.size()) + " files (e.g. " + corpus.skipped.front() + ")";
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
      c.file_ends.push_back(static_cast<int64_t>(c.bytes.size()));
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
  SetShape(&d, corpus, window, window, static_cast<int64_t>(corpus.vocabulary.size()), /*with_mask=*/false);
  char report[256];
  std::snprintf(report, sizeof report,
                "text: %zu files, %zu characters, vocabulary of %zu characters, unigram entropy %.3f bits/char; "
                "%lld training and %lld validation windows of %lld",
                corpus.files.size(), corpus.bytes.size(), corpus.vocabulary.size(), corpus.unigram_bits,
                static_cast<long long>(windows - windows / validation_every),
                static_cast<long long>(windows / validation_every), static_cast<long long>(window));
  d.report = report + SkippedNote(corpus);
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

Result<TrainTestData> MaskedText(const TextCorpus& corpus, int64_t window, int64_t validation_every) {
  std::string train, test;
  int64_t records[2] = {0, 0};
  for (std::size_t f = 0; f < corpus.files.size(); ++f) {
    for (const Record& r : RecordsOf(FileText(corpus, f))) {
      const bool validation = IsValidation(r.text, validation_every);
      std::string& out = validation ? test : train;
      out.append(r.text);
      out.append(r.separator);  // (none after a file's last record without one: "%" may not be in the vocabulary)
      ++records[validation];
    }
  }
  const auto windows = [&](const std::string& t) { return static_cast<int64_t>(t.size()) / window; };
  if (windows(train) < 1 || windows(test) < 1)
    return InvalidArgument("data.text: " + std::to_string(records[0] + records[1]) + " records split into " +
                           std::to_string(windows(train)) + " training and " + std::to_string(windows(test)) +
                           " validation windows of " + std::to_string(window) +
                           "; each side needs one (data.window, data.validation_every)");
  TrainTestData d;
  SetShape(&d, corpus, window, window, static_cast<int64_t>(corpus.vocabulary.size()), /*with_mask=*/true);
  for (auto [text, set] : {std::pair{&train, &d.train}, std::pair{&test, &d.test}}) {
    set->rows = windows(*text);
    set->x.resize(static_cast<std::size_t>(set->rows * window));
    const auto* p = reinterpret_cast<const unsigned char*>(text->data());
    for (std::size_t i = 0; i < set->x.size(); ++i) set->x[i] = static_cast<float>(corpus.id[p[i]]);
    set->targets = set->x;  // the mask (MaskForPretraining) hides some of the inputs and keeps those targets
  }
  char report[320];
  std::snprintf(report, sizeof report,
                "text (masked): %zu files, %zu characters, vocabulary of %zu characters and [MASK]; %lld training "
                "and %lld validation records (split by record), %lld and %lld windows of %lld",
                corpus.files.size(), corpus.bytes.size(), corpus.vocabulary.size(), (long long)records[0],
                (long long)records[1], (long long)d.train.rows, (long long)d.test.rows, (long long)window);
  d.report = report + SkippedNote(corpus);
  return d;
}

Result<TrainTestData> ClassifyText(const TextCorpus& corpus, const std::vector<std::string>& classes, int64_t window,
                                   int64_t validation_every) {
  std::vector<std::size_t> file_of(classes.size(), corpus.files.size());
  for (std::size_t c = 0; c < classes.size(); ++c)
    for (std::size_t f = 0; f < corpus.files.size(); ++f)
      if (std::filesystem::path(corpus.files[f]).filename() == classes[c]) file_of[c] = f;
  std::string missing;
  for (std::size_t c = 0; c < classes.size(); ++c)
    if (file_of[c] == corpus.files.size()) missing += (missing.empty() ? "" : ", ") + classes[c];
  if (!missing.empty()) {
    std::string some;
    for (std::size_t f = 0; f < corpus.files.size() && f < 12; ++f)
      some += (f ? ", " : "") + std::filesystem::path(corpus.files[f]).filename().string();
    return NotFound("data.classes: no file of data.text is named " + missing + " (its files: " + some +
                    (corpus.files.size() > 12 ? ", ..." : "") + ")");
  }
  TrainTestData d;
  SetShape(&d, corpus, window, 1, static_cast<int64_t>(classes.size()), /*with_mask=*/true);
  for (std::size_t c = 0; c < classes.size(); ++c) {
    for (const Record& r : RecordsOf(FileText(corpus, file_of[c]))) {
      Dataset& set = IsValidation(r.text, validation_every) ? d.test : d.train;
      std::string one(r.text);
      one.append(r.separator);
      for (int64_t i = 0; i < window; ++i)
        set.x.push_back(static_cast<float>(corpus.id[static_cast<unsigned char>(one[static_cast<std::size_t>(i) % one.size()])]));
      set.targets.push_back(static_cast<float>(c));
      ++set.rows;
    }
  }
  if (d.train.rows == 0 || d.test.rows == 0)
    return InvalidArgument("data.classes: the files hold " + std::to_string(d.train.rows) + " training and " +
                           std::to_string(d.test.rows) + " test records; each side needs one (data.validation_every)");
  char report[320];
  std::snprintf(report, sizeof report,
                "text (classify): %zu classes, vocabulary of %zu characters (of %zu files) and [MASK]; %lld training "
                "and %lld test records (split by record) of %lld characters; majority class: %.4f of the test records",
                classes.size(), corpus.vocabulary.size(), corpus.files.size(), (long long)d.train.rows,
                (long long)d.test.rows, (long long)window, MajorityAccuracy(d.train, d.test));
  d.report = report + SkippedNote(corpus);
  return d;
}

void MaskForPretraining(uint64_t seed, int64_t epoch, int64_t row, int64_t vocabulary, float* ids, float* targets,
                        int64_t positions) {
  uint64_t state = SplitMix64(seed ^ SplitMix64(static_cast<uint64_t>(epoch) * 0x9e3779b97f4a7c15ull ^
                                                SplitMix64(static_cast<uint64_t>(row))));
  for (int64_t i = 0; i < positions; ++i) {
    const uint64_t r = SplitMix64(state + static_cast<uint64_t>(i));
    // Three draws from one 64-bit value: 24 bits choose the position, 16
    // bits what it becomes, 24 bits the random character.
    const double chosen = static_cast<double>(r >> 40) / 16777216.0;
    if (chosen >= kMaskRate) {
      targets[i] = -1;
      continue;
    }
    targets[i] = ids[i];
    const double what = static_cast<double>((r >> 24) & 0xffff) / 65536.0;
    if (what < 0.8) {
      ids[i] = static_cast<float>(vocabulary);  // [MASK]
    } else if (what < 0.9) {
      ids[i] = static_cast<float>(static_cast<int64_t>(r & 0xffffff) % vocabulary);
    }
  }
}

double MajorityAccuracy(const Dataset& train, const Dataset& test) {
  std::vector<int64_t> count(static_cast<std::size_t>(std::max<int64_t>(train.classes, 1)), 0);
  for (float t : train.targets)
    if (t >= 0 && t < static_cast<float>(count.size())) ++count[static_cast<std::size_t>(t)];
  const auto majority = static_cast<float>(std::max_element(count.begin(), count.end()) - count.begin());
  if (test.rows == 0) return 0;
  return static_cast<double>(std::count(test.targets.begin(), test.targets.end(), majority)) /
         static_cast<double>(test.rows);
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
