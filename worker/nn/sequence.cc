#include "worker/nn/sequence.h"

#include <algorithm>
#include <bit>
#include <cstdint>
#include <cstring>

#include "common/vector_clones.h"
#include "worker/nn/dnnl_util.h"

namespace psforge::nn {

using dnnl::memory;

namespace {

// A table's gradient: table[ids[i]] += rows[i] for n rows of `width`, ids
// out of [0, vocabulary) skipped (they embedded as zeros). Embedding's and
// the fused LSTM's when it embeds every position.
template <typename Id>
void AddRowsOfIds(float* table, int64_t vocabulary, const float* rows, const Id* ids, int64_t n, int64_t width) {
  for (int64_t i = 0; i < n; ++i) {
    const auto id = static_cast<int64_t>(ids[i]);
    if (id < 0 || id >= vocabulary) continue;
    float* d = table + id * width;
    const float* r = rows + i * width;
    for (int64_t k = 0; k < width; ++k) d[k] += r[k];
  }
}

}  // namespace

// ---- Embedding --------------------------------------------------------------

Embedding::Embedding(int64_t vocabulary, int64_t dim, int64_t positions)
    : vocabulary_(vocabulary), dim_(dim), positions_(positions) {}

void Embedding::Bind(const float* weight, float* dweight) {
  weight_ = weight;
  dweight_ = dweight;
}

dnnl::memory::desc Embedding::Prepare(int64_t n, const dnnl::memory::desc&) {
  return Matrix(n * positions_, dim_);
}

void Embedding::Forward(const float* x, float* y, int64_t n, Pass) {
  const std::size_t row = static_cast<std::size_t>(dim_) * sizeof(float);
  for (int64_t i = 0; i < n * positions_; ++i) {
    const auto id = static_cast<int64_t>(x[i]);
    // The readers only make ids in range; anything else reads as zeros.
    if (id >= 0 && id < vocabulary_) {
      std::memcpy(y + i * dim_, weight_ + id * dim_, row);
    } else {
      std::memset(y + i * dim_, 0, row);
    }
  }
}

void Embedding::Backward(const float* x, const float*, const float* dy, float*, int64_t n) {
  if (!accumulate_) std::fill(dweight_, dweight_ + vocabulary_ * dim_, 0.0f);
  AddRowsOfIds(dweight_, vocabulary_, dy, x, n * positions_, dim_);
}

// ---- Lstm -------------------------------------------------------------------
//
// Our own recurrence around oneDNN matmuls (oneDNN 2.6's f32 LSTM is its
// gemm-based reference code, a third slower than OpenBLAS-backed PyTorch
// under AVX2 dispatch; bench/RESULTS.md). Time-major work buffers
// ([positions, n, features]) keep each step's rows contiguous:
//   forward:  gates = x W_ih^T + b for every step in one matmul, then per
//             step gates_t += h_{t-1} W_hh^T (a matmul accumulating into
//             them) and the gate arithmetic, which keeps the activated
//             gates, c_t and tanh(c_t) for backward;
//   backward: per step (last first) the gate arithmetic gives dgates_t and
//             dh_{t-1} = dgates_t W_hh (a matmul); then the weights'
//             gradients over all steps at once: dW_hh = dgates[1:]^T h[:-1]
//             (or its transpose), dW_ih^T = x^T dgates, db = the column
//             sums of dgates, and
//             dx = dgates W_ih, each one matmul.
// Every matmul reads the weights in PyTorch's layouts through strided views
// (oneDNN picks the kernel for this CPU), so nothing is reordered.
// With the embedding fused in (BindTable) and a table smaller than the
// batch's positions, x W_ih^T + b is a row of (table W_ih^T + b) per id:
// the three input-side matmuls run on the table's rows (on the char-LSTM,
// 114 instead of 4096; 13 ms of a ~95 ms step on Zen 4 before), the
// recurrence's matmul writes h_{t-1} W_hh^T and the gate arithmetic adds
// the id's row, and backward sums each step's dgates into its ids' rows
// while they are in cache.

namespace {

// e^x for x in [-87, 88] (clamped), Cephes' single-precision polynomial:
// within 2 ulp, plain arithmetic that GCC vectorises (every clone gives
// the same bits).
inline float ExpApprox(float x) {
  x = x > 88.0f ? 88.0f : x;
  x = x < -87.0f ? -87.0f : x;
  // n = round(x log2 e), by adding and taking away 1.5 * 2^23.
  const float fn = (x * 1.44269504088896341f + 12582912.0f) - 12582912.0f;
  const int n = static_cast<int>(fn);
  const float r = (x - fn * 0.693359375f) - fn * -2.12194440e-4f;
  float p = 1.9875691500e-4f;
  p = p * r + 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  const float y = p * r * r + r + 1.0f;
  return y * std::bit_cast<float>(static_cast<uint32_t>(n + 127) << 23);
}

inline float SigmoidApprox(float x) { return 1.0f / (1.0f + ExpApprox(-x)); }
inline float TanhApprox(float x) { return 2.0f / (1.0f + ExpApprox(-2.0f * x)) - 1.0f; }

// One step's gate arithmetic on n rows: `gates` [n, 4h] (i, f, g, o) plus
// the row `at[s]` of `add` (row 0 where `at` is null) in, activated in
// place; c = f c_prev + i g, tc = tanh(c), h = o tc.
PSF_VECTOR_CLONES void LstmCellForward(float* __restrict gates, const float* __restrict add,
                                       const int32_t* __restrict at, const float* __restrict c_prev,
                                       float* __restrict c, float* __restrict tc, float* __restrict h, int64_t n,
                                       int64_t hidden) {
  for (int64_t s = 0; s < n; ++s) {
    float* g = gates + s * 4 * hidden;
    const float* a = add + (at != nullptr ? at[s] : 0) * 4 * hidden;
    for (int64_t j = 0; j < 2 * hidden; ++j) g[j] = SigmoidApprox(g[j] + a[j]);
    for (int64_t j = 2 * hidden; j < 3 * hidden; ++j) g[j] = TanhApprox(g[j] + a[j]);
    for (int64_t j = 3 * hidden; j < 4 * hidden; ++j) g[j] = SigmoidApprox(g[j] + a[j]);
    const float* in = g;
    const float* forget = g + hidden;
    const float* cell = g + 2 * hidden;
    const float* out = g + 3 * hidden;
    float* cs = c + s * hidden;
    float* ts = tc + s * hidden;
    float* hs = h + s * hidden;
    const float* cp = c_prev + s * hidden;
    for (int64_t j = 0; j < hidden; ++j) {
      const float v = forget[j] * cp[j] + in[j] * cell[j];
      cs[j] = v;
      ts[j] = TanhApprox(v);
      hs[j] = out[j] * ts[j];
    }
  }
}

// One step's gate arithmetic backward on n rows: dh = dy_t (row stride
// dy_stride) + dh_rec, dc = dc_next + dh o (1 - tc^2) (dc holds
// dc_next, zeros at the last step, and leaves with dc_next for the step
// before: dc f); writes dgates (i, f, g, o).
PSF_VECTOR_CLONES void LstmCellBackward(const float* __restrict gates, const float* __restrict c_prev,
                                        const float* __restrict tc, const float* __restrict dy, int64_t dy_stride,
                                        const float* __restrict dh_rec, float* __restrict dc,
                                        float* __restrict dgates, int64_t n, int64_t hidden) {
  for (int64_t s = 0; s < n; ++s) {
    const float* g = gates + s * 4 * hidden;
    const float* in = g;
    const float* forget = g + hidden;
    const float* cell = g + 2 * hidden;
    const float* out = g + 3 * hidden;
    const float* ts = tc + s * hidden;
    const float* ys = dy + s * dy_stride;
    const float* rs = dh_rec + s * hidden;
    const float* cp = c_prev + s * hidden;
    float* dcs = dc + s * hidden;
    float* d = dgates + s * 4 * hidden;
    for (int64_t j = 0; j < hidden; ++j) {
      const float dh = ys[j] + rs[j];
      const float t = ts[j];
      const float o = out[j];
      const float dcv = dcs[j] + dh * o * (1.0f - t * t);
      const float i = in[j], f = forget[j], cg = cell[j];
      d[j] = dcv * cg * i * (1.0f - i);
      d[hidden + j] = dcv * cp[j] * f * (1.0f - f);
      d[2 * hidden + j] = dcv * i * (1.0f - cg * cg);
      d[3 * hidden + j] = dh * t * o * (1.0f - o);
      dcs[j] = dcv * f;
    }
  }
}

// to[at[s]] += rows[s] for n rows of `width` (the same row of `to` may
// come more than once).
PSF_VECTOR_CLONES void AddRowsAt(float* __restrict to, const float* __restrict rows, const int32_t* __restrict at,
                                 int64_t n, int64_t width) {
  for (int64_t s = 0; s < n; ++s) {
    float* d = to + at[s] * width;
    const float* r = rows + s * width;
    for (int64_t j = 0; j < width; ++j) d[j] += r[j];
  }
}

// b [cols, rows] = a [rows, cols]^T; b's rows `ldb` floats apart (0: rows,
// b is its own matrix; more: b is a block of columns of a wider one). In
// 8 x 8 tiles transposed in registers (eight loads, 24 shuffles, eight
// stores: vector extensions GCC and Clang share, so every clone gets its
// own ISA's shuffles); element by element at the edges.
using Floats8 = float __attribute__((vector_size(32)));

PSF_VECTOR_CLONES void Transpose(const float* __restrict a, int64_t rows, int64_t cols, float* __restrict b,
                                 int64_t ldb = 0) {
  if (ldb == 0) ldb = rows;
  const int64_t rows8 = rows / 8 * 8, cols8 = cols / 8 * 8;
  for (int64_t r0 = 0; r0 < rows8; r0 += 8)
    for (int64_t c0 = 0; c0 < cols8; c0 += 8) {
      Floats8 r[8], t[8], u[8];
      for (int i = 0; i < 8; ++i) std::memcpy(&r[i], a + (r0 + i) * cols + c0, sizeof(Floats8));
      for (int i = 0; i < 8; i += 2) {
        t[i] = __builtin_shufflevector(r[i], r[i + 1], 0, 8, 1, 9, 4, 12, 5, 13);
        t[i + 1] = __builtin_shufflevector(r[i], r[i + 1], 2, 10, 3, 11, 6, 14, 7, 15);
      }
      for (int i = 0; i < 8; i += 4) {
        u[i] = __builtin_shufflevector(t[i], t[i + 2], 0, 1, 8, 9, 4, 5, 12, 13);
        u[i + 1] = __builtin_shufflevector(t[i], t[i + 2], 2, 3, 10, 11, 6, 7, 14, 15);
        u[i + 2] = __builtin_shufflevector(t[i + 1], t[i + 3], 0, 1, 8, 9, 4, 5, 12, 13);
        u[i + 3] = __builtin_shufflevector(t[i + 1], t[i + 3], 2, 3, 10, 11, 6, 7, 14, 15);
      }
      // u[k] holds columns k and k + 4 of rows 0-3, u[k + 4] of rows 4-7.
      for (int k = 0; k < 4; ++k) {
        const Floats8 lo = __builtin_shufflevector(u[k], u[k + 4], 0, 1, 2, 3, 8, 9, 10, 11);
        const Floats8 hi = __builtin_shufflevector(u[k], u[k + 4], 4, 5, 6, 7, 12, 13, 14, 15);
        std::memcpy(b + (c0 + k) * ldb + r0, &lo, sizeof(Floats8));
        std::memcpy(b + (c0 + k + 4) * ldb + r0, &hi, sizeof(Floats8));
      }
    }
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t c = r < rows8 ? cols8 : 0; c < cols; ++c) b[c * ldb + r] = a[r * cols + c];
}

}  // namespace

struct Lstm::Plan {
  // Matmuls: the input projection (with the bias), a step's recurrence
  // (accumulating), dh from a step's dgates, and the gradients.
  dnnl::matmul project, recur, back_h, grad_hh, grad_ih, back_x;
  memory project_src, project_w, project_b, project_dst;
  memory recur_src, recur_w, recur_dst;
  memory back_h_src, back_h_w, back_h_dst;
  memory grad_hh_src, grad_hh_w, grad_hh_dst;
  memory grad_ih_src, grad_ih_w, grad_ih_dst;
  memory back_x_src, back_x_w, back_x_dst;
  Args project_args, recur_args, back_h_args, grad_hh_args, grad_ih_args, back_x_args;
  // Time-major buffers: x, gates (activated), c, tanh(c), h; dgates, dx
  // (x and dx empty from_table; dgates one step's with dgates_per_step);
  // one step's dh from the recurrence and the running dc.
  std::vector<float> xt, gates, c, tc, h, dgates, dxt, dh_rec, dc;
  std::vector<float> zeros;  // [n, hidden]: c before the first step, dh after the last
  std::vector<float> dw_hh_t, dw_ih_t;  // the weights' gradients transposed ([hidden, 4 hidden], [in, 4 hidden])
  // Transposed copies: h [hidden, (t - 1) n] or dgates [4 hidden, (t - 1) n] (dgates_copied), x [in, t n]
  // (from_table: the table, [in, vocabulary]).
  std::vector<float> ht, dgt, xtt;
  bool dgates_copied = false;
  // Ids embedded through a table (BindTable): each position's row of the
  // table, time-major (the vocabulary for an id out of range). from_table:
  // the input projection is the table's, p_table [vocabulary + 1, 4 hidden]
  // (its last row the bias alone), and dp its gradient (dgates summed per
  // id); otherwise xt holds the embedded rows and the projection is x's.
  bool from_table = false;
  std::vector<int32_t> ids;
  std::vector<float> p_table, dp;
  // dgates of one step only (from the table, with dgates copied): after
  // its step nothing reads them but through dp and dgt, so they stay in cache.
  bool dgates_per_step = false;
};

Lstm::Lstm(DnnlContext* ctx, int64_t positions, int64_t in, int64_t hidden)
    : ctx_(ctx), positions_(positions), in_(in), hidden_(hidden) {}
Lstm::~Lstm() = default;

void Lstm::Bind(const float* weight_ih, const float* weight_hh, const float* bias, float* dweight_ih,
                float* dweight_hh, float* dbias) {
  w_ih_ = weight_ih;
  w_hh_ = weight_hh;
  bias_ = bias;
  dw_ih_ = dweight_ih;
  dw_hh_ = dweight_hh;
  dbias_ = dbias;
}

void Lstm::BindTable(const float* table, float* dtable, int64_t vocabulary) {
  table_ = table;
  dtable_ = dtable;
  vocabulary_ = vocabulary;
}

memory::desc Lstm::Prepare(int64_t n, const memory::desc&) {
  Plan& plan = FindOrMake(plans_, n, [&] {
    const auto& eng = ctx_->engine;
    const auto f32 = memory::data_type::f32;
    const int64_t t = positions_, i = in_, h = hidden_, g = 4 * hidden_;
    auto p = std::make_unique<Plan>();
    // The rows the input projection and its gradients work on: the table's
    // where it has fewer than the batch's positions, else every position's.
    p->from_table = table_ != nullptr && vocabulary_ < t * n;
    const int64_t r = p->from_table ? vocabulary_ : t * n;
    auto make = [&](dnnl::matmul* mm, Args* args, memory* a, memory* w, memory* d, const memory::desc& a_md,
                    const memory::desc& w_md, const memory::desc& d_md, bool accumulate = false,
                    memory* b = nullptr, const memory::desc& b_md = {}) {
      dnnl::primitive_attr attr;
      if (accumulate) {
        dnnl::post_ops ops;
        ops.append_sum(1.0f);
        attr.set_post_ops(ops);
      }
      *mm = b ? dnnl::matmul(dnnl::matmul::primitive_desc({a_md, w_md, b_md, d_md}, attr, eng))
              : dnnl::matmul(dnnl::matmul::primitive_desc({a_md, w_md, d_md}, attr, eng));
      *a = Unbound(a_md, eng);
      *w = Unbound(w_md, eng);
      *d = Unbound(d_md, eng);
      *args = {{DNNL_ARG_SRC, *a}, {DNNL_ARG_WEIGHTS, *w}, {DNNL_ARG_DST, *d}};
      if (b) {
        *b = Unbound(b_md, eng);
        (*args)[DNNL_ARG_BIAS] = *b;
      }
    };
    // W^T as a view of W [rows, cols]: [cols, rows] with strides {1, cols}.
    auto transposed = [&](int64_t rows, int64_t cols) { return memory::desc({cols, rows}, f32, memory::dims{1, cols}); };
    make(&p->project, &p->project_args, &p->project_src, &p->project_w, &p->project_dst, Matrix(r, i),
         transposed(g, i), Matrix(r, g), false, &p->project_b, Matrix(1, g));
    // (Accumulating into x's projection; from the table, writing: the
    // gate arithmetic adds each id's row of the table's projection.)
    make(&p->recur, &p->recur_args, &p->recur_src, &p->recur_w, &p->recur_dst, Matrix(n, h), transposed(g, h),
         Matrix(n, g), !p->from_table);
    make(&p->back_h, &p->back_h_args, &p->back_h_src, &p->back_h_w, &p->back_h_dst, Matrix(n, g), Matrix(g, h),
         Matrix(n, h));
    // The weights' gradients from plain copies (a transposed operand, or
    // a transposed destination, costs): dW_ih^T = x^T dgates with x copied
    // transposed, then transposed into place; dW_hh with whichever copy
    // oneDNN's kernels for this CPU take fastest (measured per step on the
    // char-LSTM, Zen 4): with AVX-512 kernels dW_hh^T = h^T dgates on h
    // copied transposed (20 ms; dgates copied transposed costs 5 ms more),
    // with AVX2's dW_hh = dgates^T h on dgates copied transposed (21 ms; the
    // other took 40: AVX2's gemm on [256, 4032] x [4032, 1024]).
    p->dgates_copied = dnnl::get_effective_cpu_isa() < dnnl::cpu_isa::avx512_core;
    if (t > 1 && p->dgates_copied)
      make(&p->grad_hh, &p->grad_hh_args, &p->grad_hh_src, &p->grad_hh_w, &p->grad_hh_dst, Matrix(g, (t - 1) * n),
           Matrix((t - 1) * n, h), Matrix(g, h));
    else if (t > 1)
      make(&p->grad_hh, &p->grad_hh_args, &p->grad_hh_src, &p->grad_hh_w, &p->grad_hh_dst, Matrix(h, (t - 1) * n),
           Matrix((t - 1) * n, g), Matrix(h, g));
    make(&p->grad_ih, &p->grad_ih_args, &p->grad_ih_src, &p->grad_ih_w, &p->grad_ih_dst, Matrix(i, r),
         Matrix(r, g), Matrix(i, g));
    make(&p->back_x, &p->back_x_args, &p->back_x_src, &p->back_x_w, &p->back_x_dst, Matrix(r, g), Matrix(g, i),
         Matrix(r, i));
    auto floats = [](int64_t k) { return std::vector<float>(static_cast<std::size_t>(k)); };
    p->xt = floats(p->from_table ? 0 : t * n * i);
    p->gates = floats(t * n * g);
    p->c = floats(t * n * h);
    p->tc = floats(t * n * h);
    p->h = floats(t * n * h);
    p->dgates_per_step = p->from_table && p->dgates_copied;
    p->dgates = floats((p->dgates_per_step ? 1 : t) * n * g);
    p->dxt = floats(p->from_table ? 0 : t * n * i);
    p->dh_rec = floats(n * h);
    p->dc = floats(n * h);
    p->zeros = floats(std::max(n * h, g));
    p->dw_hh_t = floats(h * g);
    p->dw_ih_t = floats(i * g);
    (p->dgates_copied ? p->dgt : p->ht) = floats((p->dgates_copied ? g : h) * (t - 1) * n);
    p->xtt = floats(i * r);
    if (table_ != nullptr) p->ids.resize(static_cast<std::size_t>(t * n));
    if (p->from_table) {
      p->p_table = floats((vocabulary_ + 1) * g);
      p->dp = floats((vocabulary_ + 1) * g);
    }
    return p;
  });
  Record("matmul x W_ih^T", ImplOf(plan.project));
  Record("matmul h W_hh^T", ImplOf(plan.recur));
  Record("matmul dgates W_hh", ImplOf(plan.back_h));
  if (positions_ > 1) Record(plan.dgates_copied ? "matmul dgates^T h" : "matmul h^T dgates", ImplOf(plan.grad_hh));
  Record(plan.from_table ? "matmul table^T dP" : "matmul x^T dgates", ImplOf(plan.grad_ih));
  Record(plan.from_table ? "matmul dP W_ih" : "matmul dgates W_ih", ImplOf(plan.back_x));
  return Matrix(n * positions_, hidden_);
}

void Lstm::Forward(const float* x, float* y, int64_t n, Pass pass) {
  Plan& p = Find(plans_, n);
  const int64_t t_end = positions_, h = hidden_, g = 4 * hidden_;
  const std::size_t in_bytes = static_cast<std::size_t>(in_) * sizeof(float);
  if (table_ != nullptr) {
    // x [n, t] ids -> time-major rows of the table.
    for (int64_t s = 0; s < n; ++s)
      for (int64_t t = 0; t < t_end; ++t) {
        const auto id = static_cast<int64_t>(x[s * t_end + t]);
        p.ids[t * n + s] = static_cast<int32_t>(id >= 0 && id < vocabulary_ ? id : vocabulary_);
      }
  }
  if (p.from_table) {
    Point(p.project_src, table_);
    Point(p.project_dst, p.p_table.data());
  } else {
    // x [n, t, in] (or the table's rows) -> time-major.
    for (int64_t s = 0; s < n; ++s)
      for (int64_t t = 0; t < t_end; ++t) {
        float* row = p.xt.data() + (t * n + s) * in_;
        if (table_ == nullptr) {
          std::memcpy(row, x + (s * t_end + t) * in_, in_bytes);
        } else if (const int32_t id = p.ids[t * n + s]; id < vocabulary_) {
          std::memcpy(row, table_ + id * in_, in_bytes);
        } else {
          std::memset(row, 0, in_bytes);
        }
      }
    Point(p.project_src, p.xt.data());
    Point(p.project_dst, p.gates.data());
  }
  Point(p.project_w, w_ih_);
  Point(p.project_b, bias_);
  p.project.execute(ctx_->stream, p.project_args);
  ctx_->stream.wait();
  const std::size_t g_bytes = static_cast<std::size_t>(g) * sizeof(float);
  if (p.from_table) std::memcpy(p.p_table.data() + vocabulary_ * g, bias_, g_bytes);
  Point(p.recur_w, w_hh_);
  for (int64_t t = 0; t < t_end; ++t) {
    float* gates = p.gates.data() + t * n * g;
    if (p.from_table && t == 0)
      for (int64_t s = 0; s < n; ++s) std::memcpy(gates + s * g, p.p_table.data() + p.ids[s] * g, g_bytes);
    if (t > 0) {
      Point(p.recur_src, p.h.data() + (t - 1) * n * h);
      Point(p.recur_dst, gates);
      p.recur.execute(ctx_->stream, p.recur_args);
    }
    ctx_->stream.wait();
    const bool add_table = p.from_table && t > 0;
    LstmCellForward(gates, add_table ? p.p_table.data() : p.zeros.data(), add_table ? p.ids.data() + t * n : nullptr,
                    t > 0 ? p.c.data() + (t - 1) * n * h : p.zeros.data(), p.c.data() + t * n * h,
                    p.tc.data() + t * n * h, p.h.data() + t * n * h, n, h);
    // h^T for dW_hh's product (training only), a step at a time while h_t is in cache.
    if (pass == Pass::kTraining && !p.dgates_copied && t + 1 < t_end)
      Transpose(p.h.data() + t * n * h, n, h, p.ht.data() + t * n, (t_end - 1) * n);
  }
  // h -> y [n, t, hidden].
  for (int64_t s = 0; s < n; ++s)
    for (int64_t t = 0; t < t_end; ++t)
      std::memcpy(y + (s * t_end + t) * h, p.h.data() + (t * n + s) * h, static_cast<std::size_t>(h) * sizeof(float));
}

void Lstm::Backward(const float*, const float*, const float* dy, float* dx, int64_t n) {
  Plan& p = Find(plans_, n);
  const int64_t t_end = positions_, h = hidden_, g = 4 * hidden_;
  std::fill(p.dc.begin(), p.dc.end(), 0.0f);
  if (p.from_table) std::fill(p.dp.begin(), p.dp.end(), 0.0f);
  Point(p.back_h_w, w_hh_);
  for (int64_t t = t_end; t-- > 0;) {
    float* dgates = p.dgates.data() + (p.dgates_per_step ? 0 : t * n * g);
    LstmCellBackward(p.gates.data() + t * n * g, t > 0 ? p.c.data() + (t - 1) * n * h : p.zeros.data(),
                     p.tc.data() + t * n * h, dy + t * h, t_end * h, t + 1 < t_end ? p.dh_rec.data() : p.zeros.data(),
                     p.dc.data(), dgates, n, h);
    if (t > 0) {
      Point(p.back_h_src, dgates);
      Point(p.back_h_dst, p.dh_rec.data());
      p.back_h.execute(ctx_->stream, p.back_h_args);
    }
    // (While the step's dgates are in cache.)
    if (p.from_table) AddRowsAt(p.dp.data(), dgates, p.ids.data() + t * n, n, g);
    if (p.dgates_copied && t > 0) Transpose(dgates, n, g, p.dgt.data() + (t - 1) * n, (t_end - 1) * n);
    ctx_->stream.wait();
  }
  if (t_end > 1) {
    if (p.dgates_copied) {
      Point(p.grad_hh_src, p.dgt.data());
      Point(p.grad_hh_w, p.h.data());
      Point(p.grad_hh_dst, dw_hh_);
    } else {
      Point(p.grad_hh_src, p.ht.data());
      Point(p.grad_hh_w, p.dgates.data() + n * g);
      Point(p.grad_hh_dst, p.dw_hh_t.data());
    }
    p.grad_hh.execute(ctx_->stream, p.grad_hh_args);
  } else {
    // One position: h before it is zero, so weight_hh has no gradient.
    std::fill(dw_hh_, dw_hh_ + g * h, 0.0f);
  }
  // dW_ih^T = x^T dgates, or table^T dP (the same sums, grouped by id).
  const float* dgates_of_rows = p.from_table ? p.dp.data() : p.dgates.data();
  if (p.from_table) {
    Transpose(table_, vocabulary_, in_, p.xtt.data());
  } else {
    Transpose(p.xt.data(), t_end * n, in_, p.xtt.data());
  }
  Point(p.grad_ih_src, p.xtt.data());
  Point(p.grad_ih_w, dgates_of_rows);
  Point(p.grad_ih_dst, p.dw_ih_t.data());
  p.grad_ih.execute(ctx_->stream, p.grad_ih_args);
  // dx = dgates W_ih, or the table's gradient dP W_ih.
  if (table_ != nullptr || dx != nullptr) {
    Point(p.back_x_src, dgates_of_rows);
    Point(p.back_x_w, w_ih_);
    Point(p.back_x_dst, p.from_table ? dtable_ : p.dxt.data());
    p.back_x.execute(ctx_->stream, p.back_x_args);
  }
  ctx_->stream.wait();
  if (t_end > 1 && !p.dgates_copied) Transpose(p.dw_hh_t.data(), h, g, dw_hh_);
  Transpose(p.dw_ih_t.data(), in_, g, dw_ih_);
  if (p.from_table) {
    SumSamples(dbias_, p.dp.data(), vocabulary_ + 1, g);
    return;
  }
  SumSamples(dbias_, p.dgates.data(), t_end * n, g);
  if (table_ != nullptr) {
    // The table's gradient: each position's dx added to its id's row (an
    // id out of range is the vocabulary here, and skipped).
    std::fill(dtable_, dtable_ + vocabulary_ * in_, 0.0f);
    AddRowsOfIds(dtable_, vocabulary_, p.dxt.data(), p.ids.data(), t_end * n, in_);
  } else if (dx != nullptr) {
    for (int64_t s = 0; s < n; ++s)
      for (int64_t t = 0; t < t_end; ++t)
        std::memcpy(dx + (s * t_end + t) * in_, p.dxt.data() + (t * n + s) * in_,
                    static_cast<std::size_t>(in_) * sizeof(float));
  }
}

}  // namespace psforge::nn
