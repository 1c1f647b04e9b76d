"""Hook names: the one place that spells ``blocks.{layer}.{suffix}`` (TransformerLens names, :mod:`visit.hooks.points`).

>>> hook_name(3, "mlp.hook_post")
'blocks.3.mlp.hook_post'
>>> parse_hook_name("blocks.3.mlp.hook_post")
(3, 'mlp.hook_post')
>>> parse_hook_name("ln_final.hook_in")
(None, 'ln_final.hook_in')

Model-level names (``hook_embed``, ``ln_final.hook_in``, ``logits``) have no layer and are written as they are.
"""

from __future__ import annotations

import re

_LAYER_NAME = re.compile(r"^blocks\.(\d+)\.(.+)$")


def block_name(layer: int) -> str:
    """``"blocks.{layer}"``: the prefix of every per-layer hook name (and the block's module name)."""
    return f"blocks.{int(layer)}"


def hook_name(layer: int, suffix: str) -> str:
    """``"blocks.{layer}.{suffix}"``, e.g. ``hook_name(3, "attn.hook_z") == "blocks.3.attn.hook_z"``."""
    return f"{block_name(layer)}.{suffix}"


def parse_hook_name(name: str) -> tuple[int | None, str]:
    """``"blocks.3.mlp.hook_post"`` -> ``(3, "mlp.hook_post")``; model-level names -> ``(None, name)``."""
    m = _LAYER_NAME.match(name)
    return (int(m.group(1)), m.group(2)) if m else (None, name)
