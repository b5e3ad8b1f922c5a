"""Model zoo: the theorems' setting (:mod:`.plain`) and the paper's architectures (:mod:`.zoo`).

Every model has ``subnet(K)``: the same model with its hidden widths divided by K, (2.7)-(2.8).
1-D and 3-D CNNs are ``PlainCNN(ndim=1)`` and ``PlainCNN(ndim=3)``.
"""

from dcnn_dd.models.plain import MLP, AutoEncoder, ElmanRNN, PlainCNN, divide_widths
from dcnn_dd.models.zoo import VGG16, BottleneckResNet, CifarResNet, DogsCatsCNN, ResNet50, ResNet101

__all__ = [
    "MLP", "VGG16", "AutoEncoder", "BottleneckResNet", "CifarResNet", "DogsCatsCNN", "ElmanRNN", "PlainCNN",
    "ResNet50", "ResNet101", "divide_widths",
]
