"""The per-epoch history that the handlers fill and the checkpoints keep."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Mapping

from ignite.base import Serializable

from fmnist_ignite.config.settings import best_row


class MetricsHistory(Serializable):
    """The per-epoch history of a run: one row per epoch, filled in by handlers as the epoch ends.

    A row is a dict, e.g. ``{"epoch": 3, "val_loss": ..., "val_accuracy": ..., ...}``. The history is saved
    and loaded with the checkpoints, so a resumed run keeps it whole.
    """

    def __init__(self) -> None:
        self.epochs: list[dict] = []

    def record(self, epoch: int, **values: float) -> None:
        """Add ``values`` to the row of ``epoch``, starting that row if it is new."""
        if not self.epochs or self.epochs[-1]["epoch"] != epoch:
            self.epochs.append({"epoch": epoch})
        self.epochs[-1].update({name: float(value) for name, value in values.items()})

    def best(self, key: str) -> dict | None:
        """The row with the best ``key`` (lowest for a loss, else highest); the first one on ties."""
        return best_row(self.epochs, key)

    _state_dict_all_req_keys = ("epochs",)

    def state_dict(self) -> OrderedDict:
        return OrderedDict(epochs=[dict(row) for row in self.epochs])

    def load_state_dict(self, state_dict: Mapping) -> None:
        super().load_state_dict(state_dict)  # Ignite's check of the keys
        self.epochs = [dict(row) for row in state_dict["epochs"]]
