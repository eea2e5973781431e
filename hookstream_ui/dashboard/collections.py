"""Collection pages: list, new (with live slug preview), detail, edit, delete."""
from __future__ import annotations

from flask import flash, redirect, render_template, request, url_for
from sqlalchemy import select

from ..auth import current_principal, require_role
from ..errors import ValidationFailed
from ..forms import FormState
from ..models import SourceConnection, db
from ..services import collections as svc
from ..services import live
from . import bp

FIELDS = ("name", "slug", "source_id", "stream", "primary_key_path", "timestamp_path",
          "event_type_field", "delete_event_types", "description", "search_index")


def _sources(principal):
    return db.session.scalars(
        select(SourceConnection)
        .where(SourceConnection.env_id == principal.env.id, SourceConnection.org_id == principal.org.id)
        .order_by(SourceConnection.name)
    ).all()


def _form_page(template: str, form: FormState, status: int = 200, **extra):
    principal = current_principal()
    return render_template(template, form=form, sources=_sources(principal), **extra), status


@bp.get("/collections")
def collections_list():
    principal = current_principal()
    try:
        page = svc.list_collections(principal, cursor=request.args.get("cursor"),
                                    limit=request.args.get("limit", 25),
                                    search=request.args.get("q"), status=request.args.get("status"))
    except ValidationFailed:
        return redirect(url_for("dashboard.collections_list"))
    return render_template("dashboard/collections/list.html", page=page, states=live.collection_states(page.items),
                           q=request.args.get("q", ""), status=request.args.get("status", ""))


@bp.route("/collections/new", methods=["GET", "POST"])
def collection_new():
    principal = current_principal()
    require_role(principal, "member")
    if request.method == "GET":
        return _form_page("dashboard/collections/new.html",
                          FormState({"primary_key_path": "$.id", "source_id": request.args.get("source_id", "")}))
    form = FormState.from_request(*FIELDS)
    try:
        collection = svc.create_collection(principal, dict(form.values))
    except ValidationFailed as exc:
        return _form_page("dashboard/collections/new.html", form.fail(exc), 400)
    flash(f"Collection “{collection.name}” created.", "success")
    return redirect(url_for("dashboard.collection_detail", ident=collection.slug))


@bp.get("/collections/_slug-preview")
def slug_preview():
    """htmx partial under the name/slug fields: what the slug will be, and whether it is free."""
    principal = current_principal()
    name = request.args.get("name", "").strip()
    slug = request.args.get("slug", "").strip()
    exclude = request.args.get("collection_id") or None
    state = {"slug": slug, "generated": False, "error": None}
    if slug:
        try:
            svc.CollectionUpdate.model_validate({"slug": slug})
        except Exception:
            state["error"] = "Use lowercase letters, digits and single hyphens."
        else:
            if svc.slug_taken(principal, slug, exclude_id=exclude):
                state["error"] = "That slug is already taken in this project."
    elif name:
        state.update(slug=svc.generated_slug(name), generated=True)
    return render_template("dashboard/collections/_slug_preview.html", **state)


@bp.get("/collections/<ident>")
def collection_detail(ident):
    collection = svc.get_collection_or_404(current_principal(), ident)
    return render_template("dashboard/collections/detail.html", collection=collection,
                           state=live.collection_state(collection))


@bp.route("/collections/<ident>/edit", methods=["GET", "POST"])
def collection_edit(ident):
    principal = current_principal()
    require_role(principal, "member")
    collection = svc.get_collection_or_404(principal, ident)
    if request.method == "GET":
        form = FormState({f: getattr(collection, f) or "" for f in FIELDS})
        form.values["search_index"] = "off" if collection.search_index == "off" else "on"
        form.values["delete_event_types"] = ", ".join(collection.delete_event_types or [])
        return _form_page("dashboard/collections/edit.html", form, collection=collection)
    form = FormState.from_request(*FIELDS)
    try:
        svc.update_collection(principal, collection, dict(form.values))
    except ValidationFailed as exc:
        db.session.rollback()
        return _form_page("dashboard/collections/edit.html", form.fail(exc), 400,
                          collection=collection)
    flash("Collection saved.", "success")
    return redirect(url_for("dashboard.collection_detail", ident=collection.slug))


@bp.route("/collections/<ident>/delete", methods=["GET", "POST"])
def collection_delete(ident):
    principal = current_principal()
    require_role(principal, "member")
    collection = svc.get_collection_or_404(principal, ident)
    if request.method == "GET":
        return render_template("dashboard/collections/delete.html", collection=collection, error=None)
    if request.form.get("confirm_slug", "").strip() != collection.slug:
        return render_template("dashboard/collections/delete.html", collection=collection,
                               error="Type the collection's slug to confirm."), 400
    name = collection.name
    svc.delete_collection(principal, collection)
    flash(f"Collection “{name}” deleted.", "success")
    return redirect(url_for("dashboard.collections_list"))
