"""Reference values for the DDPM schedule and sampler tests, computed independently with PyTorch in
float64 following the published definitions (Ho et al. 2020; Nichol & Dhariwal 2021; the diffusers
DDPMScheduler/DDIMScheduler formulas). Writes one HDF5 file that tests/unit/schedule_test.cpp reads.

usage: python ddpm_reference.py OUT.h5
"""
import math
import sys

import h5py
import torch

torch.set_default_dtype(torch.float64)
T = 1000


def betas_linear(b0=1e-4, b1=0.02):
    return torch.linspace(b0, b1, T)


def betas_scaled_linear(b0=0.00085, b1=0.012):
    return torch.linspace(b0 ** 0.5, b1 ** 0.5, T) ** 2


def betas_cosine(s=0.008):
    # Nichol & Dhariwal (2021), eq. 17 and the clipping of beta at 0.999; written as a loop over
    # t like their reference code, not vectorised like ours.
    f = lambda t: math.cos((t / T + s) / (1 + s) * math.pi / 2) ** 2
    return torch.tensor([min(1 - f(i + 1) / f(i), 0.999) for i in range(T)])


def main(out):
    g = torch.Generator().manual_seed(1234)
    with h5py.File(out, "w") as f:
        for name, betas in [("linear", betas_linear()), ("cosine", betas_cosine()),
                            ("scaled-linear", betas_scaled_linear())]:
            abar = torch.cumprod(1 - betas, 0)
            f[f"{name}/betas"] = betas.numpy()
            f[f"{name}/alpha_bars"] = abar.numpy()
        # One posterior step (FORMULAS (8)) and one DDIM step ((14), eta = 0.7) on random inputs, on
        # the linear schedule between code indices t = 500 and prev = 450 (a subsequence step).
        betas = betas_linear()
        abar = torch.cumprod(1 - betas, 0)
        x_t = torch.randn(5, 3, generator=g)
        eps = torch.randn(5, 3, generator=g)
        z = torch.randn(5, 3, generator=g)
        t, prev = 500, 450
        a_t, a_p = abar[t], abar[prev]
        x0 = (x_t - (1 - a_t).sqrt() * eps) / a_t.sqrt()
        beta = 1 - a_t / a_p
        mu = a_p.sqrt() * beta / (1 - a_t) * x0 + (1 - beta).sqrt() * (1 - a_p) / (1 - a_t) * x_t
        var = (1 - a_p) / (1 - a_t) * beta
        eta = 0.7
        sigma = eta * ((1 - a_p) / (1 - a_t)).sqrt() * (1 - a_t / a_p).sqrt()
        ddim = a_p.sqrt() * x0 + (1 - a_p - sigma ** 2).sqrt() * eps + sigma * z
        for k, v in dict(x_t=x_t, eps=eps, z=z, x0=x0, ddpm_next=mu + var.sqrt() * z,
                         ddim_next=ddim).items():
            f[f"step/{k}"] = v.numpy()
        f["step"].attrs["t"] = t
        f["step"].attrs["prev"] = prev
        f["step"].attrs["eta"] = eta


if __name__ == "__main__":
    main(sys.argv[1])
