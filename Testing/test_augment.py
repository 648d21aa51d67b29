import numpy as np
import torch

from CephLandmarksLib.training.augment import AugmentSettings, augment_batch


def test_landmarks_follow_the_image():
    """A bright dot at each landmark must end up at the transformed landmark."""
    n, h, w = 6, 96, 80
    rng = np.random.default_rng(0)
    uv = torch.as_tensor(rng.uniform(20, 60, (n, 1, 2)), dtype=torch.float32)
    img = torch.zeros(n, 1, h, w)
    yy, xx = torch.meshgrid(torch.arange(h).float(), torch.arange(w).float(), indexing="ij")
    for i in range(n):
        img[i, 0] = torch.exp(-((xx - uv[i, 0, 0]) ** 2 + (yy - uv[i, 0, 1]) ** 2) / (2 * 2.0**2))
    cfg = AugmentSettings(rotation_deg=15, scale=(0.8, 1.2), translation=0.1, elastic_px=2.0, elastic_p=1.0,
                          gamma=(1, 1), contrast=(1, 1), brightness=0, noise_std=0)
    out, uv_out = augment_batch(img, uv, torch.Generator().manual_seed(1), cfg)
    for i in range(n):
        m = out[i, 0]
        centroid = torch.stack([(m * xx).sum() / m.sum(), (m * yy).sum() / m.sum()])
        assert torch.dist(centroid, uv_out[i, 0]) < 0.6, i
    assert not torch.allclose(uv_out, uv)  # something moved


def test_same_seed_same_result():
    img, uv = torch.rand(2, 1, 64, 64), torch.rand(2, 19, 2) * 60
    a = augment_batch(img, uv, torch.Generator().manual_seed(5))
    b = augment_batch(img, uv, torch.Generator().manual_seed(5))
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
