"""Reference for the DiT tests: DiT (Peebles & Xie 2023) written in plain PyTorch: patchify by a
p x p stride-p convolution, fixed 2-D sin-cos position embedding, adaLN-Zero blocks (LayerNorm
without affine, modulation x * (1 + scale) + shift, gated residuals; multi-head attention and a
GELU(tanh) MLP of ratio 4), the timestep embedder (256 sinusoidal frequencies, cos first, then a
SiLU MLP), a class embedding with a null class, and the adaLN final layer. Writes:
  /s2_params            attribute: parameter count of DiT-S/2 on 4x32x32 latents, 1000 classes
  /b4_params            attribute: parameter count of DiT-B/4 on 4x32x32 latents, 1000 classes
  /small/params/<name>  the state dict of a small configuration (seed 0; the zero-initialised
                        adaLN and output layers randomised, so the output is not trivially zero)
  /small/x, /small/t, /small/y, /small/out   an input (x, t, labels y) and the network's output
usage: python dit_reference.py OUT.h5
"""
import math
import sys

import h5py
import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F


def timestep_embedding(t, dim=256, max_period=10000):
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, dtype=torch.float32) / half)
    args = t.float()[:, None] * freqs[None]
    return torch.cat([torch.cos(args), torch.sin(args)], 1)


def pos_embed_2d(dim, grid):
    """[grid * grid, dim]: half the channels embed the row, half the column (sin then cos)."""
    def one_d(d, pos):
        omega = 1.0 / 10000 ** (np.arange(d // 2, dtype=np.float64) / (d / 2.0))
        out = np.einsum("m,d->md", pos.reshape(-1), omega)
        return np.concatenate([np.sin(out), np.cos(out)], axis=1)
    gh, gw = np.meshgrid(np.arange(grid, dtype=np.float64), np.arange(grid, dtype=np.float64), indexing="ij")
    # Column (w) first, then row (h), as in the reference implementation's grid order.
    return torch.from_numpy(np.concatenate([one_d(dim // 2, gw), one_d(dim // 2, gh)], axis=1)).float()


def modulate(x, shift, scale):
    return x * (1 + scale[:, None]) + shift[:, None]


class Block(nn.Module):
    def __init__(self, h, heads):
        super().__init__()
        self.heads = heads
        self.norm1 = nn.LayerNorm(h, elementwise_affine=False, eps=1e-6)
        self.qkv = nn.Linear(h, 3 * h)
        self.proj = nn.Linear(h, h)
        self.norm2 = nn.LayerNorm(h, elementwise_affine=False, eps=1e-6)
        self.fc1 = nn.Linear(h, 4 * h)
        self.fc2 = nn.Linear(4 * h, h)
        self.ada = nn.Linear(h, 6 * h)

    def attn(self, x):
        b, n, h = x.shape
        q, k, v = self.qkv(x).reshape(b, n, 3, self.heads, h // self.heads).permute(2, 0, 3, 1, 4)
        w = torch.softmax(q @ k.transpose(-1, -2) / math.sqrt(h // self.heads), dim=-1)
        return self.proj((w @ v).transpose(1, 2).reshape(b, n, h))

    def forward(self, x, c):
        sm, cm, gm, sf, cf, gf = self.ada(F.silu(c)).chunk(6, dim=1)
        x = x + gm[:, None] * self.attn(modulate(self.norm1(x), sm, cm))
        return x + gf[:, None] * self.fc2(F.gelu(self.fc1(modulate(self.norm2(x), sf, cf)), approximate="tanh"))


class DiT(nn.Module):
    def __init__(self, cin=4, res=32, patch=2, h=384, depth=12, heads=6, classes=1000):
        super().__init__()
        self.cin, self.patch, self.grid = cin, patch, res // patch
        self.patch_embed = nn.Conv2d(cin, h, patch, stride=patch)
        self.register_buffer("pos", pos_embed_2d(h, self.grid), persistent=False)
        self.t1 = nn.Linear(256, h)
        self.t2 = nn.Linear(h, h)
        self.classes = classes
        if classes:
            self.label = nn.Embedding(classes + 1, h)
        self.blocks = nn.ModuleList(Block(h, heads) for _ in range(depth))
        self.final_norm = nn.LayerNorm(h, elementwise_affine=False, eps=1e-6)
        self.final_ada = nn.Linear(h, 2 * h)
        self.final = nn.Linear(h, patch * patch * cin)

    def forward(self, x, t, y=None):
        b = x.shape[0]
        tok = self.patch_embed(x).flatten(2).transpose(1, 2) + self.pos
        c = self.t2(F.silu(self.t1(timestep_embedding(t))))
        if self.classes:
            c = c + self.label(y)
        for blk in self.blocks:
            tok = blk(tok, c)
        shift, scale = self.final_ada(F.silu(c)).chunk(2, dim=1)
        out = self.final(modulate(self.final_norm(tok), shift, scale))  # [B, N, p*p*C]
        p, g = self.patch, self.grid
        out = out.reshape(b, g, g, p, p, self.cin).permute(0, 5, 1, 3, 2, 4)
        return out.reshape(b, self.cin, g * p, g * p)


def count(m):
    return sum(p.numel() for p in m.parameters())


def main(out_path):
    with torch.device("meta"):
        s2 = count(DiT(patch=2, h=384, depth=12, heads=6))
        b4 = count(DiT(patch=4, h=768, depth=12, heads=12))
    torch.manual_seed(0)
    net = DiT(cin=3, res=8, patch=2, h=64, depth=2, heads=4, classes=10).eval()
    with torch.no_grad():
        for name, p in net.named_parameters():
            p.copy_(torch.randn_like(p) * (0.5 / math.sqrt(max(1, p.shape[-1]))))
    x = torch.randn(3, 3, 8, 8)
    t = torch.tensor([3.0, 250.0, 999.0])
    y = torch.tensor([0, 7, 10])  # 10 = the null class
    with torch.no_grad():
        out = net(x, t, y)
    with h5py.File(out_path, "w") as f:
        f.attrs["s2_params"] = s2
        f.attrs["b4_params"] = b4
        for name, p in net.state_dict().items():
            f[f"small/params/{name}"] = p.numpy()
        f["small/x"], f["small/t"], f["small/y"], f["small/out"] = x.numpy(), t.numpy(), y.numpy(), out.numpy()
    print(f"DiT-S/2 {s2} parameters, DiT-B/4 {b4}; small output norm {out.norm():.4f}")


if __name__ == "__main__":
    main(sys.argv[1])
