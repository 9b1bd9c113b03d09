// A real ParamServer over ZeroMQ on loopback, in this process, serving a
// model with a sparse table: pushes and pulls of rows as a worker sends
// them (header, dense values, row ids and gradients), and what it refuses.
#include "paramserver/server.h"

#include <gtest/gtest.h>

#include <atomic>
#include <cmath>
#include <cstring>
#include <thread>

#include "common/row_ids.h"
#include "common/sparse_payload.h"

namespace psforge {
namespace {

using namespace std::chrono_literals;

struct Served {
  std::unique_ptr<Transport> transport = Transport::CreateZmq();
  ModelSpec spec;
  std::unique_ptr<ParamServer> server;
  std::atomic<bool> stop{false};
  std::thread loop;
  std::unique_ptr<ClientSocket> client;
  std::vector<uint64_t> scratch;
  uint64_t next_request = 1;

  explicit Served(Consistency consistency) {
    JobConfig config;
    config.model.kind = ModelKind::kLinearRegression;
    TableOptions t;
    t.name = "ids";
    t.rows = 1 << 20;
    t.dim = 2;
    t.optimizer = RowOptimizerKind::kSgd;
    t.learning_rate = 1.0;
    config.model.tables = {t};
    config.optimizer.kind = OptimizerKind::kSgd;
    config.optimizer.learning_rate = 1.0;
    config.cluster.servers = 1;
    config.cluster.workers = 1;
    config.cluster.consistency = consistency;
    config.cluster.shared_memory = false;
    spec = std::move(ModelSpec::FromConfig(config.model, 3)).value();  // 4 dense keys
    server = std::move(ParamServer::Create(config, spec, 0, transport.get(), "tcp://127.0.0.1:0")).value();
    loop = std::thread([this] { (void)server->Serve(stop); });
    client = std::move(transport->Connect(server->endpoint())).value();
  }
  ~Served() { Stop(); }
  void Stop() {
    stop = true;
    if (loop.joinable()) loop.join();
  }

  // Sends `body` with `payload` (if any); the reply's header and payload frames.
  std::pair<WireHeader, std::vector<std::vector<std::byte>>> Call(MessageBody body,
                                                                 const std::vector<std::byte>* payload = nullptr) {
    WireHeader h;
    h.request_id = next_request++;
    h.body = std::move(body);
    std::vector<std::byte> header;
    EncodeHeader(h, &header);
    OutFrame frames[2] = {{header, nullptr}, {}};
    if (payload) frames[1].bytes = *payload;
    EXPECT_TRUE(client->Send(std::span<const OutFrame>(frames, payload ? 2 : 1)).ok());
    auto m = client->Receive(10s);
    EXPECT_TRUE(m.ok() && m->has_value()) << "no reply";
    if (!m.ok() || !m->has_value()) return {};
    auto reply = DecodeHeader((*m)->frames[0]->bytes(), &scratch);
    EXPECT_TRUE(reply.ok()) << reply.status().ToString();
    std::vector<std::vector<std::byte>> rest;
    for (std::size_t i = 1; i < (*m)->frames.size(); ++i) {
      auto b = (*m)->frames[i]->bytes();
      rest.emplace_back(b.begin(), b.end());
    }
    return {reply.ok() ? *reply : WireHeader{}, rest};
  }

  // The weights of `rows` at `version` (a pull of rows only).
  std::vector<float> PullRows(int64_t version, const std::vector<uint64_t>& rows) {
    std::vector<std::byte> ids;
    SparseBlock b = AppendSparseSection(SparseLayout::kPull, 0, rows, {}, &ids);
    auto [reply, frames] = Call(msg::Pull{.version = version, .sparse = {b}}, &ids);
    const auto* r = reply.As<msg::PullReply>();
    EXPECT_TRUE(r) << MessageKindName(reply.kind())
                   << (reply.As<msg::Error>() ? ": " + reply.As<msg::Error>()->message : std::string());
    if (!r || frames.size() != 2) return {};
    EXPECT_TRUE(frames[0].empty()) << "no dense keys were asked for";
    EXPECT_EQ(r->sparse.size(), 1u);
    auto split = SplitSparsePayload(SparseLayout::kPullReply, frames[1], 0, r->sparse, std::vector<int64_t>{2},
                                    std::vector<uint64_t>{1 << 20});
    EXPECT_TRUE(split.ok()) << split.status().ToString();
    if (!split.ok()) return {};
    std::vector<float> w((*split)[0].values.size() / sizeof(float));
    std::memcpy(w.data(), (*split)[0].values.data(), (*split)[0].values.size());
    return w;
  }
};

// A push of step `step`: 4 dense values, then `rows` with `grad`.
std::pair<msg::Push, std::vector<std::byte>> Push(int64_t step, const std::vector<uint64_t>& rows,
                                                  const std::vector<float>& grad) {
  std::vector<float> dense(4, 0.25f);
  std::vector<std::byte> frame(dense.size() * sizeof(float));
  std::memcpy(frame.data(), dense.data(), frame.size());
  SparseBlock b = AppendSparseSection(SparseLayout::kPush, 0, rows, grad, &frame);
  return {msg::Push{.step = step, .key_end = 4, .samples = 8, .sparse = {b}}, frame};
}

TEST(ParamServer, ServesSparseRowsThroughPushesAndPulls) {
  Served s(Consistency::kBsp);
  const std::vector<uint64_t> rows{3, 900, 77777};
  const std::vector<float> before = s.PullRows(0, rows);
  ASSERT_EQ(before.size(), 6u);
  auto [push, frame] = Push(0, rows, {1, 2, 3, 4, 5, 6});
  auto [ack, none] = s.Call(push, &frame);
  ASSERT_TRUE(ack.As<msg::PushAck>()) << (ack.As<msg::Error>() ? ack.As<msg::Error>()->message : "");
  const std::vector<float> after = s.PullRows(1, rows);
  ASSERT_EQ(after.size(), 6u);
  for (int k = 0; k < 6; ++k) EXPECT_NEAR(after[k], before[k] - (k + 1), 1e-5) << k;
  // The duplicate (a resent push) changes no row.
  auto [dup, none2] = s.Call(push, &frame);
  ASSERT_TRUE(dup.As<msg::PushAck>());
  EXPECT_TRUE(dup.As<msg::PushAck>()->duplicate);
  EXPECT_EQ(s.PullRows(1, rows), after);
}

// A job of more epochs than a heartbeat audits: every heartbeat has the
// latest epochs, and the pages of the older ones together hold every epoch
// (a coordinator that starts afresh learns the whole job's audit).
TEST(ParamServer, HeartbeatsAuditEveryEpochOfALongJobInPages) {
  Served s(Consistency::kBsp);
  constexpr int64_t kEpochs = 150;
  for (int64_t step = 0; step < kEpochs; ++step) {
    auto [push, frame] = Push(step, {5}, {1, 1});
    push.mark = {0, 0, step + 1, static_cast<uint64_t>(step), static_cast<uint64_t>(step * step)};
    auto [ack, none] = s.Call(push, &frame);
    ASSERT_TRUE(ack.As<msg::PushAck>()) << step;
  }
  s.Stop();
  const std::size_t pages = s.server->AuditPages();
  EXPECT_GT(pages, 1u);
  std::map<int64_t, EpochAudit> seen;
  for (std::size_t page = 0; page < pages + 1; ++page) {
    const MemberProgress p = s.server->Progress(page);
    ASSERT_LE(p.audit.size(), kMaxAuditEntries);
    ASSERT_GE(p.audit.size(), kLatestAudited);
    EXPECT_EQ(p.audit.back().epoch, kEpochs) << "the latest epoch is in every page";
    for (const EpochAudit& a : p.audit) seen[a.epoch] = a;
  }
  ASSERT_EQ(seen.size(), static_cast<std::size_t>(kEpochs));
  for (const auto& [epoch, a] : seen) {
    EXPECT_EQ(a.records, 8) << epoch;
    EXPECT_EQ(a.id_sum, static_cast<uint64_t>(epoch - 1)) << epoch;
  }
}

TEST(ParamServer, RefusesSparsePartsThatDisagreeWithTheHeaderAndAppliesNothing) {
  Served s(Consistency::kBsp);
  const std::vector<uint64_t> rows{5, 6};
  const std::vector<float> before = s.PullRows(0, rows);
  auto error = [&](MessageBody body, const std::vector<std::byte>& payload) {
    auto [reply, frames] = s.Call(std::move(body), &payload);
    const auto* e = reply.As<msg::Error>();
    EXPECT_TRUE(e) << "accepted: " << MessageKindName(reply.kind());
    return e ? e->message : std::string();
  };
  auto [push, frame] = Push(0, rows, {1, 1, 1, 1});
  auto short_frame = frame;
  short_frame.resize(frame.size() - 4);
  EXPECT_NE(error(push, short_frame).find("payload of"), std::string::npos);
  auto [nan_push, nan_frame] = Push(0, rows, {1, NAN, 1, 1});
  EXPECT_NE(error(nan_push, nan_frame).find("non-finite gradient for row 5"), std::string::npos);
  msg::Push other_table = push;
  other_table.sparse[0].table = 3;
  EXPECT_NE(error(other_table, frame).find("names table 3"), std::string::npos);
  std::vector<std::byte> ids;
  SparseBlock beyond = AppendSparseSection(SparseLayout::kPull, 0, std::vector<uint64_t>{1 << 20}, {}, &ids);
  EXPECT_NE(error(msg::Pull{.version = 0, .sparse = {beyond}}, ids).find("outside the table"), std::string::npos);
  EXPECT_EQ(s.PullRows(0, rows), before) << "no refused push touched a row";
}

// cluster.wire_dtype: bf16. A push's 4 dense values come as bf16 (padded to
// whole floats before its rows, which stay float32), are applied in float32,
// and a pull asking for bf16 gets the weights rounded; a payload of the
// wrong size for its type is refused by name and applies nothing.
// Checkpoints on (the default interval) but no checkpoint.dir: off, as the
// coordinator has it without a run directory, not a store at /server-<i>
// (in-process servers of concurrent tests then shared it, and one could
// not open it).
TEST(ParamServer, WritesNoCheckpointsWithoutAFolder) {
  Served s(Consistency::kBsp);
  ASSERT_TRUE(s.server != nullptr);
  EXPECT_EQ(s.server->StatsJson().find("checkpoints_written"), std::string::npos) << s.server->StatsJson();
}

TEST(ParamServer, TakesAndAnswersBf16DenseValues) {
  Served s(Consistency::kBsp);
  auto dense_weights = [&](DType dtype) {
    auto [reply, frames] = s.Call(msg::Pull{.version = 0, .key_end = 4, .dtype = dtype});
    const auto* r = reply.As<msg::PullReply>();
    EXPECT_TRUE(r) << (reply.As<msg::Error>() ? reply.As<msg::Error>()->message : MessageKindName(reply.kind()));
    std::vector<float> w(4);
    if (!r || frames.size() != 1) return w;
    EXPECT_EQ(r->dtype, dtype);
    EXPECT_EQ(frames[0].size(), 4 * DTypeBytes(dtype));
    if (frames[0].size() == 4 * DTypeBytes(dtype)) DecodeValues(dtype, frames[0].data(), 4, w.data());
    return w;
  };
  const std::vector<float> exact = dense_weights(DType::kF32);
  const std::vector<float> rounded = dense_weights(DType::kBf16);
  for (int k = 0; k < 4; ++k) {
    std::byte b[2];
    EncodeValues(DType::kBf16, &exact[k], 1, b);
    float r;
    DecodeValues(DType::kBf16, b, 1, &r);
    EXPECT_EQ(rounded[k], r) << k;
  }
  const std::vector<uint64_t> rows{5, 6};
  const std::vector<float> rows_before = s.PullRows(0, rows);
  // 0.25 per value: exact in bf16. 8 bytes of values, already whole floats.
  const std::vector<float> dense(4, 0.25f);
  std::vector<std::byte> frame(8);
  EncodeValues(DType::kBf16, dense.data(), 4, frame.data());
  auto error = [&](MessageBody body, const std::vector<std::byte>& payload) {
    auto [reply, frames] = s.Call(std::move(body), &payload);
    const auto* e = reply.As<msg::Error>();
    EXPECT_TRUE(e) << "accepted: " << MessageKindName(reply.kind());
    return e ? e->message : std::string();
  };
  std::vector<std::byte> as_f32(16);
  std::memcpy(as_f32.data(), dense.data(), 16);
  const msg::Push dense_only{.step = 0, .key_end = 4, .dtype = DType::kBf16, .samples = 8};
  EXPECT_NE(error(dense_only, as_f32).find("expected 8 (4 bf16 values)"), std::string::npos)
      << error(dense_only, as_f32);
  SparseBlock b = AppendSparseSection(SparseLayout::kPush, 0, rows, std::vector<float>{1, 1, 1, 1}, &frame);
  msg::Push push{.step = 0, .key_end = 4, .dtype = DType::kBf16, .samples = 8, .sparse = {b}};
  auto [ack, none] = s.Call(push, &frame);
  ASSERT_TRUE(ack.As<msg::PushAck>()) << (ack.As<msg::Error>() ? ack.As<msg::Error>()->message : "");
  auto [reply, frames] = s.Call(msg::Pull{.version = 1, .key_end = 4});
  ASSERT_TRUE(reply.As<msg::PullReply>());
  ASSERT_EQ(frames.size(), 1u);
  ASSERT_EQ(frames[0].size(), 16u);
  std::vector<float> after(4);
  std::memcpy(after.data(), frames[0].data(), 16);
  for (int k = 0; k < 4; ++k) EXPECT_FLOAT_EQ(after[k], exact[k] - 0.25f) << "SGD, rate 1: " << k;
  const std::vector<float> rows_after = s.PullRows(1, rows);
  for (int k = 0; k < 4; ++k) EXPECT_FLOAT_EQ(rows_after[k], rows_before[k] - 1.0f) << k;
}

}  // namespace
}  // namespace psforge

namespace psforge {
namespace {

// BSP in parts through a real server: 2 workers, 2,600 keys in three parts
// (cluster.chunk_kb 4), one parked pull allowed per part
// (cluster.max_parked_pulls 1). Worker 0's three parts each ask for their
// keys' next weights and wait; worker 1's parts complete them one at a time,
// and every part's reply carries version 1 for its own keys.
TEST(ParamServer, AnswersEachPartOfABspStepWhenEveryWorkerHasPushedIt) {
  JobConfig config;
  config.model.kind = ModelKind::kLinearRegression;
  config.optimizer.kind = OptimizerKind::kSgd;
  config.optimizer.learning_rate = 1.0;
  config.cluster.servers = 1;
  config.cluster.workers = 2;
  config.cluster.shared_memory = false;
  config.cluster.chunk_kb = 4;
  config.cluster.max_parked_pulls = 1;
  auto transport = Transport::CreateZmq();
  const ModelSpec spec = std::move(ModelSpec::FromConfig(config.model, 2599)).value();
  auto server = std::move(ParamServer::Create(config, spec, 0, transport.get(), "tcp://127.0.0.1:0")).value();
  std::atomic<bool> stop{false};
  std::thread loop([&] { (void)server->Serve(stop); });
  std::unique_ptr<ClientSocket> workers[2] = {std::move(transport->Connect(server->endpoint())).value(),
                                              std::move(transport->Connect(server->endpoint())).value()};
  const int64_t bounds[4] = {0, 867, 1734, 2600};
  std::vector<float> gradient(2600, 0.5f);
  std::vector<std::byte> header;
  uint64_t next_request = 1;
  auto send_part = [&](uint32_t worker, int p) {
    WireHeader h;
    h.request_id = next_request++;
    h.sender = worker;
    h.body = msg::Push{.step = 0, .key_begin = bounds[p], .key_end = bounds[p + 1], .samples = 4, .with_pull = true,
                       .pull_version = 1};
    EncodeHeader(h, &header);
    auto bytes = std::as_bytes(std::span<const float>(gradient).subspan(bounds[p], bounds[p + 1] - bounds[p]));
    OutFrame frames[2] = {{header, nullptr}, {bytes, nullptr}};
    ASSERT_TRUE(workers[worker]->Send(frames).ok());
  };
  std::vector<uint64_t> scratch;
  // The next reply to `worker`, or an empty header after `wait`.
  auto reply = [&](uint32_t worker, std::chrono::milliseconds wait) -> std::optional<msg::PullReply> {
    auto m = workers[worker]->Receive(wait);
    EXPECT_TRUE(m.ok());
    if (!m.ok() || !m->has_value()) return std::nullopt;
    auto h = DecodeHeader((*m)->frames[0]->bytes(), &scratch);
    EXPECT_TRUE(h.ok());
    if (!h.ok()) return std::nullopt;
    const auto* r = h->As<msg::PullReply>();
    EXPECT_TRUE(r) << MessageKindName(h->kind()) << (h->As<msg::Error>() ? ": " + h->As<msg::Error>()->message : "");
    if (!r) return std::nullopt;
    EXPECT_EQ((*m)->frames.size(), 2u);
    std::vector<float> w((*m)->frames[1]->bytes().size() / sizeof(float));
    std::memcpy(w.data(), (*m)->frames[1]->bytes().data(), w.size() * sizeof(float));
    EXPECT_EQ(static_cast<int64_t>(w.size()), r->key_end - r->key_begin);
    return *r;
  };
  for (int p = 0; p < 3; ++p) send_part(0, p);
  EXPECT_FALSE(reply(0, 300ms)) << "worker 0's parts wait for worker 1's";
  for (int p = 0; p < 3; ++p) {
    send_part(1, p);
    // Part p is complete: worker 0's parked pull of it, and worker 1's own, are answered.
    for (uint32_t w : {0u, 1u}) {
      auto r = reply(w, 10s);
      ASSERT_TRUE(r) << "worker " << w << ", part " << p;
      EXPECT_EQ(r->version, 1);
      EXPECT_EQ(r->key_begin, bounds[p]);
      EXPECT_EQ(r->key_end, bounds[p + 1]);
    }
  }
  stop = true;
  loop.join();
}

}  // namespace
}  // namespace psforge
