"""Each way a reranker can be unavailable → its typed code (reranker.availability.UnavailableReason), on the
exception and on the status, whatever the English text says."""

from __future__ import annotations

import copy
import json
import pickle
import sys

import pytest

from reranker import backends
from reranker.availability import (
    DependencyUnavailable,
    ModelUnavailable,
    RerankerState,
    RerankerStatus,
    UnavailableReason,
    as_status,
    status_from_error,
)
from reranker.backends import available_rerankers, load_reranker, reranker_status
from reranker.config import ViRankerConfig

R = UnavailableReason
TINY = dict(vocab_size=1000, hidden_size=32, num_layers=1, num_heads=4, intermediate_size=64,
            max_position_embeddings=66, type_vocab_size=1, max_query_length=16, max_length=64)


@pytest.fixture
def nothing_installed(tmp_path, monkeypatch):
    """No env var, an empty HF cache, no default ViRanker dir."""
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "empty-hub"))
    monkeypatch.setattr(backends, "DEFAULT_VIRANKER_DIR", tmp_path / "no-model")
    for spec in backends.SPECS.values():
        monkeypatch.delenv(spec.env, raising=False)
    return tmp_path


def _code(name: str, **kw) -> ModelUnavailable:
    with pytest.raises(ModelUnavailable) as e:
        load_reranker(name, **kw)
    return e.value


def test_nothing_on_disk_gives_no_default_model_or_not_downloaded(nothing_installed):
    err = _code("viranker")
    assert err.code is R.NO_DEFAULT_MODEL and err.env == "VIRANKER_MODEL" and err.hub_id is None
    for name in ("phoranker", "bge-reranker-v2-m3", "viranker-hf"):
        err = _code(name)
        assert err.code is R.NOT_DOWNLOADED and err.env == backends.SPECS[name].env
        assert err.hub_id == backends.SPECS[name].hub_id
    status = available_rerankers()
    assert {n: s.code for n, s in status.items()} == {"viranker": R.NO_DEFAULT_MODEL, "phoranker": R.NOT_DOWNLOADED,
                                                     "bge-reranker-v2-m3": R.NOT_DOWNLOADED,
                                                     "viranker-hf": R.NOT_DOWNLOADED}
    assert all(s.state is RerankerState.UNAVAILABLE and not s.usable for s in status.values())
    assert all(s.startswith("unavailable: ") for s in status.values())  # the old text, for the old readers


def test_broken_dirs_give_their_codes(nothing_installed, monkeypatch):
    tmp = nothing_installed
    assert _code("viranker-hf", path=tmp / "missing").code is R.NOT_A_DIRECTORY
    monkeypatch.setenv("PHORANKER_PATH", str(tmp / "missing"))  # the env var's dir: same code
    assert reranker_status("phoranker").code is R.NOT_A_DIRECTORY
    (tmp / "m").mkdir()
    assert _code("viranker", path=tmp / "m").code is R.NO_CONFIG
    (tmp / "m" / "config.json").write_text(json.dumps(ViRankerConfig(**TINY).to_dict()))
    assert _code("viranker", path=tmp / "m").code is R.NO_WEIGHTS
    (tmp / "m" / "model.safetensors").write_bytes(b"not safetensors")
    err = _code("viranker", path=tmp / "m")
    assert err.code is R.LOAD_FAILED and err.env == "VIRANKER_MODEL"


def test_a_package_missing_or_broken_gives_its_code(nothing_installed, monkeypatch):
    from indexing import deps

    model_dir = nothing_installed / "hf"
    model_dir.mkdir()
    (model_dir / "config.json").write_text("{}")
    (model_dir / "model.safetensors").write_bytes(b"x")  # never read: the import fails first
    monkeypatch.setitem(sys.modules, "sentence_transformers", None)  # import raises ImportError
    with pytest.raises(DependencyUnavailable) as e:
        load_reranker("bge-reranker-v2-m3", path=model_dir)
    assert e.value.code is R.PACKAGE_BROKEN and e.value.package == "sentence-transformers"  # installed here
    monkeypatch.setattr(deps, "installed_version", lambda dist: None)  # as if it were not installed
    with pytest.raises(DependencyUnavailable) as e:
        load_reranker("bge-reranker-v2-m3", path=model_dir)
    assert e.value.code is R.PACKAGE_MISSING and e.value.package == "sentence-transformers"


def test_the_code_does_not_depend_on_the_english_text():
    err = ModelUnavailable("viranker", "has no weights", "not a directory", R.NO_CONFIG)
    assert err.code is R.NO_CONFIG and status_from_error(err).code is R.NO_CONFIG
    assert ModelUnavailable("viranker", "no weights", "set VIRANKER_MODEL").code is R.UNSPECIFIED
    other = status_from_error(OSError("disk gone"), "x")
    assert other.code is R.LOAD_FAILED and "disk gone" in other.reason


def test_status_objects_read_as_the_old_strings_and_keep_their_fields():
    ok = RerankerStatus.available("/m/v")
    assert ok == "available: /m/v" and ok.usable and ok.code is None and ok.path == "/m/v"
    assert RerankerStatus.loaded() == "loaded" and RerankerStatus.loaded().state is RerankerState.LOADED
    err = ModelUnavailable("phoranker", "/srv/x is not a directory", "point PHORANKER_PATH at /srv/y",
                           R.NOT_A_DIRECTORY, env="PHORANKER_PATH")
    st = RerankerStatus.unavailable(err)
    assert st == "unavailable: /srv/x is not a directory. point PHORANKER_PATH at /srv/y"
    for clone in (copy.deepcopy(st), pickle.loads(pickle.dumps(st))):
        assert clone == st and clone.code is R.NOT_A_DIRECTORY and clone.env == "PHORANKER_PATH"
    public = st.redacted(lambda text: text.replace("/srv/", "…/"))
    assert public.code is R.NOT_A_DIRECTORY and "/srv/" not in public and "/srv/" not in public.reason
    assert ok.redacted(str) == "available" and ok.redacted(str).path is None
    assert json.dumps({"p": st}) == json.dumps({"p": str(st)})  # serialises as its text


def test_old_style_strings_get_a_state_and_no_guessed_reason():
    assert as_status("available: /m").usable and as_status("loaded: /m").state is RerankerState.LOADED
    legacy = as_status("unavailable: $PHORANKER_PATH is not set", "phoranker")
    assert legacy.code is R.UNSPECIFIED and legacy.env == "PHORANKER_PATH" and not legacy.usable
    assert as_status("something else").state is RerankerState.UNAVAILABLE and as_status("unavailable").env is None
    st = RerankerStatus.available("/m")
    assert as_status(st) is st
