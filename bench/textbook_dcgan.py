"""The quality reference: a textbook DCGAN on 28x28 images, as pytorch/examples dcgan/main.py
trains it, scaled to Fashion-MNIST.

G: ConvT 100 -> 256 (7x7) -> 128 (14x14) -> 1 (28x28), BatchNorm + ReLU, Tanh.
D: Conv 1 -> 64 (14x14) -> 128 (7x7) with BatchNorm + LeakyReLU, a 7x7 conv to one sigmoid.
Adam 2e-4, beta1 0.5, batch 128, BCELoss, a shuffling DataLoader with 2 workers decoding each
image through PIL transforms, N(0, 0.02) init. Samples are drawn in eval mode (BatchNorm running
statistics), as a user of the example would draw them. Nothing here comes from gan's loop.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn as nn
from PIL import Image


class TextbookG(nn.Module):
    def __init__(self, latent_dim: int = 100):
        super().__init__()
        self.latent_dim, self.num_classes = latent_dim, 0
        self.main = nn.Sequential(
            nn.ConvTranspose2d(latent_dim, 256, 7, 1, 0, bias=False),
            nn.BatchNorm2d(256),
            nn.ReLU(True),  # (B, 256, 7, 7)
            nn.ConvTranspose2d(256, 128, 4, 2, 1, bias=False),
            nn.BatchNorm2d(128),
            nn.ReLU(True),  # (B, 128, 14, 14)
            nn.ConvTranspose2d(128, 1, 4, 2, 1, bias=False),
            nn.Tanh(),  # (B, 1, 28, 28)
        )

    def forward(self, z: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        return self.main(z.view(-1, self.latent_dim, 1, 1))


class TextbookD(nn.Module):
    def __init__(self):
        super().__init__()
        self.main = nn.Sequential(
            nn.Conv2d(1, 64, 4, 2, 1, bias=False),
            nn.LeakyReLU(0.2, inplace=True),  # (B, 64, 14, 14)
            nn.Conv2d(64, 128, 4, 2, 1, bias=False),
            nn.BatchNorm2d(128),
            nn.LeakyReLU(0.2, inplace=True),  # (B, 128, 7, 7)
            nn.Conv2d(128, 1, 7, 1, 0, bias=False),
            nn.Sigmoid(),  # (B, 1, 1, 1)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.main(x).view(-1)


def weights_init(m: nn.Module) -> None:
    """The example's init: N(0, 0.02) convs, N(1, 0.02) BatchNorm scales."""
    name = type(m).__name__
    if "Conv" in name:
        nn.init.normal_(m.weight, 0.0, 0.02)
    elif "BatchNorm" in name:
        nn.init.normal_(m.weight, 1.0, 0.02)
        nn.init.zeros_(m.bias)


class ImageDataset(torch.utils.data.Dataset):
    """uint8 grayscale images (N, 28, 28) decoded per item through PIL, like torchvision's MNIST."""

    def __init__(self, images: np.ndarray):
        import torchvision.transforms as T

        self.images = images
        self.tf = T.Compose([T.ToTensor(), T.Normalize((0.5,), (0.5,))])

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int):
        return self.tf(Image.fromarray(self.images[i])), 0


class Textbook:
    """The example's models, optimizers and loop; state_dict()/load_state_dict() for resume."""

    batch_size, lr, beta1 = 128, 2e-4, 0.5

    def __init__(self, images: np.ndarray, seed: int = 0, workers: int = 2, device: str = "cpu"):
        torch.manual_seed(seed)
        self.device = torch.device(device)
        self.G, self.D = TextbookG().to(self.device), TextbookD().to(self.device)
        self.G.apply(weights_init)
        self.D.apply(weights_init)
        self.opt_g = torch.optim.Adam(self.G.parameters(), lr=self.lr, betas=(self.beta1, 0.999))
        self.opt_d = torch.optim.Adam(self.D.parameters(), lr=self.lr, betas=(self.beta1, 0.999))
        self.loader = torch.utils.data.DataLoader(
            ImageDataset(images), batch_size=self.batch_size, shuffle=True, num_workers=workers
        )
        self.criterion = nn.BCELoss()
        self.epoch = 0

    def train_epoch(self) -> dict:
        """One epoch of the example's loop; returns the mean losses."""
        G, D, opt_g, opt_d = self.G, self.D, self.opt_g, self.opt_d
        G.train()
        sums, n = np.zeros(2), 0
        dev = self.device
        for real, _ in self.loader:
            real, b = real.to(dev), real.size(0)
            # (1) update D: maximize log(D(x)) + log(1 - D(G(z)))
            D.zero_grad()
            err_real = self.criterion(D(real), torch.ones(b, device=dev))
            err_real.backward()
            fake = G(torch.randn(b, G.latent_dim, device=dev))
            err_fake = self.criterion(D(fake.detach()), torch.zeros(b, device=dev))
            err_fake.backward()
            opt_d.step()
            # (2) update G: maximize log(D(G(z)))
            G.zero_grad()
            err_g = self.criterion(D(fake), torch.ones(b, device=dev))
            err_g.backward()
            opt_g.step()
            sums += ((err_real + err_fake).item(), err_g.item())
            n += 1
        self.epoch += 1
        return {"d_loss": sums[0] / n, "g_loss": sums[1] / n}

    def state_dict(self) -> dict:
        cuda = self.device.type == "cuda"
        return {
            "G": self.G.state_dict(),
            "D": self.D.state_dict(),
            "opt_g": self.opt_g.state_dict(),
            "opt_d": self.opt_d.state_dict(),
            "epoch": self.epoch,
            "rng": torch.get_rng_state(),
            "cuda_rng": torch.cuda.get_rng_state(self.device) if cuda else None,
        }

    def load_state_dict(self, state: dict) -> None:
        for key in ("G", "D", "opt_g", "opt_d"):
            getattr(self, key).load_state_dict(state[key])
        self.epoch = state["epoch"]
        torch.set_rng_state(state["rng"])
        if state.get("cuda_rng") is not None:
            torch.cuda.set_rng_state(state["cuda_rng"], self.device)
