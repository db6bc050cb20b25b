"""Compose the library's handlers in your own code (the README's example, kept runnable here)."""

import torch
from ignite.engine import Events

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

config = Config(batch_size=128)
loaders = get_data_loaders(config)  # train / validation / test
model = Net()
optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
trainer = create_trainer(model, optimizer)
evaluator = create_evaluator(model)

attach_loss_logging(trainer, every=200)
history = attach_evaluation(trainer, evaluator, loaders["validation"])
attach_early_stopping(trainer, evaluator, patience=2, monitor="accuracy")
attach_checkpointing(trainer, {"model": model, "optimizer": optimizer, "trainer": trainer}, "runs/composed")


@trainer.on(Events.COMPLETED)
def score_test_set(engine):
    test = create_evaluator(model).run(loaders["test"]).metrics
    best = max(row["val_accuracy"] for row in history.epochs)
    print(f"best validation accuracy {best:.1%}, test accuracy {test['accuracy']:.1%}")


trainer.run(loaders["train"], max_epochs=2)
