"""Configuration: every error names the file, the key and what was expected."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from credenza.config import EMBEDDED_SOURCE, Config
from credenza.errors import ConfigError
from credenza.loader import load_plugins


def write(tmp_path: Path, text: str, name: str = "credenza.toml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def error_of(tmp_path: Path, text: str, environ: dict[str, str] | None = None) -> str:
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as info:
        config = Config.from_file(path, environ or {})
        load_plugins(config)
    message = str(info.value)
    assert message.startswith(str(path)), message
    return message


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("[credenza\n", "not valid TOML"),
        ("[servr]\nbind = 'x'\n", "[servr]: unknown table"),
        ("[server]\nport = 8080\n", "[server] port: unknown key (known keys: "),
        ("[server]\nworkers = 'two'\n", "[server] workers: expected an integer from 1 to 64, "
                                        "got a string 'two'"),
        ("[server]\nworkers = 0\n", "[server] workers: expected an integer from 1 to 64, got 0"),
        ("[server]\nworkers = true\n", "[server] workers: expected an integer from 1 to 64, "
                                       "got a boolean True"),
        ("[server]\naccess_log = 'yes'\n", "[server] access_log: expected true or false"),
        ("[server]\ncertfile = 'c.pem'\n",
         "[server] certfile: TLS needs both certfile and keyfile"),
        ("[credenza]\nplugins = 'environ'\n", "[credenza] plugins: expected an array of strings"),
        ("[credenza]\nplugins = ['environ', 'environ']\n",
         "[credenza] plugins: names 'environ' more than once"),
        ("[credenza]\nlog_level = 'LOUD'\n",
         "[credenza] log_level: expected one of DEBUG, ERROR, INFO, WARNING, got 'LOUD'"),
        ("[credenza]\nplugins = ['nosuch']\n", "plugin 'nosuch' is not installed"),
        ("[credenza]\nplugins = ['environ']\n[plugins.environ]\nfeild = 'REMOTE_USER'\n",
         "[plugins.environ] feild: unknown key (known keys: allow_header_field, "
         "defer_to_credentials, field, kind)"),
        ("[credenza]\nplugins = ['environ']\n[plugins.environ]\nfield = 'HTTP_X_USER'\n",
         "[plugins.environ] field: HTTP_X_USER is a request header any client can set"),
        ("[credenza]\nplugins = ['environ']\n[plugins.environ]\nkind = 'robot'\n",
         "[plugins.environ] kind: expected one of machine, user, got 'robot'"),
        ("[plugins]\nenviron = 3\n", "[plugins] environ: expected a table [plugins.environ]"),
    ],
)
def test_each_error_names_file_key_and_expectation(tmp_path: Path, text: str,
                                                   expected: str) -> None:
    assert expected in error_of(tmp_path, text)


def test_unreadable_file_is_named() -> None:
    with pytest.raises(ConfigError, match=r"nope\.toml: cannot read the configuration"):
        Config.from_file("/nonexistent/nope.toml")


def test_environment_overrides_are_typed_and_nested(tmp_path: Path) -> None:
    path = write(tmp_path, "[server]\nworkers = 2\n")
    config = Config.from_file(path, {
        "CREDENZA__SERVER__WORKERS": "5",
        "CREDENZA__SERVER__BIND": "127.0.0.1:9999",
        "CREDENZA__CREDENZA__PLUGINS": '["environ"]',
        "CREDENZA__PLUGINS__ENVIRON__FIELD": "REMOTE_ADDR",
        "UNRELATED": "x",
    })
    assert config.server.workers == 5
    assert config.server.bind == "127.0.0.1:9999"
    assert config.plugins == ("environ",)
    assert config.section("environ").get_str("field") == "REMOTE_ADDR"


def test_an_override_with_a_wrong_type_is_reported_like_the_file(tmp_path: Path) -> None:
    message = error_of(tmp_path, "", {"CREDENZA__SERVER__WORKERS": "many"})
    assert "[server] workers: expected an integer from 1 to 64, got a string 'many'" in message


def test_a_malformed_override_name_is_rejected(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="CREDENZA__SERVER: expected CREDENZA__<TABLE>__<KEY>"):
        Config.from_file(write(tmp_path, ""), {"CREDENZA__SERVER": "x"})


def test_relative_paths_are_relative_to_the_file(tmp_path: Path) -> None:
    path = write(tmp_path, "[credenza]\ndata_dir = 'state'\n")
    assert Config.from_file(path, {}).data_dir == tmp_path / "state"


def test_secret_references(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "pw").write_text("from-file\n")
    (tmp_path / "empty").write_text("\n")
    monkeypatch.setenv("CREDENZA_TEST_SECRET", "from-env")
    monkeypatch.delenv("CREDENZA_TEST_MISSING", raising=False)
    config = Config.from_file(write(tmp_path, """
        [credenza]
        plugins = ["x"]
        [plugins.x]
        a = "env:CREDENZA_TEST_SECRET"
        b = "file:pw"
        c = "inline"
        d = "env:CREDENZA_TEST_MISSING"
        e = "file:absent"
        f = "file:empty"
    """.replace("\n        ", "\n")), {})
    section = config.section("x")
    assert section.get_secret("a") == "from-env"
    assert section.get_secret("b") == "from-file"
    assert section.get_secret("c") == "inline"
    with pytest.raises(ConfigError, match=r"\[plugins\.x\] d: environment variable "
                                          "CREDENZA_TEST_MISSING is not set"):
        section.get_secret("d")
    with pytest.raises(ConfigError, match=r"\[plugins\.x\] e: cannot read secret file .*absent"):
        section.get_secret("e")
    with pytest.raises(ConfigError, match=r"\[plugins\.x\] f: secret file .*empty is empty"):
        section.get_secret("f")
    with pytest.raises(ConfigError, match=r"\[plugins\.x\] g: is required"):
        section.get_secret("g")


def test_embedded_default_and_config_env(tmp_path: Path) -> None:
    default = Config.load(None, {})
    assert default.source == EMBEDDED_SOURCE
    assert default.plugins == ("environ", "jwt", "sql")
    path = write(tmp_path, "[credenza]\nplugins = []\n")
    assert Config.load(None, {"CREDENZA_CONFIG": str(path)}).source == str(path)


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "credenza", *args], capture_output=True,
                          text=True, timeout=60)


def test_config_check_command(tmp_path: Path) -> None:
    good = write(tmp_path, "[credenza]\nplugins = ['environ']\n", "good.toml")
    result = run_cli("config", "check", str(good))
    assert result.returncode == 0, result.stderr
    assert re.search(r"good\.toml: OK \(plugins: environ;", result.stdout)

    bad = write(tmp_path, "[credenza]\nplugins = ['environ']\n[plugins.environ]\nkind = 1\n",
                "bad.toml")
    result = run_cli("config", "check", str(bad))
    assert result.returncode == 1
    assert f"{bad}: [plugins.environ] kind: expected one of machine, user, got an integer 1" \
        in result.stderr


def test_example_aws_configuration_checks() -> None:
    example = Path(__file__).resolve().parent.parent / "examples" / "aws.toml"
    result = run_cli("config", "check", str(example))
    assert result.returncode == 0, result.stderr
    assert "OK (plugins: static, sql, aws-sts;" in result.stdout


def test_a_table_for_a_plugin_that_is_not_enabled_is_an_error(tmp_path: Path) -> None:
    path = write(tmp_path, "[credenza]\nplugins = ['environ']\n[plugins.enviorn]\nfield = 'x'\n")
    checked = subprocess.run([sys.executable, "-m", "credenza", "config", "check", str(path)],
                             capture_output=True, text=True, timeout=60)
    assert checked.returncode == 1
    assert (f"{path}: [plugins.enviorn]: no enabled plugin is called 'enviorn' (enabled: "
            "environ); enable it in [credenza] plugins, or remove the table") in checked.stderr


def test_a_shell_can_override_a_hyphenated_plugin(tmp_path: Path) -> None:
    path = write(tmp_path, "[credenza]\nplugins = ['aws-sts']\n")
    config = Config.from_file(path, {"CREDENZA__PLUGINS__AWS_STS__REGION": "eu-west-1",
                                     "CREDENZA__API__IDAAS_PAM__INSTANCE_ID": "acme"})
    assert config.plugin_tables == {"aws-sts": {"region": "eu-west-1"}}
    assert config.api_tables == {"idaas-pam": {"instance_id": "acme"}}
    underscored = write(tmp_path, "[credenza]\nplugins = ['org_sso']\n", "other.toml")
    config = Config.from_file(underscored, {"CREDENZA__PLUGINS__ORG_SSO__URL": "x"})
    assert config.plugin_tables == {"org_sso": {"url": "x"}}
