// Every shipped config's model runs on vectorised kernels on this CPU: a
// training step (forward and backward) and an evaluation, on a full and a
// partial batch, with oneDNN's choice for each primitive read back, and no
// reference (naive loop) implementation allowed. CTest also runs it with
// DNNL_MAX_CPU_ISA=AVX2 (kernels_test_avx2), so that an AVX-512 machine
// catches what an AVX2 one would hit.
#include <gtest/gtest.h>

#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <random>
#include <string>
#include <vector>

#include <unistd.h>

#include "common/config.h"
#include "common/dataset.h"
#include "worker/model.h"
#include "worker/nn/dnnl_util.h"

namespace psforge {
namespace {

// (The LSTM is our recurrence around oneDNN matmuls, checked like every
// other primitive; oneDNN 2.6's own f32 LSTM was its gemm-based one, named
// "ref", allowed here until it was replaced.) oneDNN's only layer normalisation on CPUs
// is "simple_layer_normalization", which runs jit kernels per row
// (statistics, normalisation and their backward, lnorm_utils) for AVX2
// and AVX-512 alike: bench/op_bench measures layernorm_n32x64 at 1-2 us
// forward under either ISA.
bool Allowed(const std::string& entry) {
  auto ends_with = [&](const std::string& s) {
    return entry.size() >= s.size() && entry.compare(entry.size() - s.size(), s.size(), s) == 0;
  };
  return ends_with(": layer_normalization forward: simple_layer_normalization:any") ||
         ends_with(": layer_normalization backward: simple_layer_normalization:any");
}

std::vector<std::string> ShippedConfigs() {
  std::vector<std::string> out;
  for (const auto& e : std::filesystem::directory_iterator(std::string(PSFORGE_SOURCE_DIR) + "/configs"))
    if (e.path().extension() == ".yaml") out.push_back(e.path().string());
  std::sort(out.begin(), out.end());
  return out;
}


// A shipped config on click logs names data ps-ctr-data writes
// (data/ctr); these checks give it a two-line log of the same layout.
std::vector<ConfigOverride> ClickLogOverrides(const std::string& config) {
  std::ifstream in(config);
  const std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  if (text.find("format: criteo") == std::string::npos) return {};
  const std::string log = (std::filesystem::temp_directory_path() / ("psforge-clicks-" + std::to_string(::getpid()))).string();
  std::string line(1, '1');
  for (int i = 0; i < 13; ++i) {
    line.push_back('\t');
    line.append(std::to_string(i));
  }
  for (int i = 0; i < 26; ++i) {
    line.append("\tab");
    line.append(std::to_string(i));
  }
  std::ofstream(log) << line << "\n" << line << "\n";
  return {{"data.train_tsv", log}, {"data.test_tsv", log}};
}

class ShippedModel : public ::testing::TestWithParam<std::string> {};

TEST_P(ShippedModel, RunsOnVectorisedKernels) {
  auto config = LoadJobConfig(GetParam(), ClickLogOverrides(GetParam()));
  ASSERT_TRUE(config.ok()) << config.status().ToString();
  auto shape = ReadDataShape(*config);
  ASSERT_TRUE(shape.ok()) << shape.status().ToString();
  auto spec = ModelSpec::FromConfig(config->model, *shape);
  ASSERT_TRUE(spec.ok()) << spec.status().ToString();
  const int64_t batch = config->training.batch_size;
  auto model = Model::Create(*spec, batch, 1);
  ASSERT_TRUE(model.ok()) << model.status().ToString();
  Model& m = **model;
  spec->Initialize({0, spec->num_params()}, m.weights());
  // Inputs the model accepts: character ids for text, values in [-1, 1) otherwise.
  const bool text = config->data.format == DataFormat::kText;
  const int64_t classes = std::max<int64_t>(2, spec->classes());
  std::mt19937_64 rng(1);
  std::vector<float> x(batch * spec->inputs()), t(batch * spec->target_width());
  const int64_t ids = shape->tokens > 0 ? shape->tokens : classes;  // [MASK] too, where the task has it
  for (float& v : x)
    v = text ? static_cast<float>(rng() % ids) : std::uniform_real_distribution<float>(-1, 1)(rng);
  for (float& v : t) v = static_cast<float>(rng() % (spec->outputs() == 1 ? 2 : classes));
  for (int64_t n : {batch, batch / 2 + 1}) {  // the batch and a last partial one
    const float loss = m.TrainStep(x.data(), t.data(), n, 1);
    EXPECT_TRUE(std::isfinite(loss));
    EXPECT_TRUE(std::isfinite(m.EvaluateBatch(x.data(), t.data(), n).sum));
  }
  const std::vector<std::string> impls = m.Implementations();
  ASSERT_FALSE(impls.empty());
  std::string all;
  for (const std::string& e : impls) all += "\n  " + e;
  const char* isa = std::getenv("DNNL_MAX_CPU_ISA");
  for (const std::string& e : impls) {
    const std::string impl = e.substr(e.rfind(": ") + 2);
    EXPECT_FALSE(nn::IsReference(impl) && !Allowed(e))
        << GetParam() << " (DNNL_MAX_CPU_ISA=" << (isa ? isa : "unset") << "): " << e
        << " is a reference kernel; every primitive:" << all;
  }
  RecordProperty("implementations", all);
}

INSTANTIATE_TEST_SUITE_P(Configs, ShippedModel, ::testing::ValuesIn(ShippedConfigs()),
                         [](const auto& p) {
                           std::string name = std::filesystem::path(p.param).stem().string();
                           std::replace(name.begin(), name.end(), '-', '_');
                           return name;
                         });

}  // namespace
}  // namespace psforge
