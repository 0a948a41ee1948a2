"""Configuration: validation names the variable, flags override the environment, tokens parse strictly."""

from __future__ import annotations

import pytest

from rentscout.main import build_parser
from rentscout.ops.settings import all_env_vars, markdown_table, unknown_env_vars
from rentscout.runtime.auth import Authenticator, new_token, parse_tokens
from rentscout.runtime.config import ConfigError, RuntimeSettings, load
from rentscout.runtime.context import correlation_id_from
from rentscout.runtime.errors import PermissionDenied, Unauthenticated


def test_defaults_load_from_an_empty_environment() -> None:
    s = load(RuntimeSettings, {})
    assert s.port is None and s.db_pool_max_size == 10 and s.database_url.startswith("postgresql://")


@pytest.mark.parametrize(
    ("var", "value", "problem"),
    [
        ("RENTSCOUT_PORT", "abc", "expected an integer"),
        ("RENTSCOUT_PORT", "70000", "from 0 to 65535"),
        ("RENTSCOUT_DATABASE_URL", "mysql://x", "postgresql://"),
        ("RENTSCOUT_REDIS_URL", "localhost:6379", "redis://"),
        ("RENTSCOUT_ALLOW_INSECURE", "maybe", "true/false"),
        ("RENTSCOUT_LOG_LEVEL", "loud", "one of"),
        ("RENTSCOUT_SHUTDOWN_GRACE_SECONDS", "-1", "from 0"),
    ],
)
def test_bad_values_name_the_variable(var: str, value: str, problem: str) -> None:
    with pytest.raises(ConfigError) as err:
        load(RuntimeSettings, {var: value})
    assert str(err.value).startswith(f"{var}: ") and problem in str(err.value)


def test_flags_override_environment() -> None:
    s = load(RuntimeSettings, {"RENTSCOUT_PORT": "1234", "RENTSCOUT_HOST": "10.0.0.1"}, port=999, host=None)
    assert s.port == 999 and s.host == "10.0.0.1"


def test_unknown_override_is_rejected() -> None:
    with pytest.raises(ConfigError, match="unknown setting"):
        load(RuntimeSettings, {}, no_such_setting=1)


def test_registry_covers_every_service_and_flags_secrets() -> None:
    names = {v.name for v in all_env_vars()}
    assert {
        "RENTSCOUT_DATABASE_URL",
        "RENTSCOUT_EXPORT_MAX_CONCURRENT",
        "RENTSCOUT_CACHE_NAMESPACE",
        "RENTSCOUT_ANALYZER_STATEMENT_TIMEOUT_MS",
    } <= names
    assert len(names) == len(all_env_vars())  # no variable declared twice
    secrets = {v.name for v in all_env_vars() if v.secret}
    assert {"RENTSCOUT_DATABASE_URL", "RENTSCOUT_AUTH_TOKENS"} <= secrets
    table = markdown_table()
    assert all(f"`{n}`" in table for n in names)
    assert unknown_env_vars({"RENTSCOUT_PORTT": "1", "RENTSCOUT_PORT": "1", "RENTSCOUT_TOKEN": "t", "HOME": "/"}) == [
        "RENTSCOUT_PORTT"
    ]  # RENTSCOUT_TOKEN is the CLI's


def test_token_parsing() -> None:
    assert parse_tokens("alpha-123:admin, beta-4567:Reader\n# comment", "X") == {"alpha-123": "admin", "beta-4567": "reader"}
    # a comment is everything after # on its line, commas and colons included
    assert parse_tokens("# generated, one token:role per line\nalpha-123:admin # the admin, for now\n", "X") == {
        "alpha-123": "admin"
    }
    for bad, problem in (
        ("alpha-123", "not `token:role`"),
        ("alpha-123:root", "unknown role"),
        ("short:admin", "shorter than 8"),
    ):
        with pytest.raises(ConfigError, match=problem):
            parse_tokens(bad, "RENTSCOUT_AUTH_TOKENS")


def test_generated_tokens_are_valid_and_pass_as_cli_arguments() -> None:
    # `rentscout stack` and `make dev-secrets` generate tokens that operators paste after `--token`: one that
    # began with "-" was read by argparse as an option (the README's `--token "$RENTSCOUT_ADMIN_TOKEN"` failed).
    parser = build_parser()
    tokens = [new_token() for _ in range(2000)]  # a token_urlsafe() would begin with "-" in ~31 of them
    assert len(set(tokens)) == len(tokens)
    assert parse_tokens(",".join(f"{t}:admin" for t in tokens), "X") == dict.fromkeys(tokens, "admin")
    for token in tokens:
        args = parser.parse_args(["cache", "invalidate", "--tag", "city:x", "--token", token])
        assert args.token == token


def test_authenticator_roles() -> None:
    auth = Authenticator({"alpha-123": "admin", "beta-4567": "reader"})
    assert auth.authenticate("Bearer alpha-123").role == "admin"
    assert "alpha-123" not in auth.authenticate("Bearer alpha-123").name  # label, never the token
    for header, problem in ((None, "missing credentials"), ("Basic xyz", "malformed"), ("Bearer nope-nope", "invalid")):
        with pytest.raises(Unauthenticated, match=problem):
            auth.authenticate(header)
    with pytest.raises(PermissionDenied, match="requires the admin role"):
        Authenticator.authorize(auth.authenticate("Bearer beta-4567"), "admin", "/x.Y/Z")
    assert Authenticator({}).authenticate(None).role == "admin"  # auth disabled (loopback only)


def test_correlation_id_choice() -> None:
    assert correlation_id_from([("x-request-id", "r1"), ("x-correlation-id", "c1")]) == "c1"
    assert correlation_id_from([("x-request-id", "r1")]) == "r1"
    generated = correlation_id_from([("x-correlation-id", "bad\nvalue")])
    assert generated != "bad\nvalue" and len(generated) == 36
    assert correlation_id_from(None) != correlation_id_from(None)
