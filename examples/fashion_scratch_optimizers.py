"""Seed 002: a hand-written full-batch training loop comparing SGD+decay, SGD+momentum and Adam.

The notebook built NNFS-style classes (Dense with L1/L2 regularizers, ReLU, softmax +
categorical cross-entropy, three optimizers) and trained on the whole Fashion-MNIST
training set at once (inputs scaled to [-1, 1], weights 0.01 * randn, zero biases,
L2 5e-4 on the first layer), recording accuracy, loss and learning rate every 10 steps.
Here the layers are accelnet's `Dense` driven by hand (`forward`, the fused
softmax-cross-entropy on the logits, `backward`, which includes the L2 gradient) and
the optimizers are accelnet's, which follow Keras's formulas:

- SGD(learning_rate=1.0, decay=0.01): lr_t = 1 / (1 + 0.01 t). The notebook's decay
  computed lr / (1 + decay), ignoring the step count t.
- SGD(learning_rate=1.0, decay=0.01, momentum=0.5): v = 0.5 v - lr_t g; w += v. The
  notebook's momentum used the weights instead of the gradient g.
- Adam(learning_rate=0.02, decay=1e-5): moments of the gradient. The notebook's Adam
  fed weight differences (not gradients) into the moments.

All three start from the same initial weights, with hidden layers 128-128 (the notebook
used 64-64 for momentum and Adam; `--hidden 64` gives that). The notebook ran 1100
full-batch steps (0.837 SGD, 0.812 momentum, 0.864 Adam on the test set, with its bugs);
the default here is 300 steps per optimizer (see examples/README.md).

    python examples/fashion_scratch_optimizers.py [--data auto|mnist|fashion] [--epochs 300]
"""
import numpy as np

import accelnet as an

import _common as C

LOG_EVERY = 10


def optimizers():
    return [("SGD, decay 0.01", lambda: an.optimizers.SGD(learning_rate=1.0, decay=0.01)),
            ("SGD, momentum 0.5, decay 0.01",
             lambda: an.optimizers.SGD(learning_rate=1.0, decay=0.01, momentum=0.5)),
            ("Adam, lr 0.02, decay 1e-5", lambda: an.optimizers.Adam(learning_rate=0.02, decay=1e-5))]


def build_network(hidden, seed):
    an.random.seed(seed)  # the same initial weights for every optimizer
    init = an.initializers.RandomNormal(0.0, 0.01)  # 0.01 * np.random.randn(...)
    l2 = an.regularizers.l2(5e-4)
    net = [an.layers.Dense(hidden, activation="relu", kernel_initializer=init,
                           kernel_regularizer=l2, bias_regularizer=l2),
           an.layers.Dense(hidden, activation="relu", kernel_initializer=init),
           an.layers.Dense(10, kernel_initializer=init)]  # logits: softmax is in the loss
    return C.build_stack(net, (784,))


def penalty(net):
    total = 0.0
    for layer in net:
        p = layer.regularization_penalty()
        if p is not None:
            total = total + p
    return total


def train(net, optimizer, X, Y, X_val, Y_val, steps):
    loss_fn = an.losses.SparseCategoricalCrossentropy(from_logits=True)
    params = {f"{i}/{k}": p for i, layer in enumerate(net) for k, p in layer.params.items()}
    grads = {f"{i}/{k}": g for i, layer in enumerate(net) for k, g in layer.grads.items()}
    log = {"step": [], "accuracy": [], "val_accuracy": [], "loss": [], "lr": []}
    for step in range(steps):
        logging = step % LOG_EVERY == 0 or step == steps - 1
        if logging:  # before the training forward: layers keep that pass's inputs for backward
            val_acc = float((C.forward(net, X_val, False).argmax(axis=1) == Y_val).mean())
        logits = C.forward(net, X, training=True)
        data_loss, grad = loss_fn.value_and_grad(Y, logits)
        if logging:
            reg = float(penalty(net))
            acc = float((logits.argmax(axis=1) == Y).mean())
            lr = optimizer.current_learning_rate()
            for key, value in (("step", step), ("accuracy", acc), ("val_accuracy", val_acc),
                               ("loss", float(data_loss) + reg), ("lr", lr)):
                log[key].append(value)
            if step % 100 == 0 or step == steps - 1:
                print(f"epoch: {step}, acc: {acc:.3f}, loss: {float(data_loss) + reg:.3f} "
                      f"(data {float(data_loss):.3f}, reg {reg:.3f}), lr: {lr:.5f}, "
                      f"val acc: {val_acc:.3f}")
        for layer in reversed(net):
            grad = layer.backward(grad)  # Dense.backward adds the L2 gradient itself
        optimizer.apply(params, grads)
    return log


def main():
    # A full-batch step is one pass over the (sub)set: --quick shrinks the data and
    # takes 80 steps.
    parser = C.make_parser(__doc__.splitlines()[0], default_epochs=300,
                           epochs_help="full-batch steps per optimizer", quick_epochs=80)
    parser.add_argument("--hidden", type=int, default=128, help="units of both hidden layers")
    args = parser.parse_args()
    backend = C.setup(args)
    data_name, (x_train, y_train), (x_test, y_test) = C.load_data(args.data)
    if args.quick:
        x_train, y_train = C.subset(x_train, y_train, 2000)
        x_test, y_test = C.subset(x_test, y_test, 1000)

    def scale(x):  # the notebook's (x - 127.5) / 127.5, flattened
        return (x.reshape(len(x), -1).astype(np.float32) - np.float32(127.5)) / np.float32(127.5)

    X, Y = backend.asarray(scale(x_train)), backend.asarray(y_train.astype(np.int64))
    X_test, Y_test = backend.asarray(scale(x_test)), backend.asarray(y_test.astype(np.int64))

    rows, logs = [], {}
    loss_fn = an.losses.SparseCategoricalCrossentropy(from_logits=True)
    for name, make in optimizers():
        print(f"\n== {name}: Dense {args.hidden}-{args.hidden}, L2 5e-4 on layer 1, "
              f"{args.epochs} full-batch steps")
        net = build_network(args.hidden, args.seed)
        with C.Timer() as t:
            logs[name] = train(net, make(), X, Y, X_test, Y_test, args.epochs)
        logits = C.forward(net, X_test, training=False)
        loss, _ = loss_fn.value_and_grad(Y_test, logits)
        acc = float((logits.argmax(axis=1) == Y_test).mean())
        print(f"validation - {name}, acc: {acc:.3f}, loss: {float(loss):.3f}")
        rows.append(C.result(name, acc, args.epochs, t, what="validation (test set) accuracy"))

    # Plots: per optimizer accuracy / loss / learning rate (as the notebook), and the
    # accuracy of all three together.
    fig, ax = C.figure(2, 2)
    for a, (name, log) in zip(ax.flat, logs.items()):
        a.plot(log["step"], log["accuracy"], label="train accuracy", color="tab:blue")
        a.plot(log["step"], log["val_accuracy"], label="val accuracy", color="tab:blue", ls="--")
        a.plot(log["step"], log["loss"], label="loss", color="tab:red")
        a.plot(log["step"], log["lr"], label="learning rate", color="black")
        a.set_ylim(0, max(2.5, min(4.0, max(log["loss"]) * 1.05)))
        C.style(a, name, xlabel="step", ylabel="value")
    a = ax[1, 1]
    for (name, log), color in zip(logs.items(), ("black", "tab:red", "tab:blue")):
        a.plot(log["step"], log["accuracy"], color=color, label=name)
        a.plot(log["step"], log["val_accuracy"], color=color, ls="--")
    C.style(a, f"accuracy, {C.data_title(data_name)} (dashed: validation)", xlabel="step")
    C.save(fig, args.out, "fashion_scratch_optimizers.png")

    C.summary(rows, data_name)
    best = max(rows, key=lambda r: r["accuracy"])
    C.headline(best["accuracy"], best["model"])


if __name__ == "__main__":
    main()
