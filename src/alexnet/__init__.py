"""AlexNet (Krizhevsky, Sutskever, Hinton, NIPS 2012), reproduced with Lightning and Hydra."""

from alexnet.model import AlexNet, LocalResponseNorm

__all__ = ["AlexNet", "LocalResponseNorm"]
