#include "common/coordinator_link.h"

#include <unistd.h>

#include <algorithm>

#include "common/clock.h"
#include "common/curve.h"

#include <nlohmann/json.hpp>

namespace psforge {
namespace {


// A job description is a config and a server list: far below this.
constexpr std::size_t kMaxJobBytes = 1 << 20;

std::string Seconds(CoordinatorChannel::Duration d) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.1f s", std::chrono::duration<double>(d).count());
  return buf;
}

}  // namespace

std::string EncodeJob(const JobConfig& config, const std::vector<std::string>& servers,
                      const std::vector<std::string>& server_keys) {
  nlohmann::json c = ConfigToJson(config);
  c.erase("path");
  nlohmann::json job{{"config", c}, {"servers", servers}};
  if (!server_keys.empty()) job["server_keys"] = server_keys;
  return job.dump();
}

Result<JobAssignment> DecodeJob(std::span<const std::byte> payload, const std::string& origin) {
  if (payload.size() > kMaxJobBytes)
    return InvalidArgument("job description of " + std::to_string(payload.size()) + " bytes from " +
                           origin + " exceeds " + std::to_string(kMaxJobBytes));
  nlohmann::json j = nlohmann::json::parse(reinterpret_cast<const char*>(payload.data()),
                                           reinterpret_cast<const char*>(payload.data()) + payload.size(),
                                           nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded() || !j.is_object() || !j.contains("config") || !j.contains("servers") ||
      !j["servers"].is_array())
    return InvalidArgument("job description from " + origin + " is not {config, servers} JSON");
  JobAssignment job;
  // JSON is YAML: the config goes through the same validation as a file.
  PSF_ASSIGN_OR_RETURN(job.config, ParseJobConfig(j["config"].dump(), "the job from " + origin, ""));
  for (const auto& s : j["servers"]) {
    if (!s.is_string()) return InvalidArgument("job description from " + origin + ": a server is not a string");
    job.servers.push_back(s.get<std::string>());
  }
  if (j.contains("server_keys")) {
    if (!j["server_keys"].is_array() || j["server_keys"].size() != job.servers.size())
      return InvalidArgument("job description from " + origin + ": server_keys is not one key per server");
    for (const auto& k : j["server_keys"]) {
      if (!k.is_string() || !IsCurveKey(k.get<std::string>()))
        return InvalidArgument("job description from " + origin + ": a server key is not a CURVE public key");
      job.server_keys.push_back(k.get<std::string>());
    }
  }
  if (static_cast<int64_t>(job.servers.size()) != job.config.cluster.servers)
    return InvalidArgument("job description from " + origin + " lists " +
                           std::to_string(job.servers.size()) + " servers, its config " +
                           std::to_string(job.config.cluster.servers));
  return job;
}

CoordinatorChannel::CoordinatorChannel(std::unique_ptr<ClientSocket> socket, std::string coordinator)
    : socket_(std::move(socket)), coordinator_(std::move(coordinator)), last_answer_(Clock::now()) {}

Result<std::unique_ptr<CoordinatorChannel>> CoordinatorChannel::Open(Transport* transport,
                                                                     const std::string& coordinator) {
  auto socket = transport->Connect(coordinator, transport->cluster_key("coordinator"));
  if (!socket.ok()) return socket.status().WithContext("coordinator " + coordinator);
  std::unique_ptr<CoordinatorChannel> channel(new CoordinatorChannel(std::move(*socket), coordinator));
  channel->public_key_ = transport->public_key();
  return channel;
}

Status CoordinatorChannel::Send(const WireHeader& h) {
  EncodeHeader(h, &encode_buffer_);
  OutFrame frame{encode_buffer_, nullptr};
  Status s = socket_->Send(std::span<const OutFrame>(&frame, 1));
  if (!s.ok()) return Unavailable("cannot send to the coordinator at " + coordinator_ + ": " + s.message());
  return Status::Ok();
}

Result<CoordinatorChannel::Answer> CoordinatorChannel::Await(uint64_t request_id, Duration timeout,
                                                             const std::string& what) {
  const auto deadline = Clock::now() + timeout;
  while (true) {
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now());
    if (left.count() <= 0)
      return DeadlineExceeded("no answer from the coordinator at " + coordinator_ + " to " + what +
                              " within " + Seconds(timeout));
    PSF_ASSIGN_OR_RETURN(auto m, socket_->Receive(interrupt_ ? std::min(left, std::chrono::milliseconds(100)) : left));
    if (!m && interrupt_) PSF_RETURN_IF_ERROR(interrupt_());
    if (!m || m->frames.empty()) continue;
    auto r = DecodeHeader(m->frames[0]->bytes(), &decode_scratch_);
    if (!r.ok()) return r.status().WithContext("answer from the coordinator at " + coordinator_);
    Absorb(*r);
    if (r->request_id == request_id) return Answer{std::move(*r), std::move(*m)};
  }
}

Result<JobAssignment> CoordinatorChannel::Join(PeerRole role, const std::string& endpoint,
                                               Duration timeout) {
  WireHeader h;
  h.body = msg::Register{role, endpoint, role == PeerRole::kServer ? public_key_ : std::string(),
                         static_cast<uint32_t>(::getpid())};
  h.request_id = next_request_++;
  PSF_RETURN_IF_ERROR(Send(h));
  auto answer = Await(h.request_id, timeout, "a registration");
  if (!answer.ok()) {
    if (answer.status().code() != StatusCode::kDeadlineExceeded) return answer.status();
    return DeadlineExceeded(answer.status().message() + "; is ps-coordinator running there" +
                            (public_key_.empty() ? " (and not requiring CURVE keys: --key, --cluster-keys)?"
                                                 : ", and is this process's key in its cluster key file?"));
  }
  const WireHeader& r = answer->header;
  if (const auto* e = r.As<msg::Error>())
    return Status(e->code, "the coordinator at " + coordinator_ + " refused to register this " +
                               (role == PeerRole::kServer ? "server" : "worker") + ": " + e->message);
  const auto* welcome = r.As<msg::Welcome>();
  if (!welcome || answer->message.frames.size() != 2)
    return InvalidArgument("the coordinator at " + coordinator_ + " answered registration with " +
                           MessageKindName(r.kind()));
  PSF_ASSIGN_OR_RETURN(JobAssignment job, DecodeJob(answer->message.frames[1]->bytes(), coordinator_));
  job.id = welcome->id;
  job.generation = r.generation;
  job.step = welcome->step;
  id_ = job.id;
  role_ = role;
  // A member that joins again (the job restarted) starts over.
  generation_ = role == PeerRole::kWorker ? r.generation : 0;  // a server's is set once it has loaded
  coordinator_generation_ = r.generation;
  restore_ = welcome->step;
  collecting_ = welcome->step > 0;
  stop_ = false;
  forgotten_.reset();
  removed_.clear();
  return job;
}

void CoordinatorChannel::Absorb(const WireHeader& h) {
  last_answer_ = Clock::now();
  const auto* b = h.As<msg::Heartbeat>();
  if (!b) return;
  ++heartbeats_answered_;
  committed_checkpoint_ = b->checkpoint;
  checkpoint_at_ = b->checkpoint_at;
  stop_ = stop_ || b->stop;
  coordinator_generation_ = h.generation;
  restore_ = b->restore;
  collecting_ = b->collecting;
  // Pages of the removed list: take what extends the known part.
  if (h.generation == generation_ && b->removed_from <= removed_.size() &&
      b->removed_from + b->removed.size() > removed_.size())
    removed_.insert(removed_.end(), b->removed.begin() + (removed_.size() - b->removed_from), b->removed.end());
}

WireHeader CoordinatorChannel::ProgressHeader(const MemberProgress& p) const {
  WireHeader h;
  h.sender = id_;
  h.generation = generation_;
  msg::Heartbeat b;
  b.role = role_;
  b.step = p.step;
  b.epoch = p.epoch;
  b.samples = p.samples;
  b.loss = p.loss;
  b.removed_from = static_cast<uint32_t>(removed_.size());
  b.checkpoint = p.checkpoint;
  b.audit = p.audit;
  b.positions = p.positions;
  b.restored = p.restored;
  b.positions_from = p.positions_from;
  b.bytes_pushed = p.wire.pushed;
  b.bytes_pulled = p.wire.pulled;
  h.body = std::move(b);
  return h;
}

Status CoordinatorChannel::Heartbeat(const MemberProgress& p, Duration interval, Duration lost_after) {
  const auto now = Clock::now();
  if (now - last_sent_ >= interval) {
    WireHeader h = ProgressHeader(p);
    h.request_id = next_request_++;
    // A full queue (coordinator gone) is what `lost_after` reports; not an error here.
    (void)Send(h);
    last_sent_ = now;
  }
  while (true) {
    PSF_ASSIGN_OR_RETURN(auto m, socket_->Receive(std::chrono::milliseconds(0)));
    if (!m) break;
    if (m->frames.empty()) continue;
    auto r = DecodeHeader(m->frames[0]->bytes(), &decode_scratch_);
    if (!r.ok()) continue;
    Absorb(*r);
    const auto* e = r->As<msg::Error>();
    if (e && e->code == StatusCode::kAborted && !forgotten_)
      forgotten_ = "the coordinator at " + coordinator_ + ": " + e->message;
  }
  if (forgotten_) return Aborted(*forgotten_);
  if (Clock::now() - last_answer_ > lost_after)
    return Unavailable("no answer from the coordinator at " + coordinator_ + " for " +
                       Seconds(Clock::now() - last_answer_));
  return Status::Ok();
}

Result<WireHeader> CoordinatorChannel::Call(WireHeader request, Duration timeout) {
  request.sender = id_;
  request.generation = generation_;
  if (auto* b = request.As<msg::Heartbeat>()) b->role = role_;
  request.request_id = next_request_++;
  PSF_RETURN_IF_ERROR(Send(request));
  PSF_ASSIGN_OR_RETURN(Answer answer, Await(request.request_id, timeout,
                                            std::string("a ") + MessageKindName(request.kind())));
  if (const auto* e = answer.header.As<msg::Error>())
    return Status(e->code, "the coordinator at " + coordinator_ + ": " + e->message);
  return std::move(answer.header);
}

Status CoordinatorChannel::Farewell(const MemberProgress& progress, Duration timeout) {
  WireHeader h = ProgressHeader(progress);
  h.As<msg::Heartbeat>()->stop = true;
  return Call(std::move(h), timeout).status();
}

}  // namespace psforge
