"""diffusers interop, checked with the real diffusers package (tests/interop; docs/diffusers.md).

For each UNet2DModel configuration below, diffusers builds the network with random weights (every
tensor perturbed, so a swapped or misnamed tensor changes the output), saves it as diffusers does,
`unidiff import` reads it, and:
  - unidiff's forward pass (unet_forward) equals diffusers' within float32 rounding: the largest
    difference is under 5e-5 of the output's largest magnitude, while changing t by ten steps moves
    the output by more than 20x that (so the comparison can fail);
  - `unidiff export` writes a folder that diffusers' from_pretrained loads, whose tensors equal the
    original ones bit for bit, whose output equals the original network's exactly, and whose
    scheduler has the same betas and prediction type;
  - importing the export again gives the same model file tensors bit for bit.
Then the imported Fashion-MNIST-shaped model is sampled, trained from (--init_from), distilled
(--teacher) and fine-tuned by DDPO (--init_from) for a step each, and broken inputs are refused with
exit 2 naming the key.
usage: python diffusers_test.py   (env: UNIDIFF_BIN, UNET_FORWARD, UNIDIFF_FASHION_MNIST_DIR optional)
"""
import json
import os
import re
import shutil
import struct
import subprocess
import sys
import tempfile
import time

import h5py
import numpy as np
import torch
from diffusers import DDPMPipeline, DDPMScheduler, UNet2DModel
from safetensors.torch import load_file, save_file

BIN = os.environ["UNIDIFF_BIN"]
FORWARD = os.environ["UNET_FORWARD"]
failures = []


def check(ok, what):
    print(("ok:   " if ok else "FAIL: ") + what, flush=True)
    if not ok:
        failures.append(what)


def run(args, expect=0, pattern=None):
    start = time.time()
    p = subprocess.run(args, capture_output=True, text=True)
    out = p.stdout + p.stderr
    took = time.time() - start
    ok = p.returncode == expect and (pattern is None or re.search(pattern, out) is not None)
    check(ok, f"exit {expect}" + (f" and /{pattern}/" if pattern else "") + f" ({took:.1f} s): " + " ".join(args[:2]) +
          (f" (got {p.returncode}: {out.strip()[-600:]})" if not ok else ""))
    return out


# name -> (UNet2DModel kwargs, scheduler kwargs or None for a bare UNet2DModel folder)
CASES = {
    # google/ddpm-cifar10-32's configuration: 35,746,307 parameters.
    "cifar10": (dict(sample_size=32, in_channels=3, out_channels=3, layers_per_block=2,
                     block_out_channels=(128, 256, 256, 256),
                     down_block_types=("DownBlock2D", "AttnDownBlock2D", "DownBlock2D", "DownBlock2D"),
                     up_block_types=("UpBlock2D", "UpBlock2D", "AttnUpBlock2D", "UpBlock2D"),
                     downsample_padding=0, flip_sin_to_cos=False, freq_shift=1, norm_eps=1e-6,
                     attention_head_dim=None),
                dict(num_train_timesteps=1000, beta_schedule="linear", beta_start=1e-4, beta_end=0.02,
                     variance_type="fixed_large", clip_sample=True)),
    # Fashion-MNIST shaped (one channel, 28x28), class-conditional (10 classes + "no class"),
    # attention at 7x7, cosine betas, v prediction, padding on every side, eps 1e-5, diffusers'
    # default time embedding ([cos, sin], freq_shift 0).
    "fmnist": (dict(sample_size=28, in_channels=1, out_channels=1, layers_per_block=1,
                    block_out_channels=(32, 64, 64),
                    down_block_types=("DownBlock2D", "DownBlock2D", "AttnDownBlock2D"),
                    up_block_types=("AttnUpBlock2D", "UpBlock2D", "UpBlock2D"),
                    downsample_padding=1, norm_eps=1e-5, num_class_embeds=11, attention_head_dim=None),
               dict(num_train_timesteps=1000, beta_schedule="squaredcos_cap_v2", prediction_type="v_prediction")),
    # Three levels, attention at two of them, three blocks per level, dropout (off in eval),
    # diffusers' default attention_head_dim 8 (4 and 8 heads): a bare UNet2DModel folder (the
    # scheduler is DDPMScheduler's default).
    "bare": (dict(sample_size=16, in_channels=3, out_channels=3, layers_per_block=3,
                  block_out_channels=(32, 32, 64),
                  down_block_types=("AttnDownBlock2D", "DownBlock2D", "AttnDownBlock2D"),
                  up_block_types=("AttnUpBlock2D", "UpBlock2D", "AttnUpBlock2D"),
                  downsample_padding=0, norm_eps=1e-6, dropout=0.1),
             None),
    # scaled-linear betas, x0 ("sample") prediction, attention everywhere.
    "scaled": (dict(sample_size=8, in_channels=3, out_channels=3, layers_per_block=1,
                    block_out_channels=(64, 64),
                    down_block_types=("AttnDownBlock2D", "AttnDownBlock2D"),
                    up_block_types=("AttnUpBlock2D", "AttnUpBlock2D"), norm_eps=1e-6, attention_head_dim=32,
                    flip_sin_to_cos=True, freq_shift=1),
               dict(num_train_timesteps=500, beta_schedule="scaled_linear", beta_start=0.00085, beta_end=0.012,
                    prediction_type="sample")),
}


def build(cfg, seed):
    torch.manual_seed(seed)
    unet = UNet2DModel(**cfg).eval()
    with torch.no_grad():
        for name, p in unet.named_parameters():
            p.add_(torch.randn_like(p) * (0.2 if "norm" in name else 0.02))
    return unet


def forward_unidiff(model_file, x, t, labels, tmp):
    with h5py.File(f"{tmp}/in.h5", "w") as f:
        f["x"] = x.numpy()
        f["t"] = t.float().numpy()
        if labels is not None:
            f["labels"] = labels.numpy()
    subprocess.run([FORWARD, model_file, f"{tmp}/in.h5", f"{tmp}/out.h5"], check=True)
    with h5py.File(f"{tmp}/out.h5") as f:
        return torch.from_numpy(f["y"][()])


def model_tensors(path):
    with h5py.File(path) as f:
        return {k: f["params"][k][()] for k in f["params"]}, dict(f.attrs)


def main():
    tmp = tempfile.mkdtemp()
    try:
        imported = {}
        for name, (cfg, sched) in CASES.items():
            unet = build(cfg, seed=len(name))
            src = f"{tmp}/{name}-src"
            if sched is None:
                unet.save_pretrained(src)
            else:
                DDPMPipeline(unet=unet, scheduler=DDPMScheduler(**sched)).save_pretrained(src)
            model = f"{tmp}/{name}.h5"
            nparams = sum(p.numel() for p in unet.parameters())
            run([BIN, "import", "--from=diffusers", f"--dir={src}", f"--out={model}"], 0,
                f"unet of {nparams} parameters")
            if name == "cifar10":
                check(nparams == 35746307, f"the DDPM CIFAR-10 UNet2DModel has 35,746,307 parameters ({nparams})")
            imported[name] = model
            c, r = cfg["in_channels"], cfg["sample_size"]
            g = torch.Generator().manual_seed(1)
            x = torch.randn(2, c, r, r, generator=g)
            t = torch.tensor([3, 517 if sched is None or sched["num_train_timesteps"] > 517 else 400])
            labels = torch.tensor([4, 10]) if cfg.get("num_class_embeds") else None  # 10: "no class"
            with torch.no_grad():
                ref = unet(x, t, class_labels=labels).sample
                moved = unet(x, t + 10, class_labels=labels).sample
            ours = forward_unidiff(model, x, t, labels, tmp)
            scale = ref.abs().max().item()
            diff = (ours - ref).abs().max().item()
            step = (moved - ref).abs().max().item()
            check(diff <= 5e-5 * scale and step > 20 * 5e-5 * scale,
                  f"{name}: forward equals diffusers' (max diff {diff:.3g}, output scale {scale:.3g}, ten steps of t "
                  f"move it by {step:.3g})")

            # Export, reload with diffusers.
            out = f"{tmp}/{name}-export"
            run([BIN, "export", "--to=diffusers", f"--checkpoint={model}", f"--dir={out}"], 0, "wrote .*DDPMPipeline")
            pipe = DDPMPipeline.from_pretrained(out)
            state = load_file(f"{out}/unet/diffusion_pytorch_model.safetensors")
            orig = unet.state_dict()
            same = set(state) == set(orig) and all(torch.equal(state[k], orig[k]) for k in orig)
            check(same, f"{name}: exported tensors equal diffusers' originals bit for bit ({len(state)} tensors)")
            with torch.no_grad():
                again = pipe.unet.eval()(x, t, class_labels=labels).sample
            check(torch.equal(again, ref), f"{name}: the exported UNet2DModel's output equals the original's exactly")
            want = DDPMScheduler(**(sched or {}))
            check(torch.equal(pipe.scheduler.betas, want.betas) and
                  pipe.scheduler.config.prediction_type == want.config.prediction_type and
                  pipe.scheduler.config.num_train_timesteps == want.config.num_train_timesteps,
                  f"{name}: exported scheduler has the original's betas, T and prediction type")
            # Import the export: the same model file tensors and attributes.
            model2 = f"{tmp}/{name}-again.h5"
            run([BIN, "import", "--from=diffusers", f"--dir={out}", f"--out={model2}"])
            (a, attrs_a), (b, attrs_b) = model_tensors(model), model_tensors(model2)
            check(set(a) == set(b) and all(np.array_equal(a[k], b[k]) for k in a) and
                  {k: str(v) for k, v in attrs_a.items()} == {k: str(v) for k, v in attrs_b.items()},
                  f"{name}: import(export(import)) equals import bit for bit")

        # Older diffusers files name the attention projections query/key/value/proj_attn.
        legacy = f"{tmp}/legacy"
        shutil.copytree(f"{tmp}/fmnist-src", legacy)
        w = f"{legacy}/unet/diffusion_pytorch_model.safetensors"
        ren = {".to_q.": ".query.", ".to_k.": ".key.", ".to_v.": ".value.", ".to_out.0.": ".proj_attn."}
        old = {}
        for k, v in load_file(w).items():
            for a, b in ren.items():
                k = k.replace(a, b)
            old[k] = v
        save_file(old, w)
        run([BIN, "import", "--from=diffusers", f"--dir={legacy}", f"--out={tmp}/legacy.h5"])
        a, b = model_tensors(imported["fmnist"])[0], model_tensors(f"{tmp}/legacy.h5")[0]
        check(all(np.array_equal(a[k], b[k]) for k in a), "legacy attention names import to the same tensors")

        downstream(tmp, imported["fmnist"])
        hostile(tmp)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    print(f"{len(failures)} failure(s)")
    return 1 if failures else 0


def downstream(tmp, model):
    """The imported 1x28x28 class-conditional model in sample, train --init_from, --teacher, DDPO."""
    run([BIN, "sample", f"--checkpoint={model}", "--sampler=ddim", "--steps=3", "--num=4", "--label=2",
         f"--out={tmp}/s.h5"], 0)
    fm = os.environ.get("UNIDIFF_FASHION_MNIST_DIR", "/usr/share/datasets/fashion-mnist")
    if not os.path.exists(f"{fm}/t10k-images-idx3-ubyte.gz"):
        print("skip: no Fashion-MNIST for the training runs")
        return
    run([BIN, "data", "fashion-mnist", "--split=test", f"--fashion_mnist_dir={fm}", f"--out={tmp}/fm.h5"])
    arch = ["--model_arch=unet", "--model_channels=32", "--model_mult=1,2,2", "--model_res_blocks=1",
            "--model_attn_res=7", "--model_dropout=0", "--model_time_flip=1", "--model_time_shift=0", "--diffusion_schedule=cosine", "--prediction=v",
            "--class_conditional=true"]
    common = [f"--data={tmp}/fm.h5", "--data_batch=4", "--train_steps=2", "--log_every=1", "--threads=1",
              "--eval_samples=0"]
    # A setting that changes the function but no shape must match the file's: refused, naming the flags.
    run([BIN, "train", f"--run_dir={tmp}/r1", f"--init_from={model}", "--model_norm_eps=1e-6"] + arch + common, 2,
        "was built with --model_norm_eps=1e-05 --model_downsample_padding=1 --model_attn_head_dim=0 "
        "--model_time_flip=1 --model_time_shift=0; this run has 1e-06, 1, 0, 1 and 0")
    run([BIN, "train", f"--run_dir={tmp}/r2", f"--init_from={model}"] + arch + common, 0)
    run([BIN, "train", "--method=progressive", f"--run_dir={tmp}/r3", f"--teacher={model}", "--pd_start_steps=4", "--pd_round_steps=1"] + common, 0)
    run([BIN, "train", "--method=ddpo", "--reward=compressibility", f"--run_dir={tmp}/r4", f"--init_from={model}",
         "--rl_samples=4", "--rl_batch=2", "--rl_steps=2", "--rl_epochs=1", "--train_steps=1", "--data_batch=2",
         f"--data={tmp}/fm.h5", "--threads=1"], 0)


def hostile(tmp):
    """Folders and files that do not map: exit 2 naming the key, the tensor or the field."""
    base = f"{tmp}/fmnist-src"

    def variant(tag, edit_config=None, edit_tensors=None, raw=None):
        d = f"{tmp}/bad-{tag}"
        shutil.copytree(base, d)
        if edit_config:
            p = f"{d}/unet/config.json"
            cfg = json.load(open(p))
            edit_config(cfg)
            json.dump(cfg, open(p, "w"))
        w = f"{d}/unet/diffusion_pytorch_model.safetensors"
        if edit_tensors:
            t = load_file(w)
            edit_tensors(t)
            save_file(t, w)
        if raw:
            data = open(w, "rb").read()
            open(w, "wb").write(raw(data))
        return d

    def refuse(tag, pattern, **kw):
        run([BIN, "import", "--from=diffusers", f"--dir={variant(tag, **kw)}", f"--out={tmp}/bad.h5"], 2, pattern)

    refuse("heads", "attention_head_dim = 24 does not map.*does not divide the attention width 64",
           edit_config=lambda c: c.update(attention_head_dim=24))
    refuse("fourier", "time_embedding_type = \"fourier\"", edit_config=lambda c: c.update(time_embedding_type="fourier"))
    refuse("shift", "resnet_time_scale_shift", edit_config=lambda c: c.update(resnet_time_scale_shift="scale_shift"))
    refuse("flip", "flip_sin_to_cos = \"yes\"", edit_config=lambda c: c.update(flip_sin_to_cos="yes"))
    refuse("unknown", "some_new_key = 3 does not map.*unknown", edit_config=lambda c: c.update(some_new_key=3))
    refuse("attnside", "attention on one side only",
           edit_config=lambda c: c.update(up_block_types=["UpBlock2D", "UpBlock2D", "UpBlock2D"]))
    refuse("mult", "multiple of the first", edit_config=lambda c: c.update(block_out_channels=[64, 96, 96]))
    refuse("extra", "has tensor 'extra.weight'", edit_tensors=lambda t: t.update({"extra.weight": torch.zeros(3)}))
    refuse("missing", "lacks tensor 'conv_out.bias'", edit_tensors=lambda t: t.pop("conv_out.bias"))
    refuse("shape", "tensor 'conv_in.weight' has shape \\[32, 1, 3, 1\\]",
           edit_tensors=lambda t: t.update({"conv_in.weight": torch.zeros(32, 1, 3, 1)}))
    refuse("nan", "tensor 'conv_in.bias' holds non-finite",
           edit_tensors=lambda t: t.update({"conv_in.bias": torch.full((32,), float("nan"))}))
    refuse("truncated", "outside the .*buffer after the header \\(truncated", raw=lambda b: b[:-100])
    refuse("hugeheader", "header length .* exceeds the 100 MiB limit", raw=lambda b: struct.pack("<Q", 1 << 40) + b[8:])
    refuse("size", "tensor 'class_embedding.weight' spans 5628 bytes but its F32 shape \\[11, 128\\] needs 5632",
           raw=lambda b: b.replace(b'"data_offsets":[0,', b'"data_offsets":[4,', 1))
    refuse("notjson", "not valid JSON|not a JSON object", raw=lambda b: b[:8] + b"{" * 1 + b"\x00" + b[10:])
    refuse("deep", "nests deeper than 64", raw=lambda b: struct.pack("<Q", 200) + b"{" + b"[" * 199 + b"x" * 16)
    # No attention_head_dim: diffusers' default, 8 channels per head.
    d = variant("nohead", edit_config=lambda c: c.pop("attention_head_dim"))
    run([BIN, "import", "--from=diffusers", f"--dir={d}", f"--out={tmp}/nohead.h5"])
    check(model_tensors(f"{tmp}/nohead.h5")[1].get("attn_head_dim") == 8,
          "a config without attention_head_dim imports with diffusers' default of 8 channels per head")
    # Pickled weights only: named, with how to convert them.
    d = variant("bin")
    os.rename(f"{d}/unet/diffusion_pytorch_model.safetensors", f"{d}/unet/diffusion_pytorch_model.bin")
    run([BIN, "import", "--from=diffusers", f"--dir={d}", f"--out={tmp}/bad.h5"], 2, "Python pickle")
    with open(f"{d}/scheduler/scheduler_config.json", "w") as f:
        json.dump({"_class_name": "DDPMScheduler", "trained_betas": [0.1, 0.2]}, f)
    os.rename(f"{d}/unet/diffusion_pytorch_model.bin", f"{d}/unet/diffusion_pytorch_model.safetensors")
    run([BIN, "import", "--from=diffusers", f"--dir={d}", f"--out={tmp}/bad.h5"], 2, "trained_betas")
    run([BIN, "import", "--from=diffusers", f"--dir={tmp}/nothing", f"--out={tmp}/bad.h5"], 2, "is not a folder")
    run([BIN, "import", "--from=onnx", f"--dir={base}", f"--out={tmp}/bad.h5"], 2, "valid: diffusers")
    check(not os.path.exists(f"{tmp}/bad.h5"), "no model file is written by a refused import")
    # Export refuses what DDPMPipeline cannot hold: a rectified-flow model, an MLP.
    run([BIN, "data", "toy", "--dist=moons", "--num=64", f"--out={tmp}/moons.h5"])
    run([BIN, "train", f"--run_dir={tmp}/mlp", f"--data={tmp}/moons.h5", "--train_steps=2", "--data_batch=8",
         "--threads=1"])
    run([BIN, "export", "--to=diffusers", f"--checkpoint={tmp}/mlp", f"--dir={tmp}/mlp-export"], 2,
        "arch 'mlp'; diffusers' UNet2DModel is unidiff's unet")


if __name__ == "__main__":
    sys.exit(main())
