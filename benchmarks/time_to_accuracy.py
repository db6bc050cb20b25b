"""Wall time from process start until the best-validation model's test accuracy reaches 88/89/90%.

After each epoch, when the validation score is the best so far, the current weights (the model the
run would keep) are scored on the test set, for this report only: nothing is selected on it. The
time those test evaluations take is subtracted, so the figures are those of the run itself.

    python benchmarks/time_to_accuracy.py --recipe best [--epochs N] [--threads N]
"""

import time

START = time.perf_counter()  # before torch is imported: imports count, as they do for a user

import argparse  # noqa: E402
import os  # noqa: E402
import tempfile  # noqa: E402

import torch  # noqa: E402
from ignite.engine import Events  # noqa: E402

from fmnist_ignite import RECIPES, Training, recipe  # noqa: E402
from fmnist_ignite.core.device import cpu_capability  # noqa: E402

THRESHOLDS = (0.88, 0.89, 0.90)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--recipe", choices=RECIPES, default="best")
    parser.add_argument("--epochs", type=int, help="override the recipe's epochs")
    parser.add_argument("--threads", type=int)
    parser.add_argument("--precision", choices=("auto", "fp32", "bf16"), default="auto")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--data-dir", default="data")
    args = parser.parse_args()
    overrides = {"epochs": args.epochs} if args.epochs else {}
    with tempfile.TemporaryDirectory() as output_dir:
        config = recipe(
            args.recipe,
            **overrides,
            threads=args.threads,
            precision=args.precision,
            seed=args.seed,
            data_dir=args.data_dir,
            output_dir=output_dir,
            progress=False,
            log_interval=10**9,
        )
        training = Training(config, log=lambda line: None)
        history = training.handlers.history
        reached, rows, excluded = {}, [], 0.0

        @training.trainer.on(Events.EPOCH_COMPLETED)
        def score_best_on_test(engine):
            nonlocal excluded
            now = time.perf_counter() - START - excluded
            latest = history.epochs[-1]
            if history.best(f"val_{config.monitor}") is latest:
                started = time.perf_counter()
                accuracy = training.evaluate(training.loaders["test"])["accuracy"]
                excluded += time.perf_counter() - started
                for threshold in THRESHOLDS:
                    if accuracy >= threshold:
                        reached.setdefault(threshold, (now, engine.state.epoch))
            rows.append((engine.state.epoch, now, latest["val_accuracy"]))

        result = training.run()

    print(
        f"recipe {args.recipe}: {config.epochs} epochs, batch {config.batch_size}, {config.optimizer}, "
        f"lr {config.lr}, {config.scheduler} schedule, {training.precision} ({training.precision_reason}); "
        f"CPU {cpu_capability()}, {os.cpu_count()} cores, torch {torch.__version__}, {torch.get_num_threads()} threads"
    )
    for epoch, seconds, val_accuracy in rows:
        print(f"  epoch {epoch:>3}: {seconds:6.1f} s, validation accuracy {val_accuracy:.2%}")
    for threshold in THRESHOLDS:
        if threshold in reached:
            seconds, epoch = reached[threshold]
            print(f"test accuracy >= {threshold:.0%}: {seconds:.1f} s from process start (epoch {epoch})")
        else:
            print(f"test accuracy >= {threshold:.0%}: not reached")
    best = history.best(f"val_{config.monitor}")
    print(
        f"final: {result.scored_weights} weights, validation {best['val_accuracy']:.2%}, "
        f"test {result.test_metrics['accuracy']:.2%}; total {time.perf_counter() - START - excluded:.1f} s"
    )


if __name__ == "__main__":
    main()
