// The fastest training step of the MLP 784-500-10 (batch 128, Adam) this
// machine's oneDNN can do, written out by hand: the floor ps-train's step is
// compared with (bench/mlp_throughput.py). Inner products on plain weights
// ([out, in], the layout that measured fastest for a step whose weights change
// every time; format_tag::any's blocked weights need two reorders a step),
// ReLU, log-softmax and its gradient in one loop, no first-layer input
// gradient, and psforge's Adam over the 397,510 parameters (the same loop a
// server runs; a hand-written one is no faster). No data gather: the same
// batch every step. Buffers allocated once.
// Usage: mlp_min_step [--threads N] [--reps N]
// Prints: samples/s (median step), GFLOP/s, and the step without Adam.
#include <omp.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <random>
#include <vector>

#include <dnnl.hpp>

#include "paramserver/optimizer.h"

namespace {

using dnnl::memory;
using Clock = std::chrono::steady_clock;

memory::desc Md(memory::dims d, memory::format_tag t) { return memory::desc(d, memory::data_type::f32, t); }

}  // namespace

int main(int argc, char** argv) {
  int threads = 1, reps = 300;
  for (int i = 1; i + 1 < argc; i += 2) {
    if (!std::strcmp(argv[i], "--threads")) threads = std::atoi(argv[i + 1]);
    else if (!std::strcmp(argv[i], "--reps")) reps = std::atoi(argv[i + 1]);
  }
  omp_set_num_threads(threads);
  const int64_t n = 128, in = 784, hid = 500, out = 10;
  const int64_t params = hid * in + hid + out * hid + out;
  dnnl::engine eng(dnnl::engine::kind::cpu, 0);
  dnnl::stream s(eng);
  using tag = memory::format_tag;
  std::mt19937 rng(1);
  std::uniform_real_distribution<float> u(-0.05f, 0.05f);
  std::vector<float> x(n * in), w(params), g(params), h(n * hid), a(n * hid), z(n * out), lp(n * out),
      dz(n * out), da(n * hid), dh(n * hid);
  for (float& v : x) v = u(rng) * 20;
  for (float& v : w) v = u(rng);
  std::vector<int> label(n);
  for (int i = 0; i < n; ++i) label[i] = i % 10;
  float *w1 = w.data(), *b1 = w1 + hid * in, *w2 = b1 + hid, *b2 = w2 + out * hid;
  float *g1 = g.data(), *gb1 = g1 + hid * in, *g2 = gb1 + hid, *gb2 = g2 + out * hid;

  auto x_md = Md({n, in}, tag::nc), h_md = Md({n, hid}, tag::nc), z_md = Md({n, out}, tag::nc);
  auto w1_md = Md({hid, in}, tag::oi), w2_md = Md({out, hid}, tag::oi);
  auto b1_md = Md({hid}, tag::x), b2_md = Md({out}, tag::x);
  using ipf = dnnl::inner_product_forward;
  using ipd = dnnl::inner_product_backward_data;
  using ipw = dnnl::inner_product_backward_weights;
  ipf::primitive_desc f1({dnnl::prop_kind::forward_training, x_md, w1_md, b1_md, h_md}, eng);
  ipf::primitive_desc f2({dnnl::prop_kind::forward_training, h_md, w2_md, b2_md, z_md}, eng);
  ipw::primitive_desc bw1({x_md, w1_md, b1_md, h_md}, eng, f1);
  ipw::primitive_desc bw2({h_md, w2_md, b2_md, z_md}, eng, f2);
  ipd::primitive_desc bd2({h_md, w2_md, z_md}, eng, f2);
  const auto relu = dnnl::algorithm::eltwise_relu_use_dst_for_bwd;
  dnnl::eltwise_forward::primitive_desc rf({dnnl::prop_kind::forward_training, relu, h_md, 0.f, 0.f}, eng);
  dnnl::eltwise_backward::primitive_desc rb({relu, h_md, h_md, 0.f, 0.f}, eng, rf);
  dnnl::logsoftmax_forward::primitive_desc sm({dnnl::prop_kind::forward_inference, z_md, 1}, eng);
  auto M = [&](const memory::desc& md, float* p) { return memory(md, eng, p); };
  dnnl::primitive fwd1(f1), fwd2(f2), bwdw1(bw1), bwdw2(bw2), bwdd2(bd2), reluf(rf), relub(rb), soft(sm);
  std::unordered_map<int, memory> a_f1{{DNNL_ARG_SRC, M(x_md, x.data())}, {DNNL_ARG_WEIGHTS, M(w1_md, w1)},
                                       {DNNL_ARG_BIAS, M(b1_md, b1)}, {DNNL_ARG_DST, M(h_md, h.data())}};
  std::unordered_map<int, memory> a_rf{{DNNL_ARG_SRC, M(h_md, h.data())}, {DNNL_ARG_DST, M(h_md, a.data())}};
  std::unordered_map<int, memory> a_f2{{DNNL_ARG_SRC, M(h_md, a.data())}, {DNNL_ARG_WEIGHTS, M(w2_md, w2)},
                                       {DNNL_ARG_BIAS, M(b2_md, b2)}, {DNNL_ARG_DST, M(z_md, z.data())}};
  std::unordered_map<int, memory> a_sm{{DNNL_ARG_SRC, M(z_md, z.data())}, {DNNL_ARG_DST, M(z_md, lp.data())}};
  std::unordered_map<int, memory> a_bw2{{DNNL_ARG_SRC, M(h_md, a.data())}, {DNNL_ARG_DIFF_DST, M(z_md, dz.data())},
                                        {DNNL_ARG_DIFF_WEIGHTS, M(w2_md, g2)}, {DNNL_ARG_DIFF_BIAS, M(b2_md, gb2)}};
  std::unordered_map<int, memory> a_bd2{{DNNL_ARG_DIFF_DST, M(z_md, dz.data())}, {DNNL_ARG_WEIGHTS, M(w2_md, w2)},
                                        {DNNL_ARG_DIFF_SRC, M(h_md, da.data())}};
  std::unordered_map<int, memory> a_rb{{DNNL_ARG_DST, M(h_md, a.data())}, {DNNL_ARG_DIFF_DST, M(h_md, da.data())},
                                       {DNNL_ARG_DIFF_SRC, M(h_md, dh.data())}};
  std::unordered_map<int, memory> a_bw1{{DNNL_ARG_SRC, M(x_md, x.data())}, {DNNL_ARG_DIFF_DST, M(h_md, dh.data())},
                                        {DNNL_ARG_DIFF_WEIGHTS, M(w1_md, g1)}, {DNNL_ARG_DIFF_BIAS, M(b1_md, gb1)}};
  psforge::OptimizerOptions adam;
  adam.kind = psforge::OptimizerKind::kAdam;
  adam.learning_rate = 1e-4;
  auto opt = std::move(psforge::Optimizer::Create(adam, params)).value();

  auto compute = [&] {
    fwd1.execute(s, a_f1);
    reluf.execute(s, a_rf);
    fwd2.execute(s, a_f2);
    soft.execute(s, a_sm);
    s.wait();
    for (int64_t i = 0; i < n; ++i)
      for (int64_t c = 0; c < out; ++c)
        dz[i * out + c] = (std::exp(lp[i * out + c]) - (c == label[i] ? 1.0f : 0.0f)) / static_cast<float>(n);
    bwdw2.execute(s, a_bw2);
    bwdd2.execute(s, a_bd2);
    relub.execute(s, a_rb);
    bwdw1.execute(s, a_bw1);
    s.wait();
  };
  auto median = [&](auto&& f) {
    for (int i = 0; i < 20; ++i) f();
    std::vector<double> t;
    for (int i = 0; i < reps; ++i) {
      const auto start = Clock::now();
      f();
      t.push_back(std::chrono::duration<double, std::micro>(Clock::now() - start).count());
    }
    std::sort(t.begin(), t.end());
    return t[t.size() / 2];
  };
  const double step = median([&] {
    compute();
    opt->Apply(w, g);
  });
  const double compute_only = median(compute);
  const double flops = n * (6.0 * (in * hid + hid * out) - 2.0 * in * hid);
  std::printf("{\"threads\": %d, \"step_us\": %.1f, \"samples_per_s\": %.0f, \"gflops\": %.1f, "
              "\"compute_us\": %.1f, \"impl\": \"%s\"}\n",
              threads, step, n / step * 1e6, flops / step / 1e3, compute_only, f1.impl_info_str());
  return 0;
}
