#!/usr/bin/env bash
# The UNet training step, unidiff against the plain-PyTorch peer, in one invocation on one device:
# the DDPM CIFAR-10 UNet, batch 128 of 3x32x32, eps-loss, AdamW. Then the peer's other figures on
# the same card: the toy MLP training step (launch-bound) and DDIM sampling (50 steps, batch 512)
# from the same UNet (peer_more.py beside peer_unet.py). Prints two Markdown tables last.
#   bash bench/unet_step.sh [BUILD_DIR]            (on the GPU host, after bench/gpu_check.sh built it)
#   UNIDIFF_BENCH_DEVICE=cpu bash bench/unet_step.sh build   (a small smoke run on a CPU machine)
# The peer is peer_unet.py, found at $PEER_UNET (default .peer/peer_unet.py, git-ignored: copy it
# there); it runs with the Python of $UNIDIFF_PYTHON (default python3), which must import torch.
set -uo pipefail
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
build=${1:-$repo/build}
bin=$build/bench/unet_step_bench
peer=${PEER_UNET:-$repo/.peer/peer_unet.py}
py=${UNIDIFF_PYTHON:-python3}
device=${UNIDIFF_BENCH_DEVICE:-cuda}
out=${OUT:-/tmp/unidiff-bench}
mkdir -p "$out"
[ -x "$bin" ] || { echo "unet_step.sh: $bin is missing: build the project first" >&2; exit 1; }
if [ "$device" = cuda ]; then
  common=(--batch=128 --steps=30); pcommon=(--batch 128 --steps 30)
else  # a smoke run: the full network at batch 2
  common=(--batch=2 --steps=2 --warmup=1); pcommon=(--batch 2 --steps 2 --device cpu)
fi
results=$out/unet_step_results.txt
more=$out/more_results.txt
: >"$results"
: >"$more"
ours() {  # ours LABEL FLAGS...
  local label=$1; shift
  local line
  line=$("$bin" --device="$device" "${common[@]}" "$@" 2>"$out/unidiff-$label.err" | grep '^RESULT') ||
    line="FAILED (see unidiff-$label.err)"
  echo "unidiff|$label|$line" >>"$results"
}
theirs() {  # theirs LABEL FLAGS...
  local label=$1; shift
  local line
  if [ ! -f "$peer" ]; then line="peer script not found at $peer"
  else
    line=$("$py" "$peer" "${pcommon[@]}" "$@" 2>"$out/peer-$label.err" | grep '^RESULT') ||
      line="FAILED (see peer-$label.err)"
  fi
  echo "peer|$label|$line" >>"$results"
}
ours_more() {  # ours_more WORK LABEL FLAGS...
  local work=$1 label=$2; shift 2
  local line
  line=$("$bin" --device="$device" "$@" 2>"$out/unidiff-$work-$label.err" | grep '^RESULT') ||
    line="FAILED (see unidiff-$work-$label.err)"
  echo "unidiff|$work|$label|$line" >>"$more"
}
theirs_more() {  # theirs_more WORK LABEL (peer_more.py --only WORK)
  local work=$1 label=$2 line
  local script=${PEER_MORE:-$(dirname "$peer")/peer_more.py}
  if [ ! -f "$script" ]; then line="peer script not found at $script"
  else
    line=$("$py" "$script" --only "$work" 2>"$out/peer-$work.err" | grep '^RESULT') || line="FAILED (see peer-$work.err)"
  fi
  echo "peer|$work|$label|$line" >>"$more"
}
if [ "$device" = cuda ]; then
  ours "bf16" --precision=bf16
  ours "bf16 cudnn.benchmark" --precision=bf16 --cudnn_benchmark
  ours "bf16 cudnn.benchmark channels_last" --precision=bf16 --cudnn_benchmark --channels_last
  ours "fp32" --precision=fp32
  ours "bf16 CUDA graph" --precision=bf16 --cuda_graph
  ours "bf16 CUDA graph cudnn.benchmark" --precision=bf16 --cuda_graph --cudnn_benchmark
  ours "bf16 CUDA graph cudnn.benchmark channels_last" --precision=bf16 --cuda_graph --cudnn_benchmark --channels_last
  ours "bf16 cudnn.benchmark fused GN" --precision=bf16 --cudnn_benchmark --fused_group_norm
  ours "bf16 CUDA graph cudnn.benchmark fused GN" --precision=bf16 --cuda_graph --cudnn_benchmark --fused_group_norm
  ours "bf16 CUDA graph cudnn.benchmark channels_last fused GN" --precision=bf16 --cuda_graph --cudnn_benchmark \
    --channels_last --fused_group_norm
  theirs "eager bf16" --bf16
  theirs "eager bf16 cudnn.benchmark" --bf16 --cudnn_benchmark
  theirs "CUDA graph bf16 cudnn.benchmark (best)" --bf16 --graph --cudnn_benchmark
  ours_more mlp "fp32" --arch=mlp --precision=fp32
  ours_more mlp "fp32 CUDA graph" --arch=mlp --precision=fp32 --cuda_graph
  theirs_more mlp "eager fp32, fused AdamW"
  ours_more ddim "bf16" --work=ddim --precision=bf16
  ours_more ddim "bf16 cudnn.benchmark channels_last fused GN" --work=ddim --precision=bf16 --cudnn_benchmark \
    --channels_last --fused_group_norm
  theirs_more ddim "eager bf16 autocast"
else
  ours "fp32" --precision=fp32
  ours "bf16" --precision=bf16
  theirs "eager fp32"
  theirs "eager bf16" --bf16
  ours_more mlp "fp32" --arch=mlp --precision=fp32 --steps=5 --warmup=1
  ours_more ddim "fp32" --work=ddim --precision=fp32 --batch=2 --ddim_steps=2 --steps=1 --warmup=0
fi
"$py" - "$results" <<'PY'
import re, sys
rows = [l.rstrip("\n").split("|", 2) for l in open(sys.argv[1]) if l.strip()]
def field(line, key):
    m = re.search(rf"\b{key}=([^ ]+)", line)
    return m.group(1) if m else "-"
# Same batch everywhere: the ratio of img/s is the inverse ratio of ms/step (which keeps its digits).
best_peer = min((float(field(r[2], "step_ms")) for r in rows if r[0] == "peer" and "RESULT" in r[2]), default=0)
print("| who | variant | ms/step | img/s | TFLOP/s | peak MB | vs best peer |")
print("|---|---|---|---|---|---|---|")
for who, label, line in rows:
    if "RESULT" not in line:
        print(f"| {who} | {label} | {line} | | | | |"); continue
    ms = float(field(line, "step_ms"))
    ips = float(field(line, "batch")) * 1e3 / ms
    ratio = f"{best_peer / ms:.2f}x" if best_peer else "-"
    print(f"| {who} | {label} | {field(line, 'step_ms')} | {ips:.1f} | {field(line, 'tflops')} | "
          f"{field(line, 'peak_mem_mb')} | {ratio} |")
PY
"$py" - "$more" <<'PY'
import re, sys
rows = [l.rstrip("\n").split("|", 3) for l in open(sys.argv[1]) if l.strip()]
def field(line, key):
    m = re.search(rf"\b{key}=([^ ]+)", line)
    return m.group(1) if m else None
# The time of one unit of work: a training step (us) or a batch of samples (s); smaller is better.
unit = {"mlp": ("us_per_step", "us/step"), "ddim": ("s_per_batch", "s/batch")}
print()
print("| who | work | variant | time | rate | vs peer |")
print("|---|---|---|---|---|---|")
for work in ("mlp", "ddim"):
    key, what = unit[work]
    peer = [float(field(r[3], key)) for r in rows if r[0] == "peer" and r[1] == work and field(r[3], key)]
    for who, w, label, line in rows:
        if w != work: continue
        t = field(line, key)
        if t is None:
            print(f"| {who} | {work} | {label} | {line} | | |"); continue
        rate = f"{1e6 / float(t):.0f} steps/s" if work == "mlp" else f"{field(line, 'img_per_s')} img/s"
        ratio = f"{peer[0] / float(t):.2f}x" if peer else "-"
        print(f"| {who} | {work} | {label} | {t} {what} | {rate} | {ratio} |")
PY
