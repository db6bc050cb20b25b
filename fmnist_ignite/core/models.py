"""The models: the tutorial's MLP (the default), a small CNN, and the checks any model must pass."""

from __future__ import annotations

import torch
from torch import nn

from fmnist_ignite.errors import FmnistError

_LEVELS = 1 << 16  # a dropout mask's resolution: one 16-bit random integer an element


class Dropout(nn.Dropout):
    """``nn.Dropout`` with a mask drawn from 16-bit random integers: the same layer, a fraction of the time on a CPU.

    torch's dropout draws its mask with ``bernoulli_``, a large share of a ``speed`` training step on a CPU in
    torch's profiler. Here a mask element is one 16-bit lane of 64-bit random integers (``torch.randint``, four
    elements a draw) compared with a threshold: about a third of the time an element (docs/speed.md).
    An element is kept with probability ``1 - p'`` and scaled by ``1 / (1 - p')``, where ``p'`` is ``p`` to
    the nearest 1/65536 (0.115 -> 0.1150055): in fp32 the expectation is the input's; in bf16 the scale is
    rounded to bf16 first, as torch's dropout rounds it. It draws from ``generator`` when one is set (a run
    sets its own, ``use_generator``, so that runs in threads of one process do not draw from each other's),
    else from torch's process-wide generator, which ``torch.manual_seed`` makes repeat; in evaluation mode, or
    with ``p == 0``, it is the identity. The state dict is the same as ``nn.Dropout``'s (empty): the
    generator's state is not in it.

    Args:
        p: the probability of zeroing an element, 0 to 1 (checked as ``nn.Dropout`` checks it).

    Attributes:
        generator: the generator the masks are drawn from, on the device of the inputs; None (the default):
            torch's process-wide one.
    """

    def __init__(self, p: float = 0.5) -> None:
        super().__init__(p)
        self.generator: torch.Generator | None = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0:
            return x
        dropped = round(self.p * _LEVELS)
        if dropped >= _LEVELS:
            return x * 0
        count = x.numel()
        lanes = torch.randint(
            -(1 << 63), (1 << 63) - 1, ((count + 3) // 4,), generator=self.generator, dtype=torch.int64, device=x.device
        )
        bits = lanes.view(torch.int16)[:count].view(x.shape)
        scale = torch.where(bits >= dropped - _LEVELS // 2, _LEVELS / (_LEVELS - dropped), 0.0).to(x.dtype)
        return x * scale


def use_generator(model: nn.Module, generator: torch.Generator) -> int:
    """Make every ``Dropout`` of ``model`` draw its masks from ``generator`` (on the device the model computes
    on); returns how many there are. torch's own ``nn.Dropout`` has no generator of its own: it keeps drawing
    from torch's process-wide one."""
    layers = [layer for layer in model.modules() if isinstance(layer, Dropout)]
    for layer in layers:
        layer.generator = generator
    return len(layers)


class Net(nn.Module):
    """The tutorial's MLP: flatten, 784-512 ReLU, 512-512 ReLU, 512-10; logits out.

    Args:
        dropout: the dropout probability: 0 (the default) gives exactly the tutorial's model, down to its
            state-dict keys; ``dropout > 0`` adds a dropout layer after each ReLU.
    """

    def __init__(self, dropout: float = 0.0) -> None:
        super().__init__()
        self.flatten = nn.Flatten()
        layers = [nn.Linear(28 * 28, 512), nn.ReLU(), nn.Linear(512, 512), nn.ReLU(), nn.Linear(512, 10)]
        if dropout:
            layers[4:4] = [Dropout(dropout)]
            layers[2:2] = [Dropout(dropout)]
        self.linear_relu_stack = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear_relu_stack(self.flatten(x))

    @classmethod
    def for_state_dict(cls, state_dict: dict) -> Net:
        """A Net whose layout (with or without dropout layers) matches a saved state dict."""
        return cls(dropout=0.5 if "linear_relu_stack.3.weight" in state_dict else 0.0)


def conv_block(channels_in: int, channels_out: int, pool_first: bool = True) -> list[nn.Module]:
    """3x3 convolution, 2x2 max pooling, batch norm, then ReLU: half the size, more channels.

    Pooling before the batch norm leaves it, and the ReLU, a quarter of the elements: a shorter CNN step, and
    the layout the ``cnn`` recipe chose on validation (docs/speed.md).

    Args:
        channels_in: the input's channels.
        channels_out: the convolution's, and so the block's, output channels.
        pool_first: False: the earlier layout, convolution, batch norm, pooling, ReLU
            (the same function as ReLU before the pooling, on a quarter of the elements), kept for the
            checkpoints saved in it. Its batch norm is layer 1, not 2, so the state-dict keys tell the
            layouts apart.
    """
    conv = nn.Conv2d(channels_in, channels_out, 3, padding=1, bias=False)
    if not pool_first:
        return [conv, nn.BatchNorm2d(channels_out), nn.MaxPool2d(2), nn.ReLU()]
    return [conv, nn.MaxPool2d(2), nn.BatchNorm2d(channels_out), nn.ReLU()]


class CNN(nn.Module):
    """A small convolutional network: two conv blocks, then dropout, a 128-unit layer and 10 logits.

    The conv blocks (``conv_block``) have 16 and 32 channels (28 -> 14 -> 7 pixels). Its weights and images
    are kept channels-last (NHWC), the layout oneDNN's convolutions run fastest in: a training step 1.3x
    faster in fp32 and 1.6x in bf16 on CPU (docs/speed.md).

    Args:
        dropout: the dropout probability before each linear layer; 0 (the default): none. The state-dict keys
            do not depend on it.
        pool_first: False: the blocks' earlier layout (batch norm before the pooling), for
            the checkpoints saved in it; ``CNN.for_state_dict`` picks the layout from the keys.
    """

    def __init__(self, dropout: float = 0.0, pool_first: bool = True) -> None:
        super().__init__()
        self.features = nn.Sequential(*conv_block(1, 16, pool_first), *conv_block(16, 32, pool_first))
        self.classifier = nn.Sequential(
            nn.Flatten(),
            Dropout(dropout),
            nn.Linear(32 * 7 * 7, 128),
            nn.ReLU(),
            Dropout(dropout),
            nn.Linear(128, 10),
        )
        self.to(memory_format=torch.channels_last)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x.contiguous(memory_format=torch.channels_last)))

    @classmethod
    def for_state_dict(cls, state_dict: dict, dropout: float = 0.0) -> CNN:
        """A CNN in the layout of a saved state dict, whichever it is: batch norm after the pooling, or (the
        earlier layout) before it."""
        return cls(dropout, pool_first=_pools_first(state_dict))

    def match_layout(self, state_dict: dict) -> CNN:
        """Put the blocks, in place, in the layout ``state_dict`` was saved in (see ``for_state_dict``).

        Only the order of each block's pooling and batch norm changes: the modules and their parameters stay
        the same objects, so the optimizer or data-parallel wrapper already made for this model still hold
        them (a resumed run's, built before its checkpoint was read). A moving average's copy is a model of
        its own, to be matched too. A model whose blocks are not this class's (a subclass's own ``features``)
        is left as it is. Returns the model itself.
        """
        pools_first = _pools_first(state_dict)
        for block in (0, 4):
            pair = self.features[block + 1 : block + 3]
            if len(pair) == 2 and {type(layer) for layer in pair} == {nn.MaxPool2d, nn.BatchNorm2d}:
                if isinstance(pair[0], nn.MaxPool2d) != pools_first:
                    self.features[block + 1], self.features[block + 2] = pair[1], pair[0]
        return self


def match_saved_layout(model: nn.Module, state_dict: dict) -> None:
    """A CNN (or a subclass of it) put in the layout ``state_dict`` was saved in (``CNN.match_layout``), so
    that weights of the earlier layout (batch norm before the pooling) load into a model built today; any other model is
    left as it is."""
    if isinstance(model, CNN):
        model.match_layout(state_dict)


def _pools_first(state_dict: dict) -> bool:
    """Whether a CNN's saved state dict is of the layout with pooling before batch norm: in the layout before,
    layer 1 is the batch norm, whose entries name it; pooling has none."""
    return not any(isinstance(key, str) and key.startswith("features.1.") for key in state_dict)


MODELS = {"mlp": Net, "cnn": CNN}
"""The built-in model classes, by the name the ``model`` setting gives them.

"mlp" is the tutorial's (``Net``, the default) and "cnn" the small ``CNN``. Each class takes its dropout
probability: ``MODELS["cnn"](0.3)``; ``build_model(name, dropout)`` does the same and says what the names are
when one is unknown.
"""


def build_model(name: str, dropout: float = 0.0) -> nn.Module:
    """The built-in model called ``name``, a new one (``MODELS[name](dropout)``).

    Args:
        name: "mlp" (``Net``) or "cnn" (``CNN``), a key of ``MODELS``.
        dropout: the model's dropout probability; 0 (the default): none.

    Raises:
        FmnistError: ``name`` is not a built-in model ("custom" included: that run's model is one of your own).
    """
    if name == "custom":
        raise FmnistError(
            "this run used a model of your own (model: custom): pass it, train(config, model=YourModel())"
        )
    if name not in MODELS:
        raise FmnistError(f"unknown model {name!r}: choose one of {', '.join(MODELS)}")
    return MODELS[name](dropout)


def model_for_state_dict(state_dict: dict) -> nn.Module:
    """The built-in model whose layout matches saved weights, or a one-line error."""
    if "features.0.weight" in state_dict:
        return CNN.for_state_dict(state_dict)
    if "linear_relu_stack.0.weight" in state_dict:
        return Net.for_state_dict(state_dict)
    raise FmnistError(
        "not the weights of a built-in model (mlp or cnn); for your own model, load them into it: "
        "evaluate_checkpoint(path, model=YourModel())"
    )


def check_model_output(model: nn.Module, device: torch.device | str = "cpu") -> None:
    """Refuse, before training, a model that does not map N x 1 x 28 x 28 images to N x 10 logits."""
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            out = model(torch.zeros(2, 1, 28, 28, device=device))
    except Exception as exc:  # any layer may refuse the input shape
        raise FmnistError(
            f"the model failed on a batch of 2 images of 1 x 28 x 28: {type(exc).__name__}: {str(exc).splitlines()[0]}"
        ) from None
    finally:
        model.train(was_training)
    shape = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
    if shape != (2, 10):
        raise FmnistError(
            f"the model returned {shape} for a batch of 2 images of 1 x 28 x 28; it must return 2 x 10 logits"
        )
