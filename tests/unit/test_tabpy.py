"""TabPy's pieces checked against TabPy's own code (the ``tabpy`` package is a test dependency): password
hashes and files, the script wrapper of /evaluate, the pickles its client writes, and the deployed records."""

from __future__ import annotations

import base64
import json
import subprocess
import sys
import textwrap
from pathlib import Path

import cloudpickle
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from tabpy.tabpy_server.app.util import parse_pwd_file
from tabpy.tabpy_server.handlers.util import hash_password as tabpys_hash
from tabpy.tabpy_tools.custom_query_object import CustomQueryObject as TabPysQueryObject

from lambdapool.emulator.tabpy._auth import PasswordFile, hash_password
from lambdapool.emulator.tabpy._pipeline import compile_script, tabpy_json
from lambdapool.emulator.tabpy._store import Deployed, TabPySettings, TabPyStore

TABPY_USER = Path(sys.executable).with_name("tabpy-user")


def basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


@settings(max_examples=25, deadline=None)
@given(st.text(st.characters(blacklist_categories=("Cs",)), min_size=1, max_size=12), st.text(max_size=20))
def test_hashes_are_tabpys(user: str, password: str) -> None:
    password = "".join(c for c in password if not 0xD800 <= ord(c) <= 0xDFFF)
    assert hash_password(user, password) == tabpys_hash(user, password)


def test_a_file_tabpy_user_wrote_is_read_as_tabpy_reads_it(tmp_path: Path) -> None:
    path = tmp_path / "passwords.txt"
    for user, password in (("alice", "P@ss:w0rd"), ("Bob", "secret")):
        subprocess.run([str(TABPY_USER), "add", "-u", user, "-p", password, "-f", str(path)], check=True)
    ok, tabpys = parse_pwd_file(str(path))
    assert ok and set(tabpys) == {"alice", "bob"}
    passwords = PasswordFile.load(path)
    assert passwords.check(basic("alice", "P@ss:w0rd"))  # TabPy's own server refuses this one (the ':')
    assert passwords.check(basic("BOB", "secret"))  # user names are case-insensitive, as TabPy's
    assert passwords.check(basic("bob", "secret"))  # again: from the cache of verified headers
    assert not passwords.check(basic("bob", "Secret"))
    assert not passwords.check(basic("carol", "secret"))
    assert not passwords.check("Bearer secret")
    assert not passwords.check("Basic !!!")
    assert not passwords.check(None)


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("alice abc def\n", "line 1: expected '<username> <password hash>'"),
        ("alice 00\nALICE 11\n", "line 2: a second entry for user 'alice'"),
        ("alice not-hex\n", "line 1: the password hash of 'alice' is not hexadecimal"),
        ("# only a comment\n\n", "no user in it"),
    ],
)
def test_a_wrong_password_file_names_its_problem(tmp_path: Path, text: str, problem: str) -> None:
    path = tmp_path / "passwords.txt"
    path.write_text(text)
    with pytest.raises(ValueError, match=problem):
        PasswordFile.load(path)


def test_a_missing_password_file_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="cannot be read"):
        PasswordFile.load(tmp_path / "none.txt")


@pytest.mark.parametrize(
    ("script", "arguments", "expected"),
    [
        ("return _arg1 + _arg2", {"_arg1": 1, "_arg2": 2}, 3),
        ("    return 5", {}, 5),  # indented consistently: TabPy runs it
        ("\treturn 9", {}, 9),
        ("x = 0\r\nfor v in _arg1:\r\n    x += v\r\nreturn x", {"_arg1": [1, 2]}, 3),
        ("return [_arg2, _arg10, _arg1]", {f"_arg{n}": n for n in range(1, 11)}, [2, 10, 1]),
        ("return json.dumps(_arg1)", {"_arg1": [1]}, "[1]"),  # json without importing it, as TabPy's scripts
    ],
)
def test_scripts_run_as_tabpys_wrapper_runs_them(script: str, arguments: dict[str, object], expected: object) -> None:
    function = compile_script(script, list(arguments))
    assert function(None, **arguments) == expected


def test_script_syntax_errors_are_tabpys() -> None:
    with pytest.raises(SyntaxError) as raised:
        compile_script("return (", [])
    assert str(raised.value) == "'(' was never closed (<string>, line 2)"
    with pytest.raises(IndentationError):
        compile_script("", [])


def test_results_are_answered_as_tabpy_answers_them() -> None:
    assert tabpy_json({"a": (1, float("nan")), "b": [float("inf")]}) == {"a": [1, None], "b": [None]}


def test_a_pickle_of_tabpys_client_loads_without_the_tabpy_package(tmp_path: Path) -> None:
    def scale(x, factor=2):  # type: ignore[no-untyped-def]
        """Scales x"""
        return x * factor

    archive = tmp_path / "pickle_archive"
    archive.write_bytes(cloudpickle.dumps(TabPysQueryObject(scale, "Scales")))
    script = textwrap.dedent(
        f"""
        import json, sys
        sys.modules["tabpy"] = None  # importing tabpy fails from here on
        from lambdapool.emulator.tabpy._objects import load_query_object
        with open({str(archive)!r}, "rb") as stream:
            deployed = load_query_object(stream.read())
        print(json.dumps([deployed.query(3), deployed.query(x=2, factor=5), deployed.description,
                          deployed.get_docstring()]))
        """
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == [6, 10, "Scales", "Scales x"]


def test_settings_have_documented_defaults_and_refuse_what_cannot_serve(tmp_path: Path) -> None:
    settings_ = TabPySettings.load(tmp_path)
    assert (settings_.timeout_s, settings_.memory_mb, settings_.evaluate_timeout_s) == (60, 1024, 30)
    assert settings_.pool.floor == 1
    (tmp_path / "config").mkdir()
    path = tmp_path / "config" / "tabpy.json"
    for text, problem in (
        ('{"pool": {"floor": 0, "cruise": 0}}', "floor of at least 1"),
        ('{"evaluate_timeout_s": 0}', "evaluate_timeout_s must be an integer from 1"),
        ('{"memory": 1}', "unknown key"),
        ("[1]", "expected a JSON object"),
    ):
        path.write_text(text)
        with pytest.raises(ValueError, match=problem):
            TabPySettings.load(tmp_path)


def test_the_store_keeps_records_and_pickles_across_instances(tmp_path: Path) -> None:
    store = TabPyStore(tmp_path / "tabpy")
    staged = store.staging / "endpoints" / "add" / "1"
    staged.mkdir(parents=True)
    (staged / "pickle_archive").write_bytes(b"pickle")
    archive = store.staged_archive(str(staged), "add")
    store.put(Deployed("add", 1, description="Adds"), archive)
    store.put(Deployed("add", 2, description="Adds again"), archive)
    store.discard("add", 1)
    again = TabPyStore(tmp_path / "tabpy")
    assert again.get("add") == store.get("add")
    assert again.get("add").version == 2  # type: ignore[union-attr]
    assert not store.archive("add", 1).exists()
    assert store.archive("add", 2).read_bytes() == b"pickle"
    other = store.staging / "endpoints" / "other" / "1"
    other.mkdir(parents=True)
    (other / "pickle_archive").write_bytes(b"another client's")
    for outside in (str(tmp_path), str(store.staging), str(store.staging / ".." / ".."), "/etc", str(other)):
        with pytest.raises(ValueError, match="where TabPy's client stages it"):
            store.staged_archive(outside, "add")  # not add's: neither read nor, later, removed
    link = store.staging / "endpoints" / "add" / "2"
    link.symlink_to(tmp_path)
    with pytest.raises(ValueError, match="where TabPy's client stages it"):
        store.staged_archive(str(link), "add")
    with pytest.raises(ValueError, match="cannot be read"):
        store.staged_archive(str(store.staging / "endpoints" / "add" / ("9" * 300)), "add")
    assert store.remove("add") is not None
    assert store.archive("add", 2).exists()  # until its pool has stopped: then discarded
    store.discard("add", 2)
    assert not (store.root / "endpoints" / "add").exists()
    assert TabPyStore(tmp_path / "tabpy").all() == {}


def test_names_are_tabpys_within_a_file_names_length() -> None:
    from lambdapool.emulator.tabpy._store import check_name

    assert check_name("my model-2_b") == "my model-2_b"
    for name in ("a/b", "..", "é", "", 5, "x" * 129, "__evaluate__"):
        with pytest.raises(ValueError):
            check_name(name)
