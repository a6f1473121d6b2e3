"""AlexNet (Krizhevsky, Sutskever, Hinton, NIPS 2012), reproduced with Lightning and Hydra."""

from alexnet.lrn import LocalResponseNorm
from alexnet.model import AlexNet
from alexnet.towers import TwoTowerAlexNet, build_net

__all__ = ["AlexNet", "LocalResponseNorm", "TwoTowerAlexNet", "build_net"]
