"""keras.config's settings as accelnet has them: images channels-last, float32, epsilon 1e-7."""
from .backend import epsilon, floatx, image_data_format, set_image_data_format

__all__ = ["epsilon", "floatx", "image_data_format", "set_image_data_format"]
