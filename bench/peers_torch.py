"""PyTorch peer: the same MLP / ConvNets in torch.nn, float32, same device and threads.

torch convolutions are NCHW, so the CNN's channels-last data are transposed once at
setup (not timed). Weights get Keras's init (Glorot-uniform, zero bias) and Adam Keras's
epsilon, so both libraries do the same arithmetic.
"""
import numpy

from .workloads import BATCH, CIFAR_FILTERS, Unavailable


def import_torch():
    """The torch module, or Unavailable with the import error."""
    try:
        import torch
    except Exception as exc:
        raise Unavailable(f"PyTorch not importable ({type(exc).__name__}: {exc})") from None
    return torch


def _model(torch, name):
    nn = torch.nn
    if name == "seed004_cnn":  # 'same' 5x5 convs (padding 2); 'same' 2x2 pools on even sizes
        return nn.Sequential(nn.Conv2d(1, 32, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2),
                             nn.Conv2d(32, 64, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2),
                             nn.Flatten(), nn.Linear(7 * 7 * 64, 10))
    if name == "cifar_cnn":  # Keras BatchNormalization defaults: epsilon 1e-3, momentum 0.99
        c1, c2, c3, c4 = CIFAR_FILTERS

        def bn(c):
            return nn.BatchNorm2d(c, eps=1e-3, momentum=0.01)
        return nn.Sequential(nn.Conv2d(3, c1, 3, padding=1), nn.ReLU(), bn(c1),
                             nn.Conv2d(c1, c2, 3, padding=1), nn.ReLU(), bn(c2), nn.MaxPool2d(2),
                             nn.Conv2d(c2, c3, 3, padding=1), nn.ReLU(), bn(c3),
                             nn.Conv2d(c3, c4, 3, padding=1), nn.ReLU(), bn(c4), nn.MaxPool2d(2),
                             nn.Flatten(), nn.Linear(8 * 8 * c4, 128), nn.ReLU(),
                             nn.Linear(128, 10))
    if name == "mlp":
        return nn.Sequential(nn.Linear(784, 512), nn.ReLU(), nn.Linear(512, 512), nn.ReLU(),
                             nn.Linear(512, 10))
    return nn.Sequential(nn.Conv2d(1, 32, 3), nn.ReLU(), nn.Conv2d(32, 64, 3), nn.ReLU(),
                         nn.MaxPool2d(2), nn.Dropout(0.25), nn.Flatten(),
                         nn.Linear(9216, 128), nn.ReLU(), nn.Dropout(0.5), nn.Linear(128, 10))


class TorchTrainer:
    name = "torch"

    def __init__(self, workload, x, y, device, threads):
        torch = self.torch = import_torch()
        if device == "gpu" and not torch.cuda.is_available():
            raise Unavailable("PyTorch has no CUDA device (CPU-only build or no GPU)")
        self.device = device
        dev = torch.device("cuda" if device == "gpu" else "cpu")
        if threads:
            torch.set_num_threads(threads)
        torch.manual_seed(0)
        if x.ndim == 4:
            x = x.transpose(0, 3, 1, 2)  # NHWC -> NCHW
        self.x = torch.from_numpy(numpy.ascontiguousarray(x)).to(dev)
        self.y = torch.from_numpy(y.astype(numpy.int64)).to(dev)
        self.model = _model(torch, workload.name).to(dev)
        for m in self.model.modules():
            if isinstance(m, (torch.nn.Linear, torch.nn.Conv2d)):
                torch.nn.init.xavier_uniform_(m.weight)
                torch.nn.init.zeros_(m.bias)
        params = self.model.parameters()
        self.optimizer = (torch.optim.SGD(params, lr=0.01) if workload.name == "mlp"
                          else torch.optim.Adam(params, lr=1e-3, eps=1e-7))
        self.loss_fn = torch.nn.CrossEntropyLoss()
        self.sync = torch.cuda.synchronize if device == "gpu" else None
        self.device_bytes = torch.cuda.memory_reserved if device == "gpu" else None

    def train(self, n, batch_size=BATCH):
        """One shuffled pass over the first n samples; loss/accuracy summed on the device
        and read once at the end, as accelnet's fit does."""
        torch = self.torch
        self.model.train()
        order = torch.randperm(n, device=self.x.device)
        total = torch.zeros((), device=self.x.device)
        correct = torch.zeros((), dtype=torch.int64, device=self.x.device)
        for start in range(0, n, batch_size):
            idx = order[start:start + batch_size]
            xb, yb = self.x[idx], self.y[idx]
            self.optimizer.zero_grad(set_to_none=True)
            out = self.model(xb)
            loss = self.loss_fn(out, yb)
            loss.backward()
            self.optimizer.step()
            with torch.no_grad():
                total += loss * len(idx)
                correct += (out.argmax(1) == yb).sum()
        return float(total) / n, int(correct) / n
