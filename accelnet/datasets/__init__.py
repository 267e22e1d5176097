"""Data sets (MNIST, Fashion-MNIST) and readers for IDX, .npz, CSV and image folders."""
from . import fashion_mnist, mnist, readers
from .readers import read_csv, read_idx, read_image_folder, read_npz

__all__ = ["fashion_mnist", "mnist", "read_csv", "read_idx", "read_image_folder",
           "read_npz", "readers"]
