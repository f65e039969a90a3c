"""The data root as a Dagster resource, so every asset reads and writes the same layout."""

from pathlib import Path

import dagster as dg

from ..core.layout import DataLayout, default_data_root


class SwarmData(dg.ConfigurableResource):
    """Where landing files arrive and all outputs go (`$SWARM_LEARN_DATA` unless configured)."""

    data_root: str = ""

    @property
    def layout(self) -> DataLayout:
        return DataLayout(Path(self.data_root).resolve() if self.data_root else default_data_root())
