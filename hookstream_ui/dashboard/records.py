"""Records browser, record detail, events (live tail) and a webhook's test event."""

from __future__ import annotations

import contextlib
import json
from typing import Any

from flask import Response, flash, make_response, redirect, render_template, request, url_for
from flask.typing import ResponseReturnValue
from werkzeug.datastructures import MultiDict

from ..auth import current_principal, require_role
from ..errors import ValidationFailed
from ..forms import sentence
from ..models import Collection, Event
from ..services import collections as collection_svc
from ..services import ingest as ingest_svc
from ..services import records as record_svc
from ..services import sources as source_svc
from ..services.signatures import sign
from ..sources.base import source_type
from ..values import documents
from . import bp

PREVIEW_COLUMNS = 4
MAX_COLUMNS = 12  # columns a user can pick at once
COLUMN_CHOICES = 40  # schema fields offered as columns
SCHEMA_ROWS = 100  # a page of fields; the API gives every one
TRAIL_MAX = 50  # pages "previous" can walk back; further back is the first page
RECORD_FILTERS = ("q", "event_type", "filter_path", "filter_value")


def _column_fields(collection: Collection, sample: int = 50) -> list[dict]:
    """Scalar fields at plain dot paths, most present first: what a column can show."""
    fields = [f for f in record_svc.infer_schema(collection, sample)["fields"] if record_svc.filterable(f)]
    fields.sort(key=lambda f: (-f["presence"], f["path"].count("."), f["path"]))
    return fields


def _columns(collection: Collection) -> list[str]:
    """A few scalar top-level-ish paths from the schema, most present first."""
    return [f["path"] for f in _column_fields(collection)[:PREVIEW_COLUMNS]]


def chosen_columns(args: MultiDict[str, str]) -> list[str]:
    """The columns picked in the browser (`cols`, repeated), as $-paths; bad ones are dropped."""
    chosen = []
    for raw in args.getlist("cols"):
        path = "$." + raw.strip().removeprefix("$.")
        if record_svc.filterable({"path": path, "types": []}) and path not in chosen:
            chosen.append(path)
    return chosen[:MAX_COLUMNS]


def record_filters(args: MultiDict[str, str]) -> dict:
    """The toolbar's filter as the API's `filter[<path>]`: a field with a value (an empty
    value included, which matches empty text)."""
    if args.get("filter_path") and args.get("filter_value") is not None:
        return {args["filter_path"]: args["filter_value"]}
    return {}


def export_query(args: MultiDict[str, str]) -> dict[str, Any]:
    """The export links' query for what the browser shows: its search, event type and filter,
    and for CSV the columns picked (none picked: every field)."""
    return {
        "search": args.get("q") or None,
        "event_type": args.get("event_type") or None,
        **{f"filter[{path}]": value for path, value in record_filters(args).items()},
        "columns": ",".join(c[2:] for c in chosen_columns(args)) or None,
    }


def trail_of(args: MultiDict[str, str]) -> list[str]:
    """The cursors of the pages before this one (the first page's is none), oldest first."""
    return [c for c in (args.get("trail") or "").split(",") if c][-TRAIL_MAX:]


def pages(args: MultiDict[str, str], next_cursor: str | None, state: dict) -> dict:
    """Query arguments (with the filters in `state`) for the previous and next page, and this
    page's number: keyset cursors go one way, so the way back is carried along (`trail`)."""
    cursor, trail = args.get("cursor") or None, trail_of(args)
    previous = None
    if cursor:
        previous = {**state, "cursor": trail[-1] if trail else None, "trail": ",".join(trail[:-1]) or None}
    following = None
    if next_cursor:
        following = {
            **state,
            "cursor": next_cursor,
            "trail": ",".join([*trail, cursor] if cursor else trail) or None,
        }
    return {"previous": previous, "next": following, "number": len(trail) + (2 if cursor else 1)}


def push_url(response: Response, endpoint: str, args: MultiDict[str, str], **values: Any) -> Response:
    """Keep what the browser shows in the address bar, so that a reload or a shared link
    shows it again. Polls and the first load change nothing, so they push nothing."""
    if request.headers.get("HX-Request") and request.headers.get("HX-Trigger") not in ("records", "events"):
        state = {k: v for k, v in args.items(multi=True) if v and k not in ("recent",)}
        query: dict[str, Any] = {k: args.getlist(k) if k == "cols" else args.get(k) for k in state}
        response.headers["HX-Push-Url"] = url_for(endpoint, **values, **query)
    return response


@bp.get("/collections/<ident>/_schema")
def schema_partial(ident: str) -> ResponseReturnValue:
    collection = collection_svc.get_collection_or_404(current_principal(), ident)
    schema = record_svc.infer_schema(collection)
    fields = [{**f, "filterable": record_svc.filterable(f)} for f in schema["fields"]]
    return render_template(
        "dashboard/records/_schema.html",
        collection=collection,
        sampled=schema["sampled"],
        fields=fields[:SCHEMA_ROWS],
        more=max(0, len(fields) - SCHEMA_ROWS),
    )


@bp.get("/collections/<ident>/_records")
def records_partial(ident: str) -> ResponseReturnValue:
    collection = collection_svc.get_collection_or_404(current_principal(), ident)
    args = request.args
    filters = record_filters(args)
    query: dict[str, Any] = {
        "search": args.get("q") or None,
        "event_type": args.get("event_type") or None,
        "filters": filters,
    }
    error, count, stale = None, None, False
    page = record_svc.Page([], None, False)
    if (args.get("filter_value") or "").strip() and not (args.get("filter_path") or "").strip():
        # A value with no field would filter nothing: said beside the field, not dropped.
        error = "Choose a field to filter by."
    else:
        try:
            page = record_svc.list_records(collection, **query, cursor=args.get("cursor") or None, limit=25)
            count = record_svc.count_records(collection, **query)
        except ValidationFailed as exc:
            if "cursor" in exc.errors:
                # Only an old or edited link carries a cursor we did not give: offer page one.
                stale = True
            else:
                # What else the toolbar can get wrong is the filter's field: said beside it.
                error = sentence(exc, dict.fromkeys(exc.errors, "Filter field"))
    # Only the unfiltered first page tails new records; a page you are reading stays still.
    live = not any(args.get(k) for k in ("q", "event_type", "filter_path", "cursor"))
    chosen = chosen_columns(args)
    state = {
        k: v
        for k, v in {**{k: args.get(k) for k in RECORD_FILTERS}, "cols": [c[2:] for c in chosen]}.items()
        if v
    }
    response = make_response(
        render_template(
            "dashboard/records/_table.html",
            collection=collection,
            page=page,
            live=live and not error,
            args=args,
            stale=stale,
            first_page={k: v for k, v in state.items() if k not in ("cursor", "trail")},
            columns=chosen or _columns(collection),
            chosen=bool(chosen),
            error=error,
            count=count,
            filtered=bool(query["search"] or query["event_type"] or filters),
            state=state,
            export_args=export_query(args),
            pages=pages(args, page.cursor if page.has_more else None, state),
        )
    )
    return push_url(response, "dashboard.collection_detail", args, ident=collection.slug)


@bp.get("/collections/<ident>/records/<record_key:key>")
def record_detail(ident: str, key: str) -> ResponseReturnValue:
    collection = collection_svc.get_collection_or_404(current_principal(), ident)
    record = record_svc.get_record_or_404(collection, key)
    history = record_svc.events_for_record(collection, record)
    from ..services.bindings import source_in_env

    writer = None
    if record.source_id:
        try:
            writer = source_in_env(current_principal(), record.source_id)
        except ValidationFailed:
            writer = None  # deleted since, or not this environment's
    return render_template(
        "dashboard/records/detail.html",
        collection=collection,
        record=record,
        writer=writer,
        pretty=json.dumps(record.data, indent=2, sort_keys=True, ensure_ascii=False),
        history=history,
    )


@bp.get("/events")
def events_page() -> ResponseReturnValue:
    principal = current_principal()
    errors = _outcome_errors(request.args.get("status"))
    return render_template(
        "dashboard/events/list.html",
        sources=source_svc.list_sources(principal),
        args=request.args,
        errors=errors,
        outcomes=record_svc.OUTCOME_FILTERS,
    ), 400 if errors else 200


def _outcome_errors(outcome: str | None) -> dict:
    """An unknown status is said beside the field (as /runs does), not as "No events match"."""
    if not outcome:
        return {}
    try:
        record_svc.outcome_clause(outcome)
    except ValidationFailed as exc:
        return exc.errors
    return {}


@bp.get("/events/_list")
def events_partial() -> ResponseReturnValue:
    principal = current_principal()
    args = request.args
    if _outcome_errors(args.get("status")):
        return "", 400
    # `recent`: the few newest of one source, on its page.
    stale = False
    try:
        page = record_svc.list_events(
            principal,
            source_id=args.get("source_id") or None,
            outcome=args.get("status") or None,
            cursor=args.get("cursor") or None,
            limit=10 if args.get("recent") else 30,
        )
    except ValidationFailed as exc:
        if "cursor" not in exc.errors:
            raise
        # An old or edited link: say so and offer the first page, as the records browser does.
        page, stale = record_svc.Page([], None, False), True
    sources = source_svc.list_sources(principal)
    # New events come only to sources that are pushed to: with none of those shown, nothing
    # can change, and the poll stops (286).
    listening = any(
        getattr(source_type(s.short_name), "push", False) and args.get("source_id") in (None, "", s.id)
        for s in sources
    )
    live = not args.get("cursor") and listening
    body = render_template(
        "dashboard/events/_table.html",
        page=page,
        live=live,
        args=args,
        stale=stale,
        state=(state := {k: args.get(k) for k in ("source_id", "status") if args.get(k)}),
        pages=pages(args, page.cursor if page.has_more else None, state),
        names={s.id: s.name for s in sources},
    )
    response = make_response(
        body, 286 if not live and not args.get("cursor") and request.headers.get("HX-Request") else 200
    )
    return response if args.get("recent") else push_url(response, "dashboard.events_page", args)


@bp.get("/events/<event_id>")
def event_detail(event_id: str) -> ResponseReturnValue:
    event = record_svc.get_event_or_404(current_principal(), event_id)
    body = event.body
    if event.body_encoding == "utf-8" and event.body is not None:
        with contextlib.suppress(ValueError, TypeError):  # not JSON after all: shown as received
            body = json.dumps(documents.loads(event.body), indent=2, sort_keys=True, ensure_ascii=False)
    return render_template(
        "dashboard/events/detail.html",
        event=event,
        body=body,
        collections=record_svc.collections_by_id(list(event.outcomes or {})),
    )


@bp.post("/sources/<source_id>/test-event")
def source_test_event(source_id: str) -> ResponseReturnValue:
    """Send a sample event through the real ingest path, signed with the source's own scheme."""
    principal = current_principal()
    require_role(principal, "member")
    source = source_svc.get_source_or_404(principal, source_id)
    kind, credentials = source_svc.type_of(source), source_svc.credentials_of(source)
    sample = kind.test_event(credentials) if kind.push else None
    if sample is None:
        flash("This source does not take test events: it reads, nothing is sent to it.", "error")
        return redirect(url_for("dashboard.source_detail", source_id=source.id))
    body = json.dumps(sample).encode()
    headers = {
        "Content-Type": "application/json",
        "User-Agent": "hookstream-test-event",
        **sign(credentials, body),
    }
    received = ingest_svc.receive(
        source,
        method="POST",
        headers=headers,
        query={},
        body=body,
        content_type="application/json",
        source_ip=request.remote_addr,
    )
    event = record_svc.get_event_or_404(principal, received.id)
    flash(_test_event_said(event), "success" if event.status == "applied" else "info")
    return redirect(url_for("dashboard.event_detail", event_id=event.id))


def _test_event_said(event: Event) -> str:
    """What a test event did, record by record: it is a real delivery, so say what it wrote."""
    names = {cid: c.name for cid, c in record_svc.collections_by_id(list(event.outcomes or {})).items()}
    done = []
    for cid, outcome in (event.outcomes or {}).items():
        result, key = outcome.get("result"), outcome.get("key")
        what = (
            f"{result} record {key}"
            if key and result in ("inserted", "updated", "unchanged", "deleted")
            else result
        )
        done.append(
            f"{names.get(cid, cid)}: {what}{' (' + outcome['reason'] + ')' if outcome.get('reason') else ''}"
        )
    if done:
        return f"Test event sent and {event.status.replace('_', ' ')}. " + "; ".join(done) + "."
    return "Test event sent and stored; no collection is bound to this source, so no record was written."
