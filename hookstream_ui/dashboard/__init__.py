"""Server-rendered dashboard pages (htmx for the parts that change in place)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from flask import Blueprint, abort, g, render_template
from flask.typing import ResponseReturnValue
from flask_login import current_user, login_required

from ..auth import maybe_principal
from ..auth.access import htmx_page_url, htmx_whole_page, is_htmx_request
from ..auth.principal import no_org_message
from ..models import STATUSES, SourceConnection, User
from ..models.principal import Principal
from ..services import live
from ..services import records as record_svc
from ..services import team as team_svc

if TYPE_CHECKING:
    from ..sources import SourceType

bp = Blueprint("dashboard", __name__)


@bp.before_request
@login_required
def _signed_in() -> ResponseReturnValue | None:
    if maybe_principal() is None:
        # Signed in but in no org (removed from their last one, or it was suspended).
        if is_htmx_request():
            return htmx_whole_page(htmx_page_url() or "/", 403)
        return render_template("dashboard/no_org.html", reason=no_org_message(current_user)), 403
    return None


@bp.app_context_processor
def _layout_context() -> dict[str, Any]:
    principal = g.get("principal") if current_user.is_authenticated else None
    orgs = team_svc.orgs_of(current_user) if principal is not None and principal.user is not None else []
    return {
        "principal": principal,
        "collection_statuses": STATUSES,
        "user_orgs": orgs,
        "change_mark": live.change_mark,
        "run_label": live.run_label,
        "attempt_note": live.attempt_note,
        "skip_counts": live.skip_counts,
        "retry_at": live.retry_at,
        "seconds_from_now": live.seconds_from_now,
        "event_outcome": record_svc.event_outcome,
        "source_kind": _source_kind,
    }


def signed_in_user(principal: Principal) -> User:
    """The person a dashboard page acts for. Its principal always comes from a session (the
    pages sign in first and take no API key), so it always has a user."""
    if principal.user is None:
        abort(403)
    return principal.user


def _source_kind(source: SourceConnection) -> SourceType | None:
    """A source's type, for templates to ask what it can do (`pull`), never its name."""
    from ..sources import source_type

    return source_type(source.short_name)


from . import alerts, collections, destinations, oauth, overview, records, runs, settings, sources, team  # noqa: E402,F401
