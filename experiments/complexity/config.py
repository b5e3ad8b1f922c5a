"""What the complexity report counts: the paper's global and sub-networks of Tables 2.2, 3.1 and
3.4, their input sizes and counting conventions (no training, so no ``--set``)."""

from __future__ import annotations

from dcnn_dd.complexity import KERAS, TORCH
from dcnn_dd.models.zoo import VGG16, CifarResNet, ResNet50, ResNet101


# ----------------------------------------------------------------------------------- the models
def specs():
    """(key, model, input HxW, include, convention, extra evaluations {name: (model, HxW)})."""
    out = []
    # Table 2.2: torchvision convention; FLOPs at 224 (112) and, as extra keys, at the caption's 214 (107).
    for name, model in (("VGG16", VGG16()), ("ResNet50", ResNet50()), ("ResNet101", ResNet101())):
        out.append((("2.2", name, "global", 1, None), model, (224, 224), TORCH, "torchvision",
                    {"gflops_at_214": (model, (214, 214))}))
        sub = model.subnet(4)
        out.append((("2.2", name, "subnet", 4, None), sub, (112, 112), TORCH, "torchvision",
                    {"gflops_at_214": (sub, (107, 107))}))
    # Table 3.1: Keras convention, projection shortcuts (+BN), conv bias.
    for depth in (32, 56, 110):
        model = CifarResNet(depth)
        name = f"ResNet{depth}"
        out.append((("3.1", name, "global", 1, None), model, (32, 32), KERAS, "keras", {}))
        out.append((("3.1", name, "subnet", 4, True), model.subnet(4), (20, 20), KERAS, "keras", {}))
        out.append((("3.1", name, "subnet", 4, False), model.subnet(4), (16, 16), KERAS, "keras", {}))
    # Table 3.4: Keras convention, Keras' ResNet (stride on the first 1x1 conv), 1024-FC, 101 classes.
    for name, ctor in (("ResNet50", ResNet50), ("ResNet101", ResNet101)):
        model = ctor(fc_hidden=1024, num_classes=101, conv_bias=True)
        v15 = ctor(fc_hidden=1024, num_classes=101, conv_bias=True, stride_on="3x3")
        out.append((("3.4", name, "global", 1, None), model, (224, 224), KERAS, "keras",
                    {"gflops_stride_on_3x3": (v15, (224, 224))}))
        for K, hw in ((4, (140, 140)), (8, (140, 80)), (16, (70, 70))):
            extra = {"gflops_at_96x96": (model.subnet(K), (96, 96))} if K == 8 else {}
            out.append((("3.4", name, "subnet", K, None), model.subnet(K), hw, KERAS, "keras", extra))
    return out
