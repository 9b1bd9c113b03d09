// Helpers shared by the oneDNN layers' implementations (not a public header).
#pragma once

#include <cstdint>
#include <memory>
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

// A memory object with no buffer yet; each call points it at the caller's.
inline dnnl::memory Unbound(const dnnl::memory::desc& md, const dnnl::engine& engine) {
  return dnnl::memory(md, engine, DNNL_MEMORY_NONE);
}

inline void Point(dnnl::memory& m, const void* p) { m.set_data_handle(const_cast<void*>(p)); }

// The plan for batch size n, made on first use (a run sees at most a few sizes).
template <typename Plan, typename Make>
Plan& FindOrMake(std::vector<std::pair<int64_t, std::unique_ptr<Plan>>>& plans, int64_t n, Make make) {
  for (auto& [size, plan] : plans)
    if (size == n) return *plan;
  plans.emplace_back(n, make());
  return *plans.back().second;
}

// A parameter tensor in the caller's layout and, when a primitive wants
// another, a buffer in that layout with the reorder between them.
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
  // Copies the internal result out to `p`.
  void Out(const dnnl::stream& s, float* p) {
    Point(user, p);
    if (needed) to_user.execute(s, {{DNNL_ARG_FROM, internal}, {DNNL_ARG_TO, user}});
  }
};

}  // namespace psforge::nn
