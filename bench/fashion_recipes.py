"""Fashion-MNIST accuracy and speed of the training issue's two recipes, accelnet beside
PyTorch-CPU in the same run (same data, architecture, Keras init, Adam, batch 128):

- MLP 784-512-512-10 ReLU, Dropout 0.2 after each hidden layer, Adam 1e-3;
- the Keras ConvNet: Conv 32 3x3, Conv 64 3x3, MaxPool 2, Dropout 0.25, Dense 128,
  Dropout 0.5, Dense 10, Adam 1e-3.

    python -m bench.fashion_recipes [--mlp-epochs 5] [--cnn-epochs 1] [--out bench/results]

Reports test accuracy after the last epoch and seconds per epoch (mean over epochs);
writes `fashion_<date>_<host>.json`. Needs the Fashion-MNIST files (Debian package).
"""
import argparse
import datetime
import json
import os
import socket
import time

import numpy

from . import machine, peers_torch


def data():
    import accelnet as an
    (x, y), (xt, yt) = an.datasets.fashion_mnist.load_data()
    return (x / numpy.float32(255), y.astype(numpy.int64)), (xt / numpy.float32(255), yt.astype(numpy.int64))


def accelnet_model(name):
    import accelnet as an
    L = an.layers
    if name == "mlp":
        layers = [L.Flatten(input_shape=(28, 28, 1)), L.Dense(512, activation="relu"), L.Dropout(0.2),
                  L.Dense(512, activation="relu"), L.Dropout(0.2), L.Dense(10, activation="softmax")]
    else:
        layers = [L.Conv2D(32, (3, 3), activation="relu", input_shape=(28, 28, 1)),
                  L.Conv2D(64, (3, 3), activation="relu"), L.MaxPooling2D((2, 2)), L.Dropout(0.25),
                  L.Flatten(), L.Dense(128, activation="relu"), L.Dropout(0.5),
                  L.Dense(10, activation="softmax")]
    model = an.Sequential(layers)
    model.compile(optimizer=an.optimizers.Adam(1e-3), loss="sparse_categorical_crossentropy",
                  metrics=["accuracy"])
    return model


def run_accelnet(name, epochs, train, test):
    import accelnet as an
    an.random.seed(0)
    model = accelnet_model(name)
    times = []
    for _ in range(epochs):
        start = time.perf_counter()
        model.fit(train[0], train[1], batch_size=128, epochs=1, verbose=0)
        times.append(time.perf_counter() - start)
    _, acc = model.evaluate(test[0], test[1], batch_size=512, verbose=0)
    return {"test_accuracy": acc, "s_per_epoch": sum(times) / len(times), "epoch_s": times}


def torch_model(torch, name):
    nn = torch.nn
    if name == "mlp":
        return nn.Sequential(nn.Flatten(), nn.Linear(784, 512), nn.ReLU(), nn.Dropout(0.2),
                             nn.Linear(512, 512), nn.ReLU(), nn.Dropout(0.2), nn.Linear(512, 10))
    return peers_torch._model(torch, "cnn")


def run_torch(name, epochs, train, test, threads):
    torch = peers_torch.import_torch()
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    model = torch_model(torch, name)
    for m in model.modules():
        if isinstance(m, (torch.nn.Linear, torch.nn.Conv2d)):
            torch.nn.init.xavier_uniform_(m.weight)
            torch.nn.init.zeros_(m.bias)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3, eps=1e-7)
    loss_fn = torch.nn.CrossEntropyLoss()
    x = torch.from_numpy(numpy.ascontiguousarray(train[0][:, None]))  # NCHW
    y = torch.from_numpy(train[1])
    times = []
    for _ in range(epochs):
        start = time.perf_counter()
        model.train()
        order = torch.randperm(len(x))
        for i in range(0, len(x), 128):
            idx = order[i:i + 128]
            opt.zero_grad(set_to_none=True)
            loss_fn(model(x[idx]), y[idx]).backward()
            opt.step()
        times.append(time.perf_counter() - start)
    model.eval()
    with torch.no_grad():
        xt = torch.from_numpy(numpy.ascontiguousarray(test[0][:, None]))
        pred = torch.cat([model(xt[i:i + 512]).argmax(1) for i in range(0, len(xt), 512)])
    acc = float((pred.numpy() == test[1]).mean())
    return {"test_accuracy": acc, "s_per_epoch": sum(times) / len(times), "epoch_s": times}


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--mlp-epochs", type=int, default=5)
    p.add_argument("--cnn-epochs", type=int, default=1)
    p.add_argument("--out", default="bench/results")
    args = p.parse_args(argv)
    import numba

    import accelnet as an
    threads = numba.config.NUMBA_NUM_THREADS
    (x, y), (xt, yt) = data()
    train, test = (x[..., None], y), (xt[..., None], yt)
    results = {}
    for name, epochs in (("mlp", args.mlp_epochs), ("cnn", args.cnn_epochs)):
        if epochs <= 0:
            continue
        for contender, fn in (("accelnet", lambda: run_accelnet(name, epochs, train, test)),
                              ("torch", lambda: run_torch(name, epochs, (x, y), (xt, yt), threads))):
            try:
                results[f"{name}/{contender}"] = r = {"epochs": epochs, **fn()}
            except peers_torch.Unavailable as exc:
                results[f"{name}/{contender}"] = r = {"unavailable": str(exc)}
            print(f"{name:4} {contender:9}", r if "unavailable" in r else
                  f"{epochs} epoch(s): test accuracy {r['test_accuracy']:.4f}, "
                  f"{r['s_per_epoch']:.2f} s/epoch", flush=True)
    report = {"suite": "fashion_recipes", "date": datetime.datetime.now().isoformat(timespec="seconds"),
              "machine": machine.collect(an.get_backend(), quick=True),
              "results": results}
    os.makedirs(args.out, exist_ok=True)
    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    path = os.path.join(args.out, f"fashion_{stamp}_{socket.gethostname()}.json")
    from accelnet import fileio
    fileio.write_text(path, json.dumps(report, indent=2, default=str))
    print("wrote", path)


if __name__ == "__main__":
    main()
