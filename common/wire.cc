#include "common/wire.h"

#include <capnp/message.h>
#include <capnp/serialize.h>
#include <kj/exception.h>
#include <kj/io.h>

#include <algorithm>
#include <cstring>
#include <type_traits>

#include "common/proto/psforge.capnp.h"
#include "common/row_ids.h"

namespace psforge {
namespace {

static_assert(proto::SCHEMA_VERSION == kWireSchemaVersion, "wire.h and psforge.capnp disagree");

template <MessageKind k, typename T>
constexpr bool kBodyIs = std::is_same_v<std::variant_alternative_t<static_cast<std::size_t>(k), MessageBody>, T>;
static_assert(kBodyIs<MessageKind::kRegister, msg::Register> && kBodyIs<MessageKind::kHeartbeat, msg::Heartbeat> &&
                  kBodyIs<MessageKind::kPush, msg::Push> && kBodyIs<MessageKind::kPushAck, msg::PushAck> &&
                  kBodyIs<MessageKind::kPull, msg::Pull> && kBodyIs<MessageKind::kPullReply, msg::PullReply> &&
                  kBodyIs<MessageKind::kError, msg::Error> && kBodyIs<MessageKind::kControl, msg::Control> &&
                  kBodyIs<MessageKind::kWelcome, msg::Welcome> && kBodyIs<MessageKind::kLease, msg::LeaseRequest> &&
                  kBodyIs<MessageKind::kLeaseReply, msg::LeaseReply> && kBodyIs<MessageKind::kReport, msg::Report> &&
                  std::variant_size_v<MessageBody> == 12,
              "MessageBody's alternatives are in MessageKind's order");

std::string SlotError(const char* what, int slot) {
  return std::string(what).append(" slot ").append(std::to_string(slot)).append(" outside [1, ")
      .append(std::to_string(SharedRegion::kSlots)).append("]");
}

Status ReadDType(proto::DType dtype, DType* out) {
  if (static_cast<unsigned>(dtype) > static_cast<unsigned>(proto::DType::FP16))
    return InvalidArgument("unknown dtype " + std::to_string(static_cast<unsigned>(dtype)));
  *out = static_cast<DType>(dtype);
  return Status::Ok();
}

Status CheckSlot(const char* what, int slot) {
  if (slot != 0 && !SharedRegion::ValidSlot(slot)) return InvalidArgument(SlotError(what, slot));
  return Status::Ok();
}

void FillSparse(proto::KeyBlock::Builder b, const std::vector<SparseBlock>& blocks) {
  if (blocks.empty()) return;
  auto list = b.initSparse(static_cast<unsigned>(std::min(blocks.size(), kMaxSparseBlocks)));
  for (unsigned i = 0; i < list.size(); ++i) {
    list[i].setTable(blocks[i].table);
    list[i].setRows(blocks[i].rows);
    list[i].setKeyBytes(blocks[i].key_bytes);
  }
}

// Reads the blocks, checking what the header alone can: a bounded count,
// no table twice, rows in [1, kMaxRowsPerMessage], and with ids
// (`with_keys`) between one and ten bytes of ids a row (a varint's range),
// without them none.
Status ReadSparse(proto::KeyBlock::Reader b, bool with_keys, std::vector<SparseBlock>* out) {
  auto list = b.getSparse();
  if (list.size() > kMaxSparseBlocks)
    return InvalidArgument("sparse lists " + std::to_string(list.size()) + " tables, more than " +
                           std::to_string(kMaxSparseBlocks));
  out->clear();
  for (auto block : list) {
    SparseBlock s{block.getTable(), block.getRows(), block.getKeyBytes()};
    const std::string name = "sparse block of table " + std::to_string(s.table);
    for (const SparseBlock& seen : *out)
      if (seen.table == s.table) return InvalidArgument(name + " appears twice");
    if (s.rows < 1 || s.rows > static_cast<uint64_t>(kMaxRowsPerMessage))
      return InvalidArgument(name + " has " + std::to_string(s.rows) + " rows, outside [1, " +
                             std::to_string(kMaxRowsPerMessage) + "]");
    if (with_keys && (s.key_bytes < s.rows || s.key_bytes > 10 * uint64_t{s.rows}))
      return InvalidArgument(name + ": " + std::to_string(s.rows) + " row ids cannot take " +
                             std::to_string(s.key_bytes) + " bytes");
    if (!with_keys && s.key_bytes != 0)
      return InvalidArgument(name + " in a pull reply carries " + std::to_string(s.key_bytes) +
                             " bytes of row ids; a reply's rows are its pull's");
    out->push_back(s);
  }
  return Status::Ok();
}

// Push, Pull and PullReply share the schema's KeyBlock; each fills the
// fields its kind has.
void FillBlock(proto::KeyBlock::Builder b, const msg::Push& p) {
  b.setStep(p.step);
  b.setKeyBegin(p.key_begin);
  b.setKeyEnd(p.key_end);
  b.setDtype(static_cast<proto::DType>(p.dtype));
  b.setWithPull(p.with_pull);
  b.setPullVersion(p.pull_version);
  b.setSamples(static_cast<uint32_t>(p.samples));
  b.setLease(p.mark.lease);
  b.setLeaseOffset(p.mark.lease_offset);
  b.setEpoch(p.mark.epoch);
  b.setIdSum(p.mark.id_sum);
  b.setIdSquareSum(p.mark.id_square_sum);
  b.setPayloadSlot(static_cast<uint8_t>(p.payload_slot));
  b.setReplySlot(static_cast<uint8_t>(p.reply_slot));
  FillSparse(b, p.sparse);
}

void FillBlock(proto::KeyBlock::Builder b, const msg::Pull& p) {
  b.setStep(p.version);
  b.setKeyBegin(p.key_begin);
  b.setKeyEnd(p.key_end);
  b.setDtype(static_cast<proto::DType>(p.dtype));
  b.setReplySlot(static_cast<uint8_t>(p.reply_slot));
  FillSparse(b, p.sparse);
}

void FillBlock(proto::KeyBlock::Builder b, const msg::PullReply& p) {
  b.setStep(p.version);
  b.setKeyBegin(p.key_begin);
  b.setKeyEnd(p.key_end);
  b.setDtype(static_cast<proto::DType>(p.dtype));
  b.setWorkers(static_cast<uint32_t>(p.workers));
  b.setPayloadSlot(static_cast<uint8_t>(p.payload_slot));
  b.setSlotSequence(p.slot_sequence);
  FillSparse(b, p.sparse);
}

Status ReadBlock(proto::KeyBlock::Reader b, msg::Push* p) {
  p->step = b.getStep();
  p->key_begin = b.getKeyBegin();
  p->key_end = b.getKeyEnd();
  PSF_RETURN_IF_ERROR(ReadDType(b.getDtype(), &p->dtype));
  p->with_pull = b.getWithPull();
  p->pull_version = b.getPullVersion();
  p->samples = b.getSamples();
  p->mark = {b.getLease(), b.getLeaseOffset(), b.getEpoch(), b.getIdSum(), b.getIdSquareSum()};
  p->payload_slot = b.getPayloadSlot();
  p->reply_slot = b.getReplySlot();
  PSF_RETURN_IF_ERROR(CheckSlot("payload", p->payload_slot));
  PSF_RETURN_IF_ERROR(CheckSlot("reply", p->reply_slot));
  return ReadSparse(b, /*with_keys=*/true, &p->sparse);
}

Status ReadBlock(proto::KeyBlock::Reader b, msg::Pull* p) {
  p->version = b.getStep();
  p->key_begin = b.getKeyBegin();
  p->key_end = b.getKeyEnd();
  PSF_RETURN_IF_ERROR(ReadDType(b.getDtype(), &p->dtype));
  p->reply_slot = b.getReplySlot();
  PSF_RETURN_IF_ERROR(CheckSlot("reply", p->reply_slot));
  return ReadSparse(b, /*with_keys=*/true, &p->sparse);
}

Status ReadBlock(proto::KeyBlock::Reader b, msg::PullReply* p) {
  p->version = b.getStep();
  p->key_begin = b.getKeyBegin();
  p->key_end = b.getKeyEnd();
  PSF_RETURN_IF_ERROR(ReadDType(b.getDtype(), &p->dtype));
  p->workers = b.getWorkers();
  p->payload_slot = b.getPayloadSlot();
  p->slot_sequence = b.getSlotSequence();
  PSF_RETURN_IF_ERROR(CheckSlot("payload", p->payload_slot));
  return ReadSparse(b, /*with_keys=*/false, &p->sparse);
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

void Fill(proto::Header::Body::Builder body, const msg::Register& m) {
  auto r = body.initRegister();
  r.setRole(static_cast<proto::Role>(m.role));
  r.setEndpoint(m.endpoint);
  r.setPublicKey(m.public_key);
  r.setPid(m.pid);
}

void Fill(proto::Header::Body::Builder body, const msg::Heartbeat& m) {
  auto b = body.initHeartbeat();
  b.setStep(m.step);
  b.setEpoch(m.epoch);
  b.setSamples(m.samples);
  b.setLoss(m.loss);
  b.setStop(m.stop);
  b.setRole(static_cast<proto::Role>(m.role));
  b.setRemovedFrom(m.removed_from);
  b.setCheckpoint(m.checkpoint);
  b.setRestore(m.restore);
  b.setRestored(m.restored);
  b.setPositionsFrom(m.positions_from);
  b.setCollecting(m.collecting);
  b.setCheckpointAt(m.checkpoint_at);
  b.setBytesPushed(m.bytes_pushed);
  b.setBytesPulled(m.bytes_pulled);
  FillList(b.initRemoved(static_cast<unsigned>(std::min(m.removed.size(), kMaxListEntries))), m.removed);
  auto audit = b.initAudit(static_cast<unsigned>(std::min(m.audit.size(), kMaxAuditEntries)));
  for (unsigned i = 0; i < audit.size(); ++i) {
    audit[i].setEpoch(m.audit[i].epoch);
    audit[i].setRecords(m.audit[i].records);
    audit[i].setIdSum(m.audit[i].id_sum);
    audit[i].setIdSquareSum(m.audit[i].id_square_sum);
  }
  auto positions = b.initPositions(static_cast<unsigned>(std::min(m.positions.size(), kMaxListEntries)));
  for (unsigned i = 0; i < positions.size(); ++i) {
    positions[i].setWorker(m.positions[i].worker);
    positions[i].setLease(m.positions[i].lease);
    positions[i].setLeaseOffset(m.positions[i].lease_offset);
    positions[i].setStep(m.positions[i].step);
  }
}

void Fill(proto::Header::Body::Builder body, const msg::Welcome& m) {
  auto w = body.initWelcome();
  w.setId(m.id);
  w.setStep(m.step);
}

void Fill(proto::Header::Body::Builder body, const msg::LeaseRequest& m) {
  auto l = body.initLease();
  FillList(l.initDone(static_cast<unsigned>(std::min(m.done.size(), kMaxListEntries))), m.done);
  l.setStep(m.step);
  l.setFinished(m.finished);
}

void Fill(proto::Header::Body::Builder body, const msg::LeaseReply& m) {
  auto l = body.initLeaseReply();
  l.setStatus(static_cast<proto::LeaseStatus>(m.status));
  l.setLeaseId(m.lease_id);
  l.setEpoch(m.epoch);
  l.setRecordBegin(m.record_begin);
  l.setRecordEnd(m.record_end);
  l.setEvaluateEpoch(m.evaluate_epoch);
  l.setFinalVersion(m.final_version);
  l.setRecordOffset(m.record_offset);
}

void Fill(proto::Header::Body::Builder body, const msg::Report& m) {
  auto r = body.initReport();
  r.setEpoch(m.epoch);
  r.setStep(m.step);
  r.setMetric(m.metric);
  r.setFinal(m.final);
  r.setTrainLoss(m.train_loss);
  r.setTestLogloss(m.test_logloss);
}

void Fill(proto::Header::Body::Builder body, const msg::Push& m) { FillBlock(body.initPush(), m); }
void Fill(proto::Header::Body::Builder body, const msg::Pull& m) { FillBlock(body.initPull(), m); }
void Fill(proto::Header::Body::Builder body, const msg::PullReply& m) { FillBlock(body.initPullReply(), m); }

void Fill(proto::Header::Body::Builder body, const msg::PushAck& m) {
  auto a = body.initPushAck();
  a.setStep(m.step);
  a.setDuplicate(m.duplicate);
}

void Fill(proto::Header::Body::Builder body, const msg::Error& m) {
  auto e = body.initError();
  e.setCode(static_cast<uint16_t>(m.code));
  e.setMessage(m.message);
}

void Fill(proto::Header::Body::Builder body, const msg::Control& m) {
  auto c = body.initControl();
  c.setKind(static_cast<proto::ControlKind>(m.kind));
  c.setValue(m.value);
  c.setText(m.text);
  if (m.kind == ControlKind::kShareMemory) {
    auto r = c.initRegion();
    r.setPid(m.region.pid);
    r.setFd(m.region.fd);
    r.setToken(m.region.token);
    r.setSlotBytes(m.region.slot_bytes);
  }
}

Status CheckRole(proto::Role role, PeerRole* out) {
  if (static_cast<unsigned>(role) > static_cast<unsigned>(proto::Role::COORDINATOR))
    return InvalidArgument("unknown role " + std::to_string(static_cast<unsigned>(role)));
  *out = static_cast<PeerRole>(role);
  return Status::Ok();
}

Status Read(proto::Register::Reader r, msg::Register* m) {
  m->endpoint = r.getEndpoint();
  m->public_key = r.getPublicKey();
  m->pid = r.getPid();
  return CheckRole(r.getRole(), &m->role);
}

Status Read(proto::Heartbeat::Reader b, msg::Heartbeat* m) {
  m->step = b.getStep();
  m->epoch = b.getEpoch();
  m->samples = b.getSamples();
  m->loss = b.getLoss();
  m->stop = b.getStop();
  m->removed_from = b.getRemovedFrom();
  m->checkpoint = b.getCheckpoint();
  m->restore = b.getRestore();
  m->restored = b.getRestored();
  m->positions_from = b.getPositionsFrom();
  m->collecting = b.getCollecting();
  m->checkpoint_at = b.getCheckpointAt();
  m->bytes_pushed = b.getBytesPushed();
  m->bytes_pulled = b.getBytesPulled();
  PSF_RETURN_IF_ERROR(CheckRole(b.getRole(), &m->role));
  PSF_RETURN_IF_ERROR(ReadList(b.getRemoved(), "heartbeat.removed", &m->removed));
  if (m->checkpoint_at < 0)
    return InvalidArgument("heartbeat.checkpointAt is " + std::to_string(m->checkpoint_at) + ", negative");
  if (m->bytes_pushed < 0 || m->bytes_pulled < 0)
    return InvalidArgument("heartbeat counts " + std::to_string(m->bytes_pushed) + " bytes pushed and " +
                           std::to_string(m->bytes_pulled) + " pulled; neither may be negative");
  // Each list is fetched once: every get counts its words against the
  // traversal limit again, so a full list read twice would not fit.
  auto audit = b.getAudit();
  auto positions = b.getPositions();
  if (audit.size() > kMaxAuditEntries)
    return InvalidArgument("heartbeat audits " + std::to_string(audit.size()) + " epochs, more than " +
                           std::to_string(kMaxAuditEntries));
  if (positions.size() > kMaxListEntries)
    return InvalidArgument("heartbeat lists " + std::to_string(positions.size()) + " positions, more than " +
                           std::to_string(kMaxListEntries));
  for (auto a : audit) m->audit.push_back({a.getEpoch(), a.getRecords(), a.getIdSum(), a.getIdSquareSum()});
  for (auto p : positions) m->positions.push_back({p.getWorker(), p.getLease(), p.getLeaseOffset(), p.getStep()});
  return Status::Ok();
}

Status Read(proto::LeaseRequest::Reader l, msg::LeaseRequest* m) {
  m->step = l.getStep();
  m->finished = l.getFinished();
  return ReadList(l.getDone(), "lease.done", &m->done);
}

Status Read(proto::LeaseReply::Reader l, msg::LeaseReply* m) {
  if (static_cast<unsigned>(l.getStatus()) > static_cast<unsigned>(proto::LeaseStatus::FINISHED))
    return InvalidArgument("unknown lease status " + std::to_string(static_cast<unsigned>(l.getStatus())));
  m->status = static_cast<LeaseStatus>(l.getStatus());
  m->lease_id = l.getLeaseId();
  m->epoch = l.getEpoch();
  m->record_begin = l.getRecordBegin();
  m->record_end = l.getRecordEnd();
  m->evaluate_epoch = l.getEvaluateEpoch();
  m->final_version = l.getFinalVersion();
  m->record_offset = l.getRecordOffset();
  return Status::Ok();
}

Status Read(proto::Control::Reader c, msg::Control* m) {
  if (static_cast<unsigned>(c.getKind()) > static_cast<unsigned>(proto::ControlKind::SHARE_MEMORY))
    return InvalidArgument("unknown control kind " + std::to_string(static_cast<unsigned>(c.getKind())));
  m->kind = static_cast<ControlKind>(c.getKind());
  m->value = c.getValue();
  m->text = c.getText();
  if (c.hasRegion()) {
    auto r = c.getRegion();
    m->region = {r.getPid(), r.getFd(), r.getToken(), r.getSlotBytes()};
  }
  return Status::Ok();
}

// Reads a body of kind T from `reader` into `h->body`.
template <typename T, typename Reader>
Status ReadBody(Reader reader, WireHeader* h) {
  T m;
  Status status;
  if constexpr (std::is_same_v<T, msg::Push> || std::is_same_v<T, msg::Pull> || std::is_same_v<T, msg::PullReply>)
    status = ReadBlock(reader, &m);
  else
    status = Read(reader, &m);
  if (status.ok()) h->body = std::move(m);
  return status;
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
  std::visit([&](const auto& m) { Fill(body, m); }, h.body);
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
      case proto::Header::Body::REGISTER: status = ReadBody<msg::Register>(body.getRegister(), &h); break;
      case proto::Header::Body::HEARTBEAT: status = ReadBody<msg::Heartbeat>(body.getHeartbeat(), &h); break;
      case proto::Header::Body::PUSH: status = ReadBody<msg::Push>(body.getPush(), &h); break;
      case proto::Header::Body::PULL: status = ReadBody<msg::Pull>(body.getPull(), &h); break;
      case proto::Header::Body::PULL_REPLY: status = ReadBody<msg::PullReply>(body.getPullReply(), &h); break;
      case proto::Header::Body::LEASE: status = ReadBody<msg::LeaseRequest>(body.getLease(), &h); break;
      case proto::Header::Body::LEASE_REPLY: status = ReadBody<msg::LeaseReply>(body.getLeaseReply(), &h); break;
      case proto::Header::Body::CONTROL: status = ReadBody<msg::Control>(body.getControl(), &h); break;
      case proto::Header::Body::WELCOME:
        h.body = msg::Welcome{body.getWelcome().getId(), body.getWelcome().getStep()};
        break;
      case proto::Header::Body::REPORT: {
        auto r = body.getReport();
        h.body = msg::Report{r.getEpoch(), r.getStep(), r.getMetric(), r.getFinal(), r.getTrainLoss(), r.getTestLogloss()};
        break;
      }
      case proto::Header::Body::PUSH_ACK:
        h.body = msg::PushAck{body.getPushAck().getStep(), body.getPushAck().getDuplicate()};
        break;
      case proto::Header::Body::ERROR: {
        uint16_t code = body.getError().getCode();
        h.body = msg::Error{code <= static_cast<uint16_t>(StatusCode::kAborted) ? static_cast<StatusCode>(code)
                                                                               : StatusCode::kInternal,
                            body.getError().getMessage()};
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

WireHeader ReplyTo(const WireHeader& request, MessageBody body) {
  WireHeader h;
  h.request_id = request.request_id;
  h.body = std::move(body);
  return h;
}

WireHeader ErrorReply(const WireHeader& request, const Status& status) {
  return ReplyTo(request, msg::Error{status.code(), status.message()});
}

}  // namespace psforge
