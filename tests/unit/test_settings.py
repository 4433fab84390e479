from pathlib import Path

import pytest

from canary.errors import SettingsError
from canary.settings import Settings, load_settings

ROOT = Path(__file__).resolve().parents[2]


def test_defaults_are_loopback_and_documented():
    settings = load_settings()
    assert settings.api_host == "127.0.0.1"
    for name, field in Settings.model_fields.items():
        assert field.description, name
        assert len(field.description) > 20, name


def test_file_then_environment_wins(tmp_path, monkeypatch):
    path = tmp_path / "settings.yaml"
    path.write_text("prometheus_url: http://127.0.0.1:9999\napi_port: 9000\nquery_timeout: 2s\n")
    monkeypatch.setenv("CANARY_API_PORT", "9001")
    settings = load_settings(path)
    assert settings.prometheus_url == "http://127.0.0.1:9999"
    assert settings.api_port == 9001
    assert settings.query_timeout == 2.0


def test_example_settings_file_is_valid():
    settings = load_settings(ROOT / "config" / "settings.yaml")
    assert settings.registry_poll_interval == 30.0


def test_unknown_setting_in_file_is_an_error(tmp_path):
    path = tmp_path / "settings.yaml"
    path.write_text("prometheus_ulr: http://x\n")
    with pytest.raises(SettingsError, match="prometheus_ulr"):
        load_settings(path)


def test_secrets_are_hidden_everywhere(monkeypatch):
    monkeypatch.setenv("CANARY_API_TOKEN", "tok-123456")
    settings = load_settings()
    assert settings.api_token is not None
    assert settings.api_token.get_secret_value() == "tok-123456"
    assert "tok-123456" not in repr(settings)
    assert "tok-123456" not in str(settings.public())


def test_database_url_defaults_to_sqlite_in_state_dir(tmp_path):
    settings = load_settings(state_dir=tmp_path)
    assert settings.effective_database_url == f"sqlite:///{tmp_path / 'canary.db'}"
    secret = load_settings(database_url="postgresql+psycopg://u:pw@127.0.0.1/db")
    assert "pw" not in str(secret.public())
