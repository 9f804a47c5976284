"""Lake configuration: the strings parse_lake reads, identities, ATTACH text, no secrets kept."""

from __future__ import annotations

from pathlib import Path

import pytest

from sqlrooms_nb.errors import ValidationError
from sqlrooms_nb.store.config import (
    LAKE_ENV,
    LakeConfig,
    S3Settings,
    parse_dsn,
    parse_lake,
    redact,
    s3_secret_sql,
)

PG = "postgres:host=db.example port=5433 dbname=lake user=ana"


def test_a_plain_path_is_the_embedded_default(tmp_path: Path) -> None:
    config = parse_lake(tmp_path / "lake")
    assert config.catalog == "sqlite"
    assert config.folder == (tmp_path / "lake").resolve()
    assert config.catalog_path == config.folder / "catalog.sqlite"
    assert config.data_path == f"{config.folder}/data/"
    assert config.extensions == ("ducklake", "sqlite_scanner")
    assert not config.on_s3


def test_none_reads_the_environment_then_the_default(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    assert parse_lake(None, env={}).folder == (tmp_path / ".sqlrooms").resolve()
    env = {LAKE_ENV: f"{PG}?data=s3://bucket/p"}
    assert parse_lake(None, env=env).dsn == "host=db.example port=5433 dbname=lake user=ana"


def test_the_same_folder_spelled_two_ways_has_one_identity(tmp_path: Path) -> None:
    assert parse_lake(tmp_path).identity == parse_lake(f"{tmp_path}/./").identity


def test_a_sqlite_uri_names_the_catalog_file_and_optionally_the_data(tmp_path: Path) -> None:
    config = parse_lake(f"sqlite:{tmp_path}/cat.sqlite")
    assert config.catalog_path == tmp_path.resolve() / "cat.sqlite"
    assert config.data_path == f"{tmp_path.resolve()}/data/"
    assert config.folder is None
    on_s3 = parse_lake(f"sqlite:{tmp_path}/cat.sqlite?data=s3://b/lake&s3_url_style=path")
    assert on_s3.data_path == "s3://b/lake/"
    assert on_s3.extensions == ("ducklake", "sqlite_scanner", "httpfs")


def test_a_postgres_keyword_dsn_with_s3_settings() -> None:
    config = parse_lake(
        "postgres:user=ana dbname=lake port=5433 host=db.example sslmode=require"
        "?data=s3://bucket/prefix&s3_endpoint=127.0.0.1:9000&s3_url_style=path"
        "&s3_use_ssl=false&s3_region=eu-west-1"
    )
    assert config.catalog == "postgres"
    assert config.dsn == "host=db.example port=5433 dbname=lake user=ana sslmode=require"
    assert config.data_path == "s3://bucket/prefix/"
    assert config.s3 == S3Settings(
        endpoint="127.0.0.1:9000", region="eu-west-1", url_style="path", use_ssl=False
    )
    assert config.extensions == ("ducklake", "postgres_scanner", "httpfs")
    assert config.host == "db.example"


def test_a_postgresql_uri_normalises_to_the_same_lake_as_the_keyword_form() -> None:
    uri = parse_lake("postgresql://ana@db.example:5433/lake?data=s3://bucket/prefix")
    keywords = parse_lake(f"{PG}?data=s3://bucket/prefix/")
    assert uri == keywords
    assert uri.identity == keywords.identity
    assert uri.identity == (
        "postgres:host=db.example port=5433 dbname=lake user=ana?data=s3://bucket/prefix/"
    )


def test_libpq_parameters_of_a_uri_are_kept() -> None:
    config = parse_lake("postgresql://ana@h/lake?sslmode=verify-full&data=/srv/lake")
    assert parse_dsn(config.dsn or "") == {
        "host": "h",
        "dbname": "lake",
        "user": "ana",
        "sslmode": "verify-full",
    }
    assert config.data_path == "/srv/lake/"


def test_quoted_dsn_values_round_trip() -> None:
    config = parse_lake(r"postgres:host=h dbname='my lake' user='o\'neil'?data=/d")
    assert parse_dsn(config.dsn or "") == {"host": "h", "dbname": "my lake", "user": "o'neil"}


@pytest.mark.parametrize(
    "text",
    [
        "postgresql://ana:hunter2@db.example/lake?data=s3://b/p",
        "postgres:host=db.example user=ana password=hunter2?data=s3://b/p",
        "postgres:host=db.example user=ana password='hunter2 x'?data=s3://b/p",
        "postgresql://ana@db.example/lake?password=hunter2&data=s3://b/p",
        "postgres:host=db.example sslpassword=hunter2?data=s3://b/p",
    ],
)
def test_a_password_in_the_lake_string_is_refused_without_repeating_it(text: str) -> None:
    with pytest.raises(ValidationError, match="PGPASSWORD") as info:
        parse_lake(text)
    assert "hunter2" not in str(info.value)


def test_a_config_built_by_hand_cannot_hold_a_password() -> None:
    with pytest.raises(ValidationError, match="PGPASSWORD"):
        LakeConfig(catalog="postgres", dsn="host=h password=hunter2", data_path="/d")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (PG, "needs its data path"),
        ("mysql://h/db", "unknown lake scheme"),
        (f"{PG}?data=s3://b/p&s3_url_style=virtual", "s3_url_style must be"),
        (f"{PG}?data=s3://b/p&s3_use_ssl=maybe", "s3_use_ssl must be"),
        (f"{PG}?data=/local&s3_region=x", "is not s3://"),
        (f"{PG}?data=gs://b/p", "local folder or s3://"),
        (f"{PG}?data=s3:///p", "s3://bucket/prefix"),
        ("postgres:host=h not-a-pair?data=/d", "key=value pairs"),
        (f"{PG}?data=s3://b/p&s3_endpoint=http://h:9000", "without scheme"),
        ("sqlite:?data=/d", "needs the catalog file"),
        (f"{PG}?data=/a&data=/b", "given twice"),
    ],
)
def test_bad_lake_strings_say_what_is_wrong(text: str, message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        parse_lake(text)


def test_repr_and_str_never_show_a_password() -> None:
    config = parse_lake(f"{PG}?data=s3://bucket/p")
    assert repr(config) == (
        "LakeConfig('postgres:host=db.example port=5433 dbname=lake user=ana?data=s3://bucket/p/')"
    )
    assert str(config) == config.identity


def test_redact_scrubs_dsn_uri_secret_statement_and_environment_values() -> None:
    env = {"PGPASSWORD": "pg-secret-1", "AWS_SECRET_ACCESS_KEY": "aws-secret-2"}
    text = (
        "host=h password='a b' user=x; postgresql://u:pw@h/db; "
        "CREATE SECRET s (TYPE s3, KEY_ID 'AKIA', SECRET 'sss', SESSION_TOKEN 'ttt'); "
        "echo pg-secret-1 aws-secret-2"
    )
    out = redact(text, env=env)
    for secret in ("'a b'", ":pw@", "AKIA", "'sss'", "ttt", "pg-secret-1", "aws-secret-2"):
        assert secret not in out
    assert "host=h" in out and "user=x" in out and "u:***@h" in out


def test_attach_sql_of_the_embedded_default_keeps_wal_and_override(tmp_path: Path) -> None:
    sql = parse_lake(tmp_path).attach_sql("lake")
    assert sql.startswith(f"ATTACH IF NOT EXISTS 'ducklake:sqlite:{tmp_path.resolve()}/")
    assert "OVERRIDE_DATA_PATH true" in sql and "META_JOURNAL_MODE 'WAL'" in sql
    read_only = parse_lake(tmp_path).attach_sql("x", read_only=True)
    assert "READ_ONLY" in read_only and "WAL" not in read_only


def test_attach_sql_of_postgres_adds_a_connect_timeout_unless_set() -> None:
    sql = parse_lake(f"{PG}?data=s3://b/p").attach_sql("lake")
    assert "'ducklake:postgres:host=db.example port=5433 dbname=lake user=ana " in sql
    assert "connect_timeout=10'" in sql and "DATA_PATH 's3://b/p/'" in sql
    assert "OVERRIDE_DATA_PATH" not in sql
    own = parse_lake(f"{PG} connect_timeout=3?data=s3://b/p").attach_sql("lake")
    assert own.count("connect_timeout") == 1


def test_s3_secret_comes_from_the_environment_and_the_config() -> None:
    config = parse_lake(
        f"{PG}?data=s3://bucket/p&s3_endpoint=127.0.0.1:9000&s3_url_style=path&s3_use_ssl=false"
    )
    assert s3_secret_sql(config, "s", env={}) is None
    sql = s3_secret_sql(
        config,
        "s",
        env={"AWS_ACCESS_KEY_ID": "k", "AWS_SECRET_ACCESS_KEY": "v", "AWS_REGION": "eu-1"},
    )
    assert sql == (
        "CREATE OR REPLACE TEMPORARY SECRET s (TYPE s3, KEY_ID 'k', SECRET 'v', "
        "SCOPE 's3://bucket/p/', ENDPOINT '127.0.0.1:9000', REGION 'eu-1', "
        "URL_STYLE 'path', USE_SSL false)"
    )
    assert s3_secret_sql(parse_lake("/tmp/x"), "s", env={"AWS_ACCESS_KEY_ID": "k"}) is None


def test_s3_endpoint_may_come_from_aws_endpoint_url() -> None:
    config = parse_lake(f"{PG}?data=s3://bucket/p")
    env = {
        "AWS_ACCESS_KEY_ID": "k",
        "AWS_SECRET_ACCESS_KEY": "v",
        "AWS_ENDPOINT_URL": "http://127.0.0.1:9000",
    }
    sql = s3_secret_sql(config, "s", env=env) or ""
    assert "ENDPOINT '127.0.0.1:9000'" in sql and "USE_SSL false" in sql
