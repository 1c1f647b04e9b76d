"""How the app shows plotly charts in the narrow side panel."""

from __future__ import annotations

# Charts in the narrow side panel: plotly's tool bar would sit on their titles (the report keeps it)
PANEL_GRAPH_CONFIG = {"displaylogo": False, "displayModeBar": False, "responsive": True}
