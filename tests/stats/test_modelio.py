import json

import numpy as np
import pytest

from danemap.errors import InputError
from danemap.stats._modelio import (
    estimator_from_dict,
    estimator_to_dict,
    model_fields,
    read_model_file,
)
from danemap.stats.combat import ComBat


@pytest.mark.parametrize(("content", "message"), [
    (None, "file not found"),
    ("{", "not valid JSON"),
    ("[1]", "expected format 'fmt', found 'list'"),
    ('{"format": "other"}', "expected format 'fmt', found 'other'"),
    ('{"format": "fmt", "version": 2}', "expected version 1, found 2"),
])
def test_read_model_file_errors(tmp_path, content, message):
    p = tmp_path / "m.json"
    if content is not None:
        p.write_text(content)
    with pytest.raises(InputError, match=f"my model {p}: {message}"):
        read_model_file(p, "my model", "fmt", 1)


def test_read_model_file_and_incomplete_fields(tmp_path):
    p = tmp_path / "m.json"
    p.write_text(json.dumps({"format": "fmt", "version": 1, "a": 1}))
    data = read_model_file(p, "my model", "fmt", 1)
    assert data["a"] == 1
    with pytest.raises(InputError, match=r"my model .*incomplete model file \('b'\)"), \
            model_fields(p, "my model"):
        data["b"]


def test_estimator_roundtrip_and_allow_list():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(30, 3))
    site = np.repeat(["a", "b", "c"], 10)
    cb = ComBat().fit(X, site)
    stored = json.loads(json.dumps(estimator_to_dict(cb)))
    np.testing.assert_allclose(estimator_from_dict(stored).transform(X, site),
                               cb.transform(X, site))
    stored["class"] = "os:system"
    with pytest.raises(InputError, match="not one danemap stores; refusing"):
        estimator_from_dict(stored)
