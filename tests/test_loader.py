"""Plugin discovery (stevedore) and registration (pluggy), with real entry points."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from credenza.broker import Broker
from credenza.config import Config
from credenza.errors import ConfigError
from credenza.loader import installed_plugins, load_plugins
from credenza.models import IdentityRequest

PluginDist = Callable[..., Path]

NAMED = """
from credenza import hookimpl
from credenza.models import Principal

@hookimpl
def credenza_identify(request):
    return Principal("{name}", source="{name}")
"""


def config(*plugins: str, **sections: dict[str, object]) -> Config:
    return Config.from_mapping(
        {"credenza": {"plugins": list(plugins)}, "plugins": sections}, source="test.toml"
    )


def test_builtin_plugins_are_discovered_with_distribution_and_hooks() -> None:
    infos = {info.name: info for info in installed_plugins(enabled=("environ",))}
    environ = infos["environ"]
    assert environ.distribution == "credenza"
    assert environ.enabled
    assert environ.hooks == ("credenza_identify",)
    assert environ.error is None


def test_plugins_command_lists_installed_and_enabled(plugin_dist: PluginDist,
                                                     tmp_path: Path) -> None:
    site = plugin_dist("orgplug", {"org": "org_plugin"}, {"org_plugin.py": NAMED.format(name="o")})
    cfg = tmp_path / "c.toml"
    cfg.write_text("[credenza]\nplugins = ['org']\n")
    result = subprocess.run(
        [sys.executable, "-m", "credenza", "--config", str(cfg), "plugins", "--json"],
        capture_output=True, text=True, env={"PYTHONPATH": str(site), "PATH": "/usr/bin"},
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    listed = {item["name"]: item for item in json.loads(result.stdout)}
    assert listed["org"] == {"name": "org", "target": "org_plugin", "distribution": "orgplug",
                             "version": "1.0", "enabled": True,
                             "hooks": ["credenza_identify"], "error": None,
                             "settings": False}  # a module: no declared settings
    assert listed["environ"]["enabled"] is False
    assert listed["environ"]["settings"] is True


def test_only_enabled_plugins_load_in_config_order(plugin_dist: PluginDist) -> None:
    plugin_dist("two", {"first": "first_plugin", "second": "second_plugin"}, {
        "first_plugin.py": NAMED.format(name="first"),
        "second_plugin.py": NAMED.format(name="second"),
    })
    for order in (("first", "second"), ("second", "first")):
        broker = Broker.from_config(config(*order))
        assert broker.plugin_names() == list(order)
        # firstresult: the plugin named first in the config answers
        assert broker.identify(IdentityRequest()).name == order[0]
    assert Broker.from_config(config("second")).plugin_names() == ["second"]


def test_embedding_plugins_are_asked_first(plugin_dist: PluginDist) -> None:
    plugin_dist("one", {"first": "first_plugin"}, {"first_plugin.py": NAMED.format(name="first")})

    class Embedded:
        def credenza_identify(self, request):  # unmarked: taken like pytest takes pytest_*
            from credenza.models import Principal
            return Principal("embedded", source="app")

    broker = Broker.from_config(config("first"), plugins=[Embedded()])
    assert broker.identify(IdentityRequest()).name == "embedded"


def test_import_failure_names_the_plugin_and_cause(plugin_dist: PluginDist) -> None:
    plugin_dist("broken", {"broken": "broken_plugin"},
                {"broken_plugin.py": "import module_that_does_not_exist\n"})
    with pytest.raises(ConfigError) as info:
        load_plugins(config("broken"))
    assert str(info.value) == (
        "test.toml: [credenza] plugins: plugin 'broken' (broken_plugin) failed to load: "
        "ModuleNotFoundError: No module named 'module_that_does_not_exist'"
    )


def test_broken_plugin_is_shown_not_fatal_in_listing(plugin_dist: PluginDist) -> None:
    plugin_dist("broken", {"broken": "broken_plugin"}, {"broken_plugin.py": "1/0\n"})
    infos = {info.name: info for info in installed_plugins()}
    assert infos["broken"].error == "ZeroDivisionError: division by zero"
    assert infos["environ"].error is None


def test_misspelled_hook_is_a_startup_error(plugin_dist: PluginDist) -> None:
    plugin_dist("typo", {"typo": "typo_plugin"}, {"typo_plugin.py": """
        from credenza import hookimpl

        @hookimpl
        def credenza_identfy(request):
            return None
    """})
    with pytest.raises(ConfigError, match=r"plugin 'typo': unknown hook 'credenza_identfy'"):
        load_plugins(config("typo"))


def test_unmarked_misspelled_hook_is_caught_too(plugin_dist: PluginDist) -> None:
    plugin_dist("typo", {"typo": "typo_plugin"},
                {"typo_plugin.py": "def credenza_grant(principal):\n    return []\n"})
    with pytest.raises(ConfigError, match=r"unknown hook 'credenza_grant'"):
        load_plugins(config("typo"))


def test_wrong_argument_name_is_a_startup_error(plugin_dist: PluginDist) -> None:
    plugin_dist("args", {"args": "args_plugin"},
                {"args_plugin.py": "def credenza_identify(req):\n    return None\n"})
    declared = r"plugin 'args'.*Argument\(s\) \{'req'\} are declared in the hookimpl"
    with pytest.raises(ConfigError, match=declared):
        load_plugins(config("args"))


def test_two_distributions_claiming_one_name(plugin_dist: PluginDist) -> None:
    plugin_dist("dist-a", {"clash": "first_plugin"}, {"first_plugin.py": NAMED.format(name="a")})
    plugin_dist("dist-b", {"clash": "second_plugin"}, {"second_plugin.py": NAMED.format(name="b")})
    with pytest.raises(ConfigError, match=r"plugin 'clash' is declared twice"):
        load_plugins(config("clash"))


def test_module_plugins_take_no_settings(plugin_dist: PluginDist) -> None:
    plugin_dist("one", {"first": "first_plugin"}, {"first_plugin.py": NAMED.format(name="first")})
    with pytest.raises(ConfigError, match=r"\[plugins.first\] colour: plugin 'first' is a module "
                                          "and takes no settings"):
        load_plugins(config("first", first={"colour": "red"}))


def test_class_plugin_failing_to_start_is_named(plugin_dist: PluginDist) -> None:
    plugin_dist("cls", {"cls": "cls_plugin:Plugin"}, {"cls_plugin.py": """
        class Plugin:
            def __init__(self, section):
                raise OSError("key file is unreadable")
    """})
    with pytest.raises(ConfigError, match=r"test.toml: \[plugins.cls\]: plugin 'cls' could not "
                                          "start: OSError: key file is unreadable"):
        load_plugins(config("cls"))


def test_loading_twice_in_one_process_is_independent() -> None:
    first = load_plugins(config("environ", environ={"field": "REMOTE_USER"}))
    second = load_plugins(config("environ", environ={"field": "REMOTE_ADDR"}))
    assert first is not second
    request = IdentityRequest(environ={"REMOTE_USER": "alice", "REMOTE_ADDR": "10.0.0.1"})
    assert first.hook.credenza_identify(request=request).name == "alice"
    assert second.hook.credenza_identify(request=request).name == "10.0.0.1"


def test_core_commands_start_without_loading_plugins(plugin_dist: PluginDist,
                                                    tmp_path: Path) -> None:
    loaded = tmp_path / "loaded"
    site = plugin_dist("loud", {"loud": "loud_plugin"}, {"loud_plugin.py": f"""
        open({str(loaded)!r}, "a").write("loaded\\n")
        from credenza import hookimpl
        @hookimpl
        def credenza_commands(cli):
            @cli.command()
            def hello():
                print("hello")
    """})
    config = tmp_path / "c.toml"
    config.write_text('[credenza]\nplugins = ["loud"]\n')
    env = {"PYTHONPATH": str(site), "PATH": "/usr/bin:/bin",
           "CREDENZA_TOKEN_INFO_PATH": str(tmp_path / "none.json")}

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "credenza", "--config", str(config), *args],
                              capture_output=True, text=True, timeout=60, env=env)

    # a client command has no use for the server's plugins: none is imported
    logout = run("logout")
    assert (logout.returncode, logout.stdout, logout.stderr) == (0, "Not logged in.\n", "")
    assert not loaded.exists()
    hello = run("hello")
    assert (hello.returncode, hello.stdout, loaded.read_text()) == (0, "hello\n", "loaded\n")
    # a plugin's command explains why it is missing when the plugins cannot load
    config.write_text('[credenza]\nplugins = ["no-such-plugin"]\n')
    missing = run("hello")
    assert missing.returncode == 2
    assert "no such command 'hello'; plugin commands are not available" in missing.stderr
    assert "no-such-plugin" in missing.stderr
