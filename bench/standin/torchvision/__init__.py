"""A stand-in for the few pieces of torchvision that pytorch/examples' ``vae/main.py`` imports, so
that script runs unchanged on a machine without torchvision (and without internet):
``datasets.MNIST`` over the IDX files in ``$NUMGEN_DATA_DIR``, ``transforms.ToTensor`` and
``utils.save_image``. Each does what torchvision's does, step for step (a PIL image per digit, then
its pixels as a float tensor in [0, 1]), so the script pays the same per-digit costs as with the
real library. bench/time_to_quality.py puts this folder first on the reference's ``PYTHONPATH``.
"""

from torchvision import datasets, transforms, utils

__all__ = ["datasets", "transforms", "utils"]
