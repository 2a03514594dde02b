"""The authors' restoration notebook loop (an image restored from half of its pixels), written plainly, as
the yardstick for `dip fit --task inpaint --drop 0.5` (not a test).

As in the notebook: the mask is drawn with NumPy (each value of the C×H×W image kept when a uniform draw
exceeds the dropped fraction), the network's weights, its input z ~ U(0, 0.1) and the per-iteration
perturbations with torch's global generator; the loss is the MSE of `out * mask` to `img * mask` over
all pixels; Adam, reg noise 0.03; every 50 iterations the notebook's backtracking (PSNR of the masked
output to the masked image more than 5 dB below the last saved value: copy the saved weights back, as
on the GPU the notebook ran on, and let Adam step anyway, as the notebook does). Beside the notebook's
raw-output PSNR it keeps an output EMA (0.99) and reports its PSNR too, the number `dip fit` reports.
`--mask FILE` fits a given mask instead of drawing one (bright = known), so that `dip fit` and this loop
can be compared on the very same mask.

    python tests/reference/notebook_restoration.py GREY.png --seed 0 --iters 1500 --lr 0.01 [--mask M.png]

prints one JSON line: the best and last PSNR of the EMA image and of the raw output, and the backtracks.
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
p.add_argument("--iters", type=int, default=1500)
p.add_argument("--lr", type=float, default=0.01)
p.add_argument("--drop", type=float, default=0.5)
p.add_argument("--reg-noise-std", type=float, default=0.03)
p.add_argument("--mask")
p.add_argument("--threads", type=int, default=1)
args = p.parse_args()
torch.set_num_threads(args.threads)
torch.manual_seed(args.seed)
np.random.seed(args.seed)

img = np.asarray(Image.open(args.image).convert("L"), dtype=np.float32)[None] / 255
if args.mask:
    mask = (np.asarray(Image.open(args.mask).convert("L"), dtype=np.float32)[None] > 127).astype(np.float32)
else:
    mask = (np.random.random_sample(size=img.shape) > args.drop).astype(np.float32)
img_t, mask_t = torch.from_numpy(img)[None], torch.from_numpy(mask)[None]
masked = img * mask
net = skip(32, img.shape[0])
z = torch.rand(1, 32, *img.shape[1:]) * 0.1
noise = z.clone()
opt = torch.optim.Adam(net.parameters(), lr=args.lr)
out_avg, best_ema, best_raw, backtracks = None, -1.0, -1.0, 0
last_net, psnr_masked_last = None, 0.0
for i in range(args.iters):
    opt.zero_grad()
    out = net(z + noise.normal_() * args.reg_noise_std)
    loss = torch.nn.functional.mse_loss(out * mask_t, img_t * mask_t)
    loss.backward()
    o = out.detach()
    out_avg = o if out_avg is None else out_avg * 0.99 + o * 0.01
    psnr_raw = peak_signal_noise_ratio(img, o.numpy()[0], data_range=1)
    psnr_ema = peak_signal_noise_ratio(img, out_avg.numpy()[0], data_range=1)
    best_raw, best_ema = max(best_raw, psnr_raw), max(best_ema, psnr_ema)
    if i % 50 == 0:
        psnr_masked = peak_signal_noise_ratio(masked, o.numpy()[0] * mask, data_range=1)
        if psnr_masked - psnr_masked_last < -5:
            backtracks += 1
            with torch.no_grad():
                for saved, param in zip(last_net, net.parameters()):
                    param.copy_(saved)
        else:
            last_net = [x.detach().clone() for x in net.parameters()]
            psnr_masked_last = psnr_masked
    opt.step()
print(
    json.dumps(
        {
            "seed": args.seed,
            "iters": args.iters,
            "lr": args.lr,
            "mask": args.mask,
            "known": float(mask.mean()),
            "psnr_ema_best": best_ema,
            "psnr_ema_last": psnr_ema,
            "psnr_best": best_raw,
            "psnr_last": psnr_raw,
            "backtracks": backtracks,
        }
    )
)
