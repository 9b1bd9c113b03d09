#include "common/wire.h"

#include <capnp/message.h>
#include <capnp/serialize.h>
#include <kj/exception.h>
#include <kj/io.h>

#include <algorithm>
#include <cstring>

#include "common/proto/psforge.capnp.h"

namespace psforge {
namespace {

static_assert(proto::SCHEMA_VERSION == kWireSchemaVersion, "wire.h and psforge.capnp disagree");

void FillBlock(proto::KeyBlock::Builder b, const WireHeader& h) {
  b.setStep(h.step);
  b.setKeyBegin(h.key_begin);
  b.setKeyEnd(h.key_end);
  b.setDtype(static_cast<proto::DType>(h.dtype));
  b.setWithPull(h.with_pull);
  b.setPullVersion(h.pull_version);
  b.setSamples(static_cast<uint32_t>(h.samples));
  b.setLease(h.mark.lease);
  b.setLeaseOffset(h.mark.lease_offset);
  b.setEpoch(h.mark.epoch);
  b.setIdSum(h.mark.id_sum);
  b.setIdSquareSum(h.mark.id_square_sum);
  b.setWorkers(static_cast<uint32_t>(h.workers));
  b.setPayloadSlot(static_cast<uint8_t>(h.payload_slot));
  b.setSlotSequence(h.slot_sequence);
  b.setReplySlot(static_cast<uint8_t>(h.reply_slot));
}

Status ReadBlock(proto::KeyBlock::Reader b, WireHeader* h) {
  h->step = b.getStep();
  h->key_begin = b.getKeyBegin();
  h->key_end = b.getKeyEnd();
  auto dtype = b.getDtype();
  if (static_cast<unsigned>(dtype) > static_cast<unsigned>(proto::DType::FP16))
    return InvalidArgument("unknown dtype " + std::to_string(static_cast<unsigned>(dtype)));
  h->dtype = static_cast<DType>(dtype);
  h->with_pull = b.getWithPull();
  h->pull_version = b.getPullVersion();
  h->samples = b.getSamples();
  h->mark.lease = b.getLease();
  h->mark.lease_offset = b.getLeaseOffset();
  h->mark.epoch = b.getEpoch();
  h->mark.id_sum = b.getIdSum();
  h->mark.id_square_sum = b.getIdSquareSum();
  h->workers = b.getWorkers();
  h->payload_slot = b.getPayloadSlot();
  h->slot_sequence = b.getSlotSequence();
  h->reply_slot = b.getReplySlot();
  if (h->payload_slot != 0 && !SharedRegion::ValidSlot(h->payload_slot))
    return InvalidArgument("payload slot " + std::to_string(h->payload_slot) + " outside [1, " +
                           std::to_string(SharedRegion::kSlots) + "]");
  if (h->reply_slot != 0 && !SharedRegion::ValidSlot(h->reply_slot))
    return InvalidArgument("reply slot " + std::to_string(h->reply_slot) + " outside [1, " +
                           std::to_string(SharedRegion::kSlots) + "]");
  return Status::Ok();
}

template <typename T, typename List>
Status ReadList(List list, const char* what, std::vector<T>* out) {
  if (list.size() > kMaxListEntries)
    return InvalidArgument(std::string(what) + " lists " + std::to_string(list.size()) +
                           " entries, more than " + std::to_string(kMaxListEntries));
  out->clear();
  for (auto v : list) out->push_back(v);
  return Status::Ok();
}

template <typename T, typename Builder>
void FillList(Builder list, const std::vector<T>& values) {
  for (unsigned i = 0; i < values.size(); ++i) list.set(i, values[i]);
}

}  // namespace

const char* MessageKindName(MessageKind k) {
  switch (k) {
    case MessageKind::kRegister: return "register";
    case MessageKind::kHeartbeat: return "heartbeat";
    case MessageKind::kPush: return "push";
    case MessageKind::kPushAck: return "push_ack";
    case MessageKind::kPull: return "pull";
    case MessageKind::kPullReply: return "pull_reply";
    case MessageKind::kError: return "error";
    case MessageKind::kControl: return "control";
    case MessageKind::kWelcome: return "welcome";
    case MessageKind::kLease: return "lease";
    case MessageKind::kLeaseReply: return "lease_reply";
    case MessageKind::kReport: return "report";
  }
  return "?";
}

void EncodeHeader(const WireHeader& h, std::vector<std::byte>* out) {
  // Headers are tiny: one first segment on the stack, no heap segment.
  alignas(8) capnp::word first[64];
  std::memset(first, 0, sizeof first);
  capnp::MallocMessageBuilder message(kj::arrayPtr(first, 64));
  auto root = message.initRoot<proto::Header>();
  root.setVersion(h.version);
  root.setRequestId(h.request_id);
  root.setSenderId(h.sender);
  root.setGeneration(h.generation);
  auto body = root.initBody();
  switch (h.kind) {
    case MessageKind::kRegister: {
      auto r = body.initRegister();
      r.setRole(static_cast<proto::Role>(h.role));
      r.setEndpoint(h.endpoint);
      r.setPublicKey(h.public_key);
      r.setPid(h.pid);
      break;
    }
    case MessageKind::kHeartbeat: {
      auto b = body.initHeartbeat();
      b.setStep(h.step);
      b.setEpoch(h.epoch);
      b.setSamples(h.samples);
      b.setLoss(h.loss);
      b.setStop(h.stop);
      b.setRole(static_cast<proto::Role>(h.role));
      b.setRemovedFrom(h.removed_from);
      b.setCheckpoint(h.checkpoint);
      b.setRestore(h.restore);
      b.setRestored(h.restored);
      b.setPositionsFrom(h.positions_from);
      b.setCollecting(h.collecting);
      b.setCheckpointAt(h.checkpoint_at);
      FillList(b.initRemoved(static_cast<unsigned>(std::min(h.removed.size(), kMaxListEntries))),
               h.removed);
      auto audit = b.initAudit(static_cast<unsigned>(std::min(h.audit.size(), kMaxAuditEntries)));
      for (unsigned i = 0; i < audit.size(); ++i) {
        audit[i].setEpoch(h.audit[i].epoch);
        audit[i].setRecords(h.audit[i].records);
        audit[i].setIdSum(h.audit[i].id_sum);
        audit[i].setIdSquareSum(h.audit[i].id_square_sum);
      }
      auto positions = b.initPositions(static_cast<unsigned>(std::min(h.positions.size(), kMaxListEntries)));
      for (unsigned i = 0; i < positions.size(); ++i) {
        positions[i].setWorker(h.positions[i].worker);
        positions[i].setLease(h.positions[i].lease);
        positions[i].setLeaseOffset(h.positions[i].lease_offset);
        positions[i].setStep(h.positions[i].step);
      }
      break;
    }
    case MessageKind::kWelcome: {
      auto w = body.initWelcome();
      w.setId(h.sender);
      w.setStep(h.step);
      break;
    }
    case MessageKind::kLease: {
      auto l = body.initLease();
      FillList(l.initDone(static_cast<unsigned>(std::min(h.done.size(), kMaxListEntries))), h.done);
      l.setStep(h.step);
      l.setFinished(h.finished);
      break;
    }
    case MessageKind::kLeaseReply: {
      auto l = body.initLeaseReply();
      l.setStatus(static_cast<proto::LeaseStatus>(h.lease_status));
      l.setLeaseId(h.lease_id);
      l.setEpoch(h.epoch);
      l.setRecordBegin(h.record_begin);
      l.setRecordEnd(h.record_end);
      l.setEvaluateEpoch(h.evaluate_epoch);
      l.setFinalVersion(h.final_version);
      l.setRecordOffset(h.record_offset);
      break;
    }
    case MessageKind::kReport: {
      auto r = body.initReport();
      r.setEpoch(h.epoch);
      r.setStep(h.step);
      r.setMetric(h.metric);
      r.setFinal(h.final);
      r.setTrainLoss(h.loss);
      break;
    }
    case MessageKind::kPush: FillBlock(body.initPush(), h); break;
    case MessageKind::kPull: FillBlock(body.initPull(), h); break;
    case MessageKind::kPullReply: FillBlock(body.initPullReply(), h); break;
    case MessageKind::kPushAck: {
      auto a = body.initPushAck();
      a.setStep(h.step);
      a.setDuplicate(h.duplicate);
      break;
    }
    case MessageKind::kError: {
      auto e = body.initError();
      e.setCode(static_cast<uint16_t>(h.error_code));
      e.setMessage(h.text);
      break;
    }
    case MessageKind::kControl: {
      auto c = body.initControl();
      c.setKind(static_cast<proto::ControlKind>(h.control));
      c.setValue(h.value);
      c.setText(h.text);
      if (h.control == ControlKind::kShareMemory) {
        auto r = c.initRegion();
        r.setPid(h.region.pid);
        r.setFd(h.region.fd);
        r.setToken(h.region.token);
        r.setSlotBytes(h.region.slot_bytes);
      }
      break;
    }
  }
  auto segments = message.getSegmentsForOutput();
  std::size_t words = capnp::computeSerializedSizeInWords(segments);
  out->resize(words * sizeof(capnp::word));
  kj::ArrayOutputStream stream(
      kj::arrayPtr(reinterpret_cast<kj::byte*>(out->data()), out->size()));
  capnp::writeMessage(stream, segments);
}

Result<WireHeader> DecodeHeader(std::span<const std::byte> frame, std::vector<uint64_t>* scratch) {
  if (frame.size() > kMaxHeaderBytes)
    return InvalidArgument("header frame of " + std::to_string(frame.size()) +
                           " bytes exceeds the limit of " + std::to_string(kMaxHeaderBytes));
  if (frame.empty() || frame.size() % sizeof(capnp::word) != 0)
    return InvalidArgument("header frame of " + std::to_string(frame.size()) +
                           " bytes is not a whole number of 8-byte words");
  const capnp::word* words = reinterpret_cast<const capnp::word*>(frame.data());
  if (reinterpret_cast<std::uintptr_t>(frame.data()) % alignof(capnp::word) != 0) {
    scratch->resize(frame.size() / sizeof(uint64_t));
    std::memcpy(scratch->data(), frame.data(), frame.size());
    words = reinterpret_cast<const capnp::word*>(scratch->data());
  }
  capnp::ReaderOptions options;
  options.traversalLimitInWords = kMaxHeaderBytes / sizeof(capnp::word);
  options.nestingLimit = 8;
  WireHeader h;
  Status status;
  kj::Maybe<kj::Exception> failure = kj::runCatchingExceptions([&] {
    capnp::FlatArrayMessageReader reader(kj::arrayPtr(words, frame.size() / sizeof(capnp::word)),
                                         options);
    auto root = reader.getRoot<proto::Header>();
    h.version = root.getVersion();
    if (h.version != kWireSchemaVersion) {
      status = InvalidArgument("peer speaks wire schema version " + std::to_string(h.version) +
                               ", this process speaks " + std::to_string(kWireSchemaVersion) +
                               "; run the same psforge release everywhere");
      return;
    }
    h.request_id = root.getRequestId();
    h.sender = root.getSenderId();
    h.generation = root.getGeneration();
    auto body = root.getBody();
    switch (body.which()) {
      case proto::Header::Body::REGISTER: {
        h.kind = MessageKind::kRegister;
        auto role = body.getRegister().getRole();
        if (static_cast<unsigned>(role) > static_cast<unsigned>(proto::Role::COORDINATOR))
          status = InvalidArgument("unknown role");
        h.role = static_cast<PeerRole>(role);
        h.endpoint = body.getRegister().getEndpoint();
        h.public_key = body.getRegister().getPublicKey();
        h.pid = body.getRegister().getPid();
        break;
      }
      case proto::Header::Body::HEARTBEAT: {
        h.kind = MessageKind::kHeartbeat;
        auto b = body.getHeartbeat();
        h.step = b.getStep();
        h.epoch = b.getEpoch();
        h.samples = b.getSamples();
        h.loss = b.getLoss();
        h.stop = b.getStop();
        h.role = static_cast<PeerRole>(b.getRole());
        h.removed_from = b.getRemovedFrom();
        h.checkpoint = b.getCheckpoint();
        h.restore = b.getRestore();
        h.restored = b.getRestored();
        h.positions_from = b.getPositionsFrom();
        h.collecting = b.getCollecting();
        h.checkpoint_at = b.getCheckpointAt();
        status = ReadList(b.getRemoved(), "heartbeat.removed", &h.removed);
        if (status.ok() && h.checkpoint_at < 0)
          status = InvalidArgument("heartbeat.checkpointAt is " + std::to_string(h.checkpoint_at) + ", negative");
        // Each list is fetched once: every get counts its words against the
        // traversal limit again, so a full list read twice would not fit.
        auto audit = b.getAudit();
        auto positions = b.getPositions();
        if (status.ok() && audit.size() > kMaxAuditEntries)
          status = InvalidArgument("heartbeat audits " + std::to_string(audit.size()) + " epochs, more than " +
                                   std::to_string(kMaxAuditEntries));
        if (status.ok() && positions.size() > kMaxListEntries)
          status = InvalidArgument("heartbeat lists " + std::to_string(positions.size()) + " positions, more than " +
                                   std::to_string(kMaxListEntries));
        if (status.ok() && static_cast<unsigned>(b.getRole()) > static_cast<unsigned>(proto::Role::COORDINATOR))
          status = InvalidArgument("unknown role");
        if (!status.ok()) break;
        for (auto a : audit) h.audit.push_back({a.getEpoch(), a.getRecords(), a.getIdSum(), a.getIdSquareSum()});
        for (auto p : positions) h.positions.push_back({p.getWorker(), p.getLease(), p.getLeaseOffset(), p.getStep()});
        break;
      }
      case proto::Header::Body::WELCOME:
        h.kind = MessageKind::kWelcome;
        h.sender = body.getWelcome().getId();
        h.step = body.getWelcome().getStep();
        break;
      case proto::Header::Body::LEASE: {
        h.kind = MessageKind::kLease;
        auto l = body.getLease();
        h.step = l.getStep();
        h.finished = l.getFinished();
        status = ReadList(l.getDone(), "lease.done", &h.done);
        break;
      }
      case proto::Header::Body::LEASE_REPLY: {
        h.kind = MessageKind::kLeaseReply;
        auto l = body.getLeaseReply();
        if (static_cast<unsigned>(l.getStatus()) > static_cast<unsigned>(proto::LeaseStatus::FINISHED))
          status = InvalidArgument("unknown lease status");
        h.lease_status = static_cast<LeaseStatus>(l.getStatus());
        h.lease_id = l.getLeaseId();
        h.epoch = l.getEpoch();
        h.record_begin = l.getRecordBegin();
        h.record_end = l.getRecordEnd();
        h.evaluate_epoch = l.getEvaluateEpoch();
        h.final_version = l.getFinalVersion();
        h.record_offset = l.getRecordOffset();
        break;
      }
      case proto::Header::Body::REPORT: {
        h.kind = MessageKind::kReport;
        auto r = body.getReport();
        h.epoch = r.getEpoch();
        h.step = r.getStep();
        h.metric = r.getMetric();
        h.final = r.getFinal();
        h.loss = r.getTrainLoss();
        break;
      }
      case proto::Header::Body::PUSH:
        h.kind = MessageKind::kPush;
        status = ReadBlock(body.getPush(), &h);
        break;
      case proto::Header::Body::PULL:
        h.kind = MessageKind::kPull;
        status = ReadBlock(body.getPull(), &h);
        break;
      case proto::Header::Body::PULL_REPLY:
        h.kind = MessageKind::kPullReply;
        status = ReadBlock(body.getPullReply(), &h);
        break;
      case proto::Header::Body::PUSH_ACK:
        h.kind = MessageKind::kPushAck;
        h.step = body.getPushAck().getStep();
        h.duplicate = body.getPushAck().getDuplicate();
        break;
      case proto::Header::Body::ERROR: {
        h.kind = MessageKind::kError;
        uint16_t code = body.getError().getCode();
        h.error_code = code <= static_cast<uint16_t>(StatusCode::kAborted)
                           ? static_cast<StatusCode>(code) : StatusCode::kInternal;
        h.text = body.getError().getMessage();
        break;
      }
      case proto::Header::Body::CONTROL: {
        h.kind = MessageKind::kControl;
        auto c = body.getControl();
        if (static_cast<unsigned>(c.getKind()) > static_cast<unsigned>(proto::ControlKind::SHARE_MEMORY))
          status = InvalidArgument("unknown control kind");
        h.control = static_cast<ControlKind>(c.getKind());
        h.value = c.getValue();
        h.text = c.getText();
        if (c.hasRegion()) {
          auto r = c.getRegion();
          h.region = {r.getPid(), r.getFd(), r.getToken(), r.getSlotBytes()};
        }
        break;
      }
      default:
        status = InvalidArgument("unknown message kind " + std::to_string(body.which()));
    }
  });
  KJ_IF_MAYBE(e, failure) {
    return InvalidArgument(std::string("malformed header: ") + e->getDescription().cStr());
  }
  if (!status.ok()) return status;
  return h;
}

WireHeader ErrorReply(const WireHeader& request, const Status& status) {
  WireHeader h;
  h.kind = MessageKind::kError;
  h.request_id = request.request_id;
  h.error_code = status.code();
  h.text = status.message();
  return h;
}

}  // namespace psforge
