// A worker's PsClient pulling the rows of sparse tables from two real
// ParamServers (ZeroMQ on loopback, in this process): each row comes from
// the server that holds it, lands in its place, and has its row id's
// initial value; a row outside its table is refused, naming the server;
// pushes update each row on its server.
#include <gtest/gtest.h>

#include <atomic>
#include <thread>

#include "common/row_ids.h"
#include "paramserver/embedding_table.h"
#include "paramserver/server.h"
#include "worker/ps_client.h"

namespace psforge {
namespace {

TableOptions Table(const std::string& name, int64_t rows, int64_t dim) {
  TableOptions t;
  t.name = name;
  t.rows = rows;
  t.dim = dim;
  return t;
}

// Two real servers on loopback and a worker's client: the job's config,
// its spec and the client.
struct TwoServers {
  explicit TwoServers(bool shared_memory, Consistency consistency = Consistency::kBsp) {
    config.cluster.consistency = consistency;
    config.cluster.staleness = 1;
    config.model.kind = ModelKind::kLinearRegression;
    config.model.tables = {Table("users", int64_t{1} << 40, 3), Table("items", 5000, 1)};
    for (TableOptions& t : config.model.tables) {
      t.optimizer = RowOptimizerKind::kSgd;
      t.learning_rate = 0.5;
    }
    config.cluster.servers = 2;
    config.cluster.workers = 1;
    config.cluster.shared_memory = shared_memory;
    config.cluster.request_timeout_s = 20;
    spec = std::move(ModelSpec::FromConfig(config.model, 3)).value();
    transport = Transport::CreateZmq();
    for (int64_t i = 0; i < 2; ++i) {
      servers.push_back(
          std::move(ParamServer::Create(config, spec, i, transport.get(), "tcp://127.0.0.1:0")).value());
      endpoints.push_back(servers.back()->endpoint());
    }
    for (auto& s : servers) loops.emplace_back([&, server = s.get()] { (void)server->Serve(stop); });
    client = std::move(PsClient::Connect(transport.get(), spec, config.cluster, 0, endpoints)).value();
  }
  ~TwoServers() {
    client.reset();
    stop = true;
    for (auto& t : loops) t.join();
  }
  // The initial weights of `rows` of table `table`, as any server creates them.
  std::vector<float> Initial(uint16_t table, std::span<const uint64_t> rows) const {
    auto t = std::move(EmbeddingTable::Create(spec.tables()[table])).value();
    std::vector<float> w(rows.size() * t->dim());
    for (std::size_t k = 0; k < rows.size(); ++k) t->InitialWeights(rows[k], std::span(w).subspan(k * t->dim(), t->dim()));
    return w;
  }

  JobConfig config;
  ModelSpec spec;
  std::unique_ptr<Transport> transport;
  std::atomic<bool> stop{false};
  std::vector<std::unique_ptr<ParamServer>> servers;
  std::vector<std::string> endpoints;
  std::vector<std::thread> loops;
  std::unique_ptr<PsClient> client;
};

std::vector<uint64_t> SpreadRows() {
  std::vector<uint64_t> rows;
  for (uint64_t r = 1; r < (uint64_t{1} << 40); r = r * 7 + 3) rows.push_back(r);
  return rows;
}

TEST(SparseRows, APullGathersEachRowFromItsServerInTheBatchsOrder) {
  TwoServers c(/*shared_memory=*/false);
  const std::vector<uint64_t> users = SpreadRows(), items{0, 1, 2, 4999};
  int on_second = 0;
  for (uint64_t r : users) on_second += ServerOfRow(r, 2) == 1;
  ASSERT_GT(on_second, 0);
  ASSERT_LT(on_second, static_cast<int>(users.size())) << "the rows span both servers";
  std::vector<float> user_w(users.size() * 3, -1), item_w(items.size(), -1);
  const SparseRows batch[] = {{0, 3, users, user_w}, {1, 1, items, item_w}};
  Status pulled = c.client->PullRows(0, batch);
  ASSERT_TRUE(pulled.ok()) << pulled.ToString();
  EXPECT_EQ(user_w, c.Initial(0, users));
  EXPECT_EQ(item_w, c.Initial(1, items));

  const std::vector<uint64_t> outside{5000};
  std::vector<float> one(1);
  const SparseRows beyond[] = {{1, 1, outside, one}};
  Status refused = c.client->PullRows(0, beyond);
  ASSERT_FALSE(refused.ok());
  EXPECT_NE(refused.message().find("outside the table"), std::string::npos) << refused.message();
  EXPECT_NE(refused.message().find("server " + std::to_string(ServerOfRow(5000, 2))), std::string::npos)
      << refused.message();
  std::vector<float> short_buffer(2);
  const SparseRows mismatched[] = {{1, 1, items, short_buffer}};
  EXPECT_EQ(c.client->PullRows(0, mismatched).code(), StatusCode::kInvalidArgument);
}

// A push carries each server its dense slice and the gradient of its rows;
// the next version's rows are w - lr * g (sgd), the dense keys updated too,
// with the dense part in a frame or in shared memory.
class SparsePush : public testing::TestWithParam<bool> {};

TEST_P(SparsePush, UpdatesEachRowOnItsServerAndTheDenseKeys) {
  TwoServers c(/*shared_memory=*/GetParam());
  const std::vector<uint64_t> users = SpreadRows(), items{7, 4999};
  std::vector<float> dense(c.spec.num_params());
  ASSERT_TRUE(c.client->Pull(0, dense).ok());
  const std::vector<float> dense0 = dense;
  std::vector<float> user_g(users.size() * 3), item_g(items.size());
  for (std::size_t i = 0; i < user_g.size(); ++i) user_g[i] = 0.01f * static_cast<float>(i + 1);
  item_g = {2.0f, -4.0f};
  const SparseRows grads[] = {{0, 3, users, user_g}, {1, 1, items, item_g}};
  const std::vector<float> dense_g(c.spec.num_params(), 1.0f);
  Status pushed = c.client->Push(0, dense_g, 16, DataMark{}, grads);
  ASSERT_TRUE(pushed.ok()) << pushed.ToString();
  ASSERT_TRUE(c.client->Pull(1, dense).ok());
  EXPECT_NE(dense, dense0) << "the dense keys were updated";
  std::vector<float> user_w(user_g.size()), item_w(item_g.size());
  const SparseRows batch[] = {{0, 3, users, user_w}, {1, 1, items, item_w}};
  Status pulled = c.client->PullRows(1, batch);
  ASSERT_TRUE(pulled.ok()) << pulled.ToString();
  const std::vector<float> user0 = c.Initial(0, users), item0 = c.Initial(1, items);
  for (std::size_t i = 0; i < user_w.size(); ++i) EXPECT_FLOAT_EQ(user_w[i], user0[i] - 0.5f * user_g[i]) << i;
  for (std::size_t i = 0; i < item_w.size(); ++i) EXPECT_FLOAT_EQ(item_w[i], item0[i] - 0.5f * item_g[i]) << i;
  // Rows no push touched keep their initial weights.
  const std::vector<uint64_t> untouched{8};
  std::vector<float> w8(1);
  const SparseRows other[] = {{1, 1, untouched, w8}};
  ASSERT_TRUE(c.client->PullRows(1, other).ok());
  EXPECT_EQ(w8, c.Initial(1, untouched));
}

INSTANTIATE_TEST_SUITE_P(DenseInFrameOrSlot, SparsePush, testing::Bool());

// SSP with staleness 1 overlaps: the push of step t asks for the weights of
// t + 2, whose replies may come while a batch's rows are awaited. They are
// kept for the Pull that wants them, not dropped (and then waited for until
// the request is sent again: here not within the request timeout).
TEST(SparseRows, RowsPulledWhileAPrefetchIsOnItsWayLeaveItsReplyForItsPull) {
  TwoServers c(/*shared_memory=*/false, Consistency::kSsp);
  c.config.cluster.retry_interval_s = 60;
  c.config.cluster.request_timeout_s = 5;
  c.client = std::move(PsClient::Connect(c.transport.get(), c.spec, c.config.cluster, 0, c.endpoints)).value();
  std::vector<float> dense(c.spec.num_params());
  const std::vector<uint64_t> rows{7, 99, 4999};
  std::vector<float> w(rows.size()), g(rows.size(), 0.5f);
  const std::vector<float> dense_grad(c.spec.num_params(), 0.1f);
  ASSERT_TRUE(c.client->Pull(0, dense).ok());  // and asks for version 1 ahead
  for (int64_t step = 0; step < 4; ++step) {
    const SparseRows pull[] = {{1, 1, rows, w}};
    Status pulled = c.client->PullRows(step, pull);
    ASSERT_TRUE(pulled.ok()) << "step " << step << ": " << pulled.ToString();
    const SparseRows push[] = {{1, 1, rows, g}};
    ASSERT_TRUE(c.client->Push(step, dense_grad, 8, DataMark{}, push).ok());
    Status next = c.client->Pull(step + 1, dense);
    ASSERT_TRUE(next.ok()) << "step " << step + 1 << ": " << next.ToString();
  }
}

}  // namespace
}  // namespace psforge
