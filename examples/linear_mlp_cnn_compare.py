"""Seed 004: a linear model, a 1500x3 MLP (with and without dropout) and a small CNN compared.

The four models of the notebook, batch 100, categorical cross-entropy on one-hot labels,
the test set as validation data, and its per-batch `LogHistory` callback:

1. linear: Dense(10, linear, zero init) -> Dense(10, softmax); SGD(lr=0.5), 17 epochs;
2. MLP: 3 x Dense(1500, ReLU) with TruncatedNormal(0, 0.01) kernels and Constant(0.1)
   biases -> Dense(10, softmax); Adam(lr=0.001, beta_1=0.9, beta_2=0.999, epsilon=1e-8);
3. the same MLP with Dropout(0.5) after each hidden layer;
4. CNN: Conv2D(32, 5x5, 'same', ReLU) -> MaxPooling2D(2, 'same') -> Conv2D(64, 5x5, 'same',
   ReLU) -> MaxPooling2D(2, 'same') -> Flatten -> Dense(10, softmax), the same initializers,
   Adam as above.

The notebook (MNIST) got 91.6 %, 98.4 %, 98.4 % and 99.2 % with 17, 34, 34 and 34 epochs.
On a 2-core CPU the 1500x3 MLPs and the CNN run 3 epochs by default (`--epochs`); the
linear model keeps its 17 (`--linear-epochs`). On Fashion-MNIST, SGD(0.5) makes the
linear model diverge (NaN after a few hundred steps; a plain NumPy float64
implementation of the same model diverges too: Fashion-MNIST images carry more ink,
sum of x^2 about 162 vs about 100 for MNIST), so its default learning rate there is 0.1
(`--linear-lr` to override).

    python examples/linear_mlp_cnn_compare.py [--data auto|mnist|fashion] [--epochs 3] [--quick]
"""
import numpy as np

import accelnet as an

import _common as C

BATCH_SIZE = 100
L = an.layers


class LogHistory(an.callbacks.Callback):
    """The notebook's callback: loss and accuracy after every batch (Keras 2's 'acc' key)."""

    def on_train_begin(self, logs=None):
        self.acc = []
        self.loss = []

    def on_batch_end(self, batch, logs=None):
        logs = logs or {}
        self.acc.append(logs.get("acc"))
        self.loss.append(logs.get("loss"))


def adam():
    return an.optimizers.Adam(learning_rate=0.001, beta_1=0.9, beta_2=0.999, epsilon=1e-8)


def inits():
    return dict(kernel_initializer=an.initializers.TruncatedNormal(mean=0.0, stddev=0.01),
                bias_initializer=an.initializers.Constant(value=0.1))


def linear_model(lr):
    model = an.Sequential([
        L.Dense(units=10, activation="linear", use_bias=True, kernel_initializer="zeros",
                bias_initializer="zeros", input_shape=(28 * 28,)),
        L.Dense(units=10, activation="softmax")])
    model.compile(loss="categorical_crossentropy", optimizer=an.optimizers.SGD(lr=lr),
                  metrics=["accuracy"])
    return model


def mlp(dropout):
    layers = []
    for i in range(3):
        kw = {"input_shape": (28 * 28,)} if i == 0 else {}
        layers.append(L.Dense(units=1500, activation="relu", use_bias=True, **inits(), **kw))
        if dropout:
            layers.append(L.Dropout(dropout))
    layers.append(L.Dense(units=10, activation="softmax"))
    model = an.Sequential(layers)
    model.compile(loss="categorical_crossentropy", optimizer=adam(), metrics=["accuracy"])
    return model


def cnn():
    model = an.Sequential([
        L.Conv2D(filters=32, kernel_size=(5, 5), strides=(1, 1), padding="same", use_bias=True,
                 activation="relu", input_shape=(28, 28, 1), **inits()),
        L.MaxPooling2D(pool_size=(2, 2), strides=(2, 2), padding="same"),
        L.Conv2D(filters=64, kernel_size=(5, 5), strides=(1, 1), padding="same", use_bias=True,
                 activation="relu", **inits()),
        L.MaxPooling2D(pool_size=(2, 2), strides=(2, 2), padding="same"),
        L.Flatten(),
        L.Dense(units=10, activation="softmax")])
    model.compile(loss="categorical_crossentropy", optimizer=adam(), metrics=["accuracy"])
    return model


def main():
    parser = C.make_parser(__doc__.splitlines()[0], default_epochs=3,
                           epochs_help="epochs of the MLPs and the CNN (notebook: 34)")
    parser.add_argument("--linear-epochs", type=int, default=None,
                        help="epochs of the linear model (default 17, as the notebook; 1 with --quick)")
    parser.add_argument("--linear-lr", type=float, default=None,
                        help="SGD learning rate of the linear model (default 0.5 on MNIST as "
                             "the notebook, 0.1 on Fashion-MNIST)")
    args = parser.parse_args()
    C.setup(args)
    data_name, (x_train, y_train), (x_valid, y_valid) = C.load_data(args.data)
    if args.quick:
        x_train, y_train = C.subset(x_train, y_train, 3000)
        x_valid, y_valid = C.subset(x_valid, y_valid, 1000)
    linear_epochs = args.linear_epochs or (1 if args.quick else 17)
    linear_lr = args.linear_lr or (0.5 if data_name == "mnist" else 0.1)
    if data_name != "mnist" and args.linear_lr is None:
        print("linear model: SGD(0.5) diverges on Fashion-MNIST; using lr 0.1 (--linear-lr)")
    y_train1, y_valid1 = an.utils.to_categorical(y_train, 10), an.utils.to_categorical(y_valid, 10)
    flat_train, flat_valid = C.flat01(x_train), C.flat01(x_valid)
    img_train, img_valid = C.images01(x_train), C.images01(x_valid)

    runs = [(f"linear, SGD({linear_lr:g})", lambda: linear_model(linear_lr), linear_epochs, "flat"),
            ("MLP 1500x3, Adam", lambda: mlp(0.0), args.epochs, "flat"),
            ("MLP 1500x3 + Dropout(0.5), Adam", lambda: mlp(0.5), args.epochs, "flat"),
            ("CNN 5x5 32/64 + max-pool, Adam", cnn, args.epochs, "images")]
    rows, results = [], {}
    for name, make, epochs, kind in runs:
        print(f"\n== {name}, batch {BATCH_SIZE}, {epochs} epochs")
        xtr, xva = (flat_train, flat_valid) if kind == "flat" else (img_train, img_valid)
        model = make()
        model.summary()
        log_history, epoch_timer = LogHistory(), C.EpochTimer()
        with C.Timer() as t:
            training_log = model.fit(xtr, y_train1, batch_size=BATCH_SIZE, epochs=epochs,
                                     verbose=2, validation_data=(xva, y_valid1),
                                     callbacks=[log_history, epoch_timer])
        score, acc = model.evaluate(xva, y_valid1, batch_size=1000, verbose=0)
        print(f"final model accuracy over the validation set is {100 * acc:.1f}%")
        results[name] = (training_log.history, log_history)
        rows.append(C.result(name, acc, C.epochs_run(training_log), t,
                             epoch_timer.times))

    # Figure 1: the notebook's "model accuracy" plot for each model.
    fig, ax = C.figure(1, 4, panel=(3.6, 3.0))
    for a, (name, (hist, _)) in zip(ax.flat, results.items()):
        C.curve(a, hist["accuracy"], "training", color="r", marker="o", markersize=3)
        C.curve(a, hist["val_accuracy"], "validation", color="b", marker="o", markersize=3)
        C.style(a, name)
    fig.suptitle(f"model accuracy ({C.data_title(data_name)}, test set as validation)", fontsize=10)
    C.save(fig, args.out, "linear_mlp_cnn_accuracy.png")

    # Figure 2: LogHistory's per-batch loss (blue, left) and accuracy (red, right), every
    # 10th batch (the notebook plotted every 100th of 34 epochs). The values are the
    # running means since the start of the epoch, hence the saw teeth at epoch starts.
    fig, ax = C.figure(1, 4, panel=(3.6, 3.0))
    for a, (name, (_, log)) in zip(ax.flat, results.items()):
        every = 10 if len(log.loss) >= 100 else 1
        batches = np.arange(0, len(log.loss), every)
        a.plot(batches, np.array(log.loss, dtype=float)[::every], color="b")
        a.set_xlabel("batch")
        a.set_ylabel("loss", color="b")
        a.tick_params("y", colors="b")
        a2 = a.twinx()
        a2.plot(batches, 100 * np.array(log.acc, dtype=float)[::every], color="r")
        a2.set_ylabel("accuracy (%)", color="r")
        a2.tick_params("y", colors="r")
        a.set_title(name, fontsize=9)
        a.grid(True, alpha=0.3)
    C.save(fig, args.out, "linear_mlp_cnn_batches.png")

    C.summary(rows, data_name)
    C.headline(rows[-1]["accuracy"], rows[-1]["model"])


if __name__ == "__main__":
    main()
