"""The upsert engine's rules, on the real database (SQLite or PostgreSQL)."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pytest
from sqlalchemy import select

from hookstream_ui.models import Collection, Record, db
from hookstream_ui.models.principal import Principal
from hookstream_ui.services import collections as collection_svc
from hookstream_ui.services.upsert import Incoming, apply, parse_time
from tests.helpers import make_user, org_of, production

T0 = datetime(2026, 1, 1, tzinfo=UTC)


@pytest.fixture
def collection(ctx):
    user = make_user("owner@example.com")
    org = org_of(user)
    principal = Principal(org=org, env=production(org), role="owner", user=user)
    return collection_svc.create_collection(
        principal,
        {"name": "Orders", "primary_key_path": "data.id", "event_type_field": "type", "timestamp_path": "at"},
    )


def stored(collection) -> dict:
    db.session.expire_all()
    return {
        r.record_key: r
        for r in db.session.scalars(select(Record).where(Record.collection_id == collection.id))
    }


def ev(key, at, **extra):
    return Incoming(
        {"data": {"id": key, **extra.pop("data", {})}, "at": at.isoformat() if at else None, **extra}
    )


def test_insert_update_and_last_write_wins(collection):
    out = apply(collection, [ev(1, T0, data={"v": "a"}), ev(2, T0)])
    db.session.commit()
    assert (out.inserted, out.updated, out.skipped) == (2, 0, 0)
    out = apply(collection, [ev(1, T0 + timedelta(seconds=5), data={"v": "b"})])
    db.session.commit()
    assert (out.inserted, out.updated) == (0, 1)
    out = apply(collection, [ev(1, T0 + timedelta(seconds=1), data={"v": "stale"})])  # older: skipped
    db.session.commit()
    assert out.skipped == 1 and out.reasons == {"older than the stored version": 1}
    rows = stored(collection)
    assert rows["1"].data["data"]["v"] == "b" and rows["1"].source_event_at.replace(
        tzinfo=UTC
    ) == T0 + timedelta(seconds=5)
    assert db.session.get(Collection, collection.id).record_count == 2


def test_deletion_by_event_type(collection):
    apply(collection, [ev(1, T0), ev(2, T0)])
    db.session.commit()
    out = apply(
        collection,
        [
            ev(1, T0 + timedelta(seconds=1), type="order.deleted"),
            ev(2, T0 - timedelta(seconds=1), type="deleted"),  # older than stored: ignored
            ev(3, T0, type="delete"),
        ],
    )  # never stored
    db.session.commit()
    assert out.deleted == 1 and out.skipped == 2
    assert set(stored(collection)) == {"2"} and db.session.get(Collection, collection.id).record_count == 1


def test_keyless_records_and_duplicates_in_one_batch(collection):
    out = apply(
        collection,
        [
            Incoming({"nokey": 1}),
            Incoming({"data": {"id": None}}),
            Incoming({"data": {"id": {"x": 1}}}),
            ev(5, T0, data={"v": 1}),
            ev(5, T0 + timedelta(seconds=2), data={"v": 3}),
            ev(5, T0 + timedelta(seconds=1), data={"v": 2}),
        ],
    )
    db.session.commit()
    assert out.inserted == 1 and out.skipped == 5
    assert out.reasons["no usable key at $.data.id"] == 3
    assert stored(collection)["5"].data["data"]["v"] == 3


def test_receipt_time_when_no_timestamp(collection):
    collection.timestamp_path = None
    out = apply(collection, [Incoming({"data": {"id": "k"}})], received_at=T0)
    db.session.commit()
    assert out.inserted == 1 and stored(collection)["k"].source_event_at.replace(tzinfo=UTC) == T0


@pytest.mark.parametrize(
    "value, expected",
    [
        (1767225600, T0),
        (1767225600000, T0),
        ("1767225600", T0),
        ("2026-01-01T00:00:00Z", T0),
        ("2026-01-01T01:00:00+01:00", T0),
        (date(2026, 1, 1), T0),
        ("garbage", None),
        (None, None),
        (True, None),
    ],
)
def test_parse_time(value, expected):
    assert parse_time(value) == expected


def test_max_age_days_cutoff(collection):
    from hookstream_ui.services.upsert import remove_older_than

    cutoff = T0
    out = apply(collection, [ev(1, T0 - timedelta(days=1)), ev(2, T0 + timedelta(days=1))], not_before=cutoff)
    db.session.commit()
    assert out.inserted == 1 and out.reasons == {"older than max_age_days": 1}
    apply(collection, [ev(3, T0 + timedelta(hours=1))])
    db.session.commit()
    assert remove_older_than(collection, T0 + timedelta(hours=2)) == 1  # key 3 aged out
    db.session.commit()
    assert set(stored(collection)) == {"2"} and db.session.get(Collection, collection.id).record_count == 1


def test_the_collections_own_deletion_types(collection):
    apply(collection, [ev(1, T0), ev(2, T0)])
    db.session.commit()
    assert apply(collection, [ev(1, T0 + timedelta(seconds=1), type="user.archived")]).deleted == 0
    db.session.commit()
    collection.delete_event_types = ["user.archived"]
    out = apply(collection, [ev(2, T0 + timedelta(seconds=1), type="user.archived")])
    db.session.commit()
    assert out.deleted == 1 and set(stored(collection)) == {"1"}


def test_a_bulk_batch_of_new_keys_still_lands_when_one_key_is_there_after_all(collection, monkeypatch):
    """keys_are_new (a backfill into an empty collection) writes a large batch the cheapest
    way (PostgreSQL: straight COPY into records); a key that is there after all must not fail
    the batch nor keep its newer version from the last-write-wins rule."""
    from hookstream_ui.services import upsert

    apply(
        collection,
        [
            ev("k0100", T0 + timedelta(days=1), data={"v": "newer, kept"}),
            ev("k0101", T0 - timedelta(days=1), data={"v": "older, replaced"}),
        ],
    )
    db.session.commit()
    batch = [ev(f"k{i:04d}", T0, data={"v": f"fresh {i}"}) for i in range(upsert.RETURNING_UNDER + 50)]
    apply(collection, batch, keys_are_new=True)
    apply(collection, [ev("k9999", T0)])  # the transaction goes on after the fallback
    db.session.commit()
    rows = stored(collection)
    assert len(rows) == upsert.RETURNING_UNDER + 51
    assert rows["k0100"].data["data"]["v"] == "newer, kept" and rows["k0101"].data["data"]["v"] == "fresh 101"
    assert rows["k0002"].data["data"]["v"] == "fresh 2" and "k9999" in rows


@pytest.mark.parametrize("size", [1, 250])  # a statement per row that says what it did; a bulk one read back
def test_a_version_written_again_unchanged_is_not_an_update(collection, size):
    first = apply(collection, [ev(k, T0, data={"v": "a"}) for k in range(size)])
    db.session.commit()
    assert first.inserted == size
    before = {k: r.updated_at for k, r in stored(collection).items()}
    out = apply(collection, [ev(k, T0, data={"v": "a"}) for k in range(size)])
    db.session.commit()
    assert (out.inserted, out.updated, out.skipped) == (0, 0, size)
    assert out.reasons == {"unchanged since it was last written": size}
    assert {k: r.updated_at for k, r in stored(collection).items()} == before
    # The same time with other data is a change (a source whose clock is coarse).
    out = apply(collection, [ev(0, T0, data={"v": "b"})])
    db.session.commit()
    assert (out.updated, out.skipped) == (1, 0) and stored(collection)["0"].updated_at > before["0"]
