"""Source pages: list, catalog, the connect form generated from each type's fields,
inline Test connection, detail, edit, upload, clear data and delete."""

from __future__ import annotations

from flask import Response, current_app, flash, make_response, redirect, render_template, request, url_for
from flask.typing import ResponseReturnValue

from ..auth import current_principal, require_role
from ..content_policy import CONTENT_SECURITY_POLICY
from ..errors import ValidationFailed
from ..extensions import csrf
from ..forms import FormState, sentence
from ..models import SourceConnection
from ..services import live, oauth_connect
from ..services import sources as svc
from ..sources import MASK, REGISTRY, Field, SourceType, source_type_or_404
from . import bp


def _submitted(kind: SourceType) -> tuple[str, dict, dict]:
    """Name, credentials and config as typed; an unchecked checkbox is false."""

    def section(prefix: str, fields: tuple[Field, ...]) -> dict:
        values = {}
        for f in fields:
            raw = request.form.get(f"{prefix}.{f.name}")
            values[f.name] = ("false" if raw is None else raw) if f.type == "boolean" else raw
        return values

    return (
        request.form.get("name", ""),
        section("credentials", kind.auth_fields),
        section("config", kind.config_fields),
    )


def _form_state(
    kind: SourceType, name: str, credentials: dict, config: dict, keep_secrets: bool
) -> FormState:
    """What the form shows again: typed values, and secrets only as the mask of a stored one."""
    values: dict[str, object] = {"name": name}
    for f in kind.auth_fields:
        value = credentials.get(f.name)
        if f.secret:
            value = MASK if keep_secrets and value == MASK else ""
        values[f"credentials.{f.name}"] = value
    values.update({f"config.{f.name}": config.get(f.name) for f in kind.config_fields})
    return FormState(values)


def _field_errors(kind: SourceType, exc: ValidationFailed) -> dict:
    """Service errors name plain fields; the form's inputs are prefixed by section."""
    auth = {f.name for f in kind.auth_fields}
    config = {f.name for f in kind.config_fields}
    errors = {}
    for name, message in exc.errors.items():
        if name in auth:
            errors[f"credentials.{name}"] = message
        if name in config:
            errors[f"config.{name}"] = message
        if name not in auth | config:
            errors[name] = message
    return errors


def _labels(kind: SourceType) -> dict:
    """Each field's label, by the name a service error gives it."""
    return {"name": "Name", **{f.name: f.label for f in (*kind.auth_fields, *kind.config_fields)}}


def _defaults(kind: SourceType) -> FormState:
    values = {f"credentials.{f.name}": f.default for f in kind.auth_fields}
    values.update({f"config.{f.name}": f.default for f in kind.config_fields})
    return FormState(values)


def _connect_page(kind: SourceType, form: FormState, source: SourceConnection | None) -> Response:
    page = make_response(
        render_template(
            "dashboard/sources/connect.html",
            kind=kind,
            form=form,
            source=source,
            oauth=oauth_connect.offered(kind),
        )
    )
    provider = oauth_connect.authorize_origin(kind)
    if provider:
        # The Connect with button's POST is answered by a redirect to the provider's consent
        # page, which a browser checks against this page's form-action too.
        page.headers["Content-Security-Policy"] = CONTENT_SECURITY_POLICY.replace(
            "form-action 'self'", f"form-action 'self' {provider}"
        )
    return page


@bp.get("/sources")
def sources_list() -> ResponseReturnValue:
    principal = current_principal()
    sources = svc.list_sources(principal)
    return render_template(
        "dashboard/sources/list.html", sources=sources, states=live.source_states(sources), types=REGISTRY
    )


@bp.get("/sources/catalog")
def source_catalog() -> ResponseReturnValue:
    return render_template("dashboard/sources/catalog.html", types=list(REGISTRY.values()))


@bp.route("/sources/new/<short_name>", methods=["GET", "POST"])
def source_new(short_name: str) -> ResponseReturnValue:
    principal = current_principal()
    require_role(principal, "member")
    kind = source_type_or_404(short_name)
    if request.method == "GET":
        return _connect_page(kind, _defaults(kind), None)
    name, credentials, config = _submitted(kind)
    try:
        source = svc.create_source(
            principal,
            {"sourceShortName": kind.short_name, "name": name, "credentials": credentials, "config": config},
        )
    except ValidationFailed as exc:
        form = _form_state(kind, name, credentials, config, keep_secrets=False)
        form.errors = _field_errors(kind, exc)
        return _connect_page(kind, form, None), exc.status
    flash(f"Source “{source.name}” connected.", "success")
    return redirect(url_for("dashboard.source_detail", source_id=source.id))


@bp.post("/sources/test-form/<short_name>")
def source_test_form(short_name: str) -> ResponseReturnValue:
    """htmx: test what the connect or edit form holds, without saving it."""
    principal = current_principal()
    require_role(principal, "member")
    kind = source_type_or_404(short_name)
    existing = (
        svc.get_source_or_404(principal, request.form["source_id"]) if request.form.get("source_id") else None
    )
    _, credentials, config = _submitted(kind)
    try:
        result = svc.test_unsaved(principal, kind.short_name, credentials, config, existing)
    except ValidationFailed as exc:
        # The same errors Connect shows, by label; app.js puts each beside its field.
        return render_template(
            "dashboard/sources/_test_result.html",
            ok=False,
            field_errors=_field_errors(kind, exc),
            message="Fix the highlighted fields first: " + sentence(exc, _labels(kind)),
        )
    return render_template(
        "dashboard/sources/_test_result.html",
        ok=result.ok,
        message=result.message,
        waiting=result.waiting,
        field_errors={},
    )


@bp.get("/sources/<source_id>")
def source_detail(source_id: str) -> ResponseReturnValue:
    principal = current_principal()
    return detail_page(svc.get_source_or_404(principal, source_id))


def schedule_form(source: SourceConnection) -> FormState:
    limit = source.rate_limit or {}
    return FormState(
        {
            "sync_frequency": source.sync_frequency or "",
            "status": source.sync_status or "active",
            **{
                f"rate_limit.{k}": "" if limit.get(k) is None else str(limit[k])
                for k in ("allowed_requests", "interval", "max_concurrent_requests")
            },
        }
    )


def detail_page(
    source: SourceConnection, schedule: FormState | None = None, status: int = 200
) -> ResponseReturnValue:
    """The source's page; `schedule` is the schedule form as typed when it was refused."""
    from ..services.runs import runs_of

    collections = svc.bound_collections(source)
    return render_template(
        "dashboard/sources/detail.html",
        source=source,
        kind=svc.type_of(source),
        runs=runs_of(source, 20),
        credentials=svc.masked_credentials(source),
        collections=collections,
        collection_states=live.collection_states(collections),
        state=live.source_state(source),
        schedule=schedule or schedule_form(source),
        ingest_url=svc.ingest_url(source),
        ingest_command=svc.ingest_command(source),
        file_count=svc.count_files(source),
        streams_changes=svc.streams_changes(source),
    ), status


@bp.post("/sources/<source_id>/test")
def source_test(source_id: str) -> ResponseReturnValue:
    principal = current_principal()
    require_role(principal, "member")
    source = svc.get_source_or_404(principal, source_id)
    result = svc.test_source(principal, source)
    # The status badge in the page header is swapped out-of-band, so it agrees with the result.
    return render_template(
        "dashboard/sources/_test_result.html",
        ok=result.ok,
        message=result.message,
        waiting=result.waiting,
        status=source.status,
    )


@bp.route("/sources/<source_id>/edit", methods=["GET", "POST"])
def source_edit(source_id: str) -> ResponseReturnValue:
    principal = current_principal()
    require_role(principal, "member")
    source = svc.get_source_or_404(principal, source_id)
    kind = svc.type_of(source)
    if request.method == "GET":
        form = _form_state(
            kind, source.name, svc.masked_credentials(source), source.config or {}, keep_secrets=True
        )
        return _connect_page(kind, form, source)
    name, credentials, config = _submitted(kind)
    try:
        svc.update_source(principal, source, name=name, credentials=credentials, config=config)
    except ValidationFailed as exc:
        form = _form_state(kind, name, credentials, config, keep_secrets=True)
        form.errors = _field_errors(kind, exc)
        return _connect_page(kind, form, source), exc.status
    flash("Source saved.", "success")
    return redirect(url_for("dashboard.source_detail", source_id=source.id))


# CSRF is checked here, not before every view: its token travels in the body, which may be
# as large as an upload only once the sender is known to be a member.
@csrf.exempt
@bp.post("/sources/<source_id>/upload")
def source_upload(source_id: str) -> ResponseReturnValue:
    principal = current_principal()
    require_role(principal, "member")
    source = svc.get_source_or_404(principal, source_id)
    request.max_content_length = current_app.config["MAX_UPLOAD_BYTES"]
    csrf.protect()
    from ..services.runs import ensure_idle, start_run

    upload = request.files.get("file")
    if upload is None or not upload.filename:
        flash("Choose a file to upload.", "error")
        return redirect(url_for("dashboard.source_detail", source_id=source.id))
    try:
        ensure_idle(source)
        stored = svc.store_file(principal, source, upload.filename, upload.stream)
    except ValidationFailed as exc:
        flash(sentence(exc), "error")
        return redirect(url_for("dashboard.source_detail", source_id=source.id))
    flash(f"Uploaded {stored.filename} ({stored.size:,} bytes).", "success")
    if not svc.bound_collections(source):
        flash("Bind a collection to this source to sync the file into it.", "info")
        return redirect(url_for("dashboard.source_detail", source_id=source.id))
    if not svc.readable_collections(source):
        flash("Every collection of this source is paused: resume one to sync the file into it.", "info")
        return redirect(url_for("dashboard.source_detail", source_id=source.id))
    run = start_run(source, trigger="upload", full=False, file_id=stored.id)
    return redirect(url_for("dashboard.run_detail", run_id=run.id))


@bp.route("/sources/<source_id>/clear", methods=["GET", "POST"])
def source_clear(source_id: str) -> ResponseReturnValue:
    principal = current_principal()
    require_role(principal, "member")
    source = svc.get_source_or_404(principal, source_id)
    if request.method == "GET":
        return render_template(
            "dashboard/sources/confirm.html",
            source=source,
            action="clear",
            collections=svc.bound_collections(source),
        )
    count = svc.clear_data(principal, source)
    flash(f"Deleted {count:,} records from {source.name}'s collections.", "success")
    return redirect(url_for("dashboard.source_detail", source_id=source.id))


@bp.route("/sources/<source_id>/delete", methods=["GET", "POST"])
def source_delete(source_id: str) -> ResponseReturnValue:
    principal = current_principal()
    require_role(principal, "member")
    source = svc.get_source_or_404(principal, source_id)
    if request.method == "GET":
        return render_template(
            "dashboard/sources/confirm.html",
            source=source,
            action="delete",
            collections=svc.bound_collections(source),
            form=FormState(),
        )
    if request.form.get("confirm_name", "").strip() != source.name:
        form = FormState.from_request("confirm_name", "delete_data")
        form.errors = {"confirm_name": f"must be the source's name, {source.name}, to confirm"}
        return render_template(
            "dashboard/sources/confirm.html",
            source=source,
            action="delete",
            collections=svc.bound_collections(source),
            form=form,
        ), 400
    name = source.name
    svc.delete_source(principal, source, delete_data=request.form.get("delete_data") == "true")
    flash(f"Source “{name}” deleted.", "success")
    return redirect(url_for("dashboard.sources_list"))


@bp.get("/collections/_streams")
def collection_streams() -> ResponseReturnValue:
    """htmx partial for the collection form: the streams of the chosen source. Listing them
    connects to the source with its stored credentials: members only, as a test is."""
    principal = current_principal()
    require_role(principal, "member")
    source_id = request.args.get("source_id")
    streams, error = [], None
    if source_id:
        source = svc.get_source_or_404(principal, source_id)
        try:
            streams = svc.list_streams(principal, source)
        except ValidationFailed as exc:
            error = sentence(exc)
    return render_template(
        "dashboard/collections/_streams.html",
        streams=streams,
        error=error,
        current=request.args.get("stream", ""),
    )
