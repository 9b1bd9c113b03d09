#include "common/npz_reader.h"

#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

#include <unistd.h>

#include "common/model_spec.h"
#include "common/npz_writer.h"

namespace psforge {
namespace {

std::string TempPath(const std::string& name) {
  return (std::filesystem::temp_directory_path() / ("psforge-npz-" + std::to_string(::getpid()) + "-" + name)).string();
}

TEST(Npz, WhatTheWriterWritesReadsBack) {
  NpzWriter w;
  std::vector<float> a = {1.5f, -2.0f, 3.25f, 0.0f, 5.0f, 6.0f}, b = {7.0f};
  ASSERT_TRUE(w.AddArray("fc0.weight", {2, 3}, a).ok());
  ASSERT_TRUE(w.AddArray("scalar", {}, b).ok());
  ASSERT_TRUE(w.AddText("psforge.json", "{}").ok());
  const std::string path = TempPath("round.npz");
  ASSERT_TRUE(w.Write(path).ok());
  auto r = ReadNpz(path);
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  ASSERT_EQ(r->size(), 2u);  // the text member is not an array
  EXPECT_EQ((*r)[0].name, "fc0.weight");
  EXPECT_EQ((*r)[0].shape, (std::vector<int64_t>{2, 3}));
  EXPECT_EQ((*r)[0].values, a);
  EXPECT_EQ((*r)[1].name, "scalar");
  EXPECT_TRUE((*r)[1].shape.empty());
  EXPECT_EQ((*r)[1].values, b);
  std::filesystem::remove(path);
}

TEST(Npz, BadFilesAreNamedWithWhatIsWrong) {
  const std::string path = TempPath("bad.npz");
  std::ofstream(path) << "not a zip at all, just some text that is long enough";
  auto r = ReadNpz(path);
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("not a ZIP archive"), std::string::npos) << r.status().message();
  // A truncated archive: the writer's file cut short.
  NpzWriter w;
  std::vector<float> a(100, 1.0f);
  ASSERT_TRUE(w.AddArray("x", {100}, a).ok());
  ASSERT_TRUE(w.Write(path).ok());
  const auto size = std::filesystem::file_size(path);
  std::filesystem::resize_file(path, size - 30);
  EXPECT_FALSE(ReadNpz(path).ok());
  EXPECT_EQ(ReadNpz(TempPath("absent.npz")).status().code(), StatusCode::kNotFound);
  std::filesystem::remove(path);
}

ModelOptions SmallMlp() {
  ModelOptions o;
  o.hidden = {4};
  o.classes = 3;
  return o;
}

// model.init_from: the file's tensors replace the initialisers, except
// those init_fresh names; a file that does not fit is one error naming each
// tensor that does not.
TEST(Npz, ModelsStartFromTheFilesTensors) {
  auto spec = ModelSpec::FromConfig(SmallMlp(), 5);
  ASSERT_TRUE(spec.ok());
  std::vector<float> seeded(spec->num_params());
  spec->Initialize({0, spec->num_params()}, seeded);
  NpzWriter w;
  for (const TensorSpec& t : spec->tensors()) {
    std::vector<float> v(t.size());
    for (int64_t i = 0; i < t.size(); ++i) v[i] = static_cast<float>(t.offset + i) * 0.5f;
    ASSERT_TRUE(w.AddArray(t.name, t.shape, v).ok());
  }
  ASSERT_TRUE(w.AddArray("bn9.running_mean", {4}, std::vector<float>(4)).ok());  // statistics are skipped
  const std::string path = TempPath("init.npz");
  ASSERT_TRUE(w.Write(path).ok());
  ModelOptions o = SmallMlp();
  o.init_from = path;
  o.init_fresh = {"fc1"};
  ASSERT_TRUE(spec->LoadInitialValues(o).ok());
  std::vector<float> got(spec->num_params());
  spec->Initialize({0, spec->num_params()}, got);
  const int64_t head = spec->tensors()[2].offset;  // fc1.weight
  for (int64_t k = 0; k < spec->num_params(); ++k)
    EXPECT_EQ(got[k], k < head ? static_cast<float>(k) * 0.5f : seeded[k]) << k;
  // Any range alone gives the same values (a server initialises its own).
  std::vector<float> part(7);
  spec->Initialize({18, 25}, part);
  for (int64_t k = 18; k < 25; ++k) EXPECT_EQ(part[k - 18], got[k]);

  // Another model: the hidden layer 6 wide, a head the file lacks.
  ModelOptions other = SmallMlp();
  other.hidden = {6};
  other.layers = {};
  auto wider = ModelSpec::FromConfig(other, 5);
  ASSERT_TRUE(wider.ok());
  other.init_from = path;
  auto s = wider->LoadInitialValues(other);
  ASSERT_FALSE(s.ok());
  const std::string& m = s.message();
  EXPECT_NE(m.find("fc0.weight ([6, 5] in the model, [4, 5] in the file)"), std::string::npos) << m;
  EXPECT_NE(m.find("fc1.weight ([3, 6] in the model, [3, 4] in the file)"), std::string::npos) << m;
  EXPECT_EQ(m.find("running_mean"), std::string::npos) << m;
  // A file with a tensor the model lacks, and without one it has.
  NpzWriter w2;
  ASSERT_TRUE(w2.AddArray("fc0.weight", {4, 5}, std::vector<float>(20)).ok());
  ASSERT_TRUE(w2.AddArray("fc7.weight", {2}, std::vector<float>(2)).ok());
  ASSERT_TRUE(w2.Write(path).ok());
  o.init_fresh = {};
  s = spec->LoadInitialValues(o);
  ASSERT_FALSE(s.ok());
  EXPECT_NE(s.message().find("3 missing from the file: fc0.bias [4], fc1.weight [3, 4], fc1.bias [3]"),
            std::string::npos)
      << s.message();
  EXPECT_NE(s.message().find("1 in the file but not in the model: fc7.weight [2]"), std::string::npos) << s.message();
  std::filesystem::remove(path);
}

}  // namespace
}  // namespace psforge
