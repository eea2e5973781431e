"""PostgreSQL's built-in logical decoding output (`pgoutput`, protocol version 1), decoded:
the messages a replication slot gives for a publication, as PostgreSQL documents them in
"Logical Replication Message Formats". No server extension is needed: `pgoutput` ships
with every PostgreSQL since 10.

Values come as PostgreSQL's text output of each column ('t'), NULL ('n'), or unchanged
TOASTed values an update did not touch ('u', sent without their value)."""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

# PostgreSQL's epoch for timestamps in the protocol: microseconds since 2000-01-01 UTC.
PG_EPOCH = datetime(2000, 1, 1, tzinfo=UTC)
UNCHANGED = object()  # a TOASTed value the change did not touch, and did not send


class DecodeError(ValueError):
    """A message this decoder does not understand (a newer protocol, a corrupt stream)."""


@dataclass
class Relation:
    oid: int
    schema: str
    name: str
    replica_identity: str  # d(efault: the key), n(othing), f(ull), i(ndex)
    columns: list[str]
    types: list[int]  # type oids
    key: list[bool]  # part of the replica identity

    @property
    def qualified(self) -> str:
        return f"{self.schema}.{self.name}"


@dataclass
class Begin:
    final_lsn: int
    committed_at: datetime
    xid: int


@dataclass
class Commit:
    commit_lsn: int
    end_lsn: int
    committed_at: datetime


@dataclass
class Change:
    """An insert, update or delete of one row of `relation`: `new` for an insert or update,
    `old` (the key, or the whole row under REPLICA IDENTITY FULL) when the server sent it."""

    op: str  # insert, update, delete
    relation: Relation
    new: list | None = None
    old: list | None = None


@dataclass
class Truncate:
    relations: list[Relation] = field(default_factory=list)


Message = Begin | Commit | Relation | Change | Truncate | None


def lsn_text(lsn: int) -> str:
    """An LSN as PostgreSQL writes it: two hex halves, 16/B374D848."""
    return f"{lsn >> 32:X}/{lsn & 0xFFFFFFFF:X}"


def lsn_of(text: str) -> int:
    high, low = text.split("/")
    return (int(high, 16) << 32) | int(low, 16)


class Decoder:
    """Decodes one slot's messages in order, remembering the relations described so far."""

    def __init__(self) -> None:
        self.relations: dict[int, Relation] = {}

    def decode(self, data: bytes) -> Message:
        if not data:
            raise DecodeError("an empty message")
        reader = _Reader(data)
        kind = reader.byte()
        if kind == "B":
            return Begin(reader.int64(), reader.time(), reader.int32())
        if kind == "C":
            reader.int8()  # flags, unused
            return Commit(reader.int64(), reader.int64(), reader.time())
        if kind == "R":
            return self._relation(reader)
        if kind in "IUD":
            return self._change(kind, reader)
        if kind == "T":
            count = reader.int32()
            reader.int8()  # options: CASCADE, RESTART IDENTITY
            return Truncate([self._known(reader.int32()) for _ in range(count)])
        if kind in "OYM":  # origin, type, logical message: nothing to apply
            return None
        raise DecodeError(f"unknown pgoutput message {kind!r}")

    def _relation(self, reader: _Reader) -> Relation:
        oid, schema, name = reader.int32(), reader.string(), reader.string()
        identity = chr(reader.int8())
        columns, types, key = [], [], []
        for _ in range(reader.int16()):
            flags = reader.int8()
            columns.append(reader.string())
            types.append(reader.int32())
            reader.int32()  # atttypmod
            key.append(bool(flags & 1))
        relation = Relation(oid, schema or "pg_catalog", name, identity, columns, types, key)
        self.relations[oid] = relation
        return relation

    def _known(self, oid: int) -> Relation:
        relation = self.relations.get(oid)
        if relation is None:
            raise DecodeError(f"a change of relation {oid} before its description")
        return relation

    def _change(self, kind: str, reader: _Reader) -> Change:
        relation = self._known(reader.int32())
        if kind == "I":
            reader.expect("N")
            return Change("insert", relation, new=reader.tuple())
        old = None
        tag = reader.byte()
        if tag in "KO":
            old = reader.tuple()
            if kind == "D":
                return Change("delete", relation, old=old)
            tag = reader.byte()
        if kind == "D" or tag != "N":
            raise DecodeError(f"unexpected {tag!r} in a {'delete' if kind == 'D' else 'update'}")
        return Change("update", relation, new=reader.tuple(), old=old)


class _Reader:
    def __init__(self, data: bytes) -> None:
        self.data, self.at = data, 0

    def _take(self, size: int) -> bytes:
        if self.at + size > len(self.data):
            raise DecodeError("a message ends early")
        chunk = self.data[self.at : self.at + size]
        self.at += size
        return chunk

    def byte(self) -> str:
        return chr(self._take(1)[0])

    def expect(self, tag: str) -> None:
        got = self.byte()
        if got != tag:
            raise DecodeError(f"expected {tag!r}, got {got!r}")

    def int8(self) -> int:
        return self._take(1)[0]

    def int16(self) -> int:
        return int(struct.unpack("!h", self._take(2))[0])

    def int32(self) -> int:
        return int(struct.unpack("!I", self._take(4))[0])

    def int64(self) -> int:
        return int(struct.unpack("!Q", self._take(8))[0])

    def time(self) -> datetime:
        (micros,) = struct.unpack("!q", self._take(8))
        return PG_EPOCH + timedelta(microseconds=micros)

    def string(self) -> str:
        end = self.data.find(b"\0", self.at)
        if end < 0:
            raise DecodeError("a string without its end")
        text = self.data[self.at : end].decode()
        self.at = end + 1
        return text

    def tuple(self) -> list:
        values: list = []
        for _ in range(self.int16()):
            kind = self.byte()
            if kind == "n":
                values.append(None)
            elif kind == "u":
                values.append(UNCHANGED)
            elif kind == "t":
                values.append(self._take(self.int32()).decode())
            else:
                raise DecodeError(f"unknown column value kind {kind!r}")
        return values
