"""Model zoo: the theorems' setting (:mod:`.plain`) and the paper's architectures (:mod:`.zoo`)."""

from dcnn_dd.models.plain import MLP, AutoEncoder, ElmanRNN, PlainCNN, divide_widths

__all__ = ["MLP", "AutoEncoder", "ElmanRNN", "PlainCNN", "divide_widths"]
