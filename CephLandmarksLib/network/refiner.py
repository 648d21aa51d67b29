"""The refiner: a light U-Net shared by all landmarks, told which landmark each crop holds.

Input: crops (N, 1, S, S) (S a multiple of 16) and landmark indices (N,).  Output: logits
(N, S, S) over each crop, one map per crop: the landmark's own channel of a per-landmark head.
The landmark also modulates every block (FiLM: a learned per-landmark scale and shift of the
block's channels), so one set of weights serves all 19.  The network works at half the crop's
resolution and its logits are upsampled bilinearly: the fine map's detail comes from the
crop's 0.125 mm pixels, its cost stays a fraction of the first stage's.
"""

import torch
import torch.nn.functional as F
from torch import nn

CHANNELS = (16, 32, 64, 128)


def _conv_bn_relu(cin, cout, stride=1):
    return nn.Sequential(nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False), nn.BatchNorm2d(cout),
                         nn.ReLU(inplace=True))


class _Block(nn.Module):
    """Two 3 x 3 convolutions, then the landmark's FiLM scale and shift."""

    def __init__(self, cin, cout, n_landmarks, stride=1):
        super().__init__()
        self.convs = nn.Sequential(_conv_bn_relu(cin, cout, stride), _conv_bn_relu(cout, cout))
        self.film = nn.Embedding(n_landmarks, 2 * cout)
        nn.init.zeros_(self.film.weight)

    def forward(self, x, landmark):
        x = self.convs(x)
        g, b = self.film(landmark)[:, :, None, None].chunk(2, dim=1)
        return x * (1 + g) + b


class RefinerNet(nn.Module):
    """(crops (N, 1, S, S), landmark (N,) long) -> logits (N, S, S)."""

    def __init__(self, n_landmarks: int = 19, channels=CHANNELS):
        super().__init__()
        self.n_landmarks = n_landmarks
        c = tuple(channels)
        self.down = nn.ModuleList([_Block(1, c[0], n_landmarks, stride=2)]
                                  + [_Block(a, b, n_landmarks) for a, b in zip(c[:-1], c[1:], strict=True)])
        self.up = nn.ModuleList(_Block(b + a, a, n_landmarks) for a, b in zip(c[-2::-1], c[:0:-1], strict=True))
        self.head = nn.Conv2d(c[0], n_landmarks, 1)

    def forward(self, x, landmark):
        skips = []
        for i, block in enumerate(self.down):
            x = block(F.max_pool2d(x, 2) if i > 0 else x, landmark)
            skips.append(x)
        for block, skip in zip(self.up, skips[-2::-1], strict=True):
            x = block(torch.cat([F.interpolate(x, size=skip.shape[-2:], mode="nearest"), skip], 1), landmark)
        logits = self.head(x).gather(1, landmark.view(-1, 1, 1, 1).expand(-1, 1, *x.shape[-2:]))
        return F.interpolate(logits, scale_factor=2.0, mode="bilinear", align_corners=False)[:, 0]


def n_parameters(net: nn.Module) -> int:
    return sum(p.numel() for p in net.parameters())
