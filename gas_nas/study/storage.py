"""Optuna storages from a URL: SQLite, PostgreSQL (RDB, with heartbeats) or a journal file.

Only this module turns URLs into storages, so it is the one place that redacts passwords
and words connection failures as one line. No home-made database: these are Optuna's own.
"""

from __future__ import annotations

import os
import re
import time
import warnings
from pathlib import Path
from urllib.parse import parse_qsl, unquote, urlsplit

from gas_nas.common.errors import StorageError

DEFAULT_SQLITE = "sqlite:///studies/gas.db"
DEFAULT_JOURNAL = "studies/gas.journal"
DEFAULT_ARTIFACTS = "studies/artifacts"
SCHEMA_ATTEMPTS = 5
# scheme://user:PASSWORD@ : greedy to the token's last "@", so an unencoded "@" in a password hides its tail too.
_USERINFO = re.compile(r"(?P<head>[a-z][a-z0-9+.\-]*://[^:/@\s]*:)(?P<pw>\S*)(?P<tail>@)", re.I)
# ?password=..., &sslpassword=..., passfile=... (query parameters, or libpq's "key=value" form in messages).
_PARAM = re.compile(r"(?P<head>(?:^|[?&;\s])(?P<key>[^=&;\s?]+)=)(?P<value>[^&;\s#]*)")
_SECRET_KEY = re.compile(r"pass|pwd|secret|token|sslkey", re.I)
MIN_LITERAL = 3  # shorter secrets are hidden only where they sit in a URL (else every "a" would go)


def redact(text: str, url: str | None = None) -> str:
    """Hide every password in `text`: in URL userinfo, in secret-looking query parameters, and
    (literally, raw and percent-decoded) those of `url`, which defaults to `text` itself."""
    for secret in sorted(url_secrets(text if url is None else url), key=len, reverse=True):
        if len(secret) >= MIN_LITERAL:
            text = text.replace(secret, "***")
    text = _USERINFO.sub(lambda m: f"{m['head']}***{m['tail']}", text)
    return _PARAM.sub(lambda m: f"{m['head']}***" if _SECRET_KEY.search(unquote(m["key"])) and m["value"] else m[0], text)


def url_secrets(url: str) -> set[str]:
    """The password and secret query values of a storage URL, as written and percent-decoded."""
    found: set[str] = set()
    try:
        parts = urlsplit(url)
        found.add(parts.password or "")
        if re.fullmatch(r"[a-z][a-z0-9+.\-]*://\S*", url, re.I):  # "u:p#w/x@host": urlsplit stops at '#' or '/'
            found.add(url.split("://", 1)[1].rpartition("@")[0].partition(":")[2])
        found.update(v for k, v in parse_qsl(parts.query, keep_blank_values=True) if _SECRET_KEY.search(k))
    except ValueError:  # e.g. an invalid port or IPv6 literal: the regexes still apply
        pass
    found.update(m["value"] for m in _PARAM.finditer(url) if _SECRET_KEY.search(unquote(m["key"])))
    forms = {form for s in found if s for form in (s, unquote(s))}
    return forms | {form.split("@", i)[-1] for form in forms for i in range(1, form.count("@") + 1)}  # "p@ss@word": a driver may show "ss@word"


def error_line(exc: BaseException, url: str) -> str:
    """First line of a database error (SQLAlchemy's run to many), password hidden."""
    text = str(exc).strip()
    return redact(text.splitlines()[0] if text else type(exc).__name__, url)


def is_journal(url: str) -> bool:
    return url.startswith("journal:") or ("://" not in url and url.endswith(".journal"))


def journal_path(url: str) -> Path:
    return Path(url.removeprefix("journal://").removeprefix("journal:"))


def check_url(url: str) -> str:
    """The URL's scheme, after refusing in one line what SQLAlchemy would answer in its own words:
    a bare path (a file needs sqlite:///PATH) and the common `postgres://` spelling."""
    if is_journal(url):
        return "journal"
    scheme = _scheme(url)
    if not scheme or "://" not in url:
        suggestion = f"sqlite:///{url}" if url and "://" not in url and ":" not in url else "sqlite:///PATH"
        raise StorageError(f"storage URL {redact(url)!r} is not a URL: for a file use {suggestion}; else postgresql://USER:PASSWORD@HOST/DB or journal:PATH")
    if scheme == "postgres" or scheme.startswith("postgres+"):
        fixed = "postgresql" + url[len("postgres"):]
        raise StorageError(f"storage URL {redact(url)!r}: SQLAlchemy spells PostgreSQL 'postgresql://', not 'postgres://'; use {redact(fixed)}")
    return scheme


def open_storage(url: str, *, heartbeat_interval: int = 10, grace_period: int = 30, max_retries: int = 2):
    """An Optuna storage for `url`, every failure a StorageError with the password hidden.

    RDB URLs (sqlite://, postgresql://, mysql://) get Optuna's heartbeat: a trial whose worker
    died is failed after `grace_period` seconds and re-queued (at most `max_retries` times) by
    RetryHeartbeatStaleTrialCallback. `journal:PATH` (or a path ending in .journal) is Optuna's
    journal file storage, the one Optuna recommends for several processes on one machine.
    """
    import optuna

    if is_journal(url):
        path = journal_path(url)
        _check_dir(path.parent, url)
        try:
            return optuna.storages.JournalStorage(optuna.storages.journal.JournalFileBackend(str(path)))
        except Exception as exc:  # noqa: BLE001 - surfaced as one line
            raise StorageError(f"cannot open journal storage {path}: {error_line(exc, url)}") from None
    scheme = check_url(url)
    if scheme == "sqlite":
        db = url.removeprefix("sqlite:///")
        if db and db != ":memory:":
            _check_dir(Path(db).parent, url)
    _check_driver(scheme)
    for attempt in range(SCHEMA_ATTEMPTS):
        try:
            with warnings.catch_warnings():  # heartbeats are "experimental" in Optuna; not the user's concern
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                return optuna.storages.RDBStorage(
                    url,
                    engine_kwargs={"pool_pre_ping": True} if not scheme == "sqlite" else None,
                    heartbeat_interval=heartbeat_interval,
                    grace_period=grace_period,
                    heartbeat_stale_trial_callback=optuna.storages.RetryHeartbeatStaleTrialCallback(max_retry=max_retries),
                )
        except Exception as exc:  # noqa: BLE001 - SQLAlchemy errors carry multi-line text and the URL
            if attempt + 1 < SCHEMA_ATTEMPTS and _schema_race(exc):
                time.sleep(0.2 * (attempt + 1))
                continue
            raise StorageError(f"cannot open storage {redact(url)}: {error_line(exc, url)}") from None


def check_openable(url: str) -> None:
    """For commands that create a study: refuse in one line, before any other input is checked
    and without creating a file, folder or table, a storage that `open_storage` could not open."""
    if is_journal(url):
        _check_creatable(journal_path(url).parent, url)
        return
    scheme = check_url(url)
    if scheme == "sqlite":
        db = url.removeprefix("sqlite:///")
        if db and db != ":memory:":
            _check_creatable(Path(db).parent, url)
        return
    _check_driver(scheme)
    _rdb_tables(url)  # connects and reads table names: an unreachable server is named now


def _check_driver(scheme: str) -> None:
    if scheme.startswith("postgresql"):
        try:
            import psycopg  # noqa: F401  (SQLAlchemy 2.1 maps postgresql:// to psycopg 3)
        except ImportError:
            raise StorageError("PostgreSQL storage needs the driver: pip install 'gas-nas[postgres]'") from None


OPTUNA_TABLES = {"studies", "version_info"}  # present in every Optuna RDB storage


def check_existing(url: str) -> None:
    """For read-only commands: the storage must already exist and be Optuna's, checked without
    creating or changing anything (Optuna would otherwise add its tables to any database)."""
    if is_journal(url):
        path = journal_path(url)
        _check_file(path, url)
        with open(path, "rb") as f:
            first = f.readline(1 << 20)
        if not first.startswith(b'{"op_code"'):
            raise StorageError(f"{path} is not an Optuna journal (storage {redact(url)}); refusing to touch it")
        return
    scheme = check_url(url)
    if scheme == "sqlite":
        db = url.removeprefix("sqlite:///") if url.startswith("sqlite:///") else ""
        if not db or db == ":memory:":
            raise StorageError(f"storage {redact(url)} holds no studies: give the sqlite:///PATH of an existing study database")
        path = Path(db.partition("?")[0])
        _check_file(path, url)
        tables = _sqlite_tables(path, url)
    else:
        tables = _rdb_tables(url)
    if not OPTUNA_TABLES <= tables:
        raise StorageError(f"storage {redact(url)} is not a gas-nas/Optuna storage (no Optuna tables); refusing to touch it")


def _check_file(path: Path, url: str) -> None:
    if not path.exists():
        raise StorageError(f"storage {redact(url)}: {path} does not exist (show, export and dashboard read an existing study)")
    if not path.is_file():
        raise StorageError(f"storage {redact(url)}: {path} is not a regular file")


def _sqlite_tables(path: Path, url: str) -> set[str]:
    """Table names, read through a read-only connection (no file, journal or table is created)."""
    import sqlite3
    from urllib.parse import quote

    with open(path, "rb") as f:
        if f.read(16) != b"SQLite format 3\x00":
            raise StorageError(f"{path} is not an SQLite database (storage {redact(url)}); refusing to touch it")
    try:
        con = sqlite3.connect(f"file:{quote(str(path.resolve()))}?mode=ro", uri=True)
        try:
            return {row[0] for row in con.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        finally:
            con.close()
    except sqlite3.Error as exc:
        raise StorageError(f"cannot read storage {redact(url)}: {error_line(exc, url)}") from None


def _rdb_tables(url: str) -> set[str]:
    import sqlalchemy

    try:
        engine = sqlalchemy.create_engine(url)
        try:
            return set(sqlalchemy.inspect(engine).get_table_names())
        finally:
            engine.dispose()
    except Exception as exc:  # noqa: BLE001 - driver errors carry multi-line text and the URL
        raise StorageError(f"cannot open storage {redact(url)}: {error_line(exc, url)}") from None


def _scheme(url: str) -> str:
    """The URL's scheme, after refusing a password with an unencoded '@' (drivers would read its
    tail as the host name and print it)."""
    if "://" in url and url.split("://", 1)[1].split("/", 1)[0].count("@") > 1:
        raise StorageError(f"storage URL {redact(url)!r}: more than one '@' before the host; percent-encode '@' in a user name or password as %40")
    try:
        return urlsplit(url).scheme
    except ValueError as exc:
        raise StorageError(f"storage URL {redact(url)!r} cannot be parsed ({exc})") from None


def _schema_race(exc: Exception) -> bool:
    """Workers started together on a fresh database all create Optuna's tables; the losers see
    'duplicate key' / 'already exists'. The tables are there then, so opening again succeeds."""
    from sqlalchemy.exc import IntegrityError, OperationalError, ProgrammingError

    text = str(exc).lower()
    return isinstance(exc, (IntegrityError, ProgrammingError, OperationalError)) and any(word in text for word in ("already exists", "duplicate", "unique constraint"))


def _check_creatable(directory: Path, url: str) -> Path:
    """The storage's directory (or "." for a bare name), once nothing on its path is a file and
    its nearest existing folder is writable; creates nothing."""
    directory = directory if str(directory) else Path(".")
    for part in (directory, *directory.parents):
        if part.exists() and not part.is_dir():
            raise StorageError(f"cannot create {directory} for storage {redact(url)}: {part} exists and is not a directory")
    nearest = next((p for p in (directory, *directory.parents) if p.exists()), Path("."))
    if not os.access(nearest, os.W_OK | os.X_OK):
        raise StorageError(f"{nearest} is not writable, so storage {redact(url)} cannot be used; pick another --storage")
    return directory


def _check_dir(directory: Path, url: str) -> None:
    """Create the storage's directory, or say in one line why it cannot be written."""
    directory = _check_creatable(directory, url)
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise StorageError(f"cannot create {directory} for storage {redact(url)}: {exc.strerror}") from None
    if not os.access(directory, os.W_OK | os.X_OK):
        raise StorageError(f"{directory} is not writable, so storage {redact(url)} cannot be used; pick another --storage")


# ---------------------------------------------------------------- several attributes, one write


def write_trial_attrs(storage, trial_id: int, user: dict, system: dict | None = None) -> None:
    """A trial's user and system attributes, in one transaction on an RDB storage (SQLite,
    PostgreSQL: one commit, where Optuna's `set_trial_user_attr` commits each key), else one
    storage call per key (the journal, whose log takes one key per entry)."""
    system = system or {}

    def batch(session, models, backend) -> None:
        for model, attrs in ((models.TrialUserAttributeModel, user), (models.TrialSystemAttributeModel, system)):
            for key, value in attrs.items():
                backend._set_trial_attr_without_commit(session, model, trial_id, key, value)

    if not _in_one_transaction(storage, batch):
        for key, value in user.items():
            storage.set_trial_user_attr(trial_id, key, value)
        for key, value in system.items():
            storage.set_trial_system_attr(trial_id, key, value)


def write_study_system_attrs(storage, study_id: int, attrs: dict) -> None:
    """Study system attributes (where optuna-dashboard keeps notes and plots), in one transaction
    on an RDB storage, else one call per key."""
    import json

    def batch(session, models, backend) -> None:
        study = models.StudyModel.find_or_raise_by_id(study_id, session)
        for key, value in attrs.items():
            row = models.StudySystemAttributeModel.find_by_study_and_key(study, key, session)
            if row is None:
                session.add(models.StudySystemAttributeModel(study_id=study_id, key=key, value_json=json.dumps(value)))
            else:
                row.value_json = json.dumps(value)

    if not _in_one_transaction(storage, batch):
        for key, value in attrs.items():
            storage.set_study_system_attr(study_id, key, value)


class ParamBuffer:
    """Stands in for a trial's storage while its parameters are sampled (`trial.storage`, which
    every `suggest_*` writes through): parameters are kept, `flush` writes them in one
    transaction (Optuna commits each), and everything else goes straight to the storage."""

    def __init__(self, storage):
        self.storage = storage
        self.params: list[tuple] = []

    def set_trial_param(self, trial_id: int, name: str, value_internal: float, distribution) -> None:
        self.params.append((trial_id, name, value_internal, distribution))

    def __getattr__(self, name: str):
        return getattr(self.storage, name)

    def flush(self) -> None:
        params, self.params = self.params, []

        def batch(session, models, backend) -> None:
            for trial_id, name, value, distribution in params:  # the same checks as Optuna's own write
                backend._set_trial_param_without_commit(session, trial_id, name, value, distribution)

        if params and not (hasattr(_backend(self.storage), "_set_trial_param_without_commit") and _in_one_transaction(self.storage, batch)):
            for param in params:
                self.storage.set_trial_param(*param)


def _backend(storage):
    return getattr(storage, "_backend", storage)  # Optuna wraps RDBStorage in a read cache; writes go through to it


def _in_one_transaction(storage, batch) -> bool:
    """Run `batch(session, models, rdb_storage)` in one RDB transaction; False when the storage is
    not an RDB storage, when this Optuna lacks the internals used (then the caller writes key by
    key through the public API), or when a concurrent writer made the batch collide (the caller's
    per-key writes then settle it the way Optuna's own do)."""
    try:
        from optuna.storages._rdb import models
        from optuna.storages._rdb.storage import RDBStorage, _create_scoped_session
        from sqlalchemy.exc import IntegrityError
    except ImportError:
        return False
    backend = _backend(storage)
    if not isinstance(backend, RDBStorage) or not hasattr(backend, "_set_trial_attr_without_commit"):
        return False
    try:
        with _create_scoped_session(backend.scoped_session) as session:
            batch(session, models, backend)
    except IntegrityError:
        return False
    return True
