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

}  // namespace psforge::nn
