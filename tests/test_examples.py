"""End to end on the real data set: examples/run.py and the README's example, as a user runs them."""

from __future__ import annotations

import re

from helpers import ROOT, run_script
from PIL import Image

from fmnist_ignite.data.fashion_mnist import load_fashion_mnist


def test_run_py_trains_an_epoch_on_the_real_data_with_honest_numbers(real_data, tmp_path):
    out = tmp_path / "out"
    proc = run_script(
        [str(ROOT / "examples" / "run.py"), "--epochs", "1", "--output-dir", str(out)],
        cwd=tmp_path,
        data_dir=real_data,
    )
    assert proc.returncode == 0, proc.stderr
    threads, precision, *lines = proc.stdout.splitlines()
    assert threads.startswith("CPU: 1 thread of ") and threads.endswith(" (OMP_NUM_THREADS)")  # the test's env
    assert precision.startswith("Precision: ") and "(auto: this " in precision
    assert lines[:3] == ["Epoch 1", "-------------------------------", lines[2]]
    assert re.fullmatch(r"loss: \d\.\d{6}  \[    0/55000\]", lines[2])
    loss_lines = [line for line in lines if line.startswith("loss: ")]
    assert len(loss_lines) == 9  # 860 batches of 64, logged every 100 from the first
    assert loss_lines[-1].endswith("[51200/55000]")
    interval = r" \(95% CI ([\d.]+)-([\d.]+)%\)"
    validation = re.search(rf"^Validation: Accuracy: ([\d.]+)%{interval}, Avg loss: ([\d.]+)$", proc.stdout, re.M)
    test = re.search(
        rf"^Test, best \(epoch 1\) weights: Accuracy: ([\d.]+)%{interval}, Avg loss: ([\d.]+)$", proc.stdout, re.M
    )
    assert validation and test, proc.stdout
    # One epoch of the tutorial's SGD lands around 65-75%; above 100% would be the tutorial's bug.
    assert 55 < float(validation[1]) < 90 and 55 < float(test[1]) < 90
    assert "Training completed" in lines
    assert float(test[2]) < float(test[1]) < float(test[3]) and float(test[3]) - float(test[2]) < 2  # 10,000 images
    best = out / f"best_model_1_neg_val_loss=-{float(validation[4]):.4f}.pt"
    assert sorted(p.name for p in out.glob("*.pt")) == [best.name, "training_checkpoint_1.pt"]
    assert {"metrics.csv", "summary.json", "config.json", "curves.png", "confusion.png", "test_predictions.npz"} <= {
        p.name for p in out.iterdir()
    }

    # `fmnist-ignite evaluate` scores the saved best model exactly as the run did.
    evaluated = run_script(["-m", "fmnist_ignite", "evaluate", str(best)], tmp_path, real_data)
    assert evaluated.returncode == 0, evaluated.stderr
    assert (
        evaluated.stdout.splitlines()[0]
        == f"Test: Accuracy: {test[1]}% (95% CI {test[2]}-{test[3]}%), Avg loss: {test[4]}"
    )

    # `predict` on the test set's first trousers (the easiest class) names them.
    images, labels = load_fashion_mnist(real_data)["test"]
    first_trouser = int((labels == 1).nonzero()[0])
    png = tmp_path / "trouser.png"
    Image.fromarray(images[first_trouser].numpy(), mode="L").save(png)
    predicted = run_script(["-m", "fmnist_ignite", "predict", str(best), str(png)], tmp_path, real_data)
    assert predicted.returncode == 0 and predicted.stdout.startswith(f"{png}: Trouser ("), predicted.stdout


def readme_example() -> str:
    text = (ROOT / "docs" / "library.md").read_text()
    return re.search(r"<!-- compose-example -->\n```python\n(.*?)```", text, re.S)[1]


def test_readme_example_is_examples_compose_handlers():
    source = (ROOT / "examples" / "compose_handlers.py").read_text()
    assert source.split('"""\n\n', 1)[1] == readme_example()


def test_readme_example_runs_as_written(real_data, tmp_path):
    script = tmp_path / "example.py"
    script.write_text(readme_example())
    proc = run_script([str(script)], cwd=tmp_path, data_dir=real_data)
    assert proc.returncode == 0, proc.stderr
    accuracies = re.search(r"best validation accuracy ([\d.]+)%, test accuracy ([\d.]+)%", proc.stdout)
    assert accuracies and all(70 < float(a) <= 100 for a in accuracies.groups())
    assert sorted(p.name for p in (tmp_path / "runs" / "composed").glob("*.pt")) == [
        "training_checkpoint_1.pt",
        "training_checkpoint_2.pt",
    ]
