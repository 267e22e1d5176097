"""The two training workloads, defined once for every contender: the MLP 784-512-512-10
(SGD 0.01) and the Keras mnist_cnn (Adam 1e-3), batch 128, float32; their data and FLOPs."""
import dataclasses

import numpy

EPOCH = 60000  # samples in one MNIST epoch: timings are scaled to it
BATCH = 128
MLP_UNITS = (784, 512, 512, 10)


def mlp_macs():
    """Multiply-adds of one MLP forward pass, per sample."""
    return sum(a * b for a, b in zip(MLP_UNITS, MLP_UNITS[1:]))


def cnn_macs():
    """Multiply-adds of one mnist_cnn forward pass, per sample (pooling/dropout ~free)."""
    conv1 = 26 * 26 * 32 * (3 * 3 * 1)
    conv2 = 24 * 24 * 64 * (3 * 3 * 32)
    return conv1 + conv2 + 12 * 12 * 64 * 128 + 128 * 10


@dataclasses.dataclass(frozen=True)
class Workload:
    name: str
    input_shape: tuple
    samples: int  # samples trained per timed run (one epoch, or a fixed number of batches)
    macs: int     # forward multiply-adds per sample

    def train_flops(self, samples):
        """Forward + backward FLOPs: 3 x forward, forward = 2 x MACs."""
        return 3 * 2 * self.macs * samples


def mlp(quick):
    return Workload("mlp", (784,), 8 * BATCH if quick else EPOCH, mlp_macs())


def cnn(quick):
    return Workload("cnn", (28, 28, 1), (1 if quick else 20) * BATCH, cnn_macs())


def data(workload, n, source="synthetic", seed=0):
    """(x float32 (n, *input_shape) in [0, 1), y int32 (n,)): random, or Fashion-MNIST."""
    if source == "fashion":
        from accelnet.datasets import fashion_mnist
        (x, y), _ = fashion_mnist.load_data()
        reps = -(-n // len(x))
        x = numpy.concatenate([x] * reps)[:n].reshape((n,) + workload.input_shape)
        return (x / numpy.float32(255)).astype(numpy.float32), \
            numpy.concatenate([y] * reps)[:n].astype(numpy.int32)
    rng = numpy.random.default_rng(seed)
    return (rng.random((n,) + workload.input_shape, dtype=numpy.float32),
            rng.integers(0, 10, n).astype(numpy.int32))


def accelnet_model(name):
    """The workload's model in accelnet, compiled (the peers mirror these two)."""
    import accelnet as an
    L = an.layers
    if name == "mlp":
        model = an.Sequential([L.Dense(512, activation="relu", input_shape=(784,)),
                               L.Dense(512, activation="relu"),
                               L.Dense(10, activation="softmax")])
        optimizer = an.optimizers.SGD(0.01)
    else:
        model = an.Sequential([L.Conv2D(32, (3, 3), activation="relu", input_shape=(28, 28, 1)),
                               L.Conv2D(64, (3, 3), activation="relu"),
                               L.MaxPooling2D((2, 2)), L.Dropout(0.25), L.Flatten(),
                               L.Dense(128, activation="relu"), L.Dropout(0.5),
                               L.Dense(10, activation="softmax")])
        optimizer = an.optimizers.Adam(1e-3)
    model.compile(optimizer=optimizer, loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    return model


class Unavailable(RuntimeError):
    """A contender cannot run here (library missing, no device); the message says why."""

# A contender ("trainer") is built as Trainer(workload, x, y, device, threads) from host
# arrays x (N, *input_shape) float32 and y (N,) int32, and offers: `name`, `device`
# ('cpu'/'gpu'), `sync()` (device wait, or None), `device_bytes` (callable or None), and
# `train(n, batch_size=BATCH)`: one shuffled pass over the first n samples.
