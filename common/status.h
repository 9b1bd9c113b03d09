// Status and Result<T>: how every fallible psforge call reports failure.
//
// A Status is a code plus a message a user can act on ("data.train_images:
// /x.gz: wrong magic 0x00000000, expected 0x00000803 (IDX images)"). Bad
// input of any kind (config, file, message) is reported as a Status, never
// an assertion. Thread-compatible value types.
#pragma once

#include <cassert>
#include <string>
#include <utility>
#include <variant>

namespace psforge {

enum class StatusCode {
  kOk = 0,
  kInvalidArgument,
  kNotFound,
  kAlreadyExists,
  kUnavailable,
  kDeadlineExceeded,
  kDataLoss,
  kResourceExhausted,
  kFailedPrecondition,
  kInternal,
  kCancelled,  // stopped on request (a signal, the coordinator ending the job)
  kAborted,    // the job restarted from a checkpoint: this work is void, rejoin
};

const char* StatusCodeName(StatusCode code);

class [[nodiscard]] Status {
 public:
  Status() = default;
  Status(StatusCode code, std::string message) : code_(code), message_(std::move(message)) {}

  static Status Ok() { return Status(); }

  bool ok() const { return code_ == StatusCode::kOk; }
  StatusCode code() const { return code_; }
  const std::string& message() const { return message_; }

  // "InvalidArgument: <message>", or "OK".
  std::string ToString() const;

  // Returns a copy whose message is "<context>: <message>".
  Status WithContext(const std::string& context) const;

 private:
  StatusCode code_ = StatusCode::kOk;
  std::string message_;
};

inline Status InvalidArgument(std::string m) { return {StatusCode::kInvalidArgument, std::move(m)}; }
inline Status NotFound(std::string m) { return {StatusCode::kNotFound, std::move(m)}; }
inline Status Unavailable(std::string m) { return {StatusCode::kUnavailable, std::move(m)}; }
inline Status DeadlineExceeded(std::string m) { return {StatusCode::kDeadlineExceeded, std::move(m)}; }
inline Status DataLoss(std::string m) { return {StatusCode::kDataLoss, std::move(m)}; }
inline Status ResourceExhausted(std::string m) { return {StatusCode::kResourceExhausted, std::move(m)}; }
inline Status FailedPrecondition(std::string m) { return {StatusCode::kFailedPrecondition, std::move(m)}; }
inline Status Internal(std::string m) { return {StatusCode::kInternal, std::move(m)}; }
inline Status Cancelled(std::string m) { return {StatusCode::kCancelled, std::move(m)}; }
inline Status Aborted(std::string m) { return {StatusCode::kAborted, std::move(m)}; }

// Either a value or a non-OK Status.
template <typename T>
class [[nodiscard]] Result {
 public:
  Result(T value) : v_(std::move(value)) {}  // NOLINT: implicit by design
  Result(Status status) : v_(std::move(status)) {  // NOLINT: implicit by design
    assert(!std::get<Status>(v_).ok() && "Result needs a value or an error");
  }

  bool ok() const { return std::holds_alternative<T>(v_); }
  Status status() const { return ok() ? Status::Ok() : std::get<Status>(v_); }

  T& value() & { assert(ok()); return std::get<T>(v_); }
  const T& value() const& { assert(ok()); return std::get<T>(v_); }
  T&& value() && { assert(ok()); return std::get<T>(std::move(v_)); }
  T* operator->() { return &value(); }
  const T* operator->() const { return &value(); }
  T& operator*() & { return value(); }
  const T& operator*() const& { return value(); }

 private:
  std::variant<T, Status> v_;
};

}  // namespace psforge

// Returns from the enclosing function when `expr` (a Status) is not OK.
#define PSF_RETURN_IF_ERROR(expr)                 \
  do {                                            \
    ::psforge::Status psf_status_ = (expr);       \
    if (!psf_status_.ok()) return psf_status_;    \
  } while (0)

#define PSF_CONCAT_INNER(a, b) a##b
#define PSF_CONCAT(a, b) PSF_CONCAT_INNER(a, b)

// `PSF_ASSIGN_OR_RETURN(auto x, MakeX());` binds the value or returns the error.
#define PSF_ASSIGN_OR_RETURN(lhs, expr)                                 \
  auto PSF_CONCAT(psf_result_, __LINE__) = (expr);                      \
  if (!PSF_CONCAT(psf_result_, __LINE__).ok())                          \
    return PSF_CONCAT(psf_result_, __LINE__).status();                  \
  lhs = std::move(PSF_CONCAT(psf_result_, __LINE__)).value()
