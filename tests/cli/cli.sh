#!/usr/bin/env bash
# The executable's contract: help, exit codes (0 done, 2 bad input), one-line messages that name
# the problem and the valid choices, flagfiles with overrides, and nothing written into an
# existing run directory when the input is bad.
set -u
bin=$UNIDIFF_BIN
py=$UNIDIFF_PYTHON
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
failures=0
fail() { echo "FAIL: $*"; failures=$((failures + 1)); }

# expect CODE PATTERN -- command...: exit code CODE and stderr+stdout matching PATTERN.
. "$(dirname "$0")/expect.sh"

expect 2 "usage: unidiff <command>" -- "$bin"
expect 0 "train +train a model" -- "$bin" --help
expect 0 "--data_batch \(int64, default 512\)" -- "$bin" train --help
expect 0 "--sampler" -- "$bin" sample --help
expect 0 "converters: gmm, toy, fashion-mnist" -- "$bin" data --help
expect 2 "unknown command 'bogus' \(valid: train, sample, eval, data, ckpt\)" -- "$bin" bogus
expect 2 "unknown flag --nope for 'unidiff train'; valid flags: --data, " -- "$bin" train --nope=1
expect 2 "unknown flag --sampler for 'unidiff train'" -- "$bin" train --sampler=ddpm
expect 2 "bad value 'abc' for --train_steps: expected int64" -- "$bin" train --train_steps=abc
expect 2 "bad value '0' for --train_steps" -- "$bin" train --train_steps=0
expect 2 "bad value '-1' for --seed" -- "$bin" train --seed=-1
expect 2 "unknown data converter 'mnist' \(valid: gmm, toy, fashion-mnist, images\)" -- "$bin" data mnist
expect 2 "unknown toy distribution 'spiral' \(valid: 8gaussians, checkerboard, gaussian, moons, swissroll\)" -- \
  "$bin" data toy --dist=spiral --out="$tmp/x.h5"
expect 2 "--flagfile '$tmp/none.flags' does not exist" -- "$bin" train --flagfile="$tmp/none.flags"

# Data for the runs below.
expect 0 "wrote 400 samples of 'moons'" -- "$bin" data toy --dist=moons --num=400 --out="$tmp/moons.h5"
"$py" - "$tmp" <<'PY'
import sys, h5py, numpy as np
d = sys.argv[1]
with h5py.File(f"{d}/nodata.h5", "w") as f:
    f["samples"] = np.zeros((10, 2), np.float32)
with h5py.File(f"{d}/nan.h5", "w") as f:
    x = np.zeros((10, 2), np.float32); x[4, 0] = np.nan; f["data"] = x
with h5py.File(f"{d}/int.h5", "w") as f:
    f["data"] = np.zeros((10, 2), np.int16)
open(f"{d}/text.h5", "w").write("not an hdf5 file")
PY

# Bad input leaves an existing run directory untouched.
mkdir -p "$tmp/run"; echo keep >"$tmp/run/sentinel"
snapshot() { (cd "$tmp/run" && find . -type f -exec md5sum {} + | sort); }
before=$(snapshot)
expect 2 "'$tmp/missing.h5' does not exist" -- "$bin" train --data="$tmp/missing.h5" --run_dir="$tmp/run"
expect 2 "has no /data dataset" -- "$bin" train --data="$tmp/nodata.h5" --run_dir="$tmp/run"
expect 2 "non-finite values \(NaN or Inf\) in 1 samples, the first at index 4" -- \
  "$bin" train --data="$tmp/nan.h5" --run_dir="$tmp/run"
expect 2 "unsupported type int16" -- "$bin" train --data="$tmp/int.h5" --run_dir="$tmp/run"
expect 2 "is not an HDF5 file" -- "$bin" train --data="$tmp/text.h5" --run_dir="$tmp/run"
expect 2 "global batch size 512 is larger than the dataset \(400 samples\)" -- \
  "$bin" train --data="$tmp/moons.h5" --run_dir="$tmp/run"
expect 2 "unknown beta schedule 'sigmoid'" -- \
  "$bin" train --data="$tmp/moons.h5" --run_dir="$tmp/run" --diffusion_schedule=sigmoid --data_batch=40
[ "$(snapshot)" = "$before" ] || fail "a failed start changed the existing run directory"

# A flagfile with an override after it; the resolved configuration lands in the run directory.
cat >"$tmp/small.flags" <<FLAGS
# a comment
--data=$tmp/moons.h5
--data_batch=40
--train_steps=5
--log_every=1
--model_hidden=16
FLAGS
expect 0 "step 7/7" -- "$bin" train --flagfile="$tmp/small.flags" --train_steps=7 --run_dir="$tmp/ok"
grep -qx -- "--train_steps=7" "$tmp/ok/config.flags" || fail "config.flags lacks the override"
grep -qx -- "--model_hidden=16" "$tmp/ok/config.flags" || fail "config.flags lacks the flagfile value"
grep -qx -- "--optim_lr=0.001" "$tmp/ok/config.flags" || fail "config.flags lacks a default"
[ "$(wc -l <"$tmp/ok/metrics.jsonl")" -eq 7 ] || fail "metrics.jsonl should have 7 rows"
tail -n 1 "$tmp/ok/metrics.jsonl" | grep -q '"step": 7,' || fail "last metrics row is not step 7"
# The run's curves: RUN_DIR/plots/<key>.png for every series of metrics.jsonl, at the end of the run
# and by `unidiff plot`; its log line's first and last values are metrics.jsonl's.
expect 0 "\[plot\] loss: 7 points, steps 1-7, " -- "$bin" plot --run_dir="$tmp/ok"
"$py" - "$tmp/ok" "$expect_out" <<'PY' || fail "the plots do not match metrics.jsonl"
import json, re, struct, sys
run, out = sys.argv[1], open(sys.argv[2]).read()
rows = [json.loads(l) for l in open(f"{run}/metrics.jsonl")]
for key in ("loss", "lr", "steps_per_s"):
    png = open(f"{run}/plots/{key}.png", "rb").read()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and png[12:16] == b"IHDR", key
    assert struct.unpack(">II", png[16:24]) == (512, 256), struct.unpack(">II", png[16:24])
    first, last = (float(v) for v in re.search(rf"\[plot\] {key}: 7 points, steps 1-7, (\S+) -> (\S+):", out).groups())
    assert abs(first - rows[0][key]) <= 1e-3 * abs(rows[0][key]) and abs(last - rows[-1][key]) <= 1e-3 * abs(rows[-1][key])
PY
expect 2 "--run_dir '.*nowhere' has no metrics.jsonl to plot" -- "$bin" plot --run_dir="$tmp/nowhere"

# Streaming reads give the same run as loading the data whole (same batches, same losses).
expect 0 "step 4/4" -- "$bin" train --flagfile="$tmp/small.flags" --train_steps=4 --run_dir="$tmp/mem"
expect 0 "step 4/4" -- "$bin" train --flagfile="$tmp/small.flags" --train_steps=4 --data_stream \
  --run_dir="$tmp/stream"
[ "$(grep -o '"loss": [^,]*' "$tmp/mem/metrics.jsonl")" = "$(grep -o '"loss": [^,]*' "$tmp/stream/metrics.jsonl")" ] \
  || fail "streamed and in-memory training differ"

# A finished run is not overwritten unless asked.
before=$(cd "$tmp/ok" && md5sum model.h5 metrics.jsonl)
expect 2 "already holds a finished run \(model.h5\)" -- \
  "$bin" train --flagfile="$tmp/small.flags" --run_dir="$tmp/ok"
[ "$(cd "$tmp/ok" && md5sum model.h5 metrics.jsonl)" = "$before" ] || fail "finished run was modified"
expect 0 "step 5/5" -- "$bin" train --flagfile="$tmp/small.flags" --run_dir="$tmp/ok" --overwrite

# Sample and eval inputs.
expect 2 "unknown --sampler 'euler' for a DDPM model \(valid: ddpm, ddim\)" -- \
  "$bin" sample --checkpoint="$tmp/ok" --sampler=euler --out="$tmp/s.h5"
expect 2 "not a unidiff model file" -- "$bin" sample --checkpoint="$tmp/moons.h5" --out="$tmp/s.h5"
expect 2 "--steps 2000 exceeds the model's T = 1000" -- \
  "$bin" sample --checkpoint="$tmp/ok" --steps=2000 --out="$tmp/s.h5"
expect 0 "samples written to $tmp/s.h5" -- \
  "$bin" sample --checkpoint="$tmp/ok" --sampler=ddim --steps=20 --num=100 --out="$tmp/s.h5"
[ -s "$tmp/s.png" ] || fail "no PNG beside the samples"
expect 2 "--reference \(distances\) or --reward \(the mean reward\) is required" -- "$bin" eval --samples="$tmp/s.h5"
# Freed host memory stays in the process (core/memory.h): a sampler step's tensors come back from
# the heap, not from fresh pages. Page faults per DDIM step (from 10 to 100 steps, 2,000 samples of
# a 128-wide MLP) against glibc's own settings (a malloc tunable in GLIBC_TUNABLES makes unidiff
# leave them alone): measured 1,010 there and 0 here; each [2000, 128] float32 activation is 1 MiB
# = 256 pages, so a handful of them freed and re-faulted per step is several hundred faults. The
# bounds (over 500 with glibc's settings, under a twentieth of that here) leave room for other
# machines; the samples are the same.
"$bin" train --data="$tmp/moons.h5" --data_batch=40 --train_steps=2 --model_hidden=128 \
  --run_dir="$tmp/wide" >/dev/null 2>&1 || fail "training the 128-wide model failed"
"$py" - "$bin" "$tmp" <<'PY' || fail "freed host memory is not kept"
import os, resource, subprocess, sys
import h5py, numpy as np
b, d = sys.argv[1], sys.argv[2]
def faults(steps, tunables):
    env = dict(os.environ, OMP_NUM_THREADS="1")
    if tunables:
        env["GLIBC_TUNABLES"] = "glibc.malloc.perturb=0"
    out = f"{d}/faults-{steps}-{int(tunables)}.h5"
    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_minflt
    subprocess.run([b, "sample", f"--checkpoint={d}/wide", "--sampler=ddim", f"--steps={steps}", "--num=2000",
                    f"--out={out}"], env=env, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return resource.getrusage(resource.RUSAGE_CHILDREN).ru_minflt - before, h5py.File(out)["data"][:]
(o10, _), (o100, x), (g10, _), (g100, y) = faults(10, False), faults(100, False), faults(10, True), faults(100, True)
ours, glibc = (o100 - o10) / 90, (g100 - g10) / 90
print(f"page faults per sampler step: {ours:.1f} kept, {glibc:.1f} with glibc's settings")
assert glibc > 500 and ours < glibc / 20, (ours, glibc)
assert np.array_equal(x, y)
PY
# Objectives: unknown names and mismatched samplers are refused; every objective trains and samples
# a few steps through the executable; reflow needs a flow's samples file; --init_from checks shapes.
expect 2 "unknown --objective 'nope' \(valid: ddpm, rf, ncsn, trigflow, ict, scm\)" -- \
  "$bin" train --flagfile="$tmp/small.flags" --objective=nope --run_dir="$tmp/bad-objective"
[ ! -e "$tmp/bad-objective" ] || fail "a refused objective created its run directory"
for obj in ncsn trigflow ict scm; do
  expect 0 "step 3/3" -- "$bin" train --flagfile="$tmp/small.flags" --objective=$obj --train_steps=3 \
    --run_dir="$tmp/$obj"
done
expect 0 "samples of a ncsn model with smld" -- "$bin" sample --checkpoint="$tmp/ncsn" --steps=3 --smld_inner=2 \
  --num=50 --out="$tmp/ncsn.h5"
expect 0 "samples of a scm model with cm, 2 steps" -- "$bin" sample --checkpoint="$tmp/scm" --steps=2 \
  --num=50 --out="$tmp/scm.h5"
expect 2 "unknown --sampler 'smld' for a ict model \(valid: cm\)" -- \
  "$bin" sample --checkpoint="$tmp/ict" --sampler=smld --out="$tmp/x.h5"
expect 2 "drawn by smld .*--reflow takes pairs of a deterministic one" -- \
  "$bin" train --flagfile="$tmp/small.flags" --objective=rf --reflow --data="$tmp/ncsn.h5" --run_dir="$tmp/rf-bad"
# Reflow pairs from a DDPM teacher (rectified-flow distillation of a diffusion model) are taken when
# drawn deterministically (DDIM, eta 0), and the run records how; with eta 1 they are refused.
"$bin" sample --checkpoint="$tmp/ok" --sampler=ddim --steps=10 --eta=0 --num=64 --out="$tmp/ddpm-pairs.h5" >/dev/null 2>&1
expect 0 "step 2/2" -- "$bin" train --flagfile="$tmp/small.flags" --objective=rf --reflow --data="$tmp/ddpm-pairs.h5" \
  --train_steps=2 --data_batch=32 --run_dir="$tmp/rf-from-ddpm"
"$UNIDIFF_PYTHON" -c "import h5py,sys; a=h5py.File(sys.argv[1]).attrs['reflow_pairs']; a=a.decode() if isinstance(a, bytes) else a; assert a.startswith('ddim (eta 0) samples of a ddpm model'), a" \
  "$tmp/rf-from-ddpm/model.h5" || fail "the reflow model does not record its pairs"
"$bin" sample --checkpoint="$tmp/ok" --sampler=ddim --steps=10 --eta=1 --num=64 --out="$tmp/ddpm-noisy.h5" >/dev/null 2>&1
expect 2 "drawn by ddim with eta 1: a stochastic sampler's sample is not a function of its noise" -- \
  "$bin" train --flagfile="$tmp/small.flags" --objective=rf --reflow --data="$tmp/ddpm-noisy.h5" --run_dir="$tmp/rf-bad"
expect 2 "is not a samples file written by 'unidiff sample'" -- \
  "$bin" train --flagfile="$tmp/small.flags" --objective=rf --reflow --run_dir="$tmp/rf-bad"
expect 2 "--reflow trains a rectified flow \(--objective=rf\) or a DDPM chain" -- \
  "$bin" train --flagfile="$tmp/small.flags" --objective=ncsn --reflow --run_dir="$tmp/rf-bad"
expect 2 "--rf_time 'logit-normal' on a DDPM chain \(valid: uniform, one" -- \
  "$bin" train --flagfile="$tmp/small.flags" --prediction=instaflow --rf_time=logit-normal --run_dir="$tmp/rf-bad"
expect 2 "--init_from '.*': parameter .* is missing or shaped differently" -- \
  "$bin" train --flagfile="$tmp/small.flags" --model_hidden=8 --init_from="$tmp/ok" --run_dir="$tmp/init-bad"
expect 0 "\[eval\] step 4: sliced Wasserstein" -- "$bin" train --flagfile="$tmp/small.flags" --objective=ncsn \
  --train_steps=4 --eval_every=2 --eval_samples=50 --run_dir="$tmp/evals"
[ "$(grep -c '"eval_sliced_wasserstein"' "$tmp/evals/metrics.jsonl")" = 2 ] || fail "expected 2 evaluation rows"
expect 0 "step 2/2" -- "$bin" train --flagfile="$tmp/small.flags" --objective=scm --jvp=finite-difference \
  --train_steps=2 --init_from="$tmp/scm" --run_dir="$tmp/scm-fd"
# Input Fourier features: sCM's forward-mode JVP goes through them, the model file keeps them, and a
# resume that drops them is refused as a changed setting.
expect 0 "step 2/2" -- "$bin" train --flagfile="$tmp/small.flags" --objective=scm --model_fourier=3 \
  --train_steps=2 --save_every=1 --run_dir="$tmp/scm-ff"
expect 0 "samples of a scm model with cm, 2 steps" -- "$bin" sample --checkpoint="$tmp/scm-ff" --steps=2 \
  --num=20 --out="$tmp/scm-ff.h5"
"$py" -c 'import h5py, sys; sys.exit(0 if h5py.File(sys.argv[1])["/params/input.weight"].shape == (16, 14) else 1)' \
  "$tmp/scm-ff/model.h5" || fail "the Fourier MLP's first layer is not 2 x (1 + 2 x 3) wide"
expect 2 "model_fourier: 3 -> 0" -- "$bin" train --flagfile="$tmp/small.flags" --objective=scm \
  --train_steps=3 --run_dir="$tmp/scm-ff"

expect 0 '"sliced_wasserstein": [0-9.e+-]+' -- "$bin" eval --samples="$tmp/s.h5" --reference="$tmp/moons.h5"

# The mixture oracle: exact samples, sampling, and samplers refused on schedules they do not take.
"$py" - "$tmp" <<'PY'
import sys, h5py, numpy as np
with h5py.File(f"{sys.argv[1]}/gmm.h5", "w") as f:
    f["weights"] = np.array([0.5, 0.5]); f["means"] = np.array([[-1.0, 0.0], [1.0, 0.0]])
    f["stds"] = np.full((2, 2), 0.3)
with h5py.File(f"{sys.argv[1]}/badgmm.h5", "w") as f:
    f["weights"] = np.array([0.5, 0.5]); f["means"] = np.zeros((2, 2))
PY
expect 0 "wrote 500 exact samples of the 2-component mixture" -- \
  "$bin" data gmm --gmm_file="$tmp/gmm.h5" --num=500 --out="$tmp/gmm_data.h5"
expect 2 "has no /stds" -- "$bin" data gmm --gmm_file="$tmp/badgmm.h5" --out="$tmp/x.h5"
expect 0 "samples written" -- "$bin" sample --model=gmm --gmm_file="$tmp/gmm.h5" --schedule=rf \
  --sampler=heun --steps=10 --num=200 --out="$tmp/gs.h5"
[ -s "$tmp/gs.png" ] || fail "no PNG for the oracle samples"
expect 2 "sampler 'smld' takes schedules: ve \(got 'rf'\)" -- \
  "$bin" sample --model=gmm --gmm_file="$tmp/gmm.h5" --schedule=rf --sampler=smld --out="$tmp/x.h5"
expect 2 "sampler 'lcm' takes schedules: ddpm-linear, ddpm-cosine, ddpm-scaled-linear \(got 've'\)" -- \
  "$bin" sample --model=gmm --gmm_file="$tmp/gmm.h5" --schedule=ve --sampler=lcm --out="$tmp/x.h5"
expect 2 "unknown schedule 'edm'" -- \
  "$bin" sample --model=gmm --gmm_file="$tmp/gmm.h5" --schedule=edm --sampler=heun --out="$tmp/x.h5"
expect 2 "--model=gmm needs --gmm_file" -- "$bin" sample --model=gmm --out="$tmp/x.h5"
expect 2 "unknown --model 'unet'" -- "$bin" sample --model=unet --out="$tmp/x.h5"

# A class-conditional UNet (tiny, 3 steps: the plumbing, not the quality): training with keyed
# label dropout, sampling one class with guidance, an image grid; misuse refused.
"$py" - "$tmp/img8.h5" <<'PY'
import sys, h5py, numpy as np
rng = np.random.default_rng(0)
with h5py.File(sys.argv[1], "w") as f:
    f["data"] = rng.integers(0, 256, (64, 1, 8, 8), dtype=np.uint8)
    f["labels"] = np.arange(64) % 4
    f["labels"].attrs["num_classes"] = 4
PY
unet=(--model_arch=unet --model_channels=32 --model_mult=1,2 --model_res_blocks=1 --model_attn_res=4)
expect 0 "step 3/3" -- "$bin" train --data="$tmp/img8.h5" "${unet[@]}" --class_conditional \
  --data_batch=8 --train_steps=3 --log_every=3 --run_dir="$tmp/cond"
expect 0 "image grid written" -- "$bin" sample --checkpoint="$tmp/cond" --sampler=ddim --steps=3 \
  --num=8 --label=3 --cfg_scale=2 --out="$tmp/cond.h5"
[ -s "$tmp/cond.png" ] || fail "no image grid for the conditional samples"
# Images clip every denoised estimate to [-1, 1] by default (--clip_x0=auto), so DDIM's last step
# lands inside the data range; a bad value is refused.
"$py" -c "import h5py, sys; d = h5py.File(sys.argv[1])['data'][:]; assert abs(d).max() <= 1.0, abs(d).max()" "$tmp/cond.h5" \
  || fail "clipped image samples leave [-1, 1]"
expect 2 "--clip_x0 must be auto, on or off, got 'maybe'" -- "$bin" sample --checkpoint="$tmp/cond" \
  --clip_x0=maybe --out="$tmp/x.h5"
expect 2 "--label 4 is not a class of the model \(0..3\)" -- "$bin" sample --checkpoint="$tmp/cond" \
  --sampler=ddim --steps=2 --num=2 --label=4 --out="$tmp/x.h5"
expect 0 "step 3/3" -- "$bin" train --data="$tmp/img8.h5" "${unet[@]}" --data_batch=8 --train_steps=3 \
  --log_every=3 --run_dir="$tmp/uncond"
# The resume guard covers every setting of the network and the objective (the dropout too).
expect 2 "model_dropout: 0.1 -> 0.2" -- "$bin" train --data="$tmp/img8.h5" "${unet[@]}" --model_dropout=0.2 \
  --data_batch=8 --train_steps=4 --log_every=3 --run_dir="$tmp/uncond"
expect 2 "need a class-conditional model" -- "$bin" sample --checkpoint="$tmp/uncond" --sampler=ddim \
  --steps=2 --num=2 --cfg_scale=3 --out="$tmp/x.h5"
# A tiny class-conditional DiT through sCM (forward-mode JVP through the transformer), sampled in
# two consistency steps with its labels recorded in the samples file.
dit=(--model_arch=dit --model_hidden=32 --model_depth=2 --model_heads=2 --model_patch=2)
expect 0 "step 2/2" -- "$bin" train --data="$tmp/img8.h5" "${dit[@]}" --class_conditional --objective=scm \
  --data_batch=8 --train_steps=2 --log_every=2 --run_dir="$tmp/dit"
expect 0 "samples of a scm model with cm, 2 steps" -- "$bin" sample --checkpoint="$tmp/dit" --steps=2 --num=8 \
  --out="$tmp/dit.h5"
"$py" -c "import h5py, sys; f = h5py.File(sys.argv[1]); assert list(f['labels'][:]) == [0, 1, 2, 3] * 2" "$tmp/dit.h5" \
  || fail "the conditional samples do not carry their labels"
expect 2 "--eval_every on images needs --eval_classifier" -- "$bin" train --data="$tmp/img8.h5" \
  --model_arch=dit --model_hidden=32 --model_depth=1 --model_heads=2 --data_batch=8 --eval_every=1 --run_dir="$tmp/e"
expect 2 "dit: resolution 8 is not a multiple of the patch 3" -- "$bin" train --data="$tmp/img8.h5" "${dit[@]}" \
  --model_patch=3 --data_batch=8 --run_dir="$tmp/dit-bad"
expect 2 "--class_conditional needs a dataset with /labels" -- "$bin" train --data="$tmp/gs.h5" \
  --class_conditional --run_dir="$tmp/nolabels"
# A conditional teacher distils into a conditional generator (DMD2, the real score guided; the GAN
# head on the UNet's middle block), which samples the classes it is asked for.
expect 0 "step 2/2" -- "$bin" train --method=dmd --teacher="$tmp/cond" --data="$tmp/img8.h5" --dmd_cfg_scale=2 \
  --dmd_fake_updates=1 --dmd_gan_weight=0.1 --data_batch=8 --train_steps=2 --log_every=1 --run_dir="$tmp/cond-dmd"
expect 0 "samples with lcm, 1 of T = 1000 steps" -- "$bin" sample --checkpoint="$tmp/cond-dmd" --num=4 --label=2 \
  --out="$tmp/cond-dmd.h5"
"$py" -c "import h5py, sys; f = h5py.File(sys.argv[1]); assert list(f['labels'][:]) == [2] * 4" "$tmp/cond-dmd.h5" \
  || fail "the conditional generator's samples do not carry their label"
expect 2 "--dmd_cfg_scale needs a class-conditional teacher" -- "$bin" train --method=dmd --teacher="$tmp/uncond" \
  --data="$tmp/img8.h5" --dmd_cfg_scale=2 --data_batch=8 --run_dir="$tmp/uncond-dmd"
# Mixed precision and channels-last: a bf16, NHWC UNet run trains and samples (float32 weights in
# the model file); a bad precision is refused before anything is written; distillation refuses both.
expect 0 "step 3/3 .*" -- "$bin" train --data="$tmp/img8.h5" "${unet[@]}" --precision=bf16 --channels_last \
  --cudnn_benchmark --data_batch=8 --train_steps=3 --log_every=3 --run_dir="$tmp/bf16"
grep -q "1 rank(s) on cpu, .* bf16, channels-last" "$expect_out" || fail "the bf16 run does not say so"
grep -q "cudnn_benchmark has no effect on cpu" "$expect_out" || fail "--cudnn_benchmark on the CPU is not flagged"
expect 0 "samples written" -- "$bin" sample --checkpoint="$tmp/bf16" --sampler=ddim --steps=2 --num=4 \
  --threads=1 --out="$tmp/bf16.h5"
"$py" -c "import h5py, sys; f = h5py.File(sys.argv[1]); assert all(d.dtype == 'float32' for g in ('params', 'ema') for d in f[g].values())" \
  "$tmp/bf16/model.h5" || fail "the bf16 run did not keep float32 weights"
# Sampling with the network in bf16 (the sampler stays float32) or channels-last: the same keys give
# the fp32 samples to float rounding in channels-last, and close but different ones in bf16 (so
# autocast did run); each run reports its rate; misuse refused.
expect 0 "4 samples drawn in .* s (.* samples/s)" -- "$bin" sample --checkpoint="$tmp/bf16" --sampler=ddim \
  --steps=2 --num=4 --threads=1 --channels_last --out="$tmp/fp32-cl.h5"
expect 0 "samples written" -- "$bin" sample --checkpoint="$tmp/bf16" --sampler=ddim --steps=2 --num=4 \
  --threads=1 --precision=bf16 --channels_last --out="$tmp/bf16-cl.h5"
"$py" - "$tmp" <<'PY' || fail "bf16 / channels-last sampling is not the fp32 sampling up to rounding"
import sys, h5py, numpy as np
d = sys.argv[1]
ref, cl, bf = (h5py.File(f"{d}/{n}.h5")["data"][:] for n in ("bf16", "fp32-cl", "bf16-cl"))
assert cl.dtype == bf.dtype == np.float32 and np.isfinite(bf).all()
assert np.abs(cl - ref).max() < 1e-4, np.abs(cl - ref).max()
assert 0 < np.abs(bf - ref).max() < 0.1, np.abs(bf - ref).max()
PY
expect 2 "--precision must be fp32 or bf16, got 'fp16'" -- "$bin" sample --checkpoint="$tmp/bf16" \
  --precision=fp16 --out="$tmp/x.h5"
expect 2 "--fused_group_norm runs CUDA kernels; this run is on cpu" -- "$bin" sample --checkpoint="$tmp/bf16" \
  --fused_group_norm --out="$tmp/x.h5"
[ ! -e "$tmp/x.h5" ] || fail "a refused sample run wrote its output"
expect 2 "--precision must be fp32 or bf16, got 'fp16'" -- "$bin" train --data="$tmp/img8.h5" "${unet[@]}" \
  --precision=fp16 --run_dir="$tmp/fp16"
[ ! -e "$tmp/fp16" ] || fail "a refused precision created its run directory"
expect 2 "apply to --method=pretrain" -- "$bin" train --method=progressive --pd_teacher="$tmp/uncond" \
  --data="$tmp/img8.h5" --precision=bf16 --run_dir="$tmp/pd-bf16"
# Methods: registered by name (pre-training keeps its earlier name ddpm), listed by --help with their
# own flags; another method's flag is refused; the teacher flag has its earlier name too.
expect 2 "unknown --method 'nope' \(valid: pretrain \(alias ddpm\), add, cd, dmd, lcm, progressive, sds, vsd, ddpo, draft, drwr, qsm, refl\)" -- "$bin" train --method=nope \
  --data="$tmp/moons.h5" --run_dir="$tmp/nope"
expect 0 "--method=progressive: progressive distillation" -- "$bin" train --help
grep -q -- "(also --pd_teacher)" "$expect_out" || fail "train --help does not give --teacher's earlier name"
expect 2 "--teacher is a flag of --method=add, cd, dmd, lcm, progressive, sds, vsd; this run.s method is pretrain" -- "$bin" train \
  --flagfile="$tmp/small.flags" --pd_teacher="$tmp/ok" --run_dir="$tmp/cross"
[ ! -e "$tmp/cross" ] || fail "a refused flag created its run directory"
expect 0 "step 5/5" -- "$bin" train --flagfile="$tmp/small.flags" --method=ddpm --run_dir="$tmp/alias"
grep -qx -- "--method=ddpm" "$tmp/alias/config.flags" || fail "config.flags lacks the method as given"
# The run directory is unidiff's and one job's: a non-empty directory without the marker (/, a
# folder of someone's files) is refused before anything is written; --overwrite removes only the
# checkpoints unidiff wrote; a second job on a directory in use is refused naming the holder.
expect 2 "--run_dir '/' is not empty and is not a unidiff run directory" -- "$bin" train --flagfile="$tmp/small.flags" \
  --run_dir=/
mkdir "$tmp/foreign" && echo notes >"$tmp/foreign/notes.txt"
expect 2 "--run_dir '.*foreign' is not empty and is not a unidiff run directory" -- "$bin" train \
  --flagfile="$tmp/small.flags" --run_dir="$tmp/foreign"
[ "$(ls -A "$tmp/foreign")" = notes.txt ] || fail "a refused run wrote into a foreign directory"
"$bin" train --flagfile="$tmp/small.flags" --train_steps=2 --run_dir="$tmp/own" >/dev/null 2>&1
echo mine >"$tmp/own/checkpoints/mine.txt"
expect 0 "step 2/2" -- "$bin" train --flagfile="$tmp/small.flags" --train_steps=2 --overwrite --run_dir="$tmp/own"
[ -f "$tmp/own/checkpoints/mine.txt" ] || fail "--overwrite deleted a file unidiff did not write"
"$bin" train --flagfile="$tmp/small.flags" --train_steps=1000000 --log_every=1000000 --threads=1 \
  --run_dir="$tmp/busy" >/dev/null 2>&1 &
busy=$!
for _ in $(seq 100); do grep -q "pid $busy" "$tmp/busy/.unidiff-lock" 2>/dev/null && break; sleep 0.2; done
expect 2 "--run_dir '.*busy' is in use by another job \(host .*, pid $busy, since " -- "$bin" train \
  --flagfile="$tmp/small.flags" --run_dir="$tmp/busy"
kill -TERM $busy; wait $busy || true
# A stop requested during evaluation interrupts it before its next sampler chunk (40,000 samples in
# chunks of 4,096 here): exit 75 with the checkpoint, the abandoned evaluation recorded as such.
"$bin" train --flagfile="$tmp/small.flags" --train_steps=100 --eval_every=2 --eval_samples=40000 --threads=1 \
  --run_dir="$tmp/evalstop" >"$tmp/evalstop.log" 2>&1 &
job=$!
for _ in $(seq 100); do grep -q "step 2/100" "$tmp/evalstop.log" && break; sleep 0.2; done
sleep 1
kill -TERM $job
rc=0; wait $job || rc=$?
[ $rc -eq 75 ] || { cat "$tmp/evalstop.log"; fail "a stop during evaluation exited $rc, expected 75"; }
grep -q "step 2: evaluation abandoned, a stop was requested" "$tmp/evalstop.log" ||
  { cat "$tmp/evalstop.log"; fail "the evaluation was not interrupted"; }
grep -q '"eval_stopped": 1' "$tmp/evalstop/metrics.jsonl" || fail "metrics.jsonl does not record the abandoned evaluation"
# A diverged loss is no bad input: non-finite steps are skipped (weights, moments and EMA
# untouched) and reported; one more than --max_nonfinite_steps stops the run with exit 1, naming
# the first non-finite step and its batch's samples.
"$py" - "$tmp/huge.h5" "$tmp/spiked.h5" <<'PY'
import sys, h5py, numpy as np
with h5py.File(sys.argv[1], "w") as f:
    f["data"] = np.full((40, 2), 1e30, np.float32)
x = np.random.default_rng(0).normal(size=(400, 2)).astype(np.float32)
x[123] = 1e30                                      # one poisoned row: the batches that hold it go non-finite
with h5py.File(sys.argv[2], "w") as f:
    f["data"] = x
PY
expect 1 "training diverged: 3 non-finite step\(s\), more than --max_nonfinite_steps=2 .*\(first at step 1\); its batch of stream 'data' held the global sample indices \[[0-9]+, " \
  -- "$bin" train --flagfile="$tmp/small.flags" --data="$tmp/huge.h5" --max_nonfinite_steps=2 --run_dir="$tmp/huge"
expect 0 "skipped 1 non-finite step\(s\) in steps .* \(first at step [0-9]+\); its batch of stream 'data' held the global sample indices \[.*\b123\b" \
  -- "$bin" train --flagfile="$tmp/small.flags" --data="$tmp/spiked.h5" --train_steps=20 --run_dir="$tmp/spiked"
grep -q '"nonfinite_steps": 1' "$tmp/spiked/metrics.jsonl" || fail "metrics.jsonl does not count the skipped steps"
"$py" -c "import h5py, numpy as np, sys; f = h5py.File(sys.argv[1]); \
assert all(np.isfinite(f[g][k][...]).all() for g in ('params', 'ema') for k in f[g])" "$tmp/spiked/model.h5" ||
  fail "skipped steps left non-finite weights"
# Replaying a skipped step: --replay_step=S rebuilds the state before step S (the newest checkpoint
# written after at most S - 1 steps, or the start) and runs step S again: the batch the warning
# named, the loss not finite, the update skipped; a finite step's loss equals the one metrics.jsonl
# logged for it (log_every 1); nothing in the run directory changes. A run stopped at a checkpoint
# after a skipped step and resumed ends bit for bit where the uninterrupted run does (the
# optimizer's step count in the checkpoint is the device's, which skipped steps do not advance).
. "$(dirname "$0")/compare_runs.sh"
spiked=(--flagfile="$tmp/small.flags" --data="$tmp/spiked.h5" --train_steps=20 --save_every=5)
"$bin" train "${spiked[@]}" --run_dir="$tmp/spiked2" >"$tmp/spiked2.log" 2>&1 || fail "the spiked run failed"
first=$(sed -n 's/.*(first at step \([0-9]*\)).*/\1/p' "$tmp/spiked2.log" | head -1)
named=$(sed -n 's/.*(first at step [0-9]*); its batch of stream .data. held the global sample indices \(\[[^]]*\]\).*/\1/p' "$tmp/spiked2.log" | head -1)
snapshot_spiked() { (cd "$tmp/spiked2" && find . -type f -exec md5sum {} + | sort); }
before=$(snapshot_spiked)
if [ -z "$first" ] || [ -z "$named" ]; then cat "$tmp/spiked2.log"; fail "the spiked run named no skipped step"; else
  expect 0 "\[replay\] step $first: loss [^ ]+ \(NOT finite\); group 'model': gradient NOT finite, update skipped \(non-finite in [0-9]+ parameter" \
    -- "$bin" train "${spiked[@]}" --run_dir="$tmp/spiked2" --replay_step="$first"
  replayed=$(sed -n 's/.*step [0-9]*: its batch of stream .data. held the global sample indices \(\[[^]]*\]\).*/\1/p' "$expect_out")
  [ "$replayed" = "$named" ] || fail "the replayed batch $replayed is not the logged $named"
  finite=$((first + 1))
  expect 0 "\[replay\] step $finite: loss [^ ]+ \(finite\); group 'model': gradient finite, updated" \
    -- "$bin" train "${spiked[@]}" --run_dir="$tmp/spiked2" --replay_step="$finite"
  "$py" - "$expect_out" "$tmp/spiked2/metrics.jsonl" "$finite" <<'PY' || fail "the replayed loss differs from the logged one"
import json, re, sys
replayed = float(re.search(r"step \d+: loss (\S+) \(finite\)", open(sys.argv[1]).read()).group(1))
logged = [json.loads(l) for l in open(sys.argv[2]) if '"loss"' in l and json.loads(l).get("step") == int(sys.argv[3])][0]["loss"]
assert abs(replayed - logged) <= 1e-7 * abs(logged), (replayed, logged)
print(f"replayed loss {replayed!r}, logged {logged!r}")
PY
  expect 2 "--replay_step=21 is past the run's 20 steps" -- "$bin" train "${spiked[@]}" --run_dir="$tmp/spiked2" --replay_step=21
  [ "$(snapshot_spiked)" = "$before" ] || fail "replaying changed the run directory"
  stop=$(( (first + 4) / 5 * 5 ))
  [ $stop -gt $first ] || stop=$((stop + 5))
  rc=0; "$bin" train "${spiked[@]}" --train_stop_at=$stop --run_dir="$tmp/spiked3" >/dev/null 2>&1 || rc=$?
  [ $rc -eq 75 ] || fail "the spiked run stopped at $stop exited $rc"
  "$bin" train "${spiked[@]}" --run_dir="$tmp/spiked3" >/dev/null 2>&1 || fail "the spiked run's resume failed"
  compare "$tmp/spiked2" "$tmp/spiked3" exact || fail "a run resumed after a skipped step left the uninterrupted path"
fi
# The same under mpirun -np 2: the step and batch the 2-rank run skipped are replayed on 2 ranks.
mpi2=("$MPIEXEC" --oversubscribe --bind-to none -x OMP_NUM_THREADS=1 -np 2)
"${mpi2[@]}" "$bin" train "${spiked[@]}" --run_dir="$tmp/spiked4" >"$tmp/spiked4.log" 2>&1 || fail "the 2-rank spiked run failed"
first=$(sed -n 's/.*(first at step \([0-9]*\)).*/\1/p' "$tmp/spiked4.log" | head -1)
named=$(sed -n 's/.*(first at step [0-9]*); its batch of stream .data. held the global sample indices \(\[[^]]*\]\).*/\1/p' "$tmp/spiked4.log" | head -1)
if [ -z "$first" ] || [ -z "$named" ]; then cat "$tmp/spiked4.log"; fail "the 2-rank spiked run named no skipped step"; else
  expect 0 "\[replay\] step $first: loss [^ ]+ \(rank 0\) [^ ]+ \(rank 1\) \(NOT finite\); group 'model': gradient NOT finite, update skipped" \
    -- "${mpi2[@]}" "$bin" train "${spiked[@]}" --run_dir="$tmp/spiked4" --replay_step="$first"
  replayed=$(sed -n 's/.*step [0-9]*: its batch of stream .data. held the global sample indices \(\[[^]]*\]\).*/\1/p' "$expect_out")
  [ "$replayed" = "$named" ] || fail "2 ranks: the replayed batch $replayed is not the logged $named"
fi
# The step in a CUDA graph needs a CUDA device: refused on the CPU before the run directory exists.
expect 2 "--cuda_graph needs a CUDA device; this run is on cpu" -- "$bin" train --data="$tmp/img8.h5" "${unet[@]}" \
  --cuda_graph --run_dir="$tmp/graph"
[ ! -e "$tmp/graph" ] || fail "a refused --cuda_graph run created its run directory"
expect 2 "--cuda_graph applies to --method=pretrain" -- "$bin" train --method=progressive --pd_teacher="$tmp/uncond" \
  --data="$tmp/img8.h5" --cuda_graph --run_dir="$tmp/pd-graph"
# The fused GroupNorm kernels run on CUDA only.
expect 2 "--fused_group_norm runs CUDA kernels; this run is on cpu" -- "$bin" train --data="$tmp/img8.h5" \
  "${unet[@]}" --fused_group_norm --run_dir="$tmp/fused"
[ ! -e "$tmp/fused" ] || fail "a refused --fused_group_norm run created its run directory"

if [ $failures -ne 0 ]; then echo "cli: $failures check(s) failed"; exit 1; fi
echo "cli: all checks passed"
