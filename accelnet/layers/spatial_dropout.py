"""SpatialDropout2D: Dropout of whole feature maps (one draw per sample and channel)."""
from ..errors import InvalidArgumentError, ShapeError
from .core import Dropout


class SpatialDropout2D(Dropout):
    """In training, zero each channel of each sample with probability `rate` (Keras's noise
    shape (N, 1, 1, C) for channels-last input) and scale the rest by 1/(1−rate); identity
    in evaluate/predict. Neighbouring pixels are correlated, so dropping single pixels would
    barely regularize a convolutional feature map."""

    def __init__(self, rate, data_format=None, seed=None, name=None, input_shape=None):
        super().__init__(rate, seed=seed, name=name, input_shape=input_shape)
        if data_format not in (None, "channels_last"):
            raise InvalidArgumentError(
                f"Layer SpatialDropout2D {self.name!r}: only data_format='channels_last' is "
                f"supported, got {data_format!r}.")

    def build(self, input_shape):
        if len(input_shape) != 3:
            raise ShapeError(
                f"Layer SpatialDropout2D {self.name!r} expects input of shape (batch, height, "
                f"width, channels), but received input with shape {(None,) + tuple(input_shape)}.")
        super().build(input_shape)

    def noise_shape(self, x):
        return (x.shape[0], 1, 1, x.shape[3])

    def get_config(self):
        config = super().get_config()
        config["data_format"] = "channels_last"
        return config
