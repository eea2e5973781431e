"""Collection pages: list, new (with live slug preview), detail, edit, delete."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from flask import flash, redirect, render_template, request, url_for
from flask.typing import ResponseReturnValue
from sqlalchemy import select

from ..auth import current_principal, require_role
from ..errors import ValidationFailed
from ..forms import FormState
from ..models import Collection, SourceConnection, db
from ..models.principal import Principal
from ..services import bindings, changes, links, live
from ..services import collections as svc
from . import bp

FIELDS = (
    "name",
    "slug",
    "source_id",
    "stream",
    "primary_key_path",
    "timestamp_path",
    "event_type_field",
    "delete_event_types",
    "description",
    "search_index",
)
# The edit form: sources are added and removed on the collection's page.
EDIT_FIELDS = tuple(f for f in FIELDS if f not in ("source_id", "stream"))
BINDING_FIELDS = ("source_id", *bindings.MAPPING_FIELDS)


def _sources(principal: Principal) -> Sequence[SourceConnection]:
    return db.session.scalars(
        select(SourceConnection)
        .where(SourceConnection.env_id == principal.env.id, SourceConnection.org_id == principal.org.id)
        .order_by(SourceConnection.name)
    ).all()


def _form_page(
    template: str, form: FormState, status: int = 200, collection: Collection | None = None, **extra: Any
) -> ResponseReturnValue:
    principal = current_principal()
    # The preview is part of the page, so a page shown again keeps the slug it promised.
    preview = svc.slug_preview(
        principal,
        form.values.get("name", ""),
        form.values.get("slug", ""),
        request.form.get("slug_suggested"),
        collection.id if collection else None,
    )
    return render_template(
        template, form=form, sources=_sources(principal), collection=collection, preview=preview, **extra
    ), status


def _submitted(form: FormState) -> dict[str, Any]:
    """The form's values; a blank slug is the one the preview showed (slug_suggested)."""
    values = dict(form.values)
    if not (values.get("slug") or "").strip() and (values.get("name") or "").strip():
        values["slug"] = svc.suggested_slug(values["name"], request.form.get("slug_suggested"))
    return values


@bp.get("/collections")
def collections_list() -> ResponseReturnValue:
    from ..services.pagination import Page
    from .records import pages

    principal = current_principal()
    q, status = request.args.get("q", ""), request.args.get("status", "")
    try:
        svc.check_status_filter(status)
    except ValidationFailed as exc:
        # Said beside the field, as /runs does, not "No collections match".
        return render_template(
            "dashboard/collections/list.html",
            page=Page([], None, False),
            q=q,
            status=status,
            states={},
            pages=None,
            errors=exc.errors,
        ), 400
    try:
        page = svc.list_collections(
            principal,
            cursor=request.args.get("cursor"),
            limit=request.args.get("limit", 25),
            search=request.args.get("q"),
            status=status or None,
        )
    except ValidationFailed:
        return redirect(url_for("dashboard.collections_list"))
    state = {k: v for k, v in (("q", q), ("status", status)) if v}
    return render_template(
        "dashboard/collections/list.html",
        page=page,
        q=q,
        status=status,
        errors={},
        states=live.collection_states(page.items),
        pages=pages(request.args, page.cursor if page.has_more else None, state),
    )


@bp.route("/collections/new", methods=["GET", "POST"])
def collection_new() -> ResponseReturnValue:
    principal = current_principal()
    require_role(principal, "member")
    if request.method == "GET":
        return _form_page(
            "dashboard/collections/new.html",
            FormState({"primary_key_path": "$.id", "source_id": request.args.get("source_id", "")}),
        )
    form = FormState.from_request(*FIELDS)
    try:
        collection = svc.create_collection(principal, _submitted(form))
    except ValidationFailed as exc:
        return _form_page("dashboard/collections/new.html", form.fail(exc), 400)
    flash(f"Collection “{collection.name}” created.", "success")
    return redirect(url_for("dashboard.collection_detail", ident=collection.slug))


@bp.get("/collections/_slug-preview")
def slug_preview() -> str:
    """htmx partial under the name/slug fields: what the slug will be, and whether it is free."""
    state = svc.slug_preview(
        current_principal(),
        request.args.get("name", ""),
        request.args.get("slug", ""),
        request.args.get("slug_suggested"),
        request.args.get("collection_id") or None,
    )
    return render_template("dashboard/collections/_slug_preview.html", **state)


@bp.get("/collections/_key-preview")
def key_preview() -> str:
    """htmx partial under the primary key path: the key it extracts from a real sample, and
    (out of band, under their fields) what the timestamp path and event type field give. A
    pull source's sample is read once for all three, with its stored credentials: members
    only, as a test is."""
    principal = current_principal()
    require_role(principal, "member")
    args = request.args
    collection = (
        svc.get_collection_or_404(principal, args["collection_id"]) if args.get("collection_id") else None
    )
    previews = svc.path_previews(
        principal,
        {f: args.get(f, "") for f in svc.PATH_LABELS},
        collection=collection,
        source_id=args.get("source_id") or None,
        stream=args.get("stream") or None,
    )
    return render_template("dashboard/collections/_key_preview.html", **previews)


def _sources_card(
    principal: Principal, collection: Collection, form: FormState | None = None
) -> dict[str, Any]:
    """What the Sources card shows: each binding with its source's health, last run and how
    many records it wrote here, and the add form with the sources not bound yet."""
    bound = {b.source_id for b in collection.bindings}
    return {
        "bindings": list(collection.bindings),
        "last_runs": live.last_runs(bound),
        "written": bindings.written_by_source(collection),
        "unbound_sources": [s for s in _sources(principal) if s.id not in bound],
        "add_form": form or FormState({}),
    }


@bp.get("/collections/<ident>")
def collection_detail(ident: str) -> str:
    return _detail_page(ident)


def _detail_page(ident: str, add_form: FormState | None = None) -> str:
    from .records import COLUMN_CHOICES, _column_fields, _columns, chosen_columns, export_query

    principal = current_principal()
    collection = svc.get_collection_or_404(principal, ident)
    # The records browser's state comes from the URL: a reload or a shared link shows it again.
    shown = chosen_columns(request.args) or _columns(collection)
    choices = [f["path"] for f in _column_fields(collection)[:COLUMN_CHOICES]]
    return render_template(
        "dashboard/collections/detail.html",
        collection=collection,
        state=live.collection_state(collection),
        args=request.args,
        shown_columns=shown,
        api_url=links.public(f"/v1/collections/{collection.slug}"),
        column_choices=choices + [c for c in shown if c not in choices],
        export_args=export_query(request.args),
        changes=changes.newest(collection),
        **_sources_card(principal, collection, add_form),
    )


@bp.get("/collections/<ident>/_changes")
def collection_changes_partial(ident: str) -> ResponseReturnValue:
    collection = svc.get_collection_or_404(current_principal(), ident)
    if request.args.get("seen", type=int) == collection.change_seq and request.headers.get("HX-Request"):
        return "", 204  # nothing newer than the page shows: htmx swaps nothing
    return _changes_card(collection)


def _changes_card(collection: Collection) -> str:
    return render_template(
        "dashboard/collections/_changes.html", collection=collection, changes=changes.newest(collection)
    )


@bp.post("/collections/<ident>/sources")
def collection_source_add(ident: str) -> ResponseReturnValue:
    principal = current_principal()
    require_role(principal, "member")
    collection = svc.get_collection_or_404(principal, ident)
    form = FormState.from_request(*BINDING_FIELDS)
    try:
        binding = bindings.add_source(principal, collection, dict(form.values))
    except ValidationFailed as exc:
        db.session.rollback()
        return _detail_page(ident, form.fail(exc)), 400
    flash(f"Source “{binding.source.name}” now feeds this collection.", "success")
    return redirect(url_for("dashboard.collection_detail", ident=collection.slug) + "#sources")


@bp.route("/collections/<ident>/sources/<source_id>/edit", methods=["GET", "POST"])
def collection_source_edit(ident: str, source_id: str) -> ResponseReturnValue:
    principal = current_principal()
    require_role(principal, "member")
    collection = svc.get_collection_or_404(principal, ident)
    binding = bindings.binding_or_404(collection, source_id)
    page = "dashboard/collections/source_edit.html"
    if request.method == "GET":
        form = FormState({f: getattr(binding, f) or "" for f in bindings.MAPPING_FIELDS})
        for name in ("delete_event_types", "event_types"):
            form.values[name] = ", ".join(getattr(binding, name) or [])
        return render_template(page, form=form, collection=collection, binding=binding)
    form = FormState.from_request(*bindings.MAPPING_FIELDS)
    try:
        bindings.update_source(principal, collection, binding, dict(form.values))
    except ValidationFailed as exc:
        db.session.rollback()
        return render_template(page, form=form.fail(exc), collection=collection, binding=binding), 400
    flash(f"Saved how “{binding.source.name}” feeds this collection.", "success")
    return redirect(url_for("dashboard.collection_detail", ident=collection.slug) + "#sources")


@bp.post("/collections/<ident>/sources/<source_id>/remove")
def collection_source_remove(ident: str, source_id: str) -> ResponseReturnValue:
    principal = current_principal()
    require_role(principal, "member")
    collection = svc.get_collection_or_404(principal, ident)
    binding = bindings.binding_or_404(collection, source_id)
    name = binding.source.name
    try:
        bindings.remove_source(principal, collection, binding)
    except ValidationFailed as exc:
        from ..forms import sentence

        db.session.rollback()
        flash(sentence(exc, {"source_id": "Source"}), "error")
    else:
        flash(f"Source “{name}” no longer feeds this collection; the records it wrote stay.", "success")
    return redirect(url_for("dashboard.collection_detail", ident=collection.slug) + "#sources")


@bp.route("/collections/<ident>/edit", methods=["GET", "POST"])
def collection_edit(ident: str) -> ResponseReturnValue:
    principal = current_principal()
    require_role(principal, "member")
    collection = svc.get_collection_or_404(principal, ident)
    if request.method == "GET":
        form = FormState({f: getattr(collection, f) or "" for f in EDIT_FIELDS})
        form.values["search_index"] = "off" if collection.search_index == "off" else "on"
        form.values["delete_event_types"] = ", ".join(collection.delete_event_types or [])
        return _form_page("dashboard/collections/edit.html", form, collection=collection)
    form = FormState.from_request(*EDIT_FIELDS)
    try:
        svc.update_collection(principal, collection, _submitted(form))
    except ValidationFailed as exc:
        db.session.rollback()
        return _form_page("dashboard/collections/edit.html", form.fail(exc), 400, collection=collection)
    flash("Collection saved.", "success")
    return redirect(url_for("dashboard.collection_detail", ident=collection.slug))


@bp.post("/collections/<ident>/status")
def collection_status(ident: str) -> ResponseReturnValue:
    """Pause or resume, through the same service (and audit entry) as PATCH /v1/collections."""
    from ..forms import sentence

    principal = current_principal()
    require_role(principal, "member")
    collection = svc.get_collection_or_404(principal, ident)
    wanted = request.form.get("status", "")
    try:
        svc.update_collection(principal, collection, {"status": wanted})
    except ValidationFailed as exc:
        db.session.rollback()
        flash(sentence(exc, {"status": "Status"}), "error")
    else:
        flash(
            "Collection paused: runs and deliveries skip it until it is resumed."
            if wanted == "PAUSED"
            else "Collection resumed.",
            "success",
        )
    return redirect(url_for("dashboard.collection_detail", ident=collection.slug))


@bp.route("/collections/<ident>/delete", methods=["GET", "POST"])
def collection_delete(ident: str) -> ResponseReturnValue:
    principal = current_principal()
    require_role(principal, "member")
    collection = svc.get_collection_or_404(principal, ident)
    if request.method == "GET":
        return render_template("dashboard/collections/delete.html", collection=collection, error=None)
    if request.form.get("confirm_slug", "").strip() != collection.slug:
        return render_template(
            "dashboard/collections/delete.html",
            collection=collection,
            error="Type the collection's slug to confirm.",
        ), 400
    name = collection.name
    svc.delete_collection(principal, collection)
    flash(f"Collection “{name}” deleted.", "success")
    return redirect(url_for("dashboard.collections_list"))
