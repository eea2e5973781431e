"""What a source type declares, and the registry that holds one instance of each."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Generator, Iterator, Mapping
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field
from datetime import datetime
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, ClassVar

from flask import abort

from ..values.times import utcnow
from .fields import Field

if TYPE_CHECKING:
    from .oauth_app import AuthorizationCode, Client


class SourceError(Exception):
    """A failure talking to the source, with a message fit to show the user as it is.
    `retry=False` when trying again cannot help until someone changes something (a file
    that cannot be read, credentials the source rejects, a table that is not there): the
    run fails at once, saying so, instead of after minutes of retries."""

    def __init__(self, message: str, retry: bool = True, reconnect: bool = False):
        super().__init__(message)
        self.retry = retry
        # The credential itself is gone (a revoked refresh token): only connecting the source
        # again helps, so its health is error at once rather than after several failures.
        self.reconnect = reconnect


@dataclass
class TestResult:
    ok: bool
    message: str
    # Nothing to test yet, and that is normal (a file source before its first upload): said
    # as information, not as a failure, and the source's status is left as it is.
    waiting: bool = False


@dataclass
class Connection:
    """Everything a source type's code gets: decrypted credentials, config, and identity."""

    id: str
    credentials: dict
    config: dict
    ingest_url: str | None = None
    latest_file_id: str | None = None
    # Stores credentials the source renewed while reading (a refreshed OAuth access token,
    # a rotated refresh token), merged into the stored ones and encrypted. Callable from
    # the reader's own thread; the default (an unsaved connection being tested) keeps nothing.
    save_credentials: Callable[[dict], None] = lambda changes: None
    # The credentials as stored now (another run sharing them may have renewed them since
    # these were read), and the lock that makes one renewal of them at a time.
    stored_credentials: Callable[[], dict | None] = lambda: None
    renewal_lock: Callable[[], AbstractContextManager] = nullcontext


@dataclass
class Batch:
    """One batch of a stream read; the engine commits its records and checkpoint together."""

    items: list  # of services.upsert.Incoming
    checkpoint: dict  # where to resume after this batch
    total: int | None = None  # records in the whole read, when the source can say
    state: dict | None = None  # the collection's new incremental position, when it moves
    rejected: list = field(default_factory=list)  # reasons for rows that could not be read
    # When the source gave this state: a version without its own time is as new as its read
    # (across sources, last write wins by it). By default, when the batch was made.
    read_at: datetime = field(default_factory=utcnow)


Batches = Generator[Batch, None, None]


@dataclass
class ReadContext:
    """What the engine lends a reader: throttling, the run's file, the age cutoff."""

    throttle: Callable[[], object] = lambda: None
    # The provider's budget for these credentials, as reads found it: told when an answer
    # says it is spent until a time, and asked before each call, so that the next stream of
    # the run (or another run with the same credentials) waits for it instead of being refused.
    spent_until: Callable[[float], None] = lambda epoch: None
    budget_back_at: Callable[[], float] = lambda: 0.0
    file_id: str | None = None
    not_before: datetime | None = None  # max_age_days before the run
    batch_size: int = 1000
    # A batch is cut at batch_size rows or at about this many bytes of them, whichever comes
    # first, so that memory follows the batch, not the widest rows.
    batch_bytes: int = 16 * 1024 * 1024
    max_record_bytes: int = 1024 * 1024  # a row larger than this is skipped, never held whole
    # How long a change feed's read goes on once caught up before the run ends (the next
    # one starts at once): runs stay bounded, and their counts stay readable.
    stream_seconds: float = 300.0
    # Whether the run was asked to stop: a reader that waits long (for a rate limit to
    # lift) asks now and then, since cancelling is otherwise seen only between batches.
    stopping: Callable[[], bool] = lambda: False


@dataclass
class ChangeBatch:
    """Changes of a change feed, applied in one transaction with `position`: the records of
    each stream in order (deletions as `deleted` events), after emptying the `truncated`."""

    changes: dict[str, list]  # stream -> Incoming
    position: dict
    truncated: list[str] = field(default_factory=list)
    read_at: datetime = field(default_factory=utcnow)
    committed_at: datetime | None = None  # of the newest transaction in it, at the source


class ChangeFeed(ABC):
    """A source's changes across its streams, read from one position (a replication slot's)."""

    @abstractmethod
    def prepare(self, streams: list[str]) -> dict:
        """Make the feed cover `streams` (and only them); the position it starts from for a
        stream backfilled from now on."""

    @abstractmethod
    def read(
        self, streams: list[str], position: dict, ctx: ReadContext, committed: Callable[[], dict | None]
    ) -> Iterator[ChangeBatch]:
        """The changes past `position`, until the run's time is up and none are waiting.
        `committed` says the newest position the engine has committed: the source may
        forget what is before it."""

    @abstractmethod
    def acknowledge(self, position: dict) -> None:
        """What is before `position` is committed here: the source may forget it."""

    @abstractmethod
    def lag(self) -> dict | None:
        """What the feed keeps at the source and how far behind its reader is (bytes), and
        what holds it (a slot's name); None when there is nothing there."""

    @abstractmethod
    def forget(self) -> None:
        """Remove what the feed holds at the source (a slot that keeps WAL)."""


class SourceType(ABC):
    """Subclass, fill in the declaration, decorate with @register. Nothing else to wire.
    A type without `test` cannot be instantiated, so it cannot register."""

    short_name: ClassVar[str]
    name: ClassVar[str]
    description: ClassVar[str]
    auth_methods: ClassVar[tuple[str, ...]] = ("credentials",)
    labels: ClassVar[tuple[str, ...]] = ()
    supports_continuous: ClassVar[bool] = False
    auth_fields: ClassVar[tuple[Field, ...]] = ()
    config_fields: ClassVar[tuple[Field, ...]] = ()
    name_example: ClassVar[str] = ""  # the connect form's placeholder for the connection's name
    # Pull types are read by the sync engine; push types receive deliveries at their ingest
    # URL (/v1/ingest/<id>), and take test events there. A type is one or the other.
    pull: ClassVar[bool] = True
    push: ClassVar[bool] = False
    # Files can be uploaded to it (as `upload_formats`); each upload is read by a run.
    uploads: ClassVar[bool] = False
    upload_formats: ClassVar[tuple[tuple[str, str], ...]] = ()
    # A full read yields everything the source holds, so what it did not yield is gone from
    # the source and its record is removed. An upload holds only what it holds: a full read
    # of one leaves the records of earlier uploads alone.
    full_read_complete: ClassVar[bool] = True
    # The streams it always has, known without asking the source (a collection's `stream`
    # must be one); empty when only the source can say (list_streams asks it).
    fixed_streams: ClassVar[tuple[str, ...]] = ()
    # The Syncs API's names for credential fields that the declaration names otherwise
    # ({theirs: ours}): what other sync services call them, accepted and shown back.
    credential_aliases: ClassVar[Mapping[str, str]] = MappingProxyType({})
    # The rate limit a new sync gets when it asks for none: requests per interval (seconds).
    default_rate_limit: ClassVar[Mapping[str, float]] = MappingProxyType(
        {"allowed_requests": 10, "interval": 1, "max_concurrent_requests": 0}
    )
    # A full read yields each key once, in ascending key order (keyset pagination).
    ordered_keys: ClassVar[bool] = False
    # It connects to a host its credentials name, through the network guard (netguard).
    dials_out: ClassVar[bool] = False
    # The scheduler can start its runs, and its requests can be rate limited (a file
    # upload is read when a file comes: neither applies).
    scheduled: ClassVar[bool] = True

    # The authorization code grant by which a person connects it from the dashboard with
    # the instance's OAuth app (sources/oauth_app.py); offered only once that app is set.
    authorization: ClassVar[AuthorizationCode | None] = None

    def authorized(self, answer: dict, client: Client) -> dict:
        """The credentials of a connection made through `authorization`, from the token
        endpoint's answer: what `auth_fields` validates, with no client secret."""
        raise SourceError(f"{self.name} is not connected through OAuth", retry=False)

    def key_column(self, config: Mapping[str, Any], stream: str | None = None) -> str:
        """The field of each record a full read of `stream` yields that holds its key, in the
        order of `ordered_keys`."""
        return "id"

    def check(self, credentials: dict, config: dict) -> dict[str, str]:
        """Rules across fields, after each field is valid on its own: {field: message}."""
        return {}

    def delivery_requirement(self, credentials: dict) -> str | None:
        """For a push source: what each delivery must carry to be accepted, as words that
        follow "must carry" ("an HMAC-SHA256 signature in its X-Signature header"); None
        when any delivery is accepted."""
        return None

    def binding_defaults(self, credentials: dict, config: dict) -> dict[str, Any]:
        """For a source whose items have a known shape (a Stripe event): how they map into a
        collection where whoever binds it, and the collection, name nothing ({field: value}
        of record_path, timestamp_path, event_type_field)."""
        return {}

    def test_event(self, credentials: dict) -> dict | None:
        """For a push source: a sample event shaped as its sender shapes them, which the
        dashboard sends through the real ingest path; None when it takes no test events."""
        return None

    @abstractmethod
    def test(self, conn: Connection) -> TestResult:
        """Really reach the source with these credentials; say why not in the user's terms."""

    def list_streams(self, conn: Connection) -> list[dict]:
        """[{name, label}] a collection can pick as its `stream`."""
        return [{"name": s, "label": s.replace("_", " ").title()} for s in self.fixed_streams]

    def sample(self, conn: Connection, stream: str | None) -> dict | None:
        """One record as a full read gives it (the first), for checking a collection's paths
        against before it is saved; None when the source has none to give. A pull type's
        `read` answers it, so no type needs its own."""
        if not self.pull:
            return None
        batches = self.read(
            conn,
            stream,
            None,
            {},
            True,
            ReadContext(batch_size=1, batch_bytes=1024 * 1024, file_id=conn.latest_file_id),
        )
        try:
            for batch, _ in zip(batches, range(3), strict=False):  # a few pages: the first can be empty
                for item in batch.items:
                    if item.refused is None:
                        document = item.document()
                        return document if isinstance(document, dict) else None
        finally:
            batches.close()
        return None

    def change_feed(self, conn: Connection) -> ChangeFeed | None:
        """The connection's stream of changes, when it reads one (PostgreSQL's logical
        replication): each bound stream is backfilled once, and the run then applies the
        changes of all of them, in commit order, from one position."""
        return None

    def state_expired(self, state: dict | None) -> bool:
        """True when an incremental read from `state` would miss changes the source no
        longer keeps: the run then reads everything instead."""
        return False

    def read(
        self,
        conn: Connection,
        stream: str | None,
        state: dict | None,
        checkpoint: dict,
        full: bool,
        ctx: ReadContext,
    ) -> Batches:
        """Yield Batch objects for one stream, resuming after `checkpoint`. `full` reads
        everything; otherwise only what changed since `state`. Push types never read."""
        raise SourceError(f"{self.name} sources receive events; they have nothing to read", retry=False)

    def summary(self) -> dict:
        return {
            "id": f"src_{self.short_name}",
            "name": self.name,
            "shortName": self.short_name,
            "description": self.description,
            "authMethods": list(self.auth_methods),
            "labels": list(self.labels),
            "supportsContinuous": self.supports_continuous,
        }

    def detail(self) -> dict:
        return {
            **self.summary(),
            "authFields": [f.to_json() for f in self.auth_fields],
            "configFields": [f.to_json() for f in self.config_fields],
        }


REGISTRY: dict[str, SourceType] = {}


def register(cls: type[SourceType]) -> type[SourceType]:
    if cls.pull == cls.push:
        raise TypeError(
            f"{cls.__name__} must be read (pull) or receive deliveries (push), not both or neither"
        )
    REGISTRY[cls.short_name] = cls()
    return cls


def source_type(short_name: str) -> SourceType | None:
    return REGISTRY.get(short_name)


def source_type_or_404(short_name: str) -> SourceType:
    found = REGISTRY.get(short_name)
    if found is None:
        abort(404, description=f"No source type {short_name!r}")
    return found
