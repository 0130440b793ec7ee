#!/usr/bin/env bash
# The CUDA check, prepared for a GPU machine without network or fairseq (Python 3.12, torch with
# CUDA, sacrebleu, sentencepiece): installs the carried wheels and sdists with --no-index,
# builds fairseq-fixed from its sdist, checks that decoding runs on the GPU in every mode and
# dtype, then runs the throughput benchmark; everything lands under $OUT (default ./gpu_out).
#
# Prepare here (the wheels are for Python 3.12; never committed, .whl/ is ignored):
#   bash scripts/gpu_prepare.sh
# Run there (the device tool: carry ".whl/py312"):  bash scripts/gpu_check.sh
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-$PWD/gpu_out}
WHL=${WHL:-$PWD/.whl/py312}
mkdir -p "$OUT"
log() { echo "[gpu_check] $*" | tee -a "$OUT/gpu_check.log" >&2; }
PY=${PYTHON:-python3}
"$PY" -c "import torch, sys; assert torch.cuda.is_available(), 'no CUDA device'; print(torch.__version__, torch.cuda.get_device_name(0), sys.version.split()[0])" \
  | tee -a "$OUT/gpu_check.log"

VENV="$PWD/.venv-gpu"  # sees the machine's torch, sacrebleu and sentencepiece
[ -x "$VENV/bin/python" ] || "$PY" -m venv --system-site-packages "$VENV"
pip() { "$VENV/bin/python" -m pip --disable-pip-version-check -q "$@"; }
log "installing the carried wheels (no network)"
pip install --no-index --find-links "$WHL" setuptools wheel cython packaging cffi  # numpy: the machine's own
pip install --no-index --find-links "$WHL" --no-build-isolation antlr4-python3-runtime==4.9.3
pip install --no-index --find-links "$WHL" hydra-core==1.3.2 omegaconf==2.3.0 PyYAML regex bitarray tqdm
pip install --no-index --find-links "$WHL" --no-deps arviz-base==0.8.2 arviz-stats==0.8.0 xarray-einstats==0.9.1 \
    xarray==2026.9.0
if ! "$VENV/bin/python" -c "import fairseq" 2>/dev/null; then
  log "building fairseq-fixed from its sdist (C++ extensions; about a minute on 16 cores)"
  MAX_JOBS=16 pip install --no-index --find-links "$WHL" --no-build-isolation --no-deps fairseq-fixed==0.12.3.1
fi
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
# everything the decode imports, before any device time goes into the runs below
"$VENV/bin/python" -c "import fairseq, fairseq_mh.generator, fairseq_mh.evaluation; print('fairseq', fairseq.__version__)" \
  | tee -a "$OUT/gpu_check.log"

log "CUDA decode: every sampler, both batching modes, fp32/bf16/fp16, on the stand-in"
"$VENV/bin/python" benchmarks/standin_checkpoint.py "$OUT/standin" --vocab 40000 >/dev/null
"$VENV/bin/python" - "$OUT" <<'EOF' 2>&1 | tee "$OUT/cuda_decode.txt"
import sys, time, copy, torch
from pathlib import Path
from fairseq_mh.evaluation import load_decoder
from fairseq_mh.core import SamplerConfig
from fairseq_mh.generator import MHGenerator
out = Path(sys.argv[1])
dec = load_decoder(out / "standin" / "checkpoint_best.pt", out / "standin", "translation_self", "de", "en")
g = torch.Generator().manual_seed(0)
src = torch.randint(5, 40000, (8, 30), generator=g); src[:, -1] = 2
sample = {"id": torch.arange(8), "net_input": {"src_tokens": src.cuda(), "src_lengths": torch.full((8,), 30).cuda()}}
for dtype in (torch.float32, torch.bfloat16, torch.float16):
    model = copy.deepcopy(dec.models[0]).to(device="cuda", dtype=dtype).eval()
    for sampler in ("mask-predict", "gibbs", "mh", "block-mh"):
        for batching in ("sentence", "shared"):
            cfg = SamplerConfig(sampler=sampler, mh_epochs=1, num_chains=2, decoding_iterations=4)
            gen = MHGenerator(dec.task.target_dictionary, cfg, length_beam=1, batching=batching)
            t0 = time.time()
            hyps = gen.generate([model], sample)
            torch.cuda.synchronize()
            dev = {h[0]["tokens"].device.type for h in hyps}
            print(f"{dtype} {sampler} {batching}: {gen.totals['rows']} rows in {time.time() - t0:.2f} s, "
                  f"hypotheses on {dev}", flush=True)
            assert dev == {"cuda"}
EOF

log "throughput benchmark (CUDA; the Multi30k CMLM is absent here, the stand-in is built on the spot)"
"$VENV/bin/python" benchmarks/throughput.py --device cuda --threads 16 --standin "$OUT/standin" \
    --standin-sentences 32 --chains 5 --call-rows 64 256 1024 4096 --out "$OUT/throughput_cuda" 2>&1 \
  | tee "$OUT/throughput_cuda.log"
rm -rf "$OUT/standin"  # 265 MB: not worth bringing back
log "done: $OUT"
