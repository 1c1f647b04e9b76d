"""Where a fact lives in the model: causal tracing (ROME's corrupt-and-restore) and knowledge neurons
(integrated gradients over MLP neurons), both on the hook layer (:mod:`visit.hooks`)."""
