// The Transformer layers against PyTorch's own: a tiny causal GPT built in
// psforge (embedding, position, two transformer blocks, layer norm, linear
// at every position) and the same network built from torch.nn modules
// (nn.MultiheadAttention with batch_first, nn.LayerNorm, nn.GELU,
// nn.Linear) in /usr/bin/python3 with Debian's python3-torch, loaded with
// psforge's weights under psforge's names: the same logits for the same
// character ids. This pins the tensors' names and layouts that ps-export
// writes to what PyTorch means by them.
#include <gtest/gtest.h>

#include <cmath>
#include <random>

#include "common/npz_reader.h"
#include "common/npz_writer.h"
#include "tests/support/subprocess.h"
#include "worker/model.h"

namespace psforge {
namespace {

using namespace std::chrono_literals;

// The same network in torch.nn, and psforge's name for each of its tensors.
constexpr const char* kTorchModules = R"PY(
import sys
import numpy as np
import torch
import torch.nn as nn

dim, heads, mlp, blocks = 16, 2, 24, 2

class Block(nn.Module):
    def __init__(self):
        super().__init__()
        self.ln0 = nn.LayerNorm(dim)
        self.attn = nn.MultiheadAttention(dim, heads, batch_first=True)
        self.ln1 = nn.LayerNorm(dim)
        self.fc0 = nn.Linear(dim, mlp)
        self.fc1 = nn.Linear(mlp, dim)

    def forward(self, x, mask):
        a = self.ln0(x)
        x = x + self.attn(a, a, a, attn_mask=mask, need_weights=False)[0]
        return x + self.fc1(nn.functional.gelu(self.fc0(self.ln1(x))))

class Gpt(nn.Module):
    def __init__(self, vocabulary, positions):
        super().__init__()
        self.embedding = nn.Embedding(vocabulary, dim)
        self.pos = nn.Parameter(torch.randn(positions, dim) * 0.02)
        self.blocks = nn.ModuleList([Block() for _ in range(blocks)])
        self.ln = nn.LayerNorm(dim)
        self.head = nn.Linear(dim, vocabulary)

    def forward(self, ids):
        positions = ids.shape[1]
        mask = torch.triu(torch.ones(positions, positions, dtype=torch.bool), diagonal=1)
        x = self.embedding(ids) + self.pos
        for b in self.blocks:
            x = b(x, mask)
        return self.head(self.ln(x))

    # psforge's name of each parameter (configs/README.md's tensor names).
    def psforge_names(self):
        names = {"embedding.weight": "embedding0.weight", "pos": "pos0.weight", "ln.weight": "ln0.weight",
                 "ln.bias": "ln0.bias", "head.weight": "fc0.weight", "head.bias": "fc0.bias"}
        for i in range(blocks):
            t, p = "blocks.%d." % i, "block%d." % i
            for ours, theirs in [("res0.ln0", "ln0"), ("res1.ln0", "ln1"), ("res1.fc0", "fc0"), ("res1.fc1", "fc1")]:
                for w in ("weight", "bias"):
                    names[t + theirs + "." + w] = p + ours + "." + w
            for w in ("in_proj_weight", "in_proj_bias", "out_proj.weight", "out_proj.bias"):
                names[t + "attn." + w] = p + "res0.attn0." + w
        return names
)PY";

// psforge's weights (npz) into torch: the logits psforge computed, again.
constexpr const char* kCompare = R"PY(
npz = np.load(sys.argv[1])
W = {k: torch.tensor(npz[k], dtype=torch.float64) for k in npz.files}
ids = W["ids"].long()
model = Gpt(W["embedding0.weight"].shape[0], ids.shape[1]).double().eval()
with torch.no_grad():
    params = dict(model.named_parameters())
    for theirs, ours in model.psforge_names().items():
        params[theirs].copy_(W[ours])
    logits = model(ids)
err = (logits - W["logits"]).abs().max().item()
print("max |psforge - torch| = %.3g over %d logits" % (err, logits.numel()))
sys.exit(0 if err < 1e-4 else 1)
)PY";

// A torch model's state_dict, under psforge's names, saved with numpy.savez:
// the file psforge starts from, and torch's logits for a few windows.
constexpr const char* kSaveTorch = R"PY(
torch.manual_seed(3)
vocabulary, positions, n = 11, 7, 3
model = Gpt(vocabulary, positions).eval()
with torch.no_grad():
    for p in model.parameters():  # biases and scales away from 0 and 1
        p.add_(torch.rand_like(p) * 0.4 - 0.2)
    ids = torch.randint(0, vocabulary, (n, positions))
    logits = model(ids)
state = {ours: model.state_dict()[theirs].numpy() for theirs, ours in model.psforge_names().items()}
np.savez(sys.argv[1], ids=ids.numpy().astype(np.float32), logits=logits.numpy(), **state)
)PY";

ModelOptions TinyGpt() {
  ModelOptions o;
  o.kind = ModelKind::kSequential;
  o.layers = {MakeLayer(EmbeddingLayer(16)), MakeLayer<PositionLayer>(), MakeLayer(TransformerLayer(2, true, 24, 0.1)),
              MakeLayer(TransformerLayer(2, true, 24, 0.1)), MakeLayer<LayerNormLayer>(), MakeLayer(LinearLayer())};
  return o;
}

TEST(TransformerTorch, ATinyGptGivesPyTorchsLogits) {
  const int64_t window = 7, vocabulary = 11, n = 3;
  auto spec = ModelSpec::FromConfig(TinyGpt(), window, vocabulary);
  ASSERT_TRUE(spec.ok()) << spec.status().ToString();
  auto model = Model::Create(*spec, n);
  ASSERT_TRUE(model.ok()) << model.status().ToString();
  Model& m = **model;
  spec->Initialize({0, spec->num_params()}, m.weights());
  // Every tensor away from its initial value (zero biases, unit scales), so
  // that a swapped or transposed one shows.
  std::mt19937_64 rng(9);
  for (float& w : m.weights()) w += std::uniform_real_distribution<float>(-0.2f, 0.2f)(rng);
  std::vector<float> ids(n * window);
  for (float& v : ids) v = static_cast<float>(rng() % vocabulary);
  // Dropout (0.1 in each block) passes through in inference, as in torch's eval().
  auto logits = m.Predict(ids.data(), n);
  NpzWriter npz;
  for (const TensorSpec& t : spec->tensors())
    ASSERT_TRUE(npz.AddArray(t.name, t.shape, m.weights().subspan(t.offset, t.size())).ok());
  ASSERT_TRUE(npz.AddArray("ids", {n, window}, ids).ok());
  ASSERT_TRUE(npz.AddArray("logits", {n, window, vocabulary}, logits).ok());
  testing::TempDir dir;
  ASSERT_TRUE(npz.Write(dir.File("gpt.npz")).ok());
  auto r = testing::RunProcess({"/usr/bin/python3", "-c", std::string(kTorchModules) + kCompare, dir.File("gpt.npz")},
                               120s);
  EXPECT_EQ(r.exit_code, 0) << r.out << r.err;
  RecordProperty("comparison", r.out);
}

// The other way: a GPT made in PyTorch, its weights saved with numpy.savez
// under psforge's names, is where psforge starts (model.init_from) and
// gives torch's logits.
TEST(TransformerTorch, AGptFromPyTorchStartsWhereTorchLeftIt) {
  testing::TempDir dir;
  auto saved = testing::RunProcess(
      {"/usr/bin/python3", "-c", std::string(kTorchModules) + kSaveTorch, dir.File("torch.npz")}, 120s);
  ASSERT_EQ(saved.exit_code, 0) << saved.out << saved.err;
  ModelOptions o = TinyGpt();
  o.init_from = dir.File("torch.npz");
  auto spec = ModelSpec::FromConfig(o, 7, 11);
  ASSERT_TRUE(spec.ok()) << spec.status().ToString();
  // The file's ids and logits are not tensors of the model: named as extra.
  auto s = spec->LoadInitialValues(o);
  ASSERT_FALSE(s.ok());
  EXPECT_NE(s.message().find("2 in the file but not in the model: ids [3, 7], logits [3, 7, 11]"), std::string::npos)
      << s.message();
  o.init_fresh = {"ids", "logits"};
  ASSERT_TRUE(spec->LoadInitialValues(o).ok());
  auto model = Model::Create(*spec, 3);
  ASSERT_TRUE(model.ok()) << model.status().ToString();
  spec->Initialize({0, spec->num_params()}, (*model)->weights());
  auto file = ReadNpz(o.init_from);
  ASSERT_TRUE(file.ok()) << file.status().ToString();
  const NpzArray* ids = nullptr;
  const NpzArray* logits = nullptr;
  for (const NpzArray& a : *file) {
    if (a.name == "ids") ids = &a;
    if (a.name == "logits") logits = &a;
  }
  ASSERT_TRUE(ids != nullptr && logits != nullptr);
  auto ours = (*model)->Predict(ids->values.data(), 3);
  ASSERT_EQ(ours.size(), logits->values.size());
  double worst = 0;
  for (std::size_t i = 0; i < ours.size(); ++i) worst = std::max(worst, std::abs(double(ours[i]) - logits->values[i]));
  EXPECT_LT(worst, 1e-4);
  RecordProperty("max_abs_difference", std::to_string(worst));
}

}  // namespace
}  // namespace psforge
