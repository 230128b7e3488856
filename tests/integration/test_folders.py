"""Dataiku's managed folders: a pickle in a folder, read by init code through the ``folders`` global, in the
emulator's pipelines and under Chalice's test client; ``lambdapool config`` ships the folders in the package
(the sample app's package, run as Lambda runs it, is in test_chalice_deploy.py)."""

from __future__ import annotations

import json
import pickle
import sys
import textwrap
from collections.abc import Callable
from pathlib import Path

import pytest
from chalice.test import Client as ChaliceClient

from lambdapool._deploy import FOLDERS_MANIFEST, configure
from lambdapool._limits import UNZIPPED_LIMIT_BYTES

from .conftest import Client
from .test_chalice_adapter import load_app

pytestmark = pytest.mark.integration

APP = textwrap.dedent(
    """
    import os
    import pickle

    from chalice import Chalice
    from lambdapool import Service
    from lambdapool.chalice import mount

    app = Chalice(app_name="folded")
    svc = Service("svc")


    @svc.function(folders=["models", "chalicelib/lookups"])
    def score(name: str, context):
        return {"score": MODEL[name], "folders": context.folders, "pid": os.getpid()}


    # Init code, as on Dataiku: the folders declared just above are in the `folders` global.
    with open(os.path.join(folders[0], "model.pkl"), "rb") as stream:
        MODEL = pickle.load(stream)
    LOADED_BY = os.getpid()


    @svc.function()
    def loaded_by():
        return LOADED_BY


    mount(app, svc)
    """
)


def project(tmp_path: Path) -> Path:
    directory = tmp_path / "folded"
    (directory / "models").mkdir(parents=True)
    (directory / "chalicelib" / "lookups").mkdir(parents=True)
    (directory / "chalicelib" / "__init__.py").write_text("")
    (directory / "chalicelib" / "lookups" / "names.json").write_text('["ada"]')
    (directory / "app.py").write_text(APP)
    with open(directory / "models" / "model.pkl", "wb") as stream:
        pickle.dump({"ada": 0.9, "bob": 0.4}, stream)
    return directory


def test_init_code_reads_a_pickle_from_a_folder_in_each_pipeline(
    tmp_path: Path, start_emulator: Callable[..., Client]
) -> None:
    directory = project(tmp_path)
    emulator = start_emulator(directory)

    answer = emulator.run("svc", "score", {"name": "ada"}).json()["response"]
    loaded_by = emulator.run("svc", "loaded_by").json()["response"]

    assert answer["score"] == 0.9
    assert answer["folders"] == [str(directory / "models"), str(directory / "chalicelib" / "lookups")]
    assert loaded_by != answer["pid"]  # each endpoint's pipeline ran the init code, and read the pickle, itself


def test_the_same_app_under_chalices_test_client(tmp_path: Path) -> None:
    directory = project(tmp_path)
    module = load_app(directory, "folded_app")
    try:
        with ChaliceClient(module.app) as client:
            answer = client.http.post("/public/api/v1/svc/score/run", body=json.dumps({"name": "bob"}).encode())
        body = json.loads(answer.body)
        assert answer.status_code == 200, body
        assert body["response"]["score"] == 0.4
        assert body["response"]["folders"] == [str(directory / "models"), str(directory / "chalicelib" / "lookups")]
    finally:
        sys.modules.pop("folded_app", None)


NO_FOLDERS_APP = textwrap.dedent(
    """
    from chalice import Chalice
    from lambdapool import Service
    from lambdapool.chalice import mount

    app = Chalice(app_name="folded")
    svc = Service("svc")


    @svc.function()
    def score(name: str):
        return name


    mount(app, svc)
    """
)


def test_config_ships_the_folders_in_vendor_and_follows_their_changes(tmp_path: Path) -> None:
    directory = project(tmp_path)
    (directory / "models" / "old.txt").write_text("old")
    first = configure(directory)

    vendored = directory / "vendor" / "models" / "model.pkl"
    assert vendored.read_bytes() == (directory / "models" / "model.pkl").read_bytes()
    assert "vendor/models: 2 file(s) copied or removed (2 in the folder)" in first.changes
    assert not (directory / "vendor" / "chalicelib").exists()  # Chalice packages chalicelib/ itself
    assert json.loads((directory / "vendor" / FOLDERS_MANIFEST).read_text()) == ["models"]
    assert not any(line.startswith("vendor/models") for line in configure(directory).changes)  # up to date

    (directory / "models" / "old.txt").unlink()
    (directory / "models" / "extra.json").write_text("{}")
    with open(directory / "models" / "model.pkl", "wb") as stream:
        pickle.dump({"ada": 1.0}, stream)
    changed = configure(directory)
    assert "vendor/models: 3 file(s) copied or removed (2 in the folder)" in changed.changes
    assert sorted(path.name for path in (directory / "vendor" / "models").iterdir()) == ["extra.json", "model.pkl"]
    assert pickle.loads(vendored.read_bytes()) == {"ada": 1.0}

    (directory / "app.py").write_text(NO_FOLDERS_APP)
    dropped = configure(directory)
    assert "vendor/models: removed (no longer declared)" in dropped.changes
    assert not (directory / "vendor" / "models").exists()


def test_config_refuses_folders_over_lambdas_package_limit_before_writing_anything(tmp_path: Path) -> None:
    directory = project(tmp_path)
    with open(directory / "models" / "huge.bin", "wb") as stream:  # sparse: no disk is used
        stream.truncate(UNZIPPED_LIMIT_BYTES + 1)

    with pytest.raises(ValueError) as raised:
        configure(directory)

    assert "over Lambda's 250 MB" in str(raised.value) and "models (250.0 MB)" in str(raised.value)
    assert not (directory / "vendor").exists() and not (directory / ".chalice").exists()
