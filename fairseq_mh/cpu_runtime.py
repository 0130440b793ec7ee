"""CPU runtime settings the plug-in makes before the first model call, and the call shapes
that suit oneDNN.

bf16 (and other oneDNN) matmuls on a CPU go through oneDNN, which builds one primitive per
problem shape (about 0.5 ms each here, more than a small call's matmul) and keeps the most
recent ``1024`` in a cache.  MH and mask-predict calls vary their row counts from call to
call, so a decode meets thousands of shapes.  Two measures keep them built once:

- ``bucket``: the shapes that vary most (the selected positions of the decoder's last layer
  and of the vocabulary projection, and the rows of a call that mixes sentences) are rounded
  up to a short list of sizes;
- a larger cache, 4096 primitives, which holds a decode's working set (with buckets, about
  700 shapes per mask-predict pass at Multi30k lengths).  The capacity also bounds memory:
  a cached primitive holds 0.35-0.55 MB here, and under glibc's default malloc evicting and
  rebuilding primitives grows the resident set further (by 3.6 GB over 3000 rebuilds at the
  default 1024; ``docs/results/onednn_cache_memory.md``), so a cache that holds the working
  set costs less memory than one that thrashes, and 4096 caps what the cache itself holds
  near 2 GB.

oneDNN reads its capacity once, when it creates its first primitive, so this must run before
any bf16 matmul: importing ``fairseq_mh`` does it.  A capacity the user already set
(``ONEDNN_`` or the older ``DNNL_`` name) is left alone.  Figures:
``docs/results/throughput_cpu_amd.md``.

oneDNN has half-precision kernels only for CPUs with the instructions (bf16: AVX-512 or
AMX; fp16: AVX512-FP16 or AMX-FP16).  Elsewhere torch computes bf16 and fp16 matmuls with
slow fallbacks: on a 2-core AVX2 AMD EPYC, the decoder's linear layers ran at 8.6 GFLOP/s in
bf16 against 64 in fp32 (a plain ``@`` at 0.7), and MH on the Multi30k CMLM at 89 rows/s
against 392, 4.4x slower (fp16: 3.9x; ``docs/results/cpu_half_precision_avx2.md``).
``native_half`` tells, and the run's preflight refuses such a run
(``preflight.check_precision``).
"""

import os

import torch

PRIMITIVE_CACHE_CAPACITY = 4096
_NAMES = ("ONEDNN_PRIMITIVE_CACHE_CAPACITY", "DNNL_PRIMITIVE_CACHE_CAPACITY")


def enlarge_onednn_primitive_cache(capacity: int = PRIMITIVE_CACHE_CAPACITY) -> str:
    """Set oneDNN's primitive cache capacity unless the user chose one; the value in force."""
    for name in _NAMES:
        if os.environ.get(name):
            return os.environ[name]
    os.environ[_NAMES[0]] = str(capacity)
    return os.environ[_NAMES[0]]


# Target tokens per model call when --mh-max-tokens is not given.  On a CPU a call's
# element-wise work runs out of cache beyond a few thousand tokens: on the 2-core Xeon, MH with
# shared calls ran 1.07-1.14x faster at 8192 than at 32768 (fp32 and bf16, MH and block-MH;
# the record in docs/results/throughput_cpu.md is made with 8192).  A GPU wants big calls.
CPU_CALL_TOKENS = 8192
ACCELERATOR_CALL_TOKENS = 32768


def call_token_budget(device: torch.device) -> int:
    """The default most target tokens of one model call on ``device``."""
    return CPU_CALL_TOKENS if torch.device(device).type == "cpu" else ACCELERATOR_CALL_TOKENS


_HALF_PROBES = {torch.bfloat16: "_is_mkldnn_bf16_supported", torch.float16: "_is_mkldnn_fp16_supported"}


def native_half(dtype: torch.dtype) -> bool:
    """Whether this CPU runs ``dtype`` (bfloat16 or float16) matmuls in oneDNN's kernels
    rather than torch's slow fallbacks (see the module docstring); True when this torch
    cannot tell, so that nothing is refused on a guess."""
    try:
        return bool(getattr(torch.ops.mkldnn, _HALF_PROBES[dtype])())
    except (AttributeError, RuntimeError):
        return True


def builds_primitives_per_shape(weight: torch.Tensor) -> bool:
    """Whether matmuls with ``weight`` run through oneDNN (bf16 and fp16 on a CPU; fp32 runs
    through MKL, CUDA through cuBLAS), where every new shape costs a primitive."""
    return weight.device.type == "cpu" and weight.dtype in (torch.bfloat16, torch.float16)


def bucket(n: int) -> int:
    """``n`` rounded up to one of 8 sizes per octave (exact up to 16; at most 1/8 more).

    Mask-predict's selected positions change count at every iteration, and MH's calls change
    row count from call to call: with exact sizes nearly every call of the decoder's last
    layer and of the vocabulary projection was a new shape, so a new oneDNN primitive.  Sizes
    from this short list recur (104 of them up to 32768)."""
    if n <= 16:
        return n
    step = 1 << (n.bit_length() - 4)
    return -(-n // step) * step


def project_in_buckets(project, features: torch.Tensor) -> torch.Tensor:
    """``project(features)`` for features [N, d], computed on N rounded up by ``bucket``
    (zero rows appended, their outputs dropped): row for row the same product."""
    n = features.size(0)
    b = bucket(n)
    if b > n:
        features = torch.cat([features, features.new_zeros(b - n, *features.shape[1:])])
    return project(features)[:n]


def rows_in_buckets(tokens: torch.Tensor, context: torch.Tensor, select: torch.Tensor):
    """A model call's rows (tokens [R, L], context [R], select [R, L]) padded to ``bucket(R)``
    rows with copies of the first row that select nothing: the call's logits are the same rows'
    in the same order, and every product of the call has a row count that recurs.  Calls that
    mix sentences (shared calls, cut by width) vary their row counts most: bf16 MH with shared
    calls took 0.94-1.00x the time with it in four runs of ``benchmarks/row_buckets.py``
    (``docs/results/row_buckets_cpu_amd.md``).  Padded one-sentence calls, whose row counts
    recur already, took 0.98-1.05x, so the adapter pads mixed calls only."""
    extra = bucket(tokens.size(0)) - tokens.size(0)
    if extra <= 0:
        return tokens, context, select
    return (torch.cat([tokens, tokens[:1].expand(extra, -1)]), torch.cat([context, context[:1].expand(extra)]),
            torch.cat([select, select.new_zeros(extra, select.size(1))]))
