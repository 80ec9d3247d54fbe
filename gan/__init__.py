"""gan: train, tune, evaluate and use GANs on image datasets."""

__version__ = "0.1.0"
