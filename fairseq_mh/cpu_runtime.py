"""CPU runtime settings the plug-in makes before the first model call.

bf16 (and other oneDNN) matmuls on a CPU go through oneDNN, which builds one primitive per
problem shape (about 0.5 ms each here, more than a small call's matmul) and keeps the most
recent ``1024`` in a cache.  MH and mask-predict calls vary their row counts from call to
call, so a decode meets thousands of shapes; at the default capacity the cache thrashes and
bf16 mask-predict ran at 0.73-0.89x fairseq's generator, against 1.12x with a cache of 16384
(``docs/results/throughput_cpu_amd.md``).  oneDNN reads its capacity once, when it creates its
first primitive, so this must run before any bf16 matmul: importing ``fairseq_mh`` does it.
A capacity the user already set (``ONEDNN_`` or the older ``DNNL_`` name) is left alone.
"""

import os

PRIMITIVE_CACHE_CAPACITY = 16384
_NAMES = ("ONEDNN_PRIMITIVE_CACHE_CAPACITY", "DNNL_PRIMITIVE_CACHE_CAPACITY")


def enlarge_onednn_primitive_cache(capacity: int = PRIMITIVE_CACHE_CAPACITY) -> str:
    """Set oneDNN's primitive cache capacity unless the user chose one; the value in force."""
    for name in _NAMES:
        if os.environ.get(name):
            return os.environ[name]
    os.environ[_NAMES[0]] = str(capacity)
    return os.environ[_NAMES[0]]
