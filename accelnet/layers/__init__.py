"""Keras-named layers; each usable inside a model or by hand (build/forward/backward)."""
from .base import Layer
from .conv import Conv2D, MaxPooling2D
from .core import Activation, Dense, Dropout, Flatten, Input
from .merge import Add, Concatenate
from .normalization import BatchNormalization

LAYERS = {cls.__name__: cls for cls in (Input, Dense, Conv2D, MaxPooling2D, Flatten, Dropout,
                                        Activation, BatchNormalization, Add, Concatenate)}
MaxPool2D = MaxPooling2D

__all__ = ["Activation", "Add", "Concatenate", "BatchNormalization", "Conv2D", "Dense", "Dropout", "Flatten", "Input",
           "Layer", "LAYERS", "MaxPool2D", "MaxPooling2D"]
