"""The training workloads, defined once for every contender: the MLP 784-512-512-10
(SGD 0.01), the Keras mnist_cnn (Adam 1e-3), seed 004's ConvNet (5x5 'same' convolutions,
'same' pooling; Adam) and a CIFAR-shaped ConvNet (3x32x32, 3x3 'same' convolutions,
BatchNorm; Adam); batch 128, float32; their data and FLOPs."""
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


def seed004_macs():
    """seed 004's ConvNet: conv 5x5 1->32 at 28x28, pool, conv 5x5 32->64 at 14x14, pool,
    dense 7*7*64 -> 10."""
    return 28 * 28 * 32 * 25 + 14 * 14 * 64 * 25 * 32 + 7 * 7 * 64 * 10


CIFAR_FILTERS = (32, 32, 64, 64)


def cifar_macs():
    """The CIFAR-shaped ConvNet: two 3x3 'same' convs at 32x32, pool, two at 16x16, pool,
    dense 8*8*64 -> 128 -> 10."""
    c1, c2, c3, c4 = CIFAR_FILTERS
    return (32 * 32 * 9 * (3 * c1 + c1 * c2) + 16 * 16 * 9 * (c2 * c3 + c3 * c4)
            + 8 * 8 * c4 * 128 + 128 * 10)


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


def seed004_cnn(quick):
    return Workload("seed004_cnn", (28, 28, 1), (1 if quick else 20) * BATCH, seed004_macs())


def cifar_cnn(quick):
    return Workload("cifar_cnn", (32, 32, 3), (1 if quick else 20) * BATCH, cifar_macs())


CNN_WORKLOADS = ("cnn", "seed004_cnn", "cifar_cnn")


def data(workload, n, source="synthetic", seed=0):
    """(x float32 (n, *input_shape) in [0, 1), y int32 (n,)): random, or Fashion-MNIST
    (MNIST-shaped workloads only; the CIFAR-shaped one always gets random data)."""
    if source == "fashion" and workload.input_shape in ((784,), (28, 28, 1)):  # else random
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
    """The workload's model in accelnet, compiled (the peers mirror these)."""
    import accelnet as an
    L = an.layers
    if name == "seed004_cnn":
        model = an.Sequential([
            L.Conv2D(32, (5, 5), padding="same", activation="relu", input_shape=(28, 28, 1)),
            L.MaxPooling2D((2, 2), padding="same"),
            L.Conv2D(64, (5, 5), padding="same", activation="relu"),
            L.MaxPooling2D((2, 2), padding="same"), L.Flatten(),
            L.Dense(10, activation="softmax")])
        model.compile(optimizer=an.optimizers.Adam(1e-3), loss="sparse_categorical_crossentropy",
                      metrics=["accuracy"])
        return model
    if name == "cifar_cnn":
        c1, c2, c3, c4 = CIFAR_FILTERS
        model = an.Sequential([
            L.Conv2D(c1, 3, padding="same", activation="relu", input_shape=(32, 32, 3)),
            L.BatchNormalization(), L.Conv2D(c2, 3, padding="same", activation="relu"),
            L.BatchNormalization(), L.MaxPooling2D(2),
            L.Conv2D(c3, 3, padding="same", activation="relu"), L.BatchNormalization(),
            L.Conv2D(c4, 3, padding="same", activation="relu"), L.BatchNormalization(),
            L.MaxPooling2D(2), L.Flatten(), L.Dense(128, activation="relu"),
            L.Dense(10, activation="softmax")])
        model.compile(optimizer=an.optimizers.Adam(1e-3), loss="sparse_categorical_crossentropy",
                      metrics=["accuracy"])
        return model
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
