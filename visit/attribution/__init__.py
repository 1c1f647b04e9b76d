"""Attribution (Yu & Ananiadou): log-probability increase of layers, heads and neurons, baselines,
query neurons, token contrast and intervention.

The contract with the graph builder: :func:`head_logprob_increase` and
:func:`ffn_neuron_logprob_increase` (exact scores under the frozen final norm).

Modules: ``logprob`` (definitions, brute force), ``fast`` (exact top-K by bounds + rescoring),
``baselines`` (003 Table 2), ``query`` (query neurons), ``contrast`` (bs-values), ``intervention``
(zeroing hooks, metrics), ``evaluation`` (Table 2 on a prompt set), ``ranking`` (plain-data lists, memoised
per trace). Its figures are drawn by :mod:`visit.render.attribution`, its report section by
:mod:`visit.report.attribution`.
"""

from visit.attribution.fast import attn_neuron_scores, ffn_neuron_logprob_increase, ffn_neuron_scores
from visit.attribution.logprob import (
    attn_neuron_logprob_increase_brute,
    ffn_neuron_logprob_increase_brute,
    head_logprob_increase,
    layer_logprob_increase,
)

__all__ = [
    "attn_neuron_scores",
    "ffn_neuron_scores",
    "attn_neuron_logprob_increase_brute",
    "ffn_neuron_logprob_increase",
    "ffn_neuron_logprob_increase_brute",
    "head_logprob_increase",
    "layer_logprob_increase",
]
