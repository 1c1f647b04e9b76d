"""Helpers for tests that look inside Dash component trees without a browser."""


def texts(component) -> list[str]:
    """Every text child in a Dash component tree (what React renders as text), numbers as strings."""
    out = []
    plain = isinstance(component, (list, tuple, str, int, float))
    children = component if plain else getattr(component, "children", None)  # a grid has none: its cells are data
    if isinstance(children, (str, int, float)):
        return [str(children)]
    for child in children if isinstance(children, (list, tuple)) else [children]:
        if child is not None:
            out += texts(child)
    return out


def grids(component) -> list:
    """Every AG Grid (visit.ui.grid.data_grid) in a Dash component tree, in document order."""
    if type(component).__name__ == "AgGrid":
        return [component]
    children = getattr(component, "children", None)
    out = []
    for child in children if isinstance(children, (list, tuple)) else [children]:
        if child is not None and not isinstance(child, (str, int, float)):
            out += grids(child)
    return out
