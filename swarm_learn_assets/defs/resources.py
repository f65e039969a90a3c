"""The data root as a Dagster resource, so every asset reads and writes the same layout."""

import dagster as dg

from ..core.layout import DATA_ROOT_ENV, DataLayout, default_data_root


class SwarmData(dg.ConfigurableResource):
    """Where landing files arrive and all outputs go (`$SWARM_LEARN_DATA` unless configured)."""

    data_root: str = ""

    @property
    def layout(self) -> DataLayout:
        from pathlib import Path

        return DataLayout(Path(self.data_root).resolve() if self.data_root else default_data_root())


__all__ = ["SwarmData", "DATA_ROOT_ENV"]
