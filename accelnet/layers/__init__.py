"""Keras-named layers; each usable inside a model or by hand (build/forward/backward)."""
from .activation_layers import LeakyReLU, Softmax
from .base import Layer
from .conv import Conv2D, MaxPooling2D
from .conv1d import Conv1D
from .core import Activation, Dense, Dropout, Flatten, Input
from .embedding import Embedding
from .input_layer import InputLayer
from .merge import Add, Concatenate
from .normalization import BatchNormalization
from .pooling import (AveragePooling1D, AveragePooling2D, GlobalAveragePooling1D,
                      GlobalAveragePooling2D, GlobalMaxPooling1D, GlobalMaxPooling2D, MaxPooling1D)
from .preprocessing import Rescaling
from .spatial_dropout import SpatialDropout2D

LAYERS = {cls.__name__: cls for cls in (Input, Dense, Conv2D, MaxPooling2D, Flatten, Dropout,
                                        Activation, BatchNormalization, Add, Concatenate)}
LAYERS.update({cls.__name__: cls for cls in (
    InputLayer, Softmax, LeakyReLU, Rescaling, SpatialDropout2D, Embedding, Conv1D,
    AveragePooling2D, AveragePooling1D, MaxPooling1D, GlobalAveragePooling2D,
    GlobalMaxPooling2D, GlobalAveragePooling1D, GlobalMaxPooling1D)})
MaxPool2D = MaxPooling2D
# Keras's short aliases
MaxPool1D, AvgPool1D, AvgPool2D = MaxPooling1D, AveragePooling1D, AveragePooling2D
GlobalAvgPool1D, GlobalAvgPool2D = GlobalAveragePooling1D, GlobalAveragePooling2D
GlobalMaxPool1D, GlobalMaxPool2D = GlobalMaxPooling1D, GlobalMaxPooling2D

__all__ = ["Activation", "Add", "Concatenate", "BatchNormalization", "Conv2D", "Dense", "Dropout", "Flatten", "Input",
           "Layer", "LAYERS", "MaxPool2D", "MaxPooling2D"]
__all__ += ["AveragePooling1D", "AveragePooling2D", "AvgPool1D", "AvgPool2D", "Conv1D",
            "Embedding", "GlobalAveragePooling1D", "GlobalAveragePooling2D", "GlobalAvgPool1D",
            "GlobalAvgPool2D", "GlobalMaxPool1D", "GlobalMaxPool2D", "GlobalMaxPooling1D",
            "GlobalMaxPooling2D", "InputLayer", "LeakyReLU", "MaxPool1D", "MaxPooling1D",
            "Rescaling", "Softmax", "SpatialDropout2D"]
