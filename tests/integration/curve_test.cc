// CURVE (security.key, --key): a cluster lets in only its own keys. A job
// whose members have the cluster's keys trains; a process with a key of its
// own, or speaking plaintext, gets no answer from the coordinator or a
// server, is logged with its address, and changes nothing.
#include <gtest/gtest.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <regex>
#include <sstream>
#include <thread>

#include <nlohmann/json.hpp>

#include "common/curve.h"
#include "common/transport.h"
#include "common/wire.h"
#include "tests/integration/cluster_fixture.h"

namespace psforge {
namespace {

using namespace std::chrono_literals;

// Sends `h` on a fresh connection to `endpoint`; true if anything answers within `wait`.
bool Answers(Transport* t, const std::string& endpoint, const std::string& key, const WireHeader& h,
             std::chrono::milliseconds wait) {
  auto socket = t->Connect(endpoint, key);
  EXPECT_TRUE(socket.ok()) << socket.status().ToString();
  if (!socket.ok()) return false;
  std::vector<std::byte> frame;
  EncodeHeader(h, &frame);
  OutFrame out{frame, nullptr};
  (void)(*socket)->Send(std::span<const OutFrame>(&out, 1));
  auto reply = (*socket)->Receive(wait);
  return reply.ok() && reply->has_value();
}

// Polls `process`'s standard error (a file) until it holds `text`.
bool StderrHas(testing::ChildProcess& process, const std::string& text, std::chrono::seconds deadline) {
  for (auto until = std::chrono::steady_clock::now() + deadline; std::chrono::steady_clock::now() < until;) {
    if (process.Stderr().find(text) != std::string::npos) return true;
    std::this_thread::sleep_for(20ms);  // the polling interval of a wait with a deadline
  }
  return false;
}

TEST(Curve, OnlyProcessesWithTheClusterKeysGetIn) {
  testing::TempDir dir;
  const std::string keys = dir.File("keys");
  testing::ChildProcess ps_keys({testing::BinPath("ps-keys"), "--dir", keys, "coordinator", "host"});
  ASSERT_EQ(ps_keys.Wait(30s), std::optional<int>(0)) << ps_keys.Stderr();
  const std::string cluster_keys = keys + "/cluster.keys", host_key = keys + "/host.key";
  const std::vector<std::string> member_keys{"--key", host_key, "--cluster-keys", cluster_keys};
  auto c = testing::StartCluster(testing::kMlpConfig, 1,
                                 {"cluster.workers=1", "training.max_steps=50", "training.epochs=1",
                                  "security.key=" + keys + "/coordinator.key", "security.cluster_keys=" + cluster_keys},
                                 {}, member_keys);
  auto cluster = ReadClusterKeys(cluster_keys);
  ASSERT_TRUE(cluster.ok()) << cluster.status().ToString();

  WireHeader pull;
  pull.generation = 1;
  pull.body = msg::Pull{.key_end = 10};
  WireHeader join;
  join.body = msg::Register{};

  // A key of its own, though it knows the cluster's public keys.
  auto own = GenerateCurveKeyPair();
  ASSERT_TRUE(own.ok());
  auto stranger = Transport::CreateZmq(1, CurveOptions{*own, *cluster, cluster_keys});
  ASSERT_TRUE(stranger.ok()) << stranger.status().ToString();
  EXPECT_FALSE(Answers(stranger->get(), c.servers[0].endpoint, cluster->at("host"), pull, 1500ms));
  EXPECT_FALSE(Answers(stranger->get(), c.coordinator_endpoint, cluster->at("coordinator"), join, 1500ms));
  EXPECT_TRUE(StderrHas(*c.servers[0].process, "refused a connection from 127.0.0.1", 30s)) << c.servers[0].process->Stderr();
  EXPECT_TRUE(StderrHas(*c.coordinator, "refused a connection from 127.0.0.1", 30s)) << c.coordinator->Stderr();
  EXPECT_NE(c.servers[0].process->Stderr().find(own->public_key), std::string::npos) << "the refused key is named";

  // Plaintext: refused, and logged.
  auto plain = Transport::CreateZmq();
  EXPECT_FALSE(Answers(plain.get(), c.servers[0].endpoint, "", pull, 1500ms));
  EXPECT_FALSE(Answers(plain.get(), c.coordinator_endpoint, "", join, 1500ms));
  for (testing::ChildProcess* p : {c.servers[0].process.get(), c.coordinator.get()}) {
    EXPECT_TRUE(StderrHas(*p, "its handshake failed: plaintext", 30s)) << p->Stderr();
    std::istringstream lines(p->Stderr());
    for (std::string line; std::getline(lines, line);)
      if (line.find("its handshake failed") != std::string::npos) std::printf("%s\n", line.c_str());
  }

  // A push from the stranger (the 10 keys of a gradient) is not let in either;
  // the server, asked by a member with the cluster's keys, has applied
  // nothing.
  WireHeader push = pull;
  push.body = msg::Push{.key_end = 10, .samples = 1};
  EXPECT_FALSE(Answers(stranger->get(), c.servers[0].endpoint, cluster->at("host"), push, 1500ms));
  EXPECT_FALSE(Answers(plain.get(), c.servers[0].endpoint, "", push, 1500ms));
  auto host = ReadCurveKeyPair(host_key);
  ASSERT_TRUE(host.ok()) << host.status().ToString();
  auto member = Transport::CreateZmq(1, CurveOptions{*host, *cluster, cluster_keys});
  ASSERT_TRUE(member.ok()) << member.status().ToString();
  {
    auto socket = (*member)->Connect(c.servers[0].endpoint, cluster->at("host"));
    ASSERT_TRUE(socket.ok()) << socket.status().ToString();
    WireHeader stats;
    stats.body = msg::Control{ControlKind::kStats, 0, {}, {}};
    std::vector<std::byte> frame;
    EncodeHeader(stats, &frame);
    OutFrame out{frame, nullptr};
    ASSERT_TRUE((*socket)->Send(std::span<const OutFrame>(&out, 1)).ok());
    auto reply = (*socket)->Receive(10s);
    ASSERT_TRUE(reply.ok() && reply->has_value()) << "a member with the keys gets no answer";
    std::vector<uint64_t> scratch;
    auto h = DecodeHeader((**reply).frames[0]->bytes(), &scratch);
    ASSERT_TRUE(h.ok()) << h.status().ToString();
    ASSERT_TRUE(h->As<msg::Control>()) << MessageKindName(h->kind());
    const std::string& text = h->As<msg::Control>()->text;
    auto j = nlohmann::json::parse(text, nullptr, false);
    ASSERT_FALSE(j.is_discarded()) << text;
    EXPECT_EQ(j["pushes_applied"], 0) << text;
    EXPECT_EQ(j["updates"], 0) << text;
  }

  // A worker without the keys cannot join; its error says what may be wrong.
  testing::ChildProcess keyless({testing::BinPath("ps-worker"), "--coordinator", c.coordinator_endpoint,
                                 "--connect-timeout", "2"});
  EXPECT_EQ(keyless.Wait(60s), std::optional<int>(1));
  EXPECT_NE(keyless.Stderr().find("--key"), std::string::npos) << keyless.Stderr();

  // The cluster's own worker trains the job to its end.
  auto worker = testing::StartWorker(c, dir.File("worker.json"), member_keys);
  EXPECT_EQ(worker->Wait(120s), std::optional<int>(0)) << worker->Stderr();
  testing::ExpectClusterExits(c);
  std::ifstream in(dir.File("worker.json"));
  auto summary = nlohmann::json::parse(in, nullptr, false);
  ASSERT_FALSE(summary.is_discarded());
  EXPECT_EQ(summary["steps"], 50);
  EXPECT_GT(summary["test_accuracy"].get<double>(), 0.6);
  // Nothing the strangers sent reached the server's decoder.
  const std::string log = c.servers[0].process->Stderr();
  EXPECT_NE(log.find("\"errors\":{}"), std::string::npos) << log;
}

// As users run it: ps-launch with security.key and security.cluster_keys
// hands the keys to the servers and workers it starts; the job trains.
TEST(Curve, PsLaunchRunsAJobWithCurveOn) {
  testing::TempDir dir;
  const std::string keys = dir.File("keys");
  testing::ChildProcess ps_keys({testing::BinPath("ps-keys"), "--dir", keys, "coordinator"});
  ASSERT_EQ(ps_keys.Wait(30s), std::optional<int>(0)) << ps_keys.Stderr();
  testing::ChildProcess launch({testing::BinPath("ps-launch"), "--config", testing::kMlpConfig, "--run-dir",
                                dir.File("run"), "--summary", dir.File("summary.json"), "--set",
                                "training.max_steps=40", "--set", "training.epochs=1", "--set",
                                "security.key=" + keys + "/coordinator.key", "--set",
                                "security.cluster_keys=" + keys + "/cluster.keys"});
  ASSERT_EQ(launch.Wait(300s), std::optional<int>(0)) << launch.Stdout() << launch.Stderr();
  std::ifstream in(dir.File("summary.json"));
  auto summary = nlohmann::json::parse(in, nullptr, false);
  ASSERT_FALSE(summary.is_discarded());
  EXPECT_EQ(summary["steps"], 40);
  EXPECT_EQ(summary["config"]["security"]["key"], keys + "/coordinator.key");
}

// Key files: a secret readable by others, a key pair whose halves do not
// match, a member whose key the cluster does not list: each a named error.
// Secure by default: without keys the coordinator listens on loopback only,
// unless the config says plaintext may cross the network.
TEST(Curve, WithoutKeysNothingListensBeyondLoopbackUnlessThePlaintextIsAskedFor) {
  testing::ChildProcess refused({testing::BinPath("ps-coordinator"), "--config", testing::kMlpConfig, "--no-run-dir",
                                 "--bind", "tcp://0.0.0.0:0"});
  EXPECT_EQ(refused.Wait(30s), std::optional<int>(2));
  EXPECT_NE(refused.Stderr().find("security.plaintext: true"), std::string::npos) << refused.Stderr();
  EXPECT_NE(refused.Stderr().find("tcp://0.0.0.0:0, beyond this machine, without CURVE"), std::string::npos)
      << refused.Stderr();
  testing::ChildProcess allowed({testing::BinPath("ps-coordinator"), "--config", testing::kMlpConfig, "--no-run-dir",
                                 "--bind", "tcp://0.0.0.0:0", "--set", "security.plaintext=true"});
  EXPECT_TRUE(allowed.WaitForLine(std::regex("listening on (\\S+)"), 30s)) << allowed.Stderr();
  allowed.Signal(SIGTERM);
  EXPECT_EQ(allowed.Wait(30s), std::optional<int>(1)) << allowed.Stderr();
  EXPECT_TRUE(IsLoopbackEndpoint("tcp://127.0.0.1:5"));
  EXPECT_TRUE(IsLoopbackEndpoint("tcp://[::1]:5"));
  EXPECT_TRUE(IsLoopbackEndpoint("ipc:///tmp/x"));
  EXPECT_FALSE(IsLoopbackEndpoint("tcp://10.0.0.1:5"));
  EXPECT_FALSE(IsLoopbackEndpoint("tcp://*:5"));
}

TEST(Curve, BadKeyFilesAreNamedErrors) {
  testing::TempDir dir;
  auto a = GenerateCurveKeyPair(), b = GenerateCurveKeyPair();
  ASSERT_TRUE(a.ok() && b.ok());
  const std::string key = dir.File("a.key");
  ASSERT_TRUE(WriteCurveKeyPair(key, *a, "a").ok());
  EXPECT_TRUE(ReadCurveKeyPair(key).ok());
  std::filesystem::permissions(key, std::filesystem::perms::others_read, std::filesystem::perm_options::add);
  auto open = ReadCurveKeyPair(key);
  ASSERT_FALSE(open.ok());
  EXPECT_NE(open.status().message().find("chmod 600"), std::string::npos) << open.status().message();

  const std::string mixed = dir.File("mixed.key");
  ASSERT_TRUE(WriteCurveKeyPair(mixed, CurveKeyPair{a->public_key, b->secret_key}, "mixed").ok());
  auto m = ReadCurveKeyPair(mixed);
  ASSERT_FALSE(m.ok());
  EXPECT_NE(m.status().message().find("not the secret key's"), std::string::npos) << m.status().message();

  const std::string list = dir.File("cluster.keys");
  std::ofstream(list) << "coordinator " << b->public_key << "\n";
  const std::string own = dir.File("own.key");
  ASSERT_TRUE(WriteCurveKeyPair(own, *a, "own").ok());
  auto outsider = LoadCurveOptions(own, list);
  ASSERT_FALSE(outsider.ok());
  EXPECT_NE(outsider.status().message().find("not in the cluster key file"), std::string::npos);

  std::ofstream(list) << "coordinator " << b->public_key << "\nhost not-a-key\n";
  auto bad = ReadClusterKeys(list);
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.status().message().find(":2:"), std::string::npos) << bad.status().message();
}

}  // namespace
}  // namespace psforge
