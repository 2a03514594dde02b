"""The authors' denoising notebook loop, written plainly, as the yardstick for `dip fit` (not a test).

As in the notebook: the observation noise is drawn with NumPy, the network's weights, its input z and
the per-iteration perturbations with torch's global generator, so noise and z are unrelated; Adam at
lr 0.01, reg noise 1/30, output EMA 0.99, PSNR of the EMA image against the ground truth every
iteration. The network is `dip.networks.skip` with the notebook's settings (the same layers and
parameter count as the original's). No backtracking: on a CPU the notebook's never restores anything.

    python tests/reference/notebook_denoising.py IMAGE.png --seed 0 --iters 1000 [--threads 1]

prints one JSON line: the best and last PSNR of the EMA image and of the raw output.
"""

import argparse
import json

import numpy as np
import torch
from PIL import Image
from skimage.metrics import peak_signal_noise_ratio

from dip.networks import skip

p = argparse.ArgumentParser()
p.add_argument("image")
p.add_argument("--seed", type=int, default=0)
p.add_argument("--iters", type=int, default=1000)
p.add_argument("--sigma", type=float, default=25)
p.add_argument("--threads", type=int, default=1)
args = p.parse_args()
torch.set_num_threads(args.threads)
torch.manual_seed(args.seed)
np.random.seed(args.seed)

img = np.asarray(Image.open(args.image).convert("RGB"), dtype=np.float32).transpose(2, 0, 1) / 255
noisy = np.clip(img + np.random.normal(scale=args.sigma / 255, size=img.shape), 0, 1).astype(np.float32)
noisy_t = torch.from_numpy(noisy)[None]
net = skip(32, 3)
z = torch.rand(1, 32, *img.shape[1:]) * 0.1
noise = z.clone()
opt = torch.optim.Adam(net.parameters(), lr=0.01)
out_avg, best_ema, best_raw = None, -1.0, -1.0
for _ in range(args.iters):
    opt.zero_grad()
    out = net(z + noise.normal_() * (1 / 30))
    out_avg = out.detach() if out_avg is None else out_avg * 0.99 + out.detach() * 0.01
    loss = torch.nn.functional.mse_loss(out, noisy_t)
    loss.backward()
    psnr_raw = peak_signal_noise_ratio(img, out.detach().numpy()[0], data_range=1)
    psnr_ema = peak_signal_noise_ratio(img, out_avg.numpy()[0], data_range=1)
    best_raw, best_ema = max(best_raw, psnr_raw), max(best_ema, psnr_ema)
    opt.step()
print(
    json.dumps(
        {
            "seed": args.seed,
            "iters": args.iters,
            "psnr_ema_best": best_ema,
            "psnr_ema_last": psnr_ema,
            "psnr_best": best_raw,
            "psnr_last": psnr_raw,
            "psnr_noisy": peak_signal_noise_ratio(img, noisy, data_range=1),
        }
    )
)
