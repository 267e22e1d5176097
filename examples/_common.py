"""Code shared by the examples: command line, data choice, preprocessing, plots, results.

Every example takes the same options:

    --data {auto,mnist,fashion}  auto (default): MNIST when accelnet.datasets.mnist.load_data()
                                 gets it, else Fashion-MNIST (Debian's dataset-fashion-mnist)
    --epochs N                   training length (each example says what its default is)
    --quick                      a small subset and 1 epoch: the CI smoke run (< 1 min, 2 cores)
    --out DIR                    where the PNG plots go (default examples/output/)
    --seed N                     accelnet.random.seed(N) before anything is drawn

Each example prints one line per model, `result: <model>: test accuracy <x>`, and one
headline line, `test accuracy: <x>`, that tests/test_examples.py checks.

The backend is accelnet's: ACCELNET_BACKEND=gpu runs everything on the GPU. Plots use
matplotlib's object API on the Agg canvas (no pyplot, no display needed).
"""
import argparse
import io
import os
import time

import numpy as np

import accelnet as an

HERE = os.path.dirname(os.path.abspath(__file__))
DEFAULT_OUT = os.path.join(HERE, "output")
DATA_NAMES = {"mnist": "MNIST", "fashion": "Fashion-MNIST"}
PLOT_DPI = 80


# -- command line -------------------------------------------------------------------
def make_parser(description, default_epochs, epochs_help="training epochs", quick_epochs=1):
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--data", choices=("auto", "mnist", "fashion"), default="auto",
                   help="data set; auto = MNIST if accelnet can load it, else Fashion-MNIST")
    p.add_argument("--epochs", type=int, default=None,
                   help=f"{epochs_help} (default {default_epochs}; {quick_epochs} with --quick)")
    p.add_argument("--quick", action="store_true",
                   help="small subset and 1 epoch: a smoke run of under a minute")
    p.add_argument("--out", default=DEFAULT_OUT, help="folder for the PNG plots (created)")
    p.add_argument("--seed", type=int, default=0, help="accelnet.random.seed (default 0)")
    p.set_defaults(default_epochs=default_epochs, quick_epochs=quick_epochs)
    return p


def setup(args):
    """Fill in --epochs, create --out, seed accelnet and say which backend runs."""
    if args.epochs is None:
        args.epochs = args.quick_epochs if args.quick else args.default_epochs
    if args.epochs < 1:
        raise SystemExit(f"--epochs must be >= 1, got {args.epochs}")
    os.makedirs(args.out, exist_ok=True)
    an.random.seed(args.seed)
    backend = an.get_backend()
    print(f"backend: {backend.name}; epochs: {args.epochs}{' (quick run)' if args.quick else ''}")
    return backend


# -- data -----------------------------------------------------------------------------
def load_data(choice):
    """(name, (x_train, y_train), (x_test, y_test)) as uint8 arrays, like Keras.

    'auto' tries MNIST (accelnet's search folders, then its download) and falls back to
    Fashion-MNIST, saying so; 'mnist' fails if MNIST cannot be had.
    """
    if choice in ("auto", "mnist"):
        try:
            data = an.datasets.mnist.load_data()
        except an.errors.DataNotFoundError as exc:
            if choice == "mnist":
                raise SystemExit(f"--data mnist: {exc}") from None
            print("data: MNIST is not available here (accelnet.datasets.mnist.load_data() "
                  "raised DataNotFoundError); using Fashion-MNIST instead")
        else:
            print(f"data: MNIST ({len(data[0][0])} train / {len(data[1][0])} test images)")
            return "mnist", data[0], data[1]
    try:
        data = an.datasets.fashion_mnist.load_data()
    except an.errors.DataNotFoundError as exc:
        raise SystemExit(f"Fashion-MNIST not found: {exc}") from None
    print(f"data: Fashion-MNIST ({len(data[0][0])} train / {len(data[1][0])} test images)")
    return "fashion", data[0], data[1]


def build_stack(net, input_shape):
    """Build a hand-driven list of layers for `input_shape`; the first layer's input
    gradient is never consumed, so skip that product."""
    shape = tuple(input_shape)
    for layer in net:
        layer.build(shape)
        shape = layer.compute_output_shape(shape)
    net[0].needs_input_grad = False
    return net


def forward(net, x, training):
    """Run a hand-driven list of layers."""
    for layer in net:
        x = layer.forward(x, training=training)
    return x


def subset(x, y, n):
    """The first n samples (all of them when n is None or larger)."""
    if n is None or n >= len(x):
        return x, y
    return x[:n], y[:n]


def flat01(x):
    """uint8 images -> float32 (N, 784) in [0, 1]."""
    return x.reshape(len(x), -1).astype(np.float32) / np.float32(255)


def images01(x):
    """uint8 images -> float32 (N, 28, 28, 1) in [0, 1] (channels-last)."""
    return x.reshape(len(x), x.shape[1], x.shape[2], 1).astype(np.float32) / np.float32(255)


# -- timing and results ---------------------------------------------------------------
class Timer:
    """Wall-clock and CPU seconds (this process, all threads) of a `with` block.

    On a shared machine the wall time depends on what else runs; the CPU time much less
    (with 2 cores and nothing else running, wall is roughly CPU / 2 for BLAS-bound work)."""

    def __enter__(self):
        self.start, self.cpu_start = time.perf_counter(), time.process_time()
        return self

    def __exit__(self, *exc):
        self.seconds = time.perf_counter() - self.start
        self.cpu_seconds = time.process_time() - self.cpu_start


class EpochTimer(an.callbacks.Callback):
    """Wall seconds of each epoch (training + validation). On a shared machine the
    fastest and the median epoch say more than the mean."""

    def on_train_begin(self, logs=None):
        self.times = []

    def on_epoch_begin(self, epoch, logs=None):
        self._start = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        self.times.append(time.perf_counter() - self._start)


def seconds_str(seconds):
    return f"{seconds:.1f}" if seconds >= 1 else f"{seconds:.3f}"


def epochs_run(history):
    return len(history.history.get("loss", ())) or 1


def result(model_name, accuracy, epochs=None, timer=None, epoch_times=None,
           what="test accuracy"):
    """Print one `result:` line (accuracy, epochs, wall and CPU s/epoch); returns a row."""
    row = {"model": model_name, "accuracy": float(accuracy), "epochs": epochs,
           "s_per_epoch": None, "cpu_s_per_epoch": None}
    extra = ""
    if epochs is not None:
        extra += f" ({epochs} epochs"
        if timer is not None:
            row["s_per_epoch"] = timer.seconds / epochs
            row["cpu_s_per_epoch"] = timer.cpu_seconds / epochs
            extra += (f", {seconds_str(row['s_per_epoch'])} s/epoch, "
                      f"{seconds_str(row['cpu_s_per_epoch'])} CPU-s/epoch")
        if epoch_times:
            extra += (f"; epoch times: median {seconds_str(float(np.median(epoch_times)))} s, "
                      f"fastest {seconds_str(min(epoch_times))} s")
        extra += ")"
    print(f"result: {model_name}: {what} {accuracy:.4f}{extra}", flush=True)
    return row


def headline(accuracy, model_name):
    """The line tests/test_examples.py parses."""
    print(f"test accuracy: {accuracy:.4f} ({model_name})", flush=True)


def summary(rows, data_name):
    print(f"\nsummary ({DATA_NAMES[data_name]}, backend {an.get_backend().name}):")
    print(f"  {'model':<40} {'epochs':>6} {'accuracy':>9} {'s/epoch':>8} {'CPU-s/ep':>8}")
    for r in rows:
        ep = "" if r["epochs"] is None else r["epochs"]
        spe = "" if r["s_per_epoch"] is None else seconds_str(r["s_per_epoch"])
        cpu = "" if r["cpu_s_per_epoch"] is None else seconds_str(r["cpu_s_per_epoch"])
        print(f"  {r['model']:<40} {ep:>6} {r['accuracy']:>9.4f} {spe:>8} {cpu:>8}")


# -- plots ----------------------------------------------------------------------------
def figure(nrows=1, ncols=1, panel=(4.5, 3.2), **subplot_kw):
    """A matplotlib Figure on the Agg canvas and its axes as a 2-D array."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    fig = Figure(figsize=(panel[0] * ncols, panel[1] * nrows), layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(nrows, ncols, squeeze=False, **subplot_kw)
    return fig, axes


def save(fig, out_dir, name):
    """Write the figure as a small PNG: 80 dpi, quantized to a 64-colour palette
    (about a third of the size, no visible loss for line plots)."""
    path = os.path.join(out_dir, name)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=PLOT_DPI)
    data = buf.getvalue()
    try:
        from PIL import Image  # matplotlib depends on Pillow
        image = Image.open(io.BytesIO(data)).convert("RGB")
        small = image.quantize(colors=64, method=Image.Quantize.MEDIANCUT,
                               dither=Image.Dither.NONE)
        out = io.BytesIO()
        small.save(out, format="PNG", optimize=True)
        data = out.getvalue()
    except Exception:  # keep matplotlib's PNG
        pass
    with open(path, "wb") as f:
        f.write(data)
    print(f"wrote {path}")
    return path


def curve(ax, values, label=None, x=None, **kw):
    values = [float(v) for v in values]
    x = list(range(1, len(values) + 1)) if x is None else list(x)
    ax.plot(x, values, label=label, **kw)


def style(ax, title=None, xlabel="epoch", ylabel="accuracy", legend=True):
    from matplotlib.ticker import MaxNLocator
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    if title:
        ax.set_title(title, fontsize=10)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.grid(True, alpha=0.3)
    if legend and ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=8)


def data_title(data_name):
    return DATA_NAMES[data_name]
