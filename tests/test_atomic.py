"""Atomic outputs: a writer that fails leaves the previous file (or folder) as it was
and no temporary file beside it."""

import pickle

import pytest

from spacy_mulcot.atomic import atomic_dir, atomic_open, same_file, write_json


class Boom(Exception):
    pass


def test_a_failed_write_keeps_the_previous_file(tmp_path):
    target = tmp_path / "out.json"
    write_json(target, {"v": 1})
    with pytest.raises(Boom):
        with atomic_open(target) as f:
            f.write('{"v": 2, "half')
            raise Boom
    assert target.read_text() == '{\n  "v": 1\n}\n'
    assert [p.name for p in tmp_path.iterdir()] == ["out.json"]
    write_json(target, {"v": 2})
    assert '"v": 2' in target.read_text()
    with pytest.raises(ValueError, match="mode"):
        with atomic_open(target, "a"):
            pass


def test_a_failed_folder_keeps_the_previous_folder(tmp_path):
    target = tmp_path / "model"
    with atomic_dir(target) as tmp:
        (tmp / "weights.bin").write_text("one")
    with pytest.raises(Boom):
        with atomic_dir(target) as tmp:
            (tmp / "weights.bin").write_text("half")
            raise Boom
    assert (target / "weights.bin").read_text() == "one" and [p.name for p in tmp_path.iterdir()] == ["model"]
    with atomic_dir(target) as tmp:
        (tmp / "other.bin").write_text("two")
    assert [p.name for p in target.iterdir()] == ["other.bin"] and len(list(tmp_path.iterdir())) == 1


def test_same_file_sees_through_links(tmp_path):
    a = tmp_path / "a.jsonl"
    a.write_text("x")
    (tmp_path / "l.jsonl").symlink_to(a)
    assert same_file(a, tmp_path / "l.jsonl") and same_file(a, tmp_path / "." / "a.jsonl")
    assert not same_file(a, tmp_path / "new.jsonl")


class _RunsCode:
    def __reduce__(self):
        return (print, ("this ran while loading a model",))


def test_a_saved_state_that_would_run_code_is_refused():
    """The generator/fusion state is loaded with torch.load(weights_only=True)."""
    import srsly

    from spacy_mulcot.model.shim import MulcotShim

    msg = {"config": {}, "state": pickle.dumps({"w": _RunsCode()}), "generator": None}
    import torch

    shim = MulcotShim.__new__(MulcotShim)
    shim._model = torch.nn.Linear(1, 1)
    with pytest.raises(pickle.UnpicklingError, match="Weights only load failed"):
        shim.from_bytes(srsly.msgpack_dumps(msg))
    # what the shim itself saves loads fine
    buf = __import__("io").BytesIO()
    torch.save(torch.nn.Linear(1, 1).state_dict(), buf)
    shim._grad_scaler = type("S", (), {"to_": lambda self, d: None})()
    shim.from_bytes(srsly.msgpack_dumps({"config": {}, "state": buf.getvalue(), "generator": None}))
