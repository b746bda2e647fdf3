"""Settings documentation stays true: `.env.example` is what the Settings model says."""

from pathlib import Path

from libs.settings import Settings, env_example

REPO = Path(__file__).resolve().parents[2]


def test_env_example_matches_settings():
    assert (REPO / ".env.example").read_text() == env_example(), (
        "regenerate with: python -m libs.settings > .env.example"
    )


def test_every_setting_is_in_env_example():
    text = (REPO / ".env.example").read_text()
    missing = [n for n in Settings.model_fields if f"XGET_{n.upper()}=" not in text]
    assert not missing
