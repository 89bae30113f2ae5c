"""The shared registry (plugins/registry.py): suggestions for unknown names, duplicate
names, and plugins found through entry points, without --plugin."""

import sys

import pytest

from attacks import UnknownAttackError, available_attacks, get_attack
from attacks.registry import ATTACKS
from harness.config import resolve
from harness.run import main
from plugins import PluginError, Registry, UnknownNameError
from sparse import UnknownSparseMethodError, available_sparse_methods, get_sparse_method
from sparse.registry import METHODS
from tasks import SuiteError, load_suite

FAKE_PLUGIN = '''
from dataclasses import dataclass

from attacks import AttackResult, register_attack
from sparse import register_sparse_method


@register_sparse_method("my-window")
def my_window(ctx):
    raise NotImplementedError  # only its registration is tested


@dataclass
class FakeConfig:
    fake_strength: float = 1.0


@register_attack("fake-attack", FakeConfig)
def fake_attack(target, prepared, config, rng_seed) -> AttackResult:
    raise NotImplementedError
'''


def test_unknown_name_suggests_the_closest_known_name():
    with pytest.raises(UnknownNameError) as err:
        get_sparse_method("strem")
    assert str(err.value) == ("unknown sparse method 'strem'; did you mean 'stream'? known sparse methods: "
                              + ", ".join(available_sparse_methods()))
    with pytest.raises(UnknownAttackError, match=r"^unknown attack 'randm'; did you mean 'random'\? known attacks: "):
        get_attack("randm")


def test_no_suggestion_when_nothing_is_close():
    with pytest.raises(UnknownSparseMethodError) as err:
        get_sparse_method("xyzzy")
    assert str(err.value) == "unknown sparse method 'xyzzy'; known sparse methods: " + ", ".join(
        available_sparse_methods())
    assert isinstance(err.value, KeyError)


def test_unknown_suite_gets_a_suggestion():
    with pytest.raises(SuiteError, match=r"unknown suite 'sed4'; did you mean 'seed4'\? known suites: .*needle"):
        load_suite("sed4")


def test_registry_refuses_duplicate_and_empty_names_and_overwrites_on_request():
    things = Registry("thing")
    things.register("b", 1)
    things.register("a", 2)
    with pytest.raises(ValueError, match="thing 'b' is already registered"):
        things.register("b", 3)
    with pytest.raises(ValueError, match="non-empty"):
        things.register("", 3)
    things.register("b", 3, overwrite=True)
    assert things.get("b") == 3
    assert things.names() == ["a", "b"]
    assert "a" in things and "c" not in things


def _distribution(root, name, entry_points, modules):
    """A distribution installed in `root` as a bare .dist-info directory, as pip leaves it."""
    info = root / f"{name}-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(entry_points)
    for module, text in modules.items():
        (root / f"{module}.py").write_text(text)


@pytest.fixture
def fresh_registries(monkeypatch):
    """The global registries as if nothing had loaded their entry points yet; restored afterwards."""
    for registry in (METHODS, ATTACKS):
        monkeypatch.setattr(registry, "_items", dict(registry._items))
        monkeypatch.setattr(registry, "_loaded", False)
        monkeypatch.setattr(registry, "_error", None)
    yield
    for module in ("fake_flip_plugin", "broken_flip_plugin"):
        sys.modules.pop(module, None)


def test_installed_plugins_are_found_without_the_plugin_flag(tmp_path, monkeypatch, fresh_registries):
    _distribution(tmp_path, "fakeplugin",
                  "[flipbench.sparse_methods]\nfake = fake_flip_plugin\n\n[flipbench.attacks]\nfake = fake_flip_plugin\n",
                  {"fake_flip_plugin": FAKE_PLUGIN})
    monkeypatch.syspath_prepend(str(tmp_path))
    assert "my-window" in available_sparse_methods()
    assert get_sparse_method("my-window").select is sys.modules["fake_flip_plugin"].my_window
    assert "fake-attack" in available_attacks()
    assert get_attack("fake-attack").config_cls.__name__ == "FakeConfig"
    opts = resolve(["--method", "my-window", "--attack", "fake-attack", "--fake-strength", "2"])
    assert (opts.method, opts.attack, opts.attack_options["fake_strength"]) == ("my-window", "fake-attack", 2.0)


def test_a_broken_plugin_is_one_clear_error(tmp_path, monkeypatch, capsys, fresh_registries):
    _distribution(tmp_path, "brokenplugin", "[flipbench.sparse_methods]\nbroken = broken_flip_plugin\n",
                  {"broken_flip_plugin": "raise ImportError('needs the frobnicator')\n"})
    monkeypatch.syspath_prepend(str(tmp_path))
    message = ("cannot load the sparse method plugin broken = broken_flip_plugin (entry point group "
               "flipbench.sparse_methods) of brokenplugin 0.1: ImportError: needs the frobnicator")
    for _ in range(2):  # and again for every later caller
        with pytest.raises(PluginError) as err:
            available_sparse_methods()
        assert str(err.value) == message
    assert main(["--method", "stream"]) == 2
    assert capsys.readouterr().err == f"harness.run: error: {message}\n"


@pytest.mark.parametrize("flag,typo,meant", [
    ("--method", "strem", "stream"), ("--attack", "randm", "random"), ("--context", "filer", "filler"),
])
def test_cli_suggests_the_name_before_loading_a_model(capsys, flag, typo, meant):
    assert main([flag, typo]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert err.startswith("harness.run: error: unknown ")
    assert f"{typo!r}; did you mean {meant!r}?" in err
