"""PostgreSQL roles: the server runs as a role that may only read and append to the log.

The schema belongs to an *owner* role that runs the migrations (``goldtrail admin migrate``,
or the server itself when ``GOLDTRAIL_MIGRATE_DATABASE_URL`` holds the owner's URL). The
server connects (``GOLDTRAIL_DATABASE_URL``) as an *application* role that

- may SELECT and INSERT on ``log``, ``tree_nodes`` and ``checkpoints``, and nothing else:
  UPDATE, DELETE and TRUNCATE are refused by privilege before the append-only triggers are
  even reached, and as it owns no table it cannot ``ALTER TABLE ... DISABLE TRIGGER``, drop
  a trigger or a table, nor (not being a superuser) ``SET session_replication_role``;
- may SELECT, INSERT, UPDATE and DELETE on ``log_meta``, the projection tables and the
  event-id index (which are rebuilt from the log, ``goldtrail admin rebuild``);
- may SELECT ``alembic_version`` (the server checks the schema is current at start).

Create the role once, as a superuser or a role with CREATEROLE::

    CREATE ROLE goldtrail_app LOGIN PASSWORD '...';

then, after each migration, ``goldtrail admin migrate --app-role goldtrail_app`` (or
``grant_app_role``) gives it exactly these privileges.
"""

from __future__ import annotations

from sqlalchemy import Connection, Engine, text

from ledger import tables

#: tables the application role may only read and append to
APPEND_ONLY_TABLES = tables.APPEND_ONLY_TABLES
#: tables the application role may read and change
MUTABLE_TABLES = tuple(
    t.name for t in tables.metadata.sorted_tables if t.name not in tables.APPEND_ONLY_TABLES
)
VERSION_TABLE = "alembic_version"


def _quote(conn: Connection, name: str) -> str:
    return str(conn.dialect.identifier_preparer.quote(name))


def grant_app_role(owner_engine: Engine, role: str) -> None:
    """Give the existing role ``role`` exactly the application's privileges on the schema.

    ``owner_engine`` connects as the owner of the tables (after ``migrate``). Every other
    privilege the role held on these tables is revoked first. Raises ValueError for another
    database than PostgreSQL, or when the role does not exist, is a superuser, owns the log
    or can become its owner (those privileges would mean nothing); and whatever the
    database raises.
    """
    if owner_engine.dialect.name != "postgresql":
        raise ValueError("Application roles exist on PostgreSQL only.")
    with owner_engine.begin() as conn:
        found = conn.execute(
            text("SELECT rolsuper FROM pg_roles WHERE rolname = :role"), {"role": role}
        ).first()
        if found is None:
            raise ValueError(
                f"There is no PostgreSQL role {role!r}: create it first "
                f"(CREATE ROLE {role} LOGIN PASSWORD '...')."
            )
        if found.rolsuper:
            raise ValueError(f"The role {role!r} is a superuser: it would bypass every privilege.")
        schema = conn.execute(text("SELECT current_schema()")).scalar_one()
        owner = conn.execute(
            text(
                "SELECT tableowner FROM pg_tables WHERE schemaname = :schema AND tablename = 'log'"
            ),
            {"schema": schema},
        ).scalar()
        if owner is None:
            raise ValueError("There is no log table here: run the migrations first.")
        can_become_owner = conn.execute(
            text("SELECT pg_has_role(:role, :owner, 'MEMBER')"), {"role": role, "owner": owner}
        ).scalar_one()
        if can_become_owner:
            raise ValueError(
                f"The role {role!r} owns the log's tables or is a member of their owner "
                f"{owner!r}: use a separate role for the server."
            )
        q_role, q_schema = _quote(conn, role), _quote(conn, str(schema))
        everything = ", ".join(
            _quote(conn, name) for name in (*APPEND_ONLY_TABLES, *MUTABLE_TABLES, VERSION_TABLE)
        )
        append_only = ", ".join(_quote(conn, name) for name in APPEND_ONLY_TABLES)
        mutable = ", ".join(_quote(conn, name) for name in MUTABLE_TABLES)
        conn.execute(text(f"REVOKE ALL ON TABLE {everything} FROM {q_role}"))
        has_usage = conn.execute(
            text("SELECT has_schema_privilege(:role, :schema, 'USAGE')"),
            {"role": role, "schema": schema},
        ).scalar_one()
        if not has_usage:
            conn.execute(text(f"GRANT USAGE ON SCHEMA {q_schema} TO {q_role}"))
        conn.execute(text(f"GRANT SELECT, INSERT ON TABLE {append_only} TO {q_role}"))
        conn.execute(text(f"GRANT SELECT, INSERT, UPDATE, DELETE ON TABLE {mutable} TO {q_role}"))
        conn.execute(text(f"GRANT SELECT ON TABLE {_quote(conn, VERSION_TABLE)} TO {q_role}"))


def server_may_change_the_log(engine: Engine) -> str | None:
    """Why the role ``engine`` connects as could change or remove the log (it is a
    superuser, owns the log or is a member of its owner, or may UPDATE, DELETE or TRUNCATE
    it), or None: an application role, or not PostgreSQL. Raises what the database raises.
    """
    if engine.dialect.name != "postgresql":
        return None
    with engine.connect() as conn:
        row = conn.execute(
            text(
                "SELECT current_user AS role,"
                " (SELECT rolsuper FROM pg_roles WHERE rolname = current_user) AS super,"
                " pg_has_role(current_user, t.tableowner, 'MEMBER') AS owner,"
                " has_table_privilege(current_user, c.oid, 'UPDATE')"
                " OR has_table_privilege(current_user, c.oid, 'DELETE')"
                " OR has_table_privilege(current_user, c.oid, 'TRUNCATE') AS change"
                " FROM pg_tables t"
                " JOIN pg_class c ON c.relname = t.tablename"
                " JOIN pg_namespace n ON n.oid = c.relnamespace AND n.nspname = t.schemaname"
                " WHERE t.schemaname = current_schema() AND t.tablename = 'log'"
            )
        ).first()
    if row is None:
        return None
    if row.super:
        return f"the role {row.role} is a superuser"
    if row.owner:
        return f"the role {row.role} owns the log (or is a member of its owner)"
    if row.change:
        return f"the role {row.role} may UPDATE, DELETE or TRUNCATE the log"
    return None


def table_privileges(engine: Engine, role: str) -> dict[str, set[str]]:
    """The privileges ``role`` holds on each goldtrail table, e.g. ``{"log": {"SELECT",
    "INSERT"}}`` (for checks and tests). Raises whatever the database raises."""
    kinds = ("SELECT", "INSERT", "UPDATE", "DELETE", "TRUNCATE", "REFERENCES", "TRIGGER")
    held: dict[str, set[str]] = {}
    with engine.connect() as conn:
        for name in (*APPEND_ONLY_TABLES, *MUTABLE_TABLES, VERSION_TABLE):
            held[name] = {
                kind
                for kind in kinds
                if conn.execute(
                    text("SELECT has_table_privilege(:role, :table, :kind)"),
                    {"role": role, "table": name, "kind": kind},
                ).scalar_one()
            }
    return held


def migrate_as_owner(owner_url: str, app_url: str, app_role: str | None = None) -> str | None:
    """Run the migrations with the owner's URL; on PostgreSQL, then give the application
    role (``app_role``, else the user of ``app_url`` when it is another role than the
    owner's) its privileges. Return the role given them, or None.

    This is what the server does at start when ``GOLDTRAIL_MIGRATE_DATABASE_URL`` is set,
    and ``goldtrail admin migrate``. Raises ValueError as ``grant_app_role`` does, and
    whatever Alembic or the database raises.
    """
    from sqlalchemy.engine import make_url

    from ledger.store import make_engine, migrate

    owner = make_engine(owner_url)
    try:
        migrate(owner)
        if owner.dialect.name != "postgresql":
            return None
        role = app_role
        if role is None:
            app_user = make_url(app_url).username
            if app_user is None or app_user == make_url(owner_url).username:
                return None
            role = app_user
        grant_app_role(owner, role)
        return role
    finally:
        owner.dispose()
