"""Seed 000: a 784-10-10 network trained "from scratch" with full-batch gradient descent.

The notebook wrote the forward and backward passes in NumPy (ReLU hidden layer, softmax
output, weights and biases uniform in [-0.5, 0.5), learning rate 0.1, 200 iterations over
the whole training set) and printed the training accuracy every 10 iterations, then the
accuracy on held-out images (0.755 on MNIST). Here the same network is two accelnet
`Dense` layers driven by hand: `forward`, the fused softmax-cross-entropy loss on the
logits, `backward`, and a plain `SGD(0.1)` step; no `Sequential`.

Differences from the notebook, on purpose:
- its bias gradient was `1/m * np.sum(dZ)`, one scalar shared by every unit of a layer;
  accelnet's `Dense.backward` gives each unit its own bias gradient;
- it used Kaggle's 42,000-image `mnist.csv` (41,000 train / 1,000 test); this uses the
  standard 60,000 / 10,000 split.

    python examples/mnist_scratch_gd.py [--data auto|mnist|fashion] [--epochs 200] [--quick]
"""
import numpy as np

import accelnet as an

import _common as C

LEARNING_RATE = 0.1


def build_network():
    init = an.initializers.RandomUniform(-0.5, 0.5)  # np.random.rand(...) - 0.5
    net = [an.layers.Dense(10, activation="relu", kernel_initializer=init, bias_initializer=init),
           an.layers.Dense(10, kernel_initializer=init, bias_initializer=init)]  # logits
    return C.build_stack(net, (784,))


def main():
    # One iteration is one pass over the (sub)set, so --quick keeps the 200 iterations
    # and only shrinks the data.
    parser = C.make_parser(__doc__.splitlines()[0], default_epochs=200,
                           epochs_help="full-batch gradient-descent iterations", quick_epochs=200)
    args = parser.parse_args()
    backend = C.setup(args)
    data_name, (x_train, y_train), (x_test, y_test) = C.load_data(args.data)
    if args.quick:
        x_train, y_train = C.subset(x_train, y_train, 5000)
        x_test, y_test = C.subset(x_test, y_test, 1000)

    # Data go to the active backend once; the loop never leaves it.
    X = backend.asarray(C.flat01(x_train))
    Y = backend.asarray(y_train.astype(np.int64))
    X_test = backend.asarray(C.flat01(x_test))
    Y_test = backend.asarray(y_test.astype(np.int64))

    net = build_network()
    loss_fn = an.losses.SparseCategoricalCrossentropy(from_logits=True)
    optimizer = an.optimizers.SGD(learning_rate=LEARNING_RATE)
    params = {f"{i}/{k}": p for i, layer in enumerate(net) for k, p in layer.params.items()}
    grads = {f"{i}/{k}": g for i, layer in enumerate(net) for k, g in layer.grads.items()}

    losses, checkpoints, accuracies = [], [], []
    with C.Timer() as timer:
        for it in range(args.epochs):
            logits = C.forward(net, X, training=True)
            loss, grad = loss_fn.value_and_grad(Y, logits)
            losses.append(loss)  # a 0-d device array: read back once, after the loop
            if it % 10 == 0:  # as the notebook: accuracy of this iteration's forward pass
                acc = float((logits.argmax(axis=1) == Y).mean())
                checkpoints.append(it)
                accuracies.append(acc)
                print(f"Iteration: {it:4d}  train accuracy: {acc:.4f}  loss: {float(loss):.4f}")
            for layer in reversed(net):
                grad = layer.backward(grad)
            optimizer.apply(params, grads)
    losses = [float(l) for l in losses]

    test_logits = C.forward(net, X_test, training=False)
    predictions = backend.to_numpy(test_logits.argmax(axis=1))
    test_acc = float((predictions == y_test).mean())
    rows = [C.result("784-10-10 scratch GD", test_acc, args.epochs, timer)]
    print(f"final train accuracy {float((C.forward(net, X, False).argmax(axis=1) == Y).mean()):.4f}")

    # Plots: the training curve, and a few test images with their predictions.
    fig, ax = C.figure(1, 2)
    C.curve(ax[0, 0], accuracies, "train accuracy", x=checkpoints, marker="o", markersize=3)
    ax[0, 0].axhline(test_acc, color="tab:red", ls="--", label=f"test {test_acc:.3f}")
    C.style(ax[0, 0], "784-10-10, full-batch GD, lr 0.1", xlabel="iteration")
    C.curve(ax[0, 1], losses, x=range(len(losses)))
    C.style(ax[0, 1], f"cross-entropy ({C.data_title(data_name)})", xlabel="iteration",
            ylabel="loss")
    C.save(fig, args.out, "mnist_scratch_gd.png")

    names = (an.datasets.fashion_mnist.CLASS_NAMES if data_name == "fashion"
             else [str(d) for d in range(10)])
    fig, ax = C.figure(2, 5, panel=(1.5, 1.8))
    for i, a in enumerate(ax.flat):
        a.imshow(x_test[i], cmap="gray")
        ok = predictions[i] == y_test[i]
        a.set_title(f"{names[predictions[i]]}\n(true {names[y_test[i]]})", fontsize=7,
                    color="black" if ok else "tab:red")
        a.axis("off")
    C.save(fig, args.out, "mnist_scratch_gd_predictions.png")

    C.summary(rows, data_name)
    C.headline(test_acc, "784-10-10 scratch GD")


if __name__ == "__main__":
    main()
