"""The tutorial's MLP."""

from __future__ import annotations

from torch import nn


class Net(nn.Module):
    """Flatten, 784-512 ReLU, 512-512 ReLU, 512-10; logits out.

    With ``dropout=0`` (the default) this is exactly the tutorial's model, down to its state-dict
    keys; ``dropout > 0`` adds a dropout layer after each ReLU.
    """

    def __init__(self, dropout: float = 0.0):
        super().__init__()
        self.flatten = nn.Flatten()
        layers = [nn.Linear(28 * 28, 512), nn.ReLU(), nn.Linear(512, 512), nn.ReLU(), nn.Linear(512, 10)]
        if dropout:
            layers[4:4] = [nn.Dropout(dropout)]
            layers[2:2] = [nn.Dropout(dropout)]
        self.linear_relu_stack = nn.Sequential(*layers)

    def forward(self, x):
        return self.linear_relu_stack(self.flatten(x))

    @classmethod
    def for_state_dict(cls, state_dict: dict) -> Net:
        """A Net whose layout (with or without dropout layers) matches a saved state dict."""
        return cls(dropout=0.5 if "linear_relu_stack.3.weight" in state_dict else 0.0)
