"""numgen: handwritten digits and numbers from variational autoencoders trained on MNIST."""

__version__ = "0.1.0"
