"""Records browser, record detail, events (live tail) and a webhook's test event."""
from __future__ import annotations

import json
import secrets as pysecrets

from flask import flash, redirect, render_template, request, url_for

from ..auth import current_principal, require_role
from ..errors import ValidationFailed
from ..services import collections as collection_svc
from ..services import documents
from ..services import ingest as ingest_svc
from ..services import records as record_svc
from ..services import sources as source_svc
from ..services.signatures import sign
from . import bp

PREVIEW_COLUMNS = 4
SCHEMA_ROWS = 100  # a page of fields; the API gives every one


def _columns(collection) -> list[str]:
    """A few scalar top-level-ish paths from the schema, most present first."""
    fields = record_svc.infer_schema(collection, 50)["fields"]
    scalar = [f for f in fields if not set(f["types"]) & {"object", "array"} and "[*]" not in f["path"]]
    scalar.sort(key=lambda f: (-f["presence"], f["path"].count("."), f["path"]))
    return [f["path"] for f in scalar[:PREVIEW_COLUMNS]]


@bp.get("/collections/<ident>/_schema")
def schema_partial(ident):
    collection = collection_svc.get_collection_or_404(current_principal(), ident)
    schema = record_svc.infer_schema(collection)
    fields = [{**f, "filterable": record_svc.filterable(f)} for f in schema["fields"]]
    return render_template("dashboard/records/_schema.html", collection=collection, sampled=schema["sampled"],
                           fields=fields[:SCHEMA_ROWS], more=max(0, len(fields) - SCHEMA_ROWS))


@bp.get("/collections/<ident>/_records")
def records_partial(ident):
    collection = collection_svc.get_collection_or_404(current_principal(), ident)
    args = request.args
    filters = {}
    if args.get("filter_path") and args.get("filter_value") is not None:
        filters[args["filter_path"]] = args["filter_value"]
    error = None
    try:
        page = record_svc.list_records(collection, search=args.get("q") or None,
                                       event_type=args.get("event_type") or None, filters=filters,
                                       cursor=args.get("cursor") or None, limit=25)
    except ValidationFailed as exc:
        page, error = record_svc.Page([], None, False), exc.message
    # Only the unfiltered first page tails new records; a page you are reading stays still.
    live = not any(args.get(k) for k in ("q", "event_type", "filter_path", "cursor"))
    return render_template("dashboard/records/_table.html", collection=collection, page=page, live=live,
                           columns=_columns(collection), error=error, args=args)


@bp.get("/collections/<ident>/records/<record_key:key>")
def record_detail(ident, key):
    collection = collection_svc.get_collection_or_404(current_principal(), ident)
    record = record_svc.get_record_or_404(collection, key)
    history = record_svc.events_for_record(collection, record)
    return render_template("dashboard/records/detail.html", collection=collection, record=record,
                           pretty=json.dumps(record.data, indent=2, sort_keys=True, ensure_ascii=False),
                           history=history)


@bp.get("/events")
def events_page():
    principal = current_principal()
    return render_template("dashboard/events/list.html", sources=source_svc.list_sources(principal),
                           args=request.args)


@bp.get("/events/_list")
def events_partial():
    principal = current_principal()
    args = request.args
    # `recent`: the few newest of one source, on its page.
    page = record_svc.list_events(principal, source_id=args.get("source_id") or None,
                                  status=args.get("status") or None, cursor=args.get("cursor") or None,
                                  limit=10 if args.get("recent") else 30)
    sources = source_svc.list_sources(principal)
    # New events come only to webhook sources: with none (of those shown) nothing can change.
    listening = any(s.short_name == "webhook" and args.get("source_id") in (None, "", s.id) for s in sources)
    live = not args.get("cursor") and listening
    body = render_template("dashboard/events/_table.html", page=page, live=live, args=args,
                           names={s.id: s.name for s in sources})
    return body, (286 if not live and not args.get("cursor") and request.headers.get("HX-Request") else 200)


@bp.get("/events/<event_id>")
def event_detail(event_id):
    event = record_svc.get_event_or_404(current_principal(), event_id)
    body = event.body
    if event.body_encoding == "utf-8":
        try:
            body = json.dumps(documents.loads(event.body), indent=2, sort_keys=True, ensure_ascii=False)
        except (ValueError, TypeError):
            pass
    return render_template("dashboard/events/detail.html", event=event, body=body,
                           collections=record_svc.collections_by_id(list(event.outcomes or {})))


@bp.post("/sources/<source_id>/test-event")
def source_test_event(source_id):
    """Send a sample event through the real ingest path, signed with the source's own scheme."""
    principal = current_principal()
    require_role(principal, "member")
    source = source_svc.get_source_or_404(principal, source_id)
    if source.short_name != "webhook":
        flash("Only webhook sources take test events.", "error")
        return redirect(url_for("dashboard.source_detail", source_id=source.id))
    body = json.dumps({"id": f"test_{pysecrets.token_hex(4)}", "type": "test.event",
                       "data": {"id": f"test_{pysecrets.token_hex(4)}", "message": "Hello from hookstream"}}).encode()
    headers = {"Content-Type": "application/json", "User-Agent": "hookstream-test-event",
               **sign(source_svc.credentials_of(source), body)}
    event = ingest_svc.receive(source, method="POST", headers=headers, query={}, body=body,
                                  content_type="application/json", source_ip=request.remote_addr)
    flash("Test event sent and applied." if event.status == "applied" else f"Test event stored ({event.status}).",
          "success")
    return redirect(url_for("dashboard.event_detail", event_id=event.id))
