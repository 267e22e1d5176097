"""Smoke-run every script in examples/ the way CI does: `--quick --out <tmp>`.

Each example runs in a subprocess (cwd = repository root, the same Python), must exit 0,
write its PNG plots, and print a headline `test accuracy: <x>` above chance (0.3 for 10
classes). The MLP example must also learn XOR. `--data fashion` pins the data set so the
run never tries to download MNIST (Fashion-MNIST comes from Debian's
dataset-fashion-mnist, installed by .ci/run). The five runs take about 1-2 minutes on
2 cores.
"""
import os
import re
import subprocess
import sys

import pytest

import accelnet as an

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
EXAMPLES = os.path.join(ROOT, "examples")


def _fashion_on_disk():
    return any(os.path.exists(os.path.join(d, "t10k-labels-idx1-ubyte.gz"))
               for d in an.datasets.fashion_mnist.candidate_dirs())


pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(not _fashion_on_disk(),
                                 reason="Fashion-MNIST not installed (apt-get install "
                                        "dataset-fashion-mnist)")]

CASES = {
    "mnist_scratch_gd.py": ["mnist_scratch_gd.png", "mnist_scratch_gd_predictions.png"],
    "mnist_mlp_keras.py": ["mnist_mlp_keras.png"],
    "fashion_scratch_optimizers.py": ["fashion_scratch_optimizers.png"],
    "convnet_noise_sweep.py": ["convnet_noise_sweep.png", "convnet_noise_samples.png"],
    "linear_mlp_cnn_compare.py": ["linear_mlp_cnn_accuracy.png", "linear_mlp_cnn_batches.png"],
}


def run_example(script, out_dir, *extra):
    cmd = [sys.executable, os.path.join(EXAMPLES, script), "--quick", "--data", "fashion",
           "--out", str(out_dir), *extra]
    proc = subprocess.run(cmd, cwd=ROOT, env=dict(os.environ), capture_output=True, text=True,
                          timeout=300)
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, f"{script} exited with {proc.returncode}:\n{output[-4000:]}"
    return proc.stdout


def test_every_example_is_tested():
    scripts = sorted(f for f in os.listdir(EXAMPLES) if f.endswith(".py") and not f.startswith("_"))
    assert scripts == sorted(CASES)


@pytest.mark.parametrize("script", sorted(CASES))
def test_example_quick_run(script, tmp_path):
    stdout = run_example(script, tmp_path)
    for png in CASES[script]:
        path = tmp_path / png
        assert path.is_file(), f"{script} did not write {png}; wrote {sorted(os.listdir(tmp_path))}"
        with open(path, "rb") as f:
            assert f.read(8) == b"\x89PNG\r\n\x1a\n", f"{png} is not a PNG"
    assert "data: Fashion-MNIST" in stdout
    headlines = re.findall(r"^test accuracy: ([0-9.]+)", stdout, flags=re.M)
    assert len(headlines) == 1, f"expected one 'test accuracy:' line:\n{stdout[-3000:]}"
    accuracy = float(headlines[0])
    assert 0.3 < accuracy <= 1.0, f"{script}: test accuracy {accuracy} is not above chance"
    if script == "mnist_mlp_keras.py":
        match = re.search(r"^XOR predictions: \[([0-9, ]+)\]", stdout, flags=re.M)
        assert match, "no 'XOR predictions:' line"
        assert [int(v) for v in match.group(1).split(",")] == [0, 1, 1, 0]
