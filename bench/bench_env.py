"""What every benchmark script needs to know about the machine and to give
its PyTorch peer, without importing torch (the drivers run under any python3).

- cpu(): the CPU model and its widest vector ISA, for every RESULTS.md section.
- ISAS: the dispatch modes a run measures. "native" is what this CPU runs;
  "avx2" makes both sides dispatch as on an AVX2 CPU (no AVX-512), so that an
  AVX-512 machine also measures what a Zen 3 or Haswell-class node would get:
  oneDNN (ours, and PyTorch's own) through DNNL_MAX_CPU_ISA=AVX2, PyTorch's
  ATen kernels through ATEN_CPU_CAPABILITY=avx2, OpenBLAS through
  OPENBLAS_CORETYPE=Haswell. On a CPU without AVX-512 the two are the same.
- ours_env(isa), peer_env(isa, threads): the environments. The peer runs
  against Debian's OpenBLAS (libopenblas0-openmp) instead of the reference
  BLAS python3-torch links; OPENBLAS_CORETYPE=SkylakeX only where the CPU has
  avx512f (elsewhere OpenBLAS dies with SIGILL), otherwise OpenBLAS picks its
  kernel for the CPU (Haswell kernels on Zen). The peer reports the kernel
  it got (openblas_get_corename), see torch_common.blas_report().
"""
import os
import statistics
import sys

OPENBLAS = "/usr/lib/x86_64-linux-gnu/openblas-openmp"


def _flags():
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("flags"):
                return set(line.split(":", 1)[1].split())
    return set()


def _model():
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return "unknown CPU"


def has_avx512():
    return "avx512f" in _flags()


def vector_isa():
    flags = _flags()
    if "avx512f" in flags:
        return "AVX-512 (" + ", ".join(sorted(f for f in flags if f.startswith("avx512"))) + ")"
    if "avx2" in flags:
        return "AVX2, no AVX-512"
    return "SSE4 or older (no AVX2)"


def cpu():
    return f"{_model()}, {os.cpu_count()} cores, {vector_isa()}"


ISAS = ("native", "avx2") if has_avx512() else ("native",)


def isa_label(isa):
    if isa == "native":
        return "native ISA (" + ("AVX-512" if has_avx512() else "AVX2") + ")"
    return "AVX2 dispatch (DNNL_MAX_CPU_ISA=AVX2; peer: also ATEN_CPU_CAPABILITY=avx2, OPENBLAS_CORETYPE=Haswell)"


def ours_env(isa="native", threads=None):
    env = dict(os.environ)
    env.pop("DNNL_MAX_CPU_ISA", None)
    if isa == "avx2":
        env["DNNL_MAX_CPU_ISA"] = "AVX2"
    if threads is not None:
        env["OMP_NUM_THREADS"] = str(threads)
    return env


def peer_env(isa="native", threads=1):
    env = dict(os.environ, LD_LIBRARY_PATH=OPENBLAS, OMP_NUM_THREADS=str(threads))
    for var in ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE", "DNNL_MAX_CPU_ISA", "ONEDNN_MAX_CPU_ISA",
                "ATEN_CPU_CAPABILITY"):
        env.pop(var, None)
    if isa == "avx2":
        env.update(DNNL_MAX_CPU_ISA="AVX2", ATEN_CPU_CAPABILITY="avx2", OPENBLAS_CORETYPE="Haswell")
    elif has_avx512():
        env["OPENBLAS_CORETYPE"] = "SkylakeX"
    return env


def mmm(xs):
    """min, median, max."""
    return min(xs), statistics.median(xs), max(xs)


def fmt(t, digits=0):
    return " / ".join(f"{v:,.{digits}f}" for v in t)


def measure_pairs(isa, runs, steps, ours, peer):
    """A language-model benchmark's runs on one ISA, both sides interleaved
    (they see the same machine state); run k seeds both with k. `ours` gives
    (samples/s, bits/char), `peer` its report with samples_per_s and
    validation_bits_per_char. Returns both sides' rates and bits/char, and
    the peer's last report."""
    rate_a, rate_b, bpc_a, bpc_b, info = [], [], [], [], None
    for run in range(runs):
        r, b = ours(isa, steps, run + 1)
        rate_a.append(r)
        bpc_a.append(b)
        info = peer(isa, steps, run + 1)
        rate_b.append(info["samples_per_s"])
        bpc_b.append(info["validation_bits_per_char"])
        print(f"[{isa} run {run + 1}/{runs}] psforge {r:,.0f} samples/s, {b:.3f} bits/char; "
              f"PyTorch {rate_b[-1]:,.0f} samples/s, {bpc_b[-1]:.3f} bits/char", file=sys.stderr)
    return rate_a, rate_b, bpc_a, bpc_b, info
