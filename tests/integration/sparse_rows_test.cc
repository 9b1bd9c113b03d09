// A worker's PsClient pulling the rows of sparse tables from two real
// ParamServers (ZeroMQ on loopback, in this process): each row comes from
// the server that holds it, lands in its place, and has its row id's
// initial value; a row outside its table is refused, naming the server.
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

TEST(SparseRows, APullGathersEachRowFromItsServerInTheBatchsOrder) {
  JobConfig config;
  config.model.kind = ModelKind::kLinearRegression;
  config.model.tables = {Table("users", int64_t{1} << 40, 3), Table("items", 5000, 1)};
  config.cluster.servers = 2;
  config.cluster.workers = 1;
  config.cluster.shared_memory = false;
  config.cluster.request_timeout_s = 20;
  auto spec = std::move(ModelSpec::FromConfig(config.model, 3)).value();
  auto transport = Transport::CreateZmq();
  std::atomic<bool> stop{false};
  std::vector<std::unique_ptr<ParamServer>> servers;
  std::vector<std::string> endpoints;
  for (int64_t i = 0; i < 2; ++i) {
    servers.push_back(std::move(ParamServer::Create(config, spec, i, transport.get(), "tcp://127.0.0.1:0")).value());
    endpoints.push_back(servers.back()->endpoint());
  }
  std::vector<std::thread> loops;
  for (auto& s : servers) loops.emplace_back([&, server = s.get()] { (void)server->Serve(stop); });
  auto client = std::move(PsClient::Connect(transport.get(), spec, config.cluster, 0, endpoints)).value();

  std::vector<PsClient::TableRows> batch(2);
  batch[0] = {0, 3, {}};
  for (uint64_t r = 1; r < (uint64_t{1} << 40); r = r * 7 + 3) batch[0].rows.push_back(r);
  batch[1] = {1, 1, {0, 1, 2, 4999}};
  int on_second = 0;
  for (uint64_t r : batch[0].rows) on_second += ServerOfRow(r, 2) == 1;
  ASSERT_GT(on_second, 0);
  ASSERT_LT(on_second, static_cast<int>(batch[0].rows.size())) << "the rows span both servers";
  std::vector<std::vector<float>> weights;
  Status pulled = client->PullRows(0, batch, &weights);
  ASSERT_TRUE(pulled.ok()) << pulled.ToString();
  for (std::size_t i = 0; i < batch.size(); ++i) {
    auto table = std::move(EmbeddingTable::Create(spec.tables()[batch[i].table])).value();
    ASSERT_EQ(weights[i].size(), batch[i].rows.size() * batch[i].dim);
    for (std::size_t k = 0; k < batch[i].rows.size(); ++k) {
      std::vector<float> expected(batch[i].dim);
      table->InitialWeights(batch[i].rows[k], expected);
      EXPECT_EQ(std::vector<float>(weights[i].begin() + k * batch[i].dim, weights[i].begin() + (k + 1) * batch[i].dim),
                expected)
          << "table " << i << " row " << batch[i].rows[k];
    }
  }
  std::vector<PsClient::TableRows> beyond{{1, 1, {5000}}};
  Status refused = client->PullRows(0, beyond, &weights);
  ASSERT_FALSE(refused.ok());
  EXPECT_NE(refused.message().find("outside the table"), std::string::npos) << refused.message();
  EXPECT_NE(refused.message().find("server " + std::to_string(ServerOfRow(5000, 2))), std::string::npos)
      << refused.message();
  client.reset();
  stop = true;
  for (auto& t : loops) t.join();
}

}  // namespace
}  // namespace psforge
