#include "common/shared_region.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <random>
#include <string>

namespace psforge {
namespace {

constexpr uint64_t kMagic = 0x31304d4853465350ULL;  // "PSFSHM01"
constexpr std::size_t kPage = 4096;
constexpr char kName[] = "psforge-region";
constexpr int64_t kMaxSlotBytes = int64_t{1} << 40;

std::size_t Stride(int64_t slot_bytes) {
  return (static_cast<std::size_t>(slot_bytes) + kPage - 1) / kPage * kPage;
}
std::size_t TotalBytes(int64_t slot_bytes) { return kPage + SharedRegion::kSlots * Stride(slot_bytes); }

std::string Errno(const std::string& what) { return what + ": " + std::strerror(errno); }

}  // namespace

struct SharedRegion::Header {
  uint64_t magic;
  uint64_t token;
  int64_t slot_bytes;
  std::atomic<uint64_t> sequence[kSlots];
};
static_assert(sizeof(std::atomic<uint64_t>) == 8 && std::atomic<uint64_t>::is_always_lock_free,
              "a seqlock shared between processes needs lock-free 64-bit atomics");

SharedRegion::SharedRegion(int fd, std::byte* base, std::size_t size, SharedRegionRef ref)
    : fd_(fd), base_(base), size_(size), ref_(ref) {}

SharedRegion::~SharedRegion() {
  ::munmap(base_, size_);
  if (fd_ >= 0) ::close(fd_);
}

SharedRegion::Header* SharedRegion::header() const { return reinterpret_cast<Header*>(base_); }

std::span<std::byte> SharedRegion::slot(int slot) const {
  return {base_ + kPage + static_cast<std::size_t>(slot - 1) * Stride(ref_.slot_bytes),
          static_cast<std::size_t>(ref_.slot_bytes)};
}

Result<std::unique_ptr<SharedRegion>> SharedRegion::Create(int64_t slot_bytes) {
  if (slot_bytes < 0 || slot_bytes > kMaxSlotBytes)
    return InvalidArgument("shared region slots of " + std::to_string(slot_bytes) + " bytes");
  const int fd = ::memfd_create(kName, MFD_CLOEXEC | MFD_ALLOW_SEALING);
  if (fd < 0) return Unavailable(Errno("memfd_create"));
  const std::size_t size = TotalBytes(slot_bytes);
  if (::ftruncate(fd, static_cast<off_t>(size)) != 0 ||
      ::fcntl(fd, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL) != 0) {
    Status s = Unavailable(Errno("sizing and sealing a shared region"));
    ::close(fd);
    return s;
  }
  void* base = ::mmap(nullptr, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  if (base == MAP_FAILED) {
    Status s = Unavailable(Errno("mapping a shared region of " + std::to_string(size) + " bytes"));
    ::close(fd);
    return s;
  }
  std::random_device random;
  SharedRegionRef ref{::getpid(), fd, (uint64_t{random()} << 32) ^ random(), slot_bytes};
  auto* h = new (base) Header{kMagic, ref.token, slot_bytes, {}};
  for (auto& s : h->sequence) s.store(0, std::memory_order_relaxed);
  return std::unique_ptr<SharedRegion>(new SharedRegion(fd, static_cast<std::byte*>(base), size, ref));
}

Result<std::unique_ptr<SharedRegion>> SharedRegion::Attach(const SharedRegionRef& ref) {
  if (ref.pid <= 0 || ref.fd < 0 || ref.slot_bytes < 0 || ref.slot_bytes > kMaxSlotBytes)
    return FailedPrecondition("not a shared region: pid " + std::to_string(ref.pid) + ", fd " +
                              std::to_string(ref.fd) + ", slots of " + std::to_string(ref.slot_bytes) + " bytes");
  const std::string path = "/proc/" + std::to_string(ref.pid) + "/fd/" + std::to_string(ref.fd);
  char link[256] = {};
  const ssize_t n = ::readlink(path.c_str(), link, sizeof(link) - 1);
  if (n < 0) return FailedPrecondition(Errno("cannot see " + path + " (another host, user or pid namespace?)"));
  const std::string expected = std::string("/memfd:") + kName;
  if (std::strncmp(link, expected.c_str(), expected.size()) != 0)
    return FailedPrecondition(path + " is " + link + ", not a psforge shared region");
  // What the link names may change after readlink: the seals, size and
  // token checked below are what the mapping relies on.
  const int opened = ::open(path.c_str(), O_RDWR | O_CLOEXEC);
  if (opened < 0) return FailedPrecondition(Errno("cannot open " + path));
  struct Closer {
    int fd;
    ~Closer() { ::close(fd); }
  } closer{opened};  // the mapping outlives the descriptor
  struct stat st {};
  const std::size_t size = TotalBytes(ref.slot_bytes);
  if (::fstat(opened, &st) != 0 || !S_ISREG(st.st_mode) || static_cast<std::size_t>(st.st_size) != size)
    return FailedPrecondition(path + " does not hold " + std::to_string(size) + " bytes");
  const int seals = ::fcntl(opened, F_GET_SEALS);
  if (seals < 0 || (seals & F_SEAL_SHRINK) == 0 || (seals & F_SEAL_SEAL) == 0)
    return FailedPrecondition(path + " is not sealed against shrinking");
  void* base = ::mmap(nullptr, size, PROT_READ | PROT_WRITE, MAP_SHARED, opened, 0);
  if (base == MAP_FAILED) return FailedPrecondition(Errno("cannot map " + path));
  auto region = std::unique_ptr<SharedRegion>(new SharedRegion(-1, static_cast<std::byte*>(base), size, ref));
  const Header* h = region->header();
  if (h->magic != kMagic || h->token != ref.token || h->slot_bytes != ref.slot_bytes)
    return FailedPrecondition(path + " is not the region offered (its token or size differs)");
  return region;
}

uint64_t SharedRegion::Write(int slot, std::span<const std::byte> bytes) {
  std::atomic<uint64_t>& sequence = header()->sequence[slot - 1];
  const uint64_t writing = (sequence.load(std::memory_order_relaxed) + 2) | 1;  // odd: being written
  sequence.store(writing, std::memory_order_relaxed);
  std::atomic_thread_fence(std::memory_order_release);
  std::memcpy(this->slot(slot).data(), bytes.data(), std::min(bytes.size(), this->slot(slot).size()));
  sequence.store(writing + 1, std::memory_order_release);
  return writing + 1;
}

bool SharedRegion::Read(int slot, uint64_t sequence, std::span<std::byte> out) const {
  const std::atomic<uint64_t>& current = header()->sequence[slot - 1];
  if ((sequence & 1) != 0 || out.size() > this->slot(slot).size()) return false;
  if (current.load(std::memory_order_acquire) != sequence) return false;
  std::memcpy(out.data(), this->slot(slot).data(), out.size());
  std::atomic_thread_fence(std::memory_order_acquire);
  return current.load(std::memory_order_relaxed) == sequence;
}

}  // namespace psforge
