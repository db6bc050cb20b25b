"""The computation: models, trainer and evaluator engines, device and precision, optimizers, process agreements."""
