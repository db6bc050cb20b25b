"""Compose the library's handlers in your own code (the README's example, kept
runnable here)."""

from pathlib import Path

import torch
from ignite.engine import Events
from ignite.utils import manual_seed

from fmnist_ignite import (
    Config,
    Net,
    attach_checkpointing,
    attach_early_stopping,
    attach_evaluation,
    attach_loss_logging,
    create_evaluator,
    create_trainer,
    get_data_loaders,
)

manual_seed(0)  # the same weights and batches each time it runs
OUTPUT = "runs/composed"
if any(Path(OUTPUT).glob("*.pt")):  # never over an earlier run's checkpoints
    raise SystemExit(
        f"error: {OUTPUT} already holds checkpoints: move them away, "
        "or set OUTPUT to a new directory"
    )
config = Config(batch_size=128)
loaders = get_data_loaders(config)  # train / validation / test
model = Net()
optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
trainer = create_trainer(model, optimizer)
evaluator = create_evaluator(model)

attach_loss_logging(trainer, every=200)
history = attach_evaluation(trainer, evaluator, loaders["validation"])
attach_early_stopping(trainer, evaluator, patience=2, monitor="accuracy")
attach_checkpointing(
    trainer, {"model": model, "optimizer": optimizer, "trainer": trainer}, OUTPUT
)


@trainer.on(Events.COMPLETED)
def score_test_set(engine):
    test = create_evaluator(model).run(loaders["test"]).metrics
    best = max(row["val_accuracy"] for row in history.epochs)
    print(
        f"best validation accuracy {best:.1%}, test accuracy {test['accuracy']:.1%}"
    )


trainer.run(loaders["train"], max_epochs=2)
