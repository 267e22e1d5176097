"""Plain-NumPy peer: the MLP and mnist_cnn written from scratch in the seeds' style
(NNFS-like layer classes with forward/backward, float32), im2col through NumPy's
stride tricks, no custom kernels. It shows what accelnet adds over the obvious code."""
import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from .workloads import BATCH, Unavailable

F32 = np.float32


class Dense:
    def __init__(self, n_in, n_out, rng):
        limit = np.sqrt(6 / (n_in + n_out))
        self.params = {"W": rng.uniform(-limit, limit, (n_in, n_out)).astype(F32),
                       "b": np.zeros(n_out, F32)}

    def forward(self, x, training):
        self.x = x
        return x @ self.params["W"] + self.params["b"]

    def backward(self, d, need_dx=True):
        self.grads = {"W": self.x.T @ d, "b": d.sum(axis=0)}
        return d @ self.params["W"].T if need_dx else None


class Conv2D:
    """3x3 'valid' convolution, channels-last: im2col (stride tricks) then a GEMM."""

    def __init__(self, c_in, filters, rng, k=3):
        limit = np.sqrt(6 / (k * k * c_in + k * k * filters))
        self.k = k
        self.params = {"W": rng.uniform(-limit, limit, (k * k * c_in, filters)).astype(F32),
                       "b": np.zeros(filters, F32)}

    def forward(self, x, training):
        n, h, w, c = x.shape
        self.shape, oh, ow = x.shape, h - self.k + 1, w - self.k + 1
        windows = sliding_window_view(x, (self.k, self.k), axis=(1, 2))  # (n, oh, ow, c, k, k)
        self.cols = windows.transpose(0, 1, 2, 4, 5, 3).reshape(n * oh * ow, -1)
        out = self.cols @ self.params["W"] + self.params["b"]
        return out.reshape(n, oh, ow, -1)

    def backward(self, d, need_dx=True):
        d2 = d.reshape(-1, d.shape[-1])
        self.grads = {"W": self.cols.T @ d2, "b": d2.sum(axis=0)}
        if not need_dx:
            return None
        n, h, w, c = self.shape
        oh, ow, k = h - self.k + 1, w - self.k + 1, self.k
        dcols = (d2 @ self.params["W"].T).reshape(n, oh, ow, k, k, c)
        dx = np.zeros(self.shape, F32)
        for i in range(k):  # col2im: scatter-add each kernel offset back
            for j in range(k):
                dx[:, i:i + oh, j:j + ow, :] += dcols[:, :, :, i, j, :]
        return dx


class ReLU:
    params = {}

    def forward(self, x, training):
        self.out = np.maximum(x, 0)
        return self.out

    def backward(self, d, need_dx=True):
        return np.where(self.out > 0, d, 0)


class MaxPool2:
    params = {}

    def forward(self, x, training):
        n, h, w, c = x.shape
        blocks = x.reshape(n, h // 2, 2, w // 2, 2, c)
        out = blocks.max(axis=(2, 4))
        self.shape, self.mask = x.shape, blocks == out[:, :, None, :, None, :]
        return out

    def backward(self, d, need_dx=True):
        return (self.mask * d[:, :, None, :, None, :]).reshape(self.shape)


class Dropout:
    params = {}

    def __init__(self, rate, rng):
        self.rate, self.rng = rate, rng

    def forward(self, x, training):
        self.mask = (self.rng.random(x.shape, dtype=F32) >= self.rate) / F32(1 - self.rate)
        return x * self.mask

    def backward(self, d, need_dx=True):
        return d * self.mask


class Flatten:
    params = {}

    def forward(self, x, training):
        self.shape = x.shape
        return x.reshape(len(x), -1)

    def backward(self, d, need_dx=True):
        return d.reshape(self.shape)


def softmax_cross_entropy(logits, y):
    """(mean loss, dlogits) from logits and integer labels."""
    shifted = logits - logits.max(axis=1, keepdims=True)
    exp = np.exp(shifted)
    probs = exp / exp.sum(axis=1, keepdims=True)
    n = len(y)
    loss = -np.log(probs[np.arange(n), y] + F32(1e-7)).mean()
    probs[np.arange(n), y] -= 1
    return loss, probs / F32(n)


class SGD:
    def __init__(self, lr):
        self.lr = F32(lr)

    def pre_update_params(self):
        pass

    def update_params(self, layer):
        for k, g in layer.grads.items():
            layer.params[k] -= self.lr * g


class Adam:
    """Keras's Adam (epsilon 1e-7), one step per batch."""

    def __init__(self, lr=1e-3, beta_1=0.9, beta_2=0.999, eps=1e-7):
        self.lr, self.b1, self.b2, self.eps = lr, beta_1, beta_2, eps
        self.t, self.state = 0, {}

    def pre_update_params(self):
        self.t += 1

    def update_params(self, layer):
        lr_t = F32(self.lr * np.sqrt(1 - self.b2 ** self.t) / (1 - self.b1 ** self.t))
        for k, g in layer.grads.items():
            m, v = self.state.setdefault((id(layer), k), (np.zeros_like(g), np.zeros_like(g)))
            m *= F32(self.b1)
            m += F32(1 - self.b1) * g
            v *= F32(self.b2)
            v += F32(1 - self.b2) * g * g
            layer.params[k] -= lr_t * m / (np.sqrt(v) + F32(self.eps))


class NumpyTrainer:
    name = "numpy"
    sync = device_bytes = None

    def __init__(self, workload, x, y, device, threads):
        if workload.name not in ("mlp", "cnn"):
            raise Unavailable(f"the NumPy peer implements only mlp and cnn, not {workload.name}")
        self.device = "cpu"
        self.x, self.y = x, y
        rng = self.rng = np.random.default_rng(0)
        if workload.name == "mlp":
            self.layers = [Dense(784, 512, rng), ReLU(), Dense(512, 512, rng), ReLU(),
                           Dense(512, 10, rng)]
            self.optimizer = SGD(0.01)
        else:
            self.layers = [Conv2D(1, 32, rng), ReLU(), Conv2D(32, 64, rng), ReLU(), MaxPool2(),
                           Dropout(0.25, rng), Flatten(), Dense(9216, 128, rng), ReLU(),
                           Dropout(0.5, rng), Dense(128, 10, rng)]
            self.optimizer = Adam(1e-3)

    def train(self, n, batch_size=BATCH):
        order = self.rng.permutation(n)
        total = 0.0
        for start in range(0, n, batch_size):
            idx = order[start:start + batch_size]
            out = self.x[idx]
            for layer in self.layers:
                out = layer.forward(out, training=True)
            loss, d = softmax_cross_entropy(out, self.y[idx])
            total += float(loss) * len(idx)
            for i, layer in reversed(list(enumerate(self.layers))):
                d = layer.backward(d, need_dx=i > 0)
            self.optimizer.pre_update_params()
            for layer in self.layers:
                if layer.params:
                    self.optimizer.update_params(layer)
        return total / n
