"""A toy marker family in one module: the mean T1w intensity in every atlas region.

It is the worked example of CONTRIBUTING.md ("How to add a marker family"): subclass
MarkerFamily, implement its four steps, decorate with ``register``. Nothing in the workflow,
the statistics or the report names it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd

from danemap.atlas import region_means
from danemap.io import load_nifti
from danemap.markers.base import GroupTable, MarkerFamily, register


@register
class T1wMeanFamily(MarkerFamily):
    """Mean T1w intensity per atlas region (a toy: intensities are not volumes)."""

    name = "t1w_mean"
    modalities = ("anat/T1w",)

    def inputs(self, session: Any, config: Any) -> list[Any]:
        return [(session, f) for f in session.get_files("anat/T1w")]

    def compute(self, item: Any, atlas: Any, config: Any) -> pd.DataFrame:
        _, bids_file = item
        img = load_nifti(bids_file.path, expect_ndim=3)
        means = region_means(img, atlas.resample_to(img))
        return pd.DataFrame({"region": atlas.names, "mean_intensity": means})

    def write(self, result: pd.DataFrame, writer: Any, item: Any, atlas_name: str) -> list[Path]:
        session, _ = item
        path = writer.path(session.participant, "anat", "stats", ".tsv", atlas=atlas_name,
                           desc="t1wmean")
        writer.write_tsv(result, path, sidecar={
            "region": {"Description": "atlas region"},
            "mean_intensity": {"Description": "mean T1w intensity", "Units": "arbitrary"}})
        return [path]

    def collect(self, out_root: Path, atlas_name: str, config: Any) -> list[GroupTable]:
        rows = []
        for f in sorted(out_root.glob(f"sub-*/anat/*_atlas-{atlas_name}_desc-t1wmean_stats.tsv")):
            table = pd.read_csv(f, sep="\t").set_index("region")["mean_intensity"]
            rows.append({"participant_id": f.name.split("_")[0], **table.to_dict()})
        if not rows:
            return []
        path = out_root / "group" / "t1w_mean.tsv"
        path.parent.mkdir(parents=True, exist_ok=True)
        pd.DataFrame(rows).to_csv(path, sep="\t", index=False, na_rep="n/a")
        return [GroupTable("t1w_mean", path, "Toy: mean T1w intensity per region", "region",
                           ("harmonize", "glm"), self.name)]
