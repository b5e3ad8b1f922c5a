"""CNN-DNN (Klawonn, Weber, Lanser 2024): local CNNs on sub-images, aggregated into one decision.

==============  ============================================================================
``aggregate``   averaging, majority vote (documented tie rule), logit sum, the ``DNN`` module
``model``       the coherent CNN-DNN (K stacked local CNNs + DNN as one model), ``two_stage``
``train``       the phases: local CNNs (= Algorithm 1's sub-networks), DNN on frozen local
                outputs, coherent from random init, transfer learning; resumable
==============  ============================================================================
"""

from dcnn_dd.cnn_dnn import aggregate
from dcnn_dd.cnn_dnn.aggregate import AGGREGATORS, DNN, average, default_hidden, majority_vote, summed_logits, votes
from dcnn_dd.cnn_dnn.model import CNNDNN, join, split, two_stage

__all__ = [
    "AGGREGATORS", "CNNDNN", "CNNDNNConfig", "DNN", "aggregate", "average", "default_hidden", "join",
    "majority_vote", "run_cnn_dnn", "split", "summed_logits", "two_stage", "votes",
]


def __getattr__(name):  # the training pulls in the data pipeline; import it on first use
    if name in ("CNNDNNConfig", "run_cnn_dnn"):
        from dcnn_dd.cnn_dnn import train

        return getattr(train, name)
    raise AttributeError(name)
