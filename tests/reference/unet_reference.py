"""Reference for the UNet tests: the DDPM CIFAR-10 UNet written in plain PyTorch (Ho et al. 2020:
GroupNorm(32)/SiLU/conv residual blocks with the time embedding added after the first conv,
single-head attention, stride-2 conv down, nearest-upsample + conv up, skips concatenated; the
tensor2tensor timestep embedding with frequencies 10000^(-i/(h-1))). Writes:
  /full_params             attribute: parameter count of the CIFAR-10 configuration
  /small/params/<name>     the state dict of a small configuration (seed 0)
  /small/x, /small/t, /small/y   an input and the network's output (eval mode)
usage: python unet_reference.py OUT.h5
"""
import math
import sys

import h5py
import torch
import torch.nn as nn
import torch.nn.functional as F


def timestep_embedding(t, dim):
    half = dim // 2
    freqs = torch.exp(-math.log(10000) * torch.arange(half, dtype=torch.float32) / (half - 1))
    args = t.float()[:, None] * freqs[None]
    return torch.cat([args.sin(), args.cos()], 1)


class Res(nn.Module):
    def __init__(self, cin, cout, tdim, drop):
        super().__init__()
        self.n1 = nn.GroupNorm(32, cin)
        self.c1 = nn.Conv2d(cin, cout, 3, padding=1)
        self.t = nn.Linear(tdim, cout)
        self.n2 = nn.GroupNorm(32, cout)
        self.d = nn.Dropout(drop)
        self.c2 = nn.Conv2d(cout, cout, 3, padding=1)
        self.skip = nn.Conv2d(cin, cout, 1) if cin != cout else None

    def forward(self, x, te):
        h = self.c1(F.silu(self.n1(x))) + self.t(F.silu(te))[:, :, None, None]
        h = self.c2(self.d(F.silu(self.n2(h))))
        return (x if self.skip is None else self.skip(x)) + h


class Attn(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.n = nn.GroupNorm(32, c)
        self.qkv = nn.Conv2d(c, 3 * c, 1)
        self.o = nn.Conv2d(c, c, 1)

    def forward(self, x):
        b, c, h, w = x.shape
        q, k, v = self.qkv(self.n(x)).reshape(b, 3, c, h * w).unbind(1)  # each [B, C, HW]
        weights = torch.softmax(torch.einsum("bci,bcj->bij", q, k) / math.sqrt(c), dim=-1)
        out = torch.einsum("bij,bcj->bci", weights, v)
        return x + self.o(out.reshape(b, c, h, w))


class UNet(nn.Module):
    def __init__(self, ch=128, mult=(1, 2, 2, 2), nres=2, attn_res=(16,), drop=0.1, res=32, cin=3):
        super().__init__()
        self.ch = ch
        td = 4 * ch
        self.temb = nn.Sequential(nn.Linear(ch, td), nn.SiLU(), nn.Linear(td, td))
        self.cin = nn.Conv2d(cin, ch, 3, padding=1)
        self.down = nn.ModuleList()
        chans, c, r = [ch], ch, res
        for i, m in enumerate(mult):
            for _ in range(nres):
                blk = nn.ModuleList([Res(c, ch * m, td, drop)])
                c = ch * m
                if r in attn_res:
                    blk.append(Attn(c))
                self.down.append(blk)
                chans.append(c)
            if i != len(mult) - 1:
                self.down.append(nn.ModuleList([nn.Conv2d(c, c, 3, stride=2, padding=1)]))
                chans.append(c)
                r //= 2
        self.mid = nn.ModuleList([Res(c, c, td, drop), Attn(c), Res(c, c, td, drop)])
        self.up = nn.ModuleList()
        for i, m in reversed(list(enumerate(mult))):
            for _ in range(nres + 1):
                blk = nn.ModuleList([Res(c + chans.pop(), ch * m, td, drop)])
                c = ch * m
                if r in attn_res:
                    blk.append(Attn(c))
                self.up.append(blk)
            if i != 0:
                self.up.append(nn.ModuleList([nn.Upsample(scale_factor=2, mode="nearest"),
                                              nn.Conv2d(c, c, 3, padding=1)]))
                r *= 2
        self.out = nn.Sequential(nn.GroupNorm(32, c), nn.SiLU(), nn.Conv2d(c, cin, 3, padding=1))

    def forward(self, x, t):
        te = self.temb(timestep_embedding(t, self.ch))
        h = self.cin(x)
        hs = [h]
        for blk in self.down:
            if isinstance(blk[0], Res):
                h = blk[0](h, te)
                for a in blk[1:]:
                    h = a(h)
            else:
                h = blk[0](h)
            hs.append(h)
        h = self.mid[2](self.mid[1](self.mid[0](h, te)), te)
        for blk in self.up:
            if isinstance(blk[0], Res):
                h = blk[0](torch.cat([h, hs.pop()], 1), te)
                for a in blk[1:]:
                    h = a(h)
            else:
                h = blk[1](blk[0](h))
        return self.out(h)


def main(out):
    with torch.device("meta"):
        full = sum(p.numel() for p in UNet().parameters())
    torch.manual_seed(0)
    net = UNet(ch=32, mult=(1, 2), nres=1, attn_res=(8,), drop=0.1, res=16, cin=3).eval()
    # Non-trivial norms and biases (PyTorch initialises GroupNorm to 1/0).
    with torch.no_grad():
        for name, p in net.named_parameters():
            if name.endswith(".weight") and p.dim() == 1:
                p.copy_(1 + 0.1 * torch.randn_like(p))
            elif name.endswith(".bias"):
                p.copy_(0.05 * torch.randn_like(p))
    x = torch.randn(2, 3, 16, 16)
    t = torch.tensor([3.0, 917.0])
    with torch.no_grad():
        y = net(x, t)
    with h5py.File(out, "w") as f:
        f.attrs["full_params"] = full
        for name, p in net.state_dict().items():
            f[f"small/params/{name}"] = p.numpy()
        f["small/x"], f["small/t"], f["small/y"] = x.numpy(), t.numpy(), y.numpy()


if __name__ == "__main__":
    main(sys.argv[1])
