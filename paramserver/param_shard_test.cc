#include "paramserver/param_shard.h"

#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <limits>

namespace psforge {
namespace {

struct Fixture {
  ModelSpec spec;
  std::unique_ptr<ParamShard> shard;
};

Fixture Make(Consistency c, int64_t workers, int64_t staleness = 1) {
  ModelOptions m;
  m.kind = ModelKind::kLinearRegression;
  auto spec = ModelSpec::FromConfig(m, 3);  // 4 keys
  OptimizerOptions o;
  o.kind = OptimizerKind::kSgd;
  o.learning_rate = 1.0;
  ClusterOptions cl;
  cl.consistency = c;
  cl.workers = workers;
  cl.staleness = staleness;
  auto shard = ParamShard::Create(*spec, {0, 4}, o, cl);
  EXPECT_TRUE(shard.ok());
  return {*spec, std::move(shard).value()};
}

std::span<const std::byte> Bytes(const std::vector<float>& v) { return std::as_bytes(std::span(v)); }

TEST(ParamShard, BspAveragesAllWorkersThenAppliesOnce) {
  auto f = Make(Consistency::kBsp, 2);
  std::vector<float> g0{1, 2, 3, 4}, g1{3, 2, 1, 0};
  EXPECT_EQ(*f.shard->Push(0, 0, 10, 0, 4, Bytes(g0)), PushOutcome::kAccumulated);
  EXPECT_EQ(f.shard->version(), 0);
  EXPECT_FALSE(f.shard->Ready(1));
  EXPECT_EQ(f.shard->Lagging(), std::vector<uint32_t>{1});
  EXPECT_EQ(*f.shard->Push(1, 0, 10, 0, 4, Bytes(g1)), PushOutcome::kApplied);
  EXPECT_EQ(f.shard->version(), 1);
  EXPECT_TRUE(f.shard->Ready(1));
  auto w = f.shard->Weights(0, 4);  // zeros - lr * mean = -2 each
  for (float x : w) EXPECT_FLOAT_EQ(x, -2.0f);
}

TEST(ParamShard, DuplicatePushesAreIgnored) {
  auto f = Make(Consistency::kBsp, 2);
  std::vector<float> g{1, 1, 1, 1};
  EXPECT_EQ(*f.shard->Push(0, 0, 10, 0, 4, Bytes(g)), PushOutcome::kAccumulated);
  EXPECT_EQ(*f.shard->Push(0, 0, 10, 0, 4, Bytes(g)), PushOutcome::kDuplicate);
  EXPECT_EQ(f.shard->version(), 0);
  EXPECT_EQ(*f.shard->Push(1, 0, 10, 0, 4, Bytes(g)), PushOutcome::kApplied);
  EXPECT_EQ(*f.shard->Push(1, 0, 10, 0, 4, Bytes(g)), PushOutcome::kDuplicate);  // an old step
  for (float x : f.shard->Weights(0, 4)) EXPECT_FLOAT_EQ(x, -1.0f);
}

TEST(ParamShard, BadPushesChangeNothing) {
  auto f = Make(Consistency::kBsp, 2);
  std::vector<float> good{1, 1, 1, 1}, nan{1, std::nanf(""), 1, 1},
      inf{1, 1, std::numeric_limits<float>::infinity(), 1}, short_{1, 1, 1};
  auto err = [&](Result<PushOutcome> r, const std::string& what) {
    ASSERT_FALSE(r.ok());
    EXPECT_NE(r.status().message().find(what), std::string::npos) << r.status().message();
  };
  err(f.shard->Push(0, 0, 10, 0, 4, Bytes(nan)), "non-finite");
  err(f.shard->Push(0, 0, 10, 0, 4, Bytes(inf)), "non-finite");
  err(f.shard->Push(0, 0, 10, 0, 4, Bytes(short_)), "12 bytes, expected 16");
  err(f.shard->Push(0, 0, 10, 1, 4, Bytes(good)), "whole range");
  err(f.shard->Push(0, 0, 10, 0, 5, Bytes(good)), "whole range");
  err(f.shard->Push(5, 0, 10, 0, 4, Bytes(good)), "worker 5");
  err(f.shard->Push(0, 3, 10, 0, 4, Bytes(good)), "step 3");
  err(f.shard->Push(0, -1, 10, 0, 4, Bytes(good)), "negative");
  EXPECT_EQ(f.shard->Lagging(), (std::vector<uint32_t>{0, 1}));
  for (float x : f.shard->Weights(0, 4)) EXPECT_EQ(x, 0.0f);
  // The worker can still push its real gradient after a rejected one.
  EXPECT_EQ(*f.shard->Push(0, 0, 10, 0, 4, Bytes(good)), PushOutcome::kAccumulated);
}

TEST(ParamShard, UnalignedPayloadIsRead) {
  auto f = Make(Consistency::kAsp, 1);
  std::vector<float> g{1, 2, 3, 4};
  std::vector<std::byte> shifted(17);
  std::memcpy(shifted.data() + 1, g.data(), 16);
  EXPECT_TRUE(f.shard->Push(0, 0, 10, 0, 4, std::span(shifted).subspan(1)).ok());
  EXPECT_FLOAT_EQ(f.shard->Weights(0, 4)[3], -4.0f);
}

TEST(ParamShard, SspWaitsForTheSlowestWithinTheBound) {
  auto f = Make(Consistency::kSsp, 2, /*staleness=*/1);
  std::vector<float> g{1, 1, 1, 1};
  // Worker 0 races ahead; worker 1 has pushed nothing.
  for (int64_t step = 0; step < 3; ++step)
    EXPECT_EQ(*f.shard->Push(0, step, 10, 0, 4, Bytes(g)), PushOutcome::kApplied);
  EXPECT_EQ(f.shard->version(), 0);
  EXPECT_TRUE(f.shard->Ready(1));   // 0 >= 1 - 1
  EXPECT_FALSE(f.shard->Ready(2));  // needs worker 1 at step 1
  EXPECT_TRUE(f.shard->ValidatePull(0, 4, 0, 4).ok());   // prefetch for the step after its next
  EXPECT_FALSE(f.shard->ValidatePull(0, 5, 0, 4).ok());  // beyond that
  EXPECT_EQ(f.shard->Lagging(), std::vector<uint32_t>{1});
  EXPECT_EQ(*f.shard->Push(1, 0, 10, 0, 4, Bytes(g)), PushOutcome::kApplied);
  EXPECT_EQ(f.shard->version(), 1);
  EXPECT_TRUE(f.shard->Ready(2));
  EXPECT_EQ(*f.shard->Push(1, 0, 10, 0, 4, Bytes(g)), PushOutcome::kDuplicate);
  EXPECT_FALSE(f.shard->Push(1, 5, 10, 0, 4, Bytes(g)).ok());  // a gap
}

TEST(ParamShard, AspNeverWaits) {
  auto f = Make(Consistency::kAsp, 2);
  EXPECT_TRUE(f.shard->Ready(0));
  std::vector<float> g{1, 1, 1, 1};
  for (int64_t step = 0; step < 5; ++step) ASSERT_TRUE(f.shard->Push(0, step, 10, 0, 4, Bytes(g)).ok());
  EXPECT_TRUE(f.shard->Ready(5));
}

TEST(ParamShard, BspWeightsEachPushByItsRecords) {
  auto f = Make(Consistency::kBsp, 2);
  std::vector<float> g0{4, 4, 4, 4}, g1{0, 0, 0, 0};
  ASSERT_TRUE(f.shard->Push(0, 0, 30, 0, 4, Bytes(g0)).ok());
  ASSERT_TRUE(f.shard->Push(1, 0, 10, 0, 4, Bytes(g1)).ok());
  for (float x : f.shard->Weights(0, 4)) EXPECT_FLOAT_EQ(x, -3.0f);  // (30*4 + 10*0) / 40
  // An empty step (no records anywhere) changes no weight but advances the version.
  ASSERT_TRUE(f.shard->Push(0, 1, 0, 0, 4, Bytes(g0)).ok());
  ASSERT_TRUE(f.shard->Push(1, 1, 0, 0, 4, Bytes(g0)).ok());
  EXPECT_EQ(f.shard->version(), 2);
  for (float x : f.shard->Weights(0, 4)) EXPECT_FLOAT_EQ(x, -3.0f);
}

TEST(ParamShard, ARemovedWorkerIsNotWaitedFor) {
  auto f = Make(Consistency::kBsp, 3);
  std::vector<float> g{1, 1, 1, 1};
  ASSERT_TRUE(f.shard->Push(0, 0, 10, 0, 4, Bytes(g)).ok());
  ASSERT_TRUE(f.shard->Push(2, 0, 10, 0, 4, Bytes(g)).ok());
  EXPECT_EQ(f.shard->version(), 0);
  EXPECT_TRUE(f.shard->RemoveWorker(1));  // completes step 0
  EXPECT_EQ(f.shard->version(), 1);
  EXPECT_FALSE(f.shard->RemoveWorker(1));
  EXPECT_FALSE(f.shard->Push(1, 1, 10, 0, 4, Bytes(g)).ok());
  EXPECT_EQ(f.shard->Lagging(), (std::vector<uint32_t>{0, 2}));
  // The remaining two go on; what 2 pushed before leaving stays applied.
  ASSERT_TRUE(f.shard->Push(0, 1, 10, 0, 4, Bytes(g)).ok());
  ASSERT_TRUE(f.shard->Push(2, 1, 10, 0, 4, Bytes(g)).ok());
  EXPECT_FALSE(f.shard->RemoveWorker(2));  // nothing pending: no step completes
  ASSERT_EQ(*f.shard->Push(0, 2, 10, 0, 4, Bytes(g)), PushOutcome::kApplied);  // alone now
  EXPECT_EQ(f.shard->version(), 3);
  // A worker that left may pull what the others reached.
  EXPECT_TRUE(f.shard->ValidatePull(1, 3, 0, 4).ok());
}

TEST(ParamShard, SspVersionIgnoresRemovedWorkers) {
  auto f = Make(Consistency::kSsp, 2, 1);
  std::vector<float> g{1, 1, 1, 1};
  ASSERT_TRUE(f.shard->Push(0, 0, 10, 0, 4, Bytes(g)).ok());
  ASSERT_TRUE(f.shard->Push(0, 1, 10, 0, 4, Bytes(g)).ok());
  EXPECT_EQ(f.shard->version(), 0);
  EXPECT_TRUE(f.shard->RemoveWorker(1));
  EXPECT_EQ(f.shard->version(), 2);
}

// A worker that takes a removed one's place is waited for from the current
// step on; what the others pushed for it stays; an active worker is told its
// next step.
TEST(ParamShard, AnAdmittedWorkerIsWaitedForFromTheCurrentStep) {
  auto f = Make(Consistency::kBsp, 2);
  std::vector<float> g{1, 1, 1, 1};
  EXPECT_EQ(f.shard->AdmitWorker(0), 0);  // starting with the job
  EXPECT_EQ(f.shard->workers_waited_for(), 2);
  EXPECT_FALSE(f.shard->RemoveWorker(1));  // nothing pending: no step completes
  EXPECT_EQ(f.shard->workers_waited_for(), 1);  // pull replies say so: 0 takes the whole batch
  ASSERT_EQ(*f.shard->Push(0, 0, 10, 0, 4, Bytes(g)), PushOutcome::kApplied);  // alone
  ASSERT_TRUE(f.shard->Push(0, 1, 10, 0, 4, Bytes(g)).ok());
  EXPECT_EQ(f.shard->version(), 2);
  EXPECT_EQ(f.shard->AdmitWorker(1), 2);
  EXPECT_FALSE(f.shard->removed(1));
  EXPECT_EQ(f.shard->workers_waited_for(), 2);
  ASSERT_EQ(*f.shard->Push(0, 2, 10, 0, 4, Bytes(g)), PushOutcome::kAccumulated);  // waits for 1 now
  EXPECT_EQ(f.shard->AdmitWorker(0), 3);  // 0 has pushed step 2
  EXPECT_EQ(f.shard->Lagging(), (std::vector<uint32_t>{1}));
  ASSERT_EQ(*f.shard->Push(1, 2, 0, 0, 4, Bytes(g)), PushOutcome::kApplied);  // an empty push completes it
  EXPECT_EQ(f.shard->version(), 3);

  auto ssp = Make(Consistency::kSsp, 2, 1);
  ASSERT_TRUE(ssp.shard->Push(0, 0, 10, 0, 4, Bytes(g)).ok());
  EXPECT_TRUE(ssp.shard->RemoveWorker(1));
  ASSERT_TRUE(ssp.shard->Push(0, 1, 10, 0, 4, Bytes(g)).ok());
  EXPECT_EQ(ssp.shard->version(), 2);
  EXPECT_EQ(ssp.shard->AdmitWorker(1), 2);  // its clock starts at the version
  EXPECT_EQ(ssp.shard->version(), 2);
  EXPECT_EQ(ssp.shard->WorkerSteps(), (std::vector<int64_t>{2, 2}));
  EXPECT_EQ(ssp.shard->workers_waited_for(), 0);  // not bsp: each worker keeps its share
}

TEST(ParamShard, PullValidation) {
  auto f = Make(Consistency::kBsp, 2);
  EXPECT_TRUE(f.shard->ValidatePull(0, 0, 1, 3).ok());
  EXPECT_TRUE(f.shard->ValidatePull(0, 1, 0, 4).ok());
  EXPECT_FALSE(f.shard->ValidatePull(0, 2, 0, 4).ok());
  EXPECT_FALSE(f.shard->ValidatePull(0, 0, 3, 3).ok());
  EXPECT_FALSE(f.shard->ValidatePull(0, 0, 0, 9).ok());
  EXPECT_FALSE(f.shard->ValidatePull(7, 0, 0, 4).ok());
  EXPECT_FALSE(f.shard->ValidatePull(0, -1, 0, 4).ok());
}

// A checkpoint taken between steps, restored into a fresh shard, continues
// bit for bit as the original does (Adam: moments and step count included).
TEST(ParamShard, RestoredSnapshotContinuesExactly) {
  ModelOptions m;
  m.kind = ModelKind::kLinearRegression;
  auto spec = ModelSpec::FromConfig(m, 3);
  OptimizerOptions o;
  o.kind = OptimizerKind::kAdam;
  o.learning_rate = 0.01;
  ClusterOptions cl;
  cl.workers = 2;
  auto a = ParamShard::Create(*spec, {0, 4}, o, cl);
  auto b = ParamShard::Create(*spec, {0, 4}, o, cl);
  ASSERT_TRUE(a.ok() && b.ok());
  auto step = [](ParamShard& s, int64_t t) {
    std::vector<float> g0{1.0f + t, -2, 0.5f, 3}, g1{0.25f, 1, -1.0f * t, 2};
    ASSERT_TRUE(s.Push(0, t, 3, 0, 4, Bytes(g0)).ok());
    ASSERT_TRUE(s.Push(1, t, 5, 0, 4, Bytes(g1)).ok());
  };
  for (int64_t t = 0; t < 3; ++t) step(**a, t);
  ServerCheckpoint c;
  (*a)->Snapshot(&c);
  EXPECT_EQ(c.version, 3);
  EXPECT_EQ(c.optimizer_steps, 3);
  ASSERT_TRUE((*b)->Restore(c).ok());
  EXPECT_EQ((*b)->version(), 3);
  for (int64_t t = 3; t < 5; ++t) {
    step(**a, t);
    step(**b, t);
  }
  auto wa = (*a)->Weights(0, 4), wb = (*b)->Weights(0, 4);
  EXPECT_EQ(std::vector<float>(wa.begin(), wa.end()), std::vector<float>(wb.begin(), wb.end()));
  // A checkpoint of another shape is refused, naming both.
  c.range = {0, 3};
  EXPECT_FALSE((*b)->Restore(c).ok());
}

// A table of one-float rows, all on this server (1 server), plain SGD at rate 1.
void AttachTable(Fixture* f) {
  TableOptions t;
  t.name = "ids";
  t.rows = 1000;
  t.dim = 1;
  t.optimizer = RowOptimizerKind::kSgd;
  t.learning_rate = 1.0;
  f->shard->AttachTables(std::move(TableShard::Create({t}, 0, 1)).value());
}

struct Rows {
  std::vector<float> g;
  SparseSection s;
  Rows(std::vector<uint64_t> rows, std::vector<float> grad) : g(std::move(grad)) {
    s.rows = std::move(rows);
    s.values = std::as_bytes(std::span(g));
  }
  Rows(const Rows&) = delete;
  std::span<const SparseSection> sections() const { return {&s, 1}; }
};

float Row(Fixture& f, uint64_t row) {
  std::vector<float> out;
  EXPECT_TRUE(f.shard->tables()->Read(0, std::vector<uint64_t>{row}, &out).ok());
  return out.empty() ? NAN : out[0];
}

TEST(ParamShard, BspAppliesEachTouchedRowOnceByTheRecordWeightedMeanAndIgnoresDuplicates) {
  auto f = Make(Consistency::kBsp, 2);
  AttachTable(&f);
  const float r5 = Row(f, 5), r7 = Row(f, 7);
  const std::vector<float> g(4, 0.0f);
  Rows a({5, 7}, {1.0f, 2.0f}), b({7}, {4.0f});
  EXPECT_EQ(*f.shard->Push(0, 0, 30, 0, 4, Bytes(g), a.sections()), PushOutcome::kAccumulated);
  EXPECT_EQ(*f.shard->Push(0, 0, 30, 0, 4, Bytes(g), a.sections()), PushOutcome::kDuplicate);
  EXPECT_FLOAT_EQ(Row(f, 5), r5) << "nothing applied before the step is complete";
  EXPECT_EQ(*f.shard->Push(1, 0, 10, 0, 4, Bytes(g), b.sections()), PushOutcome::kApplied);
  EXPECT_NEAR(Row(f, 5), r5 - 30 * 1.0f / 40, 1e-6);
  EXPECT_NEAR(Row(f, 7), r7 - (30 * 2.0f + 10 * 4.0f) / 40, 1e-6);
}

// A push with defer_tables: the dense part and the version move at once,
// the rows only at CatchUpTables (pulls of rows wait for it, dense ones not);
// the rows end as without the deferral, for each consistency and for the
// step's sums of several workers.
TEST(ParamShard, DeferredRowsUpdateAfterTheDenseWeightsAndEndTheSame) {
  for (Consistency c : {Consistency::kBsp, Consistency::kSsp}) {
    for (int64_t workers : {1, 2}) {
      auto deferred = Make(c, workers), direct = Make(c, workers);
      AttachTable(&deferred);
      AttachTable(&direct);
      const std::vector<float> g{1, 1, 1, 1};
      Rows a({5, 7}, {1.0f, 2.0f}), b({7}, {4.0f});
      const float before7 = Row(deferred, 7);
      for (int64_t w = 0; w < workers; ++w) {
        const Rows& r = w == 0 ? a : b;
        ASSERT_TRUE(direct.shard->Push(static_cast<uint32_t>(w), 0, 10, 0, 4, Bytes(g), r.sections()).ok());
        ASSERT_TRUE(deferred.shard->Push(static_cast<uint32_t>(w), 0, 10, 0, 4, Bytes(g), r.sections(), true).ok());
      }
      const float expected5 = Row(direct, 5), expected7 = Row(direct, 7);
      EXPECT_EQ(deferred.shard->version(), direct.shard->version());
      EXPECT_EQ(std::vector<float>(deferred.shard->Weights(0, 4).begin(), deferred.shard->Weights(0, 4).end()),
                std::vector<float>(direct.shard->Weights(0, 4).begin(), direct.shard->Weights(0, 4).end()));
      ASSERT_TRUE(deferred.shard->tables_behind());
      EXPECT_TRUE(deferred.shard->Ready(1, /*with_rows=*/false));
      EXPECT_FALSE(deferred.shard->Ready(1, /*with_rows=*/true)) << "rows are not yet at the new version";
      deferred.shard->CatchUpTables();
      EXPECT_FALSE(deferred.shard->tables_behind());
      EXPECT_TRUE(deferred.shard->Ready(1, /*with_rows=*/true));
      EXPECT_EQ(Row(deferred, 5), expected5);
      EXPECT_EQ(Row(deferred, 7), expected7);
      EXPECT_NE(Row(deferred, 7), before7) << "row 7 was updated";
    }
  }
}

TEST(ParamShard, ABadSparsePartChangesNeitherTheRowsNorTheDenseRange) {
  auto f = Make(Consistency::kSsp, 1);
  const std::vector<float> g(4, 1.0f);
  Rows nan({3}, {NAN});
  auto none = f.shard->Push(0, 0, 10, 0, 4, Bytes(g), nan.sections());
  ASSERT_FALSE(none.ok());
  EXPECT_NE(none.status().message().find("no sparse tables"), std::string::npos);
  AttachTable(&f);
  auto before = std::vector<float>(f.shard->Weights(0, 4).begin(), f.shard->Weights(0, 4).end());
  auto refused = f.shard->Push(0, 0, 10, 0, 4, Bytes(g), nan.sections());
  ASSERT_FALSE(refused.ok());
  EXPECT_NE(refused.status().message().find("non-finite gradient for row 3"), std::string::npos);
  EXPECT_EQ(std::vector<float>(f.shard->Weights(0, 4).begin(), f.shard->Weights(0, 4).end()), before);
  EXPECT_EQ(f.shard->version(), 0) << "the step was not taken";
  Rows good({3}, {0.5f});
  const float r3 = Row(f, 3);
  ASSERT_TRUE(f.shard->Push(0, 0, 10, 0, 4, Bytes(g), good.sections()).ok());
  EXPECT_NEAR(Row(f, 3), r3 - 0.5f, 1e-6) << "SSP applies the push's own rows at once";
  ServerCheckpoint c;
  c.id = 1;
  f.shard->Snapshot(&c);
  EXPECT_EQ(c.rows_base, 0) << "a snapshot under tables holds their changed rows";
  ASSERT_EQ(c.tables.size(), 1u);
  EXPECT_EQ(c.tables[0].rows, std::vector<uint64_t>{3});
  ServerCheckpoint dense_only = c;
  dense_only.rows_base = -1;
  dense_only.tables.clear();
  EXPECT_EQ(f.shard->Restore(dense_only).code(), StatusCode::kFailedPrecondition)
      << "no dense-only rollback under tables that stay ahead";
  EXPECT_TRUE(f.shard->Restore(c).ok());
  EXPECT_NEAR(Row(f, 3), r3 - 0.5f, 1e-6);
}

}  // namespace
}  // namespace psforge

namespace psforge {
namespace {

// 2,600 keys, cluster.chunk_kb 4 (1,024 keys): three equal parts [0, 867), [867, 1734), [1734, 2600).
constexpr int64_t kKeys = 2600;

std::unique_ptr<ParamShard> MakeShard(Consistency c, int64_t workers, int64_t chunk_kb, double clip_norm = 0) {
  ModelOptions m;
  m.kind = ModelKind::kLinearRegression;
  auto spec = ModelSpec::FromConfig(m, kKeys - 1);
  OptimizerOptions o;
  o.kind = OptimizerKind::kAdam;  // its step count must move once a step, whatever the parts
  o.learning_rate = 0.01;
  o.clip_norm = clip_norm;
  ClusterOptions cl;
  cl.consistency = c;
  cl.workers = workers;
  cl.staleness = 1;
  cl.chunk_kb = chunk_kb;
  return std::move(ParamShard::Create(*spec, {0, kKeys}, o, cl)).value();
}

std::vector<float> Gradient(int64_t worker, int64_t step) {
  std::vector<float> g(kKeys);
  for (int64_t k = 0; k < kKeys; ++k) g[k] = std::sin(0.37f * k + 1.3f * worker + 0.71f * step);
  return g;
}

Result<PushOutcome> PushKeys(ParamShard& s, uint32_t worker, int64_t step, int64_t samples,
                             const std::vector<float>& g, int64_t begin, int64_t end) {
  return s.Push(worker, step, samples, begin, end,
                std::as_bytes(std::span<const float>(g).subspan(begin, end - begin)));
}

void ExpectSameWeights(const ParamShard& a, const ParamShard& b) {
  ASSERT_EQ(a.version(), b.version());
  auto wa = a.Weights(0, kKeys), wb = b.Weights(0, kKeys);
  EXPECT_EQ(std::memcmp(wa.data(), wb.data(), wa.size_bytes()), 0) << "weights differ";
}

TEST(ParamShardParts, BspPushesInPartsEndBitForBitAsWholePushesAndEachPartIsReadyWhenApplied) {
  auto whole = MakeShard(Consistency::kBsp, 2, 0);
  auto cut = MakeShard(Consistency::kBsp, 2, 4);
  ASSERT_EQ(whole->parts(), 1);
  ASSERT_EQ(cut->parts(), 3);
  for (int64_t step = 0; step < 3; ++step) {
    auto g0 = Gradient(0, step), g1 = Gradient(1, step);
    ASSERT_EQ(*PushKeys(*whole, 0, step, 64, g0, 0, kKeys), PushOutcome::kAccumulated);
    ASSERT_EQ(*PushKeys(*whole, 1, step, 32, g1, 0, kKeys), PushOutcome::kApplied);
    // Worker 0 one part at a time, worker 1 the first two parts in one push.
    EXPECT_EQ(*PushKeys(*cut, 0, step, 64, g0, 0, 867), PushOutcome::kPart);
    EXPECT_FALSE(cut->Ready(step + 1, 0, 867, false));
    EXPECT_EQ(*PushKeys(*cut, 1, step, 32, g1, 0, 1734), PushOutcome::kPart);
    // Part 0 has both workers' gradients: applied and ready; the rest not.
    EXPECT_TRUE(cut->Ready(step + 1, 0, 867, false));
    EXPECT_EQ(cut->VersionOf(0, 867), step + 1);
    EXPECT_FALSE(cut->Ready(step + 1, 867, 1734, false));
    EXPECT_FALSE(cut->Ready(step + 1));
    EXPECT_EQ(*PushKeys(*cut, 0, step, 64, g0, 867, 1734), PushOutcome::kPart);
    EXPECT_TRUE(cut->Ready(step + 1, 0, 1734, false));
    EXPECT_EQ(*PushKeys(*cut, 0, step, 64, g0, 1734, kKeys), PushOutcome::kAccumulated);
    EXPECT_TRUE(cut->step_in_progress());
    EXPECT_EQ(cut->Lagging(), std::vector<uint32_t>{1});
    EXPECT_EQ(*PushKeys(*cut, 1, step, 32, g1, 1734, kKeys), PushOutcome::kApplied);
    EXPECT_TRUE(cut->Ready(step + 1));
    EXPECT_FALSE(cut->step_in_progress());
    ExpectSameWeights(*whole, *cut);
  }
}

TEST(ParamShardParts, OneWorkerAndSspPartsEndAsWholePushes) {
  for (Consistency c : {Consistency::kBsp, Consistency::kSsp}) {
    const int64_t workers = c == Consistency::kBsp ? 1 : 2;
    auto whole = MakeShard(c, workers, 0);
    auto cut = MakeShard(c, workers, 4);
    for (int64_t step = 0; step < 3; ++step) {
      for (uint32_t w = 0; w < workers; ++w) {
        auto g = Gradient(w, step);
        ASSERT_TRUE(PushKeys(*whole, w, step, 16, g, 0, kKeys).ok());
        EXPECT_EQ(*PushKeys(*cut, w, step, 16, g, 0, 867), PushOutcome::kPart);
        // SSP overlap: the push of step t asks for the weights of t + 2 with each part.
        if (c == Consistency::kSsp) {
          EXPECT_TRUE(cut->ValidatePull(w, step + 2, 0, 867).ok());
        }
        EXPECT_EQ(*PushKeys(*cut, w, step, 16, g, 867, kKeys), PushOutcome::kApplied);
      }
      ExpectSameWeights(*whole, *cut);
    }
  }
}

TEST(ParamShardParts, PartsStayOnTheGridAndARepeatedOneIsADuplicate) {
  auto s = MakeShard(Consistency::kBsp, 2, 4);
  auto g = Gradient(0, 0);
  auto off_grid = PushKeys(*s, 0, 0, 8, g, 0, 1000);
  ASSERT_FALSE(off_grid.ok());
  EXPECT_NE(off_grid.status().message().find("cluster.chunk_kb"), std::string::npos) << off_grid.status().message();
  std::vector<float> bad = g;
  bad[1500] = std::numeric_limits<float>::quiet_NaN();
  ASSERT_EQ(*PushKeys(*s, 0, 0, 8, g, 0, 867), PushOutcome::kPart);
  auto nan = PushKeys(*s, 0, 0, 8, bad, 867, 1734);
  ASSERT_FALSE(nan.ok());
  EXPECT_NE(nan.status().message().find("key 1500"), std::string::npos) << nan.status().message();
  EXPECT_EQ(*PushKeys(*s, 0, 0, 8, g, 0, 867), PushOutcome::kDuplicate);  // a resent part
  auto overlapping = PushKeys(*s, 0, 0, 8, g, 0, 1734);  // parts 0 (taken) and 1 (not)
  ASSERT_FALSE(overlapping.ok());
  EXPECT_NE(overlapping.status().message().find("overlaps"), std::string::npos) << overlapping.status().message();
  EXPECT_EQ(*PushKeys(*s, 0, 0, 8, g, 867, kKeys), PushOutcome::kAccumulated);
  EXPECT_EQ(s->WorkerSteps(), (std::vector<int64_t>{1, 0}));
}

// A worker pushing its last parts first (as backward produces them): each
// part is applied once both workers have it, in whatever order, and the
// step ends bit for bit as whole pushes end it.
TEST(ParamShardParts, PartsInAnyOrderEndAsWholePushes) {
  auto whole = MakeShard(Consistency::kBsp, 2, 0);
  auto cut = MakeShard(Consistency::kBsp, 2, 4);
  for (int64_t step = 0; step < 3; ++step) {
    auto g0 = Gradient(0, step), g1 = Gradient(1, step);
    ASSERT_EQ(*PushKeys(*whole, 0, step, 64, g0, 0, kKeys), PushOutcome::kAccumulated);
    ASSERT_EQ(*PushKeys(*whole, 1, step, 32, g1, 0, kKeys), PushOutcome::kApplied);
    EXPECT_EQ(*PushKeys(*cut, 0, step, 64, g0, 1734, kKeys), PushOutcome::kPart);
    EXPECT_EQ(*PushKeys(*cut, 1, step, 32, g1, 1734, kKeys), PushOutcome::kPart);
    EXPECT_TRUE(cut->Ready(step + 1, 1734, kKeys, false)) << "the last part is done";
    EXPECT_FALSE(cut->Ready(step + 1, 867, kKeys, false)) << "a pull over parts 1 and 2 waits for part 1";
    EXPECT_EQ(*PushKeys(*cut, 0, step, 64, g0, 0, 1734), PushOutcome::kAccumulated);
    EXPECT_EQ(*PushKeys(*cut, 1, step, 32, g1, 867, 1734), PushOutcome::kPart);
    EXPECT_TRUE(cut->Ready(step + 1, 867, kKeys, false));
    EXPECT_FALSE(cut->Ready(step + 1));
    EXPECT_EQ(*PushKeys(*cut, 1, step, 32, g1, 0, 867), PushOutcome::kApplied);
    ExpectSameWeights(*whole, *cut);
  }
}

TEST(ParamShardParts, ClipNormTakesWholeRangesOnly) {
  auto s = MakeShard(Consistency::kBsp, 1, 4, /*clip_norm=*/1.0);
  EXPECT_EQ(s->parts(), 1);
  auto g = Gradient(0, 0);
  auto part = PushKeys(*s, 0, 0, 8, g, 0, 867);
  ASSERT_FALSE(part.ok());
  EXPECT_NE(part.status().message().find("covers the whole range"), std::string::npos) << part.status().message();
  EXPECT_EQ(*PushKeys(*s, 0, 0, 8, g, 0, kKeys), PushOutcome::kApplied);
}

TEST(ParamShardParts, AWorkerRemovedHalfwayThroughItsPartsIsNotWaitedForInTheRest) {
  auto s = MakeShard(Consistency::kBsp, 2, 4);
  auto g0 = Gradient(0, 0), g1 = Gradient(1, 0);
  ASSERT_EQ(*PushKeys(*s, 1, 0, 8, g1, 0, 867), PushOutcome::kPart);
  ASSERT_EQ(*PushKeys(*s, 0, 0, 8, g0, 0, kKeys), PushOutcome::kAccumulated);
  EXPECT_TRUE(s->Ready(1, 0, 867, false));
  EXPECT_FALSE(s->Ready(1));
  EXPECT_TRUE(s->RemoveWorker(1));  // the parts worker 0 alone pushed are applied
  EXPECT_EQ(s->version(), 1);
  EXPECT_TRUE(s->Ready(1));
  // Admitted again at the next step, it is waited for from its first part.
  EXPECT_EQ(s->AdmitWorker(1), 1);
  ASSERT_EQ(*PushKeys(*s, 0, 1, 8, g0, 0, kKeys), PushOutcome::kAccumulated);
  EXPECT_EQ(s->Lagging(), std::vector<uint32_t>{1});
}

}  // namespace
}  // namespace psforge
