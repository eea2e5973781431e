"""Source types say what they can do, and nothing else asks for a type by its name.

The first test reads the code itself: outside hookstream_ui/sources/, a registered type's
short name written as a string and compared (==, !=, in), used as a key (x["stripe"],
.get("stripe")), or keying a module's table ({"stripe": ...}) is a type-name check that
belongs in the type's declaration. The other tests show a declaration alone changes what
the rest of the app does.
"""

from __future__ import annotations

import ast
import io
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from hookstream_ui.sources import REGISTRY, Connection, SourceType
from hookstream_ui.sources import TestResult as Result
from hookstream_ui.sources.base import register

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "hookstream_ui"
TEMPLATES = ROOT / "templates"
SOURCES = PACKAGE / "sources"
TYPE_NAMES = frozenset(REGISTRY)

# The same words in other vocabularies, which are not source types:
# - a database dialect ("postgresql"): compared with a `dialect`, or a table that also
#   keys "sqlite";
# - a signature scheme ("stripe"), the values of the webhook type's verification_type;
# - a request's form field ("file"), read from `request.files` or `request.form`.
SIGNATURE_SCHEMES_MODULE = PACKAGE / "services" / "signatures.py"
KEY_CALLS = {"get", "pop", "setdefault", "in_", "source_type", "source_type_or_404"}


def _names_in(node: ast.AST) -> list[str]:
    """The type names a constant, or a tuple/list/set of constants, spells."""
    if isinstance(node, ast.Constant) and node.value in TYPE_NAMES:
        return [node.value]
    if isinstance(node, ast.Tuple | ast.List | ast.Set):
        return [n for element in node.elts for n in _names_in(element)]
    return []


def _compared(node: ast.Compare) -> list[str]:
    operands = [node.left, *node.comparators]
    if any("dialect" in ast.unparse(operand) for operand in operands):
        return []
    return [n for operand in operands for n in _names_in(operand)]


def _keyed(node: ast.Subscript | ast.Call) -> list[str]:
    if isinstance(node, ast.Subscript):
        receiver, keys = node.value, [node.slice]
    else:
        func = node.func
        called = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", None)
        if called not in KEY_CALLS:
            return []
        receiver, keys = (func.value if isinstance(func, ast.Attribute) else func), node.args[:1]
    if ast.unparse(receiver).startswith("request."):
        return []
    return [n for key in keys for n in _names_in(key)]


def _tables(tree: ast.Module) -> list[tuple[int, str]]:
    """Module-level dicts keyed by type names: a per-type setting kept outside its type."""
    found = []
    for statement in tree.body:
        value = statement.value if isinstance(statement, ast.Assign | ast.AnnAssign) else None
        if not isinstance(value, ast.Dict):
            continue
        keys = [k.value for k in value.keys if isinstance(k, ast.Constant) and isinstance(k.value, str)]
        if keys and "sqlite" not in keys:
            found += [(value.lineno, k) for k in keys if k in TYPE_NAMES]
    return found


def python_checks(path: Path) -> Iterator[tuple[int, str]]:
    """(line, type name) of every type-name check in a Python module."""
    if path == SIGNATURE_SCHEMES_MODULE:
        return
    tree = ast.parse(path.read_text(), str(path))
    for node in ast.walk(tree):
        if isinstance(node, ast.Compare):
            names = _compared(node)
        elif isinstance(node, ast.Subscript | ast.Call):
            names = _keyed(node)
        else:
            continue
        yield from ((node.lineno, name) for name in names)
    yield from _tables(tree)


JINJA_TAG = re.compile(r"\{\{.*?\}\}|\{%.*?%\}", re.S)


def _template_pattern() -> re.Pattern[str]:
    name = "|".join(sorted(TYPE_NAMES))
    quoted = rf"""(?:'(?:{name})'|"(?:{name})")"""
    return re.compile(
        rf"(?:==|!=)\s*{quoted}|{quoted}\s*(?:==|!=|\bin\b|\bnot\s+in\b)|\[\s*{quoted}\s*\]|\.get\(\s*{quoted}"
    )


def template_checks(path: Path) -> Iterator[tuple[int, str]]:
    """(line, the expression) of every type-name check inside a template's Jinja tags."""
    text, pattern = path.read_text(), _template_pattern()
    for tag in JINJA_TAG.finditer(text):
        for hit in pattern.finditer(tag.group()):
            yield text.count("\n", 0, tag.start() + hit.start()) + 1, hit.group()


def type_name_checks() -> list[str]:
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        if SOURCES not in path.parents:
            found += [f"{path.relative_to(ROOT)}:{line}: {name!r}" for line, name in python_checks(path)]
    for path in sorted(TEMPLATES.rglob("*.html")):
        found += [f"{path.relative_to(ROOT)}:{line}: {what}" for line, what in template_checks(path)]
    return found


def test_no_module_outside_sources_names_a_source_type():
    assert type_name_checks() == [], "ask the type what it can do (a capability in sources/base.py)"


@pytest.mark.parametrize(
    "code",
    [
        'if source.short_name == "webhook": pass',
        'ok = kind.short_name not in ("file", "x")',
        'LIMITS = {"stripe": 50}',
        'REGISTRY["rest_api"].name',
        'ALIASES.get("stripe", {})',
        'query.where(SourceConnection.short_name.in_(["postgresql"]))',
    ],
)
def test_the_check_sees_each_form_of_a_type_name_lookup(tmp_path, code):
    module = tmp_path / "module.py"
    module.write_text(code + "\n")
    assert [name for _, name in python_checks(module)]


@pytest.mark.parametrize(
    "code",
    [
        'if db.engine.dialect.name == "postgresql": pass',
        'SQL = {"sqlite": 1, "postgresql": 2}',
        'upload = request.files.get("file")',
        'errors = {"file": "is empty"}',
        'JSON().with_variant(JSONB(), "postgresql")',
    ],
)
def test_the_check_leaves_other_vocabularies_alone(tmp_path, code):
    module = tmp_path / "module.py"
    module.write_text(f"def f():\n    {code}\n" if code.startswith("errors") else code + "\n")
    assert list(python_checks(module)) == []


def test_the_check_reads_templates(tmp_path):
    page = tmp_path / "page.html"
    page.write_text(
        "<input type=\"file\">\n{% if source.short_name == 'file' %}x{% endif %}\n{{ types['webhook'].name }}\n"
    )
    assert [line for line, _ in template_checks(page)] == [2, 3]


# -- a declaration alone changes behaviour --------------------------------------------


class Uploads(SourceType):
    """A made-up type that takes uploads: no module but this declaration says so."""

    short_name = "test_uploads"
    name = "Test uploads"
    description = "Takes files."
    auth_methods = ("none",)
    uploads = True
    scheduled = False

    def test(self, conn: Connection) -> Result:
        return Result(True, "ready")


class Pushed(SourceType):
    short_name = "test_pushed"
    name = "Test pushed"
    description = "Receives deliveries."
    pull, push = False, True

    def test(self, conn: Connection) -> Result:
        return Result(True, "ready")


@pytest.fixture
def made_up_types():
    for cls in (Uploads, Pushed):
        register(cls)
    yield
    for cls in (Uploads, Pushed):
        REGISTRY.pop(cls.short_name, None)


@pytest.fixture
def owner(ctx):
    from tests.helpers import make_user, org_of, production

    user = make_user("owner@example.com")
    return user, production(org_of(user))


def _principal(user, env):
    from hookstream_ui.models.principal import Principal

    return Principal(org=env.org, env=env, user=user, role="owner")


def test_a_type_declaring_uploads_takes_files_and_others_do_not(made_up_types, owner):
    from hookstream_ui.errors import ValidationFailed
    from hookstream_ui.services import sources as source_svc
    from tests.helpers import make_source

    user, env = owner
    principal = _principal(user, env)
    uploads = make_source(env, "Drop box", "test_uploads")
    stored = source_svc.store_file(principal, uploads, "people.csv", io.BytesIO(b"id,name\n1,Ann\n"))
    assert stored.size == 14 and source_svc.count_files(uploads) == 1
    with pytest.raises(ValidationFailed) as refused:
        source_svc.store_file(principal, make_source(env, "Stripe", "stripe"), "x.csv", io.BytesIO(b"a\n"))
    assert "only file sources" in refused.value.errors["file"]


def test_the_source_page_offers_uploads_by_the_declaration(made_up_types, app, client):
    from hookstream_ui.extensions import db
    from tests.helpers import login, make_source, make_user, org_of, production

    with app.app_context():
        env = production(org_of(make_user("owner@example.com")))
        uploads_id = make_source(env, "Drop box", "test_uploads").id
        stripe_id = make_source(env, "Stripe", "stripe").id
        db.session.remove()
    login(client, "owner@example.com")
    assert "Upload a file" in client.get(f"/sources/{uploads_id}").get_data(as_text=True)
    assert "Upload a file" not in client.get(f"/sources/{stripe_id}").get_data(as_text=True)


def test_a_type_declaring_push_gets_an_ingest_url(made_up_types, owner):
    from hookstream_ui.services import sources as source_svc
    from tests.helpers import make_source

    _, env = owner
    pushed = make_source(env, "Pushed", "test_pushed")
    assert source_svc.ingest_url(pushed).endswith(f"/v1/ingest/{pushed.id}")
    assert source_svc.ingest_url(make_source(env, "Uploads", "test_uploads")) is None


def test_a_type_is_either_read_or_pushed_to():
    class Both(SourceType):
        short_name, name, description = "test_both", "Both", "pull and push"
        push = True

        def test(self, conn: Connection) -> Result:
            return Result(True, "ready")

    with pytest.raises(TypeError):
        register(Both)
    assert "test_both" not in REGISTRY


def test_the_key_column_is_the_types_to_say():
    assert REGISTRY["postgresql"].key_column({"primary_key": "uid"}) == "uid"
    assert REGISTRY["postgresql"].key_column({}) == "id"
    assert REGISTRY["stripe"].key_column({"primary_key": "uid"}) == "id"
