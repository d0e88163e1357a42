"""numgen: handwritten digits and numbers from variational autoencoders trained on MNIST."""

__version__ = "0.1.0"

# Imported after __version__, which numgen.hub reads.
from numgen.compose import Writer  # noqa: E402
from numgen.hub import load  # noqa: E402

__all__ = ["Writer", "__version__", "load"]
