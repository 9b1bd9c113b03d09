// Helpers shared by the oneDNN layers' implementations (not a public header).
#pragma once

#include <cstdint>
#include <memory>
#include <stdexcept>
#include <string>
#include <unordered_map>
#include <utility>
#include <vector>

#include <dnnl.hpp>

namespace psforge::nn {

using Args = std::unordered_map<int, dnnl::memory>;

inline dnnl::memory::desc Matrix(int64_t rows, int64_t cols,
                                 dnnl::memory::format_tag tag = dnnl::memory::format_tag::nc) {
  return dnnl::memory::desc({rows, cols}, dnnl::memory::data_type::f32, tag);
}

// A plain f32 tensor: [n, c, h, w] as nchw, or [n, c] as nc when h = w = 0.
inline dnnl::memory::desc Tensor(int64_t n, int64_t c, int64_t h, int64_t w) {
  if (h == 0) return Matrix(n, c);
  return dnnl::memory::desc({n, c, h, w}, dnnl::memory::data_type::f32, dnnl::memory::format_tag::nchw);
}

inline dnnl::memory::desc Vector(int64_t n) {
  return dnnl::memory::desc({n}, dnnl::memory::data_type::f32, dnnl::memory::format_tag::x);
}

inline dnnl::memory::desc Any(const dnnl::memory::dims& dims) {
  return dnnl::memory::desc(dims, dnnl::memory::data_type::f32, dnnl::memory::format_tag::any);
}

// The plain (row-major) layout of md's dimensions.
inline dnnl::memory::desc PlainLike(const dnnl::memory::desc& md) {
  const auto dims = md.dims();
  dnnl::memory::dims strides(dims.size(), 1);
  for (std::size_t i = dims.size(); i-- > 1;) strides[i - 1] = strides[i] * dims[i];
  return dnnl::memory::desc(dims, dnnl::memory::data_type::f32, strides);
}

inline bool IsPlain(const dnnl::memory::desc& md) { return md == PlainLike(md); }

// y[s] = x[s] + w for each of n samples of `width` floats (y may be x): a bias.
void AddToEachSample(float* y, const float* x, const float* w, int64_t n, int64_t width);
// w = the sum of the n samples of `width` floats of dy (samples in order): a bias's gradient.
void SumSamples(float* w, const float* dy, int64_t n, int64_t width);

// Whether oneDNN fell back to a reference (naive loop) implementation of a
// computing primitive: "ref:any", "bnorm_ref:any", "simple_nchw:any" (a
// pooling loop 20x slower than its jit kernels on AVX2), ...
inline bool IsReference(const std::string& impl) {
  return impl.find("ref") != std::string::npos || impl.rfind("simple", 0) == 0;
}

// The implementation oneDNN chose for a primitive ("jit:avx2", "gemm:jit", ...).
inline std::string ImplOf(const dnnl::primitive& p) {
  const char* impl = nullptr;
  if (dnnl_primitive_desc_query(p.get_primitive_desc(), dnnl_query_impl_info_str, 0, &impl) != dnnl_success ||
      impl == nullptr)
    return "unknown";
  return impl;
}

// A memory object with no buffer yet; each call points it at the caller's.
inline dnnl::memory Unbound(const dnnl::memory::desc& md, const dnnl::engine& engine) {
  return dnnl::memory(md, engine, DNNL_MEMORY_NONE);
}

inline void Point(dnnl::memory& m, const void* p) { m.set_data_handle(const_cast<void*>(p)); }

// The plan for batch size n, made by Prepare (a run sees at most a few sizes).
template <typename Plan, typename Make>
Plan& FindOrMake(std::vector<std::pair<int64_t, std::unique_ptr<Plan>>>& plans, int64_t n, Make make) {
  for (auto& [size, plan] : plans)
    if (size == n) return *plan;
  plans.emplace_back(n, make());
  return *plans.back().second;
}

// The plan Prepare made for batch size n; calling a layer with a batch size
// it was not prepared for is a programming error.
template <typename Plan>
Plan& Find(std::vector<std::pair<int64_t, std::unique_ptr<Plan>>>& plans, int64_t n) {
  for (auto& [size, plan] : plans)
    if (size == n) return *plan;
  throw std::logic_error("nn: layer used with batch size " + std::to_string(n) + " before Prepare");
}

// A tensor in the caller's layout and, when a primitive wants another, a
// buffer in that layout with the reorders between them (parameters, and
// activations a layer takes in another layout than it is handed).
struct Converted {
  dnnl::memory user;      // a view of the caller's buffer
  dnnl::memory internal;  // == user when no reorder is needed
  dnnl::reorder to_internal, to_user;
  bool needed = false;

  Converted() = default;
  Converted(const dnnl::memory::desc& user_md, const dnnl::memory::desc& want, const dnnl::engine& eng)
      : user(Unbound(user_md, eng)), internal(user), needed(user_md != want) {
    if (!needed) return;
    internal = dnnl::memory(want, eng);
    to_internal = dnnl::reorder(user, internal);
    to_user = dnnl::reorder(internal, user);
  }
  // Points the user view at `p` and fills the internal copy from it.
  void In(const dnnl::stream& s, const float* p) {
    Point(user, p);
    if (needed) to_internal.execute(s, {{DNNL_ARG_FROM, user}, {DNNL_ARG_TO, internal}});
  }
  // Copies the internal result out to `p` (or, with no reorder, makes the
  // primitive write `p` itself: call before it runs).
  void Out(const dnnl::stream& s, float* p) {
    Point(user, p);
    if (needed) to_user.execute(s, {{DNNL_ARG_FROM, internal}, {DNNL_ARG_TO, user}});
  }
  // For a primitive that writes `internal`: with no reorder, `p` itself.
  void Target(float* p) {
    if (!needed) Point(user, p);
  }
  // The implementations of the reorders, for Layer::implementations().
  std::string Impl() const { return needed ? ImplOf(to_internal) : ""; }
};

}  // namespace psforge::nn
