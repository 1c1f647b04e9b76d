"""Which models the app's model box may load: a policy checked before any loading starts.

A model name is one of three kinds:

- **shipped**: the embedded default model (``default`` and its aliases) and the model the app was started
  with (``app.py --model``);
- **local**: a directory on the server's disk (an absolute or ``./`` / ``~`` path, or any name that exists
  on disk);
- **hub**: anything else, read as a Hugging Face id (loading it may download gigabytes).

:meth:`ModelPolicy.open` allows everything (the app on loopback, started without policy flags: nothing
changes for a user on their own machine). :meth:`ModelPolicy.restricted` allows the shipped models, the
names given with ``app.py --models a,b`` (exact names, hub ids or directories), every local directory
only with ``--allow-local-models`` and every hub id only with ``--allow-downloads``. A refused name gets
one :class:`~visit.errors.VisitError` saying which flag would allow it; the sessions keep their models.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from visit.errors import VisitError
from visit.models.loading import shipped_model

def model_kind(name: str) -> str:
    """``"shipped"`` (the default model, gemma3-270m), ``"local"`` (a path on disk) or ``"hub"`` (a Hugging Face
    id)."""
    name = (name or "").strip()
    if not name or shipped_model(name) is not None:
        return "shipped"
    if name.startswith(("/", ".", "~", "\\")) or ":" in name[:3]:
        return "local"
    try:
        if Path(name).expanduser().exists():
            return "local"
    except (OSError, ValueError):  # a name the OS cannot even stat (null bytes, too long)
        return "local"
    return "hub"


def parse_names(text: str | None) -> tuple[str, ...]:
    """``"a, b,,c"`` -> ``("a", "b", "c")`` (the ``--models`` flag / ``VISIT_MODELS``)."""
    return tuple(n.strip() for n in (text or "").split(",") if n.strip())


@dataclass(frozen=True)
class ModelPolicy:
    allowed: frozenset = field(default_factory=frozenset)  # exact names allowed besides the shipped ones
    allow_local: bool = False
    allow_downloads: bool = False
    unrestricted: bool = False

    @classmethod
    def open(cls) -> "ModelPolicy":
        return cls(unrestricted=True)

    @classmethod
    def restricted(cls, names=(), allow_local: bool = False, allow_downloads: bool = False) -> "ModelPolicy":
        return cls(frozenset(n.strip() for n in names if n and n.strip()), allow_local, allow_downloads)

    def with_names(self, *names: str) -> "ModelPolicy":
        """A copy that also allows ``names`` (the model the app was started with)."""
        return ModelPolicy(self.allowed | {n.strip() for n in names if n and n.strip()}, self.allow_local,
                           self.allow_downloads, self.unrestricted)

    def check(self, name: str) -> None:
        """Raise :class:`VisitError` when this server may not load ``name``."""
        name = (name or "").strip()
        if self.unrestricted or name in self.allowed:
            return
        kind = model_kind(name)
        if kind == "shipped":
            return
        shown = name if len(name) <= 80 else name[:77] + "..."
        named = f"; models named at start: {', '.join(sorted(self.allowed))}" if self.allowed else ""
        if kind == "local" and not self.allow_local:
            raise VisitError(f"this server does not load local directories ('{shown}'): start it with "
                             f"--allow-local-models, or name the directory with --models{named}")
        if kind == "hub" and not self.allow_downloads:
            raise VisitError(f"this server does not download models ('{shown}'): start it with "
                             f"--allow-downloads, or name the model with --models{named}")

    def describe(self) -> str:
        """One line for the start-up banner."""
        if self.unrestricted:
            return "model box: any model (default, hub ids, local directories)"
        parts = ["the default model", "gemma3-270m", *sorted(n for n in self.allowed if model_kind(n) != "shipped")]
        if self.allow_local:
            parts.append("any local directory")
        if self.allow_downloads:
            parts.append("any hub id")
        return "model box: " + ", ".join(parts)
