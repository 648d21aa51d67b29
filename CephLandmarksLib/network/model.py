"""The network: a U-Net with a torchvision ResNet-34 encoder, one logit map per landmark.

Same shape as the paper's (segmentation_models_pytorch Unet, resnet34, decoder 256-128-64-32-32),
written out so that the only dependency is torchvision.
"""

import torch
import torch.nn.functional as F
from torch import nn
from torchvision.models import resnet34

DECODER_CHANNELS = (256, 128, 64, 32, 32)


def _conv_bn_relu(cin, cout):
    return nn.Sequential(nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True))


class _DecoderBlock(nn.Module):
    def __init__(self, cin, cskip, cout):
        super().__init__()
        self.conv1 = _conv_bn_relu(cin + cskip, cout)
        self.conv2 = _conv_bn_relu(cout, cout)

    def forward(self, x, skip=None):
        x = F.interpolate(x, scale_factor=2.0, mode="nearest")
        if skip is not None:
            x = torch.cat([x, skip], dim=1)
        return self.conv2(self.conv1(x))


class LandmarkUNet(nn.Module):
    """Input (N, 1, H, W) with H, W multiples of 32; output logits (N, n_landmarks, H, W)."""

    def __init__(self, n_landmarks: int = 19, decoder_channels=DECODER_CHANNELS, imagenet_weights=None):
        super().__init__()
        encoder = resnet34(weights=imagenet_weights)
        # One grey input channel: sum conv1's RGB weights, so ImageNet weights stay meaningful.
        conv1 = nn.Conv2d(1, 64, kernel_size=7, stride=2, padding=3, bias=False)
        with torch.no_grad():
            conv1.weight.copy_(encoder.conv1.weight.sum(dim=1, keepdim=True))
        self.stem = nn.Sequential(conv1, encoder.bn1, encoder.relu)  # 1/2, 64 ch
        self.pool = encoder.maxpool
        self.layer1, self.layer2 = encoder.layer1, encoder.layer2  # 1/4 64, 1/8 128
        self.layer3, self.layer4 = encoder.layer3, encoder.layer4  # 1/16 256, 1/32 512
        skips = (256, 128, 64, 64, 0)
        cins = (512,) + tuple(decoder_channels[:-1])
        self.decoder = nn.ModuleList(
            _DecoderBlock(cin, cs, cout) for cin, cs, cout in zip(cins, skips, decoder_channels, strict=True)
        )
        self.head = nn.Conv2d(decoder_channels[-1], n_landmarks, kernel_size=3, padding=1)

    def encode(self, x) -> tuple:
        """The encoder's outputs at 1/2, 1/4, 1/8, 1/16 and 1/32 of the input (the decoder's skips)."""
        x0 = self.stem(x)
        x1 = self.layer1(self.pool(x0))
        x2 = self.layer2(x1)
        x3 = self.layer3(x2)
        return x0, x1, x2, x3, self.layer4(x3)

    def decode(self, skips) -> torch.Tensor:
        """Decoder output (N, 32, H, W) from the encoder's outputs."""
        x0, x1, x2, x3, x = skips
        for block, skip in zip(self.decoder, (x3, x2, x1, x0, None), strict=True):
            x = block(x, skip)
        return x

    def features(self, x):
        """Decoder output (N, 32, H, W), before the per-landmark head."""
        return self.decode(self.encode(x))

    def forward(self, x):
        return self.head(self.features(x))


def build_model(n_landmarks: int = 19, imagenet: bool = False) -> LandmarkUNet:
    """imagenet=True loads torchvision's ImageNet ResNet-34 weights (needs internet or torch's cache)."""
    weights = None
    if imagenet:
        from torchvision.models import ResNet34_Weights

        weights = ResNet34_Weights.IMAGENET1K_V1
    return LandmarkUNet(n_landmarks, imagenet_weights=weights)


def pick_device(name: str = "auto") -> torch.device:
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    return torch.device(name)


@torch.no_grad()
def run_network(net: nn.Module, inputs: torch.Tensor, device="cpu", batch_size: int = 4) -> torch.Tensor:
    """Logits (N, L, H, W) on the CPU for inputs (N, 1, H, W), in eval mode (frozen BatchNorm)."""
    was_training = net.training
    net.eval()
    try:
        out = [net(inputs[i : i + batch_size].float().to(device)).float().cpu()
               for i in range(0, len(inputs), batch_size)]
    finally:
        net.train(was_training)
    return torch.cat(out)
