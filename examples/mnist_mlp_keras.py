"""Seed 001: Keras-style MLPs 512-512 (ReLU vs sigmoid, dropout, early stopping) and XOR by hand.

Part 1, as the notebook: `Sequential` Dense 512-512-10 (softmax) trained with SGD(0.01),
batch 128, categorical cross-entropy on one-hot labels, the test set as validation data:
  (a) ReLU, (b) sigmoid, (c) ReLU with Dropout(0.2) after each hidden layer.
Part 2: Flatten + ReLU 512-512 on a 90/10 train/validation split of the training set
(`an.utils.train_test_split(..., test_size=0.10, seed=1)`), sparse labels, and
`EarlyStopping(monitor="val_loss", min_delta=1e-3, mode="min", patience=4,
restore_best_weights=True)`; then evaluated on the test set.
Part 3: the notebook's "challenging question": a 3-2-1 XOR network (sigmoid, squared
error) trained by hand for 10,000 full-batch steps of learning rate 0.1, from the
notebook's own initial weights (`np.random.seed(1)`; `2 * np.random.random(shape) - 1`).

The notebook ran 50 epochs per model on MNIST (97.2 % ReLU, 90.8 % sigmoid, 97.4 % dropout,
97.1 % early stopping); the default here is 20 epochs per model (see examples/README.md).

    python examples/mnist_mlp_keras.py [--data auto|mnist|fashion] [--epochs 20] [--quick]
"""
import numpy as np

import accelnet as an

import _common as C

BATCH_SIZE = 128
L = an.layers


def mlp(activation, dropout):
    layers = [L.Dense(512, activation=activation, input_shape=(784,))]
    if dropout:
        layers.append(L.Dropout(dropout))
    layers.append(L.Dense(512, activation=activation))
    if dropout:
        layers.append(L.Dropout(dropout))
    layers.append(L.Dense(10, activation="softmax"))
    model = an.Sequential(layers)
    model.compile(loss="categorical_crossentropy", optimizer=an.optimizers.SGD(learning_rate=0.01),
                  metrics=["accuracy"])
    return model


def train_xor(backend, epochs=10000, lr=0.1):
    """The notebook's XOR network, by hand: Dense(2, sigmoid) -> Dense(1, sigmoid).

    The notebook's update is the gradient of E = 1/2 * sum((y - y_hat)^2) over the four
    samples. accelnet's mean squared error is mean((y - y_hat)^2), whose gradient is
    2/4 = 1/2 of that, so a learning rate of 2 * lr with it takes exactly the notebook's
    steps.
    """
    x = np.array([[0, 0, 1], [0, 1, 1], [1, 0, 1], [1, 1, 1]], dtype=np.float32)
    y = np.array([[0], [1], [1], [0]], dtype=np.float32)
    rs = np.random.RandomState(1)  # the notebook's np.random.seed(1) and draw order
    w1 = 2 * rs.random_sample((3, 2)) - 1
    w2 = 2 * rs.random_sample((2, 1)) - 1

    net = [L.Dense(2, activation="sigmoid"), L.Dense(1, activation="sigmoid")]
    net[0].build((3,))
    net[1].build((2,))
    net[0].params["kernel"][...] = backend.asarray(w1.astype(np.float32))  # biases start at 0
    net[1].params["kernel"][...] = backend.asarray(w2.astype(np.float32))
    params = {f"{i}/{k}": p for i, layer in enumerate(net) for k, p in layer.params.items()}
    grads = {f"{i}/{k}": g for i, layer in enumerate(net) for k, g in layer.grads.items()}
    mse = an.losses.MeanSquaredError()
    optimizer = an.optimizers.SGD(learning_rate=2 * lr)
    X, Y = backend.asarray(x), backend.asarray(y)
    losses = []
    for epoch in range(epochs):
        out = X
        for layer in net:
            out = layer.forward(out, training=True)
        loss, grad = mse.value_and_grad(Y, out)
        if epoch % 1000 == 0:
            # the notebook printed 0.5 * mean((y - y_hat)^2)
            print(f"XOR epoch {epoch:5d}, loss: {0.5 * float(loss):.4f}")
        if epoch % 50 == 0:
            losses.append((epoch, 0.5 * float(loss)))
        for layer in reversed(net):
            grad = layer.backward(grad)
        optimizer.apply(params, grads)
    out = X
    for layer in net:
        out = layer.forward(out, training=False)
    return backend.to_numpy(out).ravel(), losses


def main():
    parser = C.make_parser(__doc__.splitlines()[0], default_epochs=20)
    args = parser.parse_args()
    backend = C.setup(args)
    data_name, (x_train, y_train), (x_test, y_test) = C.load_data(args.data)
    if args.quick:
        x_train, y_train = C.subset(x_train, y_train, 8000)
        x_test, y_test = C.subset(x_test, y_test, 2000)
    xtr, xte = C.flat01(x_train), C.flat01(x_test)
    ytr1, yte1 = an.utils.to_categorical(y_train, 10), an.utils.to_categorical(y_test, 10)

    rows, histories = [], {}
    for name, activation, dropout in [("ReLU 512-512", "relu", 0.0),
                                      ("sigmoid 512-512", "sigmoid", 0.0),
                                      ("ReLU 512-512 + Dropout(0.2)", "relu", 0.2)]:
        print(f"\n== {name}, SGD(0.01), batch {BATCH_SIZE}")
        model = mlp(activation, dropout)
        if not rows:
            model.summary()
        epoch_timer = C.EpochTimer()
        with C.Timer() as t:
            history = model.fit(xtr, ytr1, batch_size=BATCH_SIZE, epochs=args.epochs, verbose=2,
                                validation_data=(xte, yte1), callbacks=[epoch_timer])
        loss, acc = model.evaluate(xte, yte1, verbose=0)
        histories[name] = history.history
        rows.append(C.result(name, acc, C.epochs_run(history), t, epoch_timer.times))

    print("\n== early stopping: Flatten + ReLU 512-512, 10 % validation split")
    x_sub, x_val, y_sub, y_val = an.utils.train_test_split(x_train, y_train, test_size=0.10, seed=1)
    x_sub, x_val = x_sub.astype(np.float32) / 255, x_val.astype(np.float32) / 255
    model = an.Sequential([L.Flatten(input_shape=(28, 28)),
                           L.Dense(512, activation="relu"),
                           L.Dense(512, activation="relu"),
                           L.Dense(10, activation="softmax")])
    model.compile(loss="sparse_categorical_crossentropy",
                  optimizer=an.optimizers.SGD(learning_rate=0.01), metrics=["accuracy"])
    stop = an.callbacks.EarlyStopping(monitor="val_loss", min_delta=1e-3, mode="min", patience=4,
                                      verbose=1, restore_best_weights=True)
    epoch_timer = C.EpochTimer()
    with C.Timer() as t:
        history = model.fit(x_sub, y_sub, batch_size=BATCH_SIZE, epochs=args.epochs, verbose=2,
                            validation_data=(x_val, y_val), callbacks=[stop, epoch_timer])
    loss, es_acc = model.evaluate(x_test.astype(np.float32) / 255, y_test, verbose=0)
    print(f"early stopping: ran {C.epochs_run(history)} epochs, best epoch {stop.best_epoch + 1} "
          f"(val_loss {stop.best:.4f}), stopped early: {bool(stop.stopped_epoch)}")
    rows.append(C.result("ReLU 512-512 + EarlyStopping", es_acc, C.epochs_run(history), t,
                         epoch_timer.times))

    print("\n== XOR by hand (3-2-1, sigmoid, squared error, lr 0.1, 10000 epochs)")
    with C.Timer() as t:
        xor_out, xor_losses = train_xor(backend)
    print("Final predictions after training:", [round(float(v), 3) for v in xor_out])
    print("XOR predictions:", np.round(xor_out).astype(int).tolist(), "(expected [0, 1, 1, 0])")
    print(f"XOR training took {t.seconds:.1f} s")

    # Plots: train/validation accuracy of each model; early stopping's losses; XOR loss.
    fig, ax = C.figure(2, 3)
    for a, (name, h) in zip(ax.flat, histories.items()):
        C.curve(a, h["accuracy"], "train")
        C.curve(a, h["val_accuracy"], "validation (test set)")
        C.style(a, name)
    a = ax[1, 0]
    C.curve(a, history.history["loss"], "train loss")
    C.curve(a, history.history["val_loss"], "validation loss")
    a.axvline(stop.best_epoch + 1, color="gray", ls=":", label=f"best epoch {stop.best_epoch + 1}")
    C.style(a, "EarlyStopping (restore_best_weights)", ylabel="loss")
    a = ax[1, 1]
    for name, h in histories.items():
        C.curve(a, h["val_accuracy"], name)
    C.curve(a, history.history["val_accuracy"], "ReLU + EarlyStopping")
    C.style(a, f"validation accuracy ({C.data_title(data_name)})")
    a = ax[1, 2]
    C.curve(a, [l for _, l in xor_losses], x=[e for e, _ in xor_losses])
    C.style(a, f"XOR: outputs {[round(float(v), 2) for v in xor_out]}", xlabel="epoch",
            ylabel="0.5 * mean squared error", legend=False)
    C.save(fig, args.out, "mnist_mlp_keras.png")

    C.summary(rows, data_name)
    C.headline(es_acc, "ReLU 512-512 + EarlyStopping")


if __name__ == "__main__":
    main()
