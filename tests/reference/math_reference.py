"""Reference values for the math core (tests/unit/parameterization_test.cpp, gmm_oracle_test.cpp),
computed with PyTorch in float64 from the formulas of the handbook as restored in FORMULAS.md,
written out independently of the C++ code (no shared helpers, schedule by schedule).

usage: python math_reference.py OUT.h5
"""
import math
import sys

import h5py
import torch
from torch.distributions import Normal

torch.set_default_dtype(torch.float64)
g = torch.Generator().manual_seed(2024)
B, D = 6, 3
SIGMA_D = 0.5


def ddpm_linear_abar(T=1000):
    return torch.cumprod(1 - torch.linspace(1e-4, 0.02, T), 0)


def schedules():
    """name -> (t [B], alpha, sigma, d_alpha, d_sigma); d_* are None where only the discrete
    schedule is defined (DDPM at integer steps)."""
    abar = ddpm_linear_abar()
    t_ddpm = torch.tensor([0.0, 10, 250, 500, 750, 999])
    a = abar[t_ddpm.long()].sqrt()
    out = {"ddpm-linear": (t_ddpm, a, (1 - a ** 2).sqrt(), None, None)}
    t = torch.tensor([0.002, 0.1, 0.5, 2.0, 10.0, 80.0])
    out["ve"] = (t, torch.ones(B), t.clone(), torch.zeros(B), torch.ones(B))
    t = torch.tensor([0.01, 0.1, 0.3, 0.5, 0.8, 0.99])
    out["rf"] = (t, 1 - t, t.clone(), -torch.ones(B), torch.ones(B))
    t = torch.tensor([0.01, 0.2, 0.5, 0.9, 1.2, 1.5])
    out["trigflow"] = (t, torch.cos(t), SIGMA_D * torch.sin(t), -torch.sin(t), SIGMA_D * torch.cos(t))
    return out


def predictions(name, t, a, s, da, ds, x0, eps):
    a_, s_ = a[:, None], s[:, None]
    x = a_ * x0 + s_ * eps
    p = {"x_t": x, "eps": eps, "x0": x0, "score": -eps / s_,
         "rf-velocity": eps - x0, "instaflow": x0 - eps}
    if da is not None:
        p["velocity"] = da[:, None] * x0 + ds[:, None] * eps
    if name.startswith("ddpm"):
        p["v"] = a_ * eps - s_ * x0  # Salimans & Ho, d x_phi / d phi
    if name == "trigflow":
        z = SIGMA_D * eps
        p["trigflow-F"] = (torch.cos(t)[:, None] * z - torch.sin(t)[:, None] * x0) / SIGMA_D
    return p


def gmm_posterior_mean(w, m, sd, x, a, s):
    """E[x0 | x_t] by Bayes over components, with torch.distributions."""
    # p(x_t | k) = N(a m_k, a^2 sd_k^2 + s^2), diagonal.
    var = a[:, None, None] ** 2 * sd[None] ** 2 + s[:, None, None] ** 2
    logp = Normal(a[:, None, None] * m[None], var.sqrt()).log_prob(x[:, None, :]).sum(-1)
    r = torch.softmax(torch.log(w)[None] + logp, dim=1)
    cond = m[None] + (a[:, None, None] * sd[None] ** 2 / var) * (x[:, None, :] - a[:, None, None] * m[None])
    return (r[:, :, None] * cond).sum(1)


def main(out):
    with h5py.File(out, "w") as f:
        for name, (t, a, s, da, ds) in schedules().items():
            x0 = torch.randn(B, D, generator=g)
            eps = torch.randn(B, D, generator=g)
            grp = f.create_group(name)
            grp["t"], grp["alpha"], grp["sigma"] = t.numpy(), a.numpy(), s.numpy()
            if da is not None:
                grp["d_alpha"], grp["d_sigma"] = da.numpy(), ds.numpy()
            for k, v in predictions(name, t, a, s, da, ds, x0, eps).items():
                grp[k] = v.numpy()
        # EDM / CM boundary (sigma_d = 0.5, eps_min = 0.002) and LCM's (timestep scaling 10).
        t = torch.tensor([0.002, 0.01, 0.5, 1.0, 20.0, 80.0])
        e = f.create_group("edm")
        e["t"] = t.numpy()
        e["c_skip"] = (SIGMA_D ** 2 / ((t - 0.002) ** 2 + SIGMA_D ** 2)).numpy()
        e["c_out"] = (SIGMA_D * (t - 0.002) / (SIGMA_D ** 2 + t ** 2).sqrt()).numpy()
        e["c_in"] = (1 / (t ** 2 + SIGMA_D ** 2).sqrt()).numpy()
        e["c_noise"] = (torch.log(t) / 4).numpy()
        t = torch.tensor([0.0, 1.0, 19.0, 259.0, 499.0, 999.0])
        l = f.create_group("lcm")
        l["t"] = t.numpy()
        l["c_skip"] = (SIGMA_D ** 2 / ((t / 0.1) ** 2 + SIGMA_D ** 2)).numpy()
        l["c_out"] = ((t / 0.1) / ((t / 0.1) ** 2 + SIGMA_D ** 2).sqrt()).numpy()
        # Gaussian step log-density (DDPO) against Normal.log_prob.
        mean = torch.randn(B, 2, 4, generator=g)
        xs = mean + 0.3 * torch.randn(B, 2, 4, generator=g)
        lp = f.create_group("logprob")
        lp["mean"], lp["x"] = mean.numpy(), xs.numpy()
        lp["std"] = 0.3
        lp["log_prob"] = Normal(mean, 0.3).log_prob(xs).sum(dim=(1, 2)).numpy()
        # Mixture posterior mean at a few (alpha, sigma), 3 components in 2-D.
        w = torch.tensor([0.2, 0.5, 0.3])
        m = torch.tensor([[-2.0, 0.0], [1.0, 1.0], [0.5, -1.5]])
        sd = torch.tensor([[0.3, 0.5], [0.4, 0.4], [0.6, 0.2]])
        x = 1.5 * torch.randn(B, 2, generator=g)
        a = torch.tensor([1.0, 0.99, 0.8, 0.5, 0.1, 0.01])
        s = torch.tensor([0.0, 0.1, 0.6, 0.87, 1.0, 1.0])
        gm = f.create_group("gmm")
        gm["weights"], gm["means"], gm["stds"] = w.numpy(), m.numpy(), sd.numpy()
        gm["x"], gm["alpha"], gm["sigma"] = x.numpy(), a.numpy(), s.numpy()
        gm["posterior_mean"] = gmm_posterior_mean(w, m, sd, x, a, s).numpy()


if __name__ == "__main__":
    main(sys.argv[1])
