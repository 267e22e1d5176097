"""Keras's utilities around training: backend/config settings, clear_session, seeding, pad_sequences."""
import random

import numpy as np
import pytest

import accelnet as an
from accelnet import backend, config, utils
from accelnet.errors import InvalidArgumentError, ShapeError


def test_from_accelnet_import_backend_gives_keras_settings():
    assert backend.image_data_format() == "channels_last"
    assert config.image_data_format() == "channels_last"
    assert backend.floatx() == config.floatx() == "float32"
    assert backend.epsilon() == config.epsilon() == 1e-7


def test_set_image_data_format_accepts_channels_last_and_refuses_channels_first():
    config.set_image_data_format("channels_last")
    with pytest.raises(InvalidArgumentError, match="channels_last.*transpose"):
        backend.set_image_data_format("channels_first")
    with pytest.raises(InvalidArgumentError, match="Unknown image_data_format"):
        config.set_image_data_format("nchw")
    assert backend.image_data_format() == "channels_last"


def test_clear_session_restarts_layer_names():
    an.layers.Dense(2)
    an.layers.Dense(2)
    backend.clear_session()
    assert an.layers.Dense(2).name == "dense"
    assert an.layers.Dense(2).name == "dense_1"


def test_set_random_seed_seeds_python_numpy_and_accelnet():
    def draws():
        return (random.random(), np.random.rand(), an.random.host_rng().random(),
                float(an.get_backend().rng.random()))
    utils.set_random_seed(123)
    first = draws()
    utils.set_random_seed(123)
    assert draws() == first
    utils.set_random_seed(124)
    assert draws() != first
    with pytest.raises(InvalidArgumentError, match="integer"):
        utils.set_random_seed(1.5)


def test_pad_sequences_keras_defaults_pad_and_truncate_at_the_start():
    out = utils.pad_sequences([[1, 2, 3], [4], [5, 6, 7, 8], []])
    assert out.dtype == np.int32
    np.testing.assert_array_equal(out, [[0, 1, 2, 3], [0, 0, 0, 4], [5, 6, 7, 8], [0, 0, 0, 0]])
    np.testing.assert_array_equal(utils.pad_sequences([[1, 2, 3], [4]], maxlen=2), [[2, 3], [0, 4]])


def test_pad_sequences_post_value_and_dtype():
    out = utils.pad_sequences([[1, 2, 3], [4]], maxlen=2, padding="post", truncating="post",
                              value=-1.5, dtype="float32")
    assert out.dtype == np.float32
    np.testing.assert_array_equal(out, [[1, 2], [4, -1.5]])
    words = utils.pad_sequences([["a", "b"], ["c"]], dtype=object, value="<pad>")
    assert words.tolist() == [["a", "b"], ["<pad>", "c"]]


def test_pad_sequences_keeps_the_feature_shape():
    out = utils.pad_sequences([np.ones((2, 3)), np.zeros((1, 3))], maxlen=3, dtype="float32")
    assert out.shape == (2, 3, 3)
    np.testing.assert_array_equal(out[1, :2], 0)
    np.testing.assert_array_equal(out[0, 1:], 1)


def test_pad_sequences_refuses_bad_arguments():
    with pytest.raises(InvalidArgumentError, match="padding"):
        utils.pad_sequences([[1]], padding="middle")
    with pytest.raises(InvalidArgumentError, match="truncating"):
        utils.pad_sequences([[1]], truncating="both")
    with pytest.raises(InvalidArgumentError, match="sequence 1"):
        utils.pad_sequences([[1], 5])
    with pytest.raises(InvalidArgumentError, match="string"):
        utils.pad_sequences([[1]], value="x")
    with pytest.raises(InvalidArgumentError, match="maxlen"):
        utils.pad_sequences([[1]], maxlen=-1)
    with pytest.raises(ShapeError, match="sequence 1"):
        utils.pad_sequences([np.ones((2, 3)), np.ones((2, 4))])
