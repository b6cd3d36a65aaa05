"""danemap.io: NIfTI loading, BIDS discovery, participants.tsv, the TSV and derivatives writers.

Heavy libraries (nibabel, pandas, isal) are imported inside the functions that
need them, so importing this subpackage is cheap.
"""

from danemap.io._bids import (
    BIDSDataset,
    BIDSFile,
    SessionData,
    bids_file,
    discover,
    parse_entities,
)
from danemap.io._derivatives import (
    DerivativesWriter,
    atomic_open,
    atomic_write_bytes,
    atomic_write_text,
    check_output_not_in_input,
    read_json,
    read_tsv,
    table_sidecar,
    write_json,
    write_table,
)
from danemap.io._nifti import (
    DEFAULT_MAX_BYTES,
    is_gzip_error,
    load_nifti,
    load_nifti_header,
    write_nifti,
)
from danemap.io._participants import read_participants, validate_label

__all__ = [
    "DEFAULT_MAX_BYTES",
    "BIDSDataset",
    "BIDSFile",
    "DerivativesWriter",
    "SessionData",
    "atomic_open",
    "atomic_write_bytes",
    "atomic_write_text",
    "bids_file",
    "check_output_not_in_input",
    "discover",
    "is_gzip_error",
    "load_nifti",
    "load_nifti_header",
    "parse_entities",
    "read_json",
    "read_participants",
    "read_tsv",
    "table_sidecar",
    "validate_label",
    "write_json",
    "write_nifti",
    "write_table",
]
