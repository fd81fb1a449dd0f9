"""Who may do what on the BOSS: users, groups, their members and maintainers, the permission
sets groups hold on collections, experiments and channels, and the Keycloak accounts users log
in with, all kept in the resource tree's SQLite database.

The model is the BOSS's (jhuapl-boss/boss), cited where it is reproduced:

- users and groups are Django's ``auth`` ones; a group the BOSS manages has a ``BossGroup``
  with its creator (django/bosscore/models.py);
- a group's maintainers hold django-guardian's ``maintain_group`` on its ``BossGroup``, a user
  directly or through a group; a new group's creator's ``<user>-primary`` group and the
  ``admin`` group hold it (django/bosscore/views/views_group.py, ``BossUserGroup.post``);
- permission sets are guardian's group object permissions, with the codenames each model
  declares (``Meta.permissions``, models.py); a new resource's creator's primary group and the
  ``admin`` group get all of them (``BossPermissionManager.add_permissions_primary_group`` and
  ``add_permissions_admin_group``, django/bosscore/permissions.py);
- logging in creates the Django user, its primary group and its membership of ``public``
  (``load_user_roles``, django/bosscore/privileges.py).

The emulator acts as one user, `ADMIN_USER`: a superuser in ``bossadmin-primary``, ``public``
and ``admin`` with the ``admin`` role, as the BOSS's own tests set bossadmin up
(django/bosscore/test/setup_db.py, ``create_super_user``). Other users exist to be members and
maintainers: created in Keycloak (`ndframework.bossemu.users`), they become Django users when
they log in with a Keycloak token.

>>> from ndframework.bossemu.paths import ResourcePath
>>> from ndframework.bossemu.resources import ResourceTree
>>> tree = ResourceTree.open(None)
>>> accounts = Accounts.open(tree)
>>> _ = tree.create(ResourcePath(collection="col1"), {})
>>> admin = accounts.group("admin")
>>> accounts.permissions(admin.id, "collection", 1)
['add', 'assign_group', 'delete', 'read', 'remove_group', 'update']
>>> tree.close()
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import sqlite3
import threading
import uuid
from collections.abc import Iterable, Sequence
from typing import Any

import attrs

from .resources import ResourceTree

__all__ = [
    "ADMIN_USER",
    "ADMIN_GROUP",
    "PUBLIC_GROUP",
    "RESOURCE_PERMISSIONS",
    "RESOURCE_KINDS",
    "Group",
    "Accounts",
]

ADMIN_USER = "bossadmin"
"""``ADMIN_USER`` (django/bosscore/constants.py): the user the emulator acts as."""
ADMIN_GROUP = "admin"
"""``ADMIN_GRP``."""
PUBLIC_GROUP = "public"
"""``PUBLIC_GRP``."""

_RESOURCE = ("read", "update", "delete", "add", "assign_group", "remove_group")
RESOURCE_PERMISSIONS: dict[str, tuple[str, ...]] = {
    "collection": _RESOURCE,
    "experiment": _RESOURCE,
    "channel": (
        *_RESOURCE,
        "add_volumetric_data",
        "read_volumetric_data",
        "delete_volumetric_data",
    ),
}
"""The codenames of each model's permissions (``Meta.permissions``, bosscore/models.py)."""
RESOURCE_KINDS = ("collection", "experiment", "channel")
"""The resources that permission sets name, in the order the views list them."""

_SCHEMA = """
CREATE TABLE IF NOT EXISTS auth_user (
    id INTEGER PRIMARY KEY AUTOINCREMENT, username TEXT NOT NULL UNIQUE,
    is_superuser INTEGER NOT NULL DEFAULT 0);
CREATE TABLE IF NOT EXISTS auth_group (
    id INTEGER PRIMARY KEY AUTOINCREMENT, name TEXT NOT NULL UNIQUE,
    creator_id INTEGER REFERENCES auth_user(id));
CREATE TABLE IF NOT EXISTS group_member (
    group_id INTEGER NOT NULL REFERENCES auth_group(id) ON DELETE CASCADE,
    user_id INTEGER NOT NULL REFERENCES auth_user(id), PRIMARY KEY (group_id, user_id));
CREATE TABLE IF NOT EXISTS maintainer_user (
    bossgroup_id INTEGER NOT NULL REFERENCES auth_group(id) ON DELETE CASCADE,
    user_id INTEGER NOT NULL REFERENCES auth_user(id), PRIMARY KEY (bossgroup_id, user_id));
CREATE TABLE IF NOT EXISTS maintainer_group (
    bossgroup_id INTEGER NOT NULL REFERENCES auth_group(id) ON DELETE CASCADE,
    holder_id INTEGER NOT NULL REFERENCES auth_group(id) ON DELETE CASCADE,
    PRIMARY KEY (bossgroup_id, holder_id));
CREATE TABLE IF NOT EXISTS permission_set (
    group_id INTEGER NOT NULL REFERENCES auth_group(id) ON DELETE CASCADE,
    kind TEXT NOT NULL, object_id INTEGER NOT NULL, codename TEXT NOT NULL,
    PRIMARY KEY (group_id, kind, object_id, codename));
CREATE TABLE IF NOT EXISTS keycloak_user (
    id TEXT NOT NULL UNIQUE, username TEXT PRIMARY KEY, first_name TEXT, last_name TEXT,
    email TEXT, salt BLOB, password_hash BLOB);
"""
# permission_set.object_id is guardian's generic object_pk: no foreign key, so the sets of a
# resource the delete step function removes stay behind, out of reach (see `objects_for_group`).

_ROUTE_SQL = {
    "collection": "SELECT c.name FROM collection AS c WHERE c.id = ?",
    "experiment": "SELECT c.name, e.name FROM experiment AS e"
    " JOIN collection AS c ON c.id = e.collection_id WHERE e.id = ?",
    "channel": "SELECT c.name, e.name, ch.name FROM channel AS ch"
    " JOIN experiment AS e ON e.id = ch.experiment_id"
    " JOIN collection AS c ON c.id = e.collection_id WHERE ch.id = ?",
}


@attrs.frozen
class Group:
    """A Django group and its ``BossGroup``."""

    id: int
    """The group's row id."""
    name: str
    """Its name."""
    creator: str | None
    """Its ``BossGroup``'s creator; None for a group without one."""


def _hash(password: str, salt: bytes) -> bytes:
    return hashlib.pbkdf2_hmac("sha256", password.encode(), salt, 10_000)


class Accounts:
    """Users, groups, maintainers, permission sets and Keycloak accounts, in the tables it adds
    to a `ResourceTree`'s database. Open it with `open`; every method is one transaction."""

    def __init__(self, tree: ResourceTree) -> None:
        self._tree = tree
        self._tokens: dict[str, str] = {}  # Keycloak access token -> username
        self._tokens_lock = threading.Lock()

    @classmethod
    def open(cls, tree: ResourceTree) -> Accounts:
        """Add the tables to `tree`'s database if missing, with bossadmin and its groups, and
        have the tree's creates grant their permission sets. A database made before these
        tables existed gets the sets its resources' creates would have granted."""
        accounts = cls(tree)
        with tree.connection(write=True) as db:
            new = db.execute("SELECT 1 FROM sqlite_master WHERE name = 'auth_user'").fetchone()
            for statement in _SCHEMA.split(";"):
                if statement.strip():
                    db.execute(statement)
            if new is None:
                accounts._bootstrap(db)
        tree.on_create.append(accounts._grant_creator)
        return accounts

    def _bootstrap(self, db: sqlite3.Connection) -> None:
        db.execute("INSERT OR IGNORE INTO auth_user (username, is_superuser) VALUES (?, 1)",
                   (ADMIN_USER,))
        db.execute("INSERT OR IGNORE INTO keycloak_user (id, username) VALUES (?, ?)",
                   (str(uuid.uuid4()), ADMIN_USER))
        admin_id = _user_id(db, ADMIN_USER)
        for name in (f"{ADMIN_USER}-primary", PUBLIC_GROUP, ADMIN_GROUP):
            group_id = _get_or_create_group(db, name, admin_id)
            db.execute("INSERT OR IGNORE INTO group_member VALUES (?, ?)", (group_id, admin_id))
        for kind in RESOURCE_KINDS:
            for row_id, creator in db.execute(f"SELECT id, creator FROM {kind}").fetchall():
                self._grant_creator(db, kind, row_id, creator)

    def _grant_creator(self, db: sqlite3.Connection, kind: str, row_id: int, creator: str) -> None:
        """Every permission on a new resource to its creator's primary group and to the admin
        group (views_resource.py, each ``post``; bosscore/permissions.py). Coordinate frames
        get theirs on the BOSS too, but no view reads them, so they are not kept."""
        if kind not in RESOURCE_PERMISSIONS:
            return
        creator_id = _user_id(db, creator)
        if creator_id is None:
            db.execute("INSERT INTO auth_user (username) VALUES (?)", (creator,))
            creator_id = _user_id(db, creator)
        primary = _get_or_create_group(db, f"{creator}-primary", None)
        db.execute("INSERT OR IGNORE INTO group_member VALUES (?, ?)", (primary, creator_id))
        admin = _get_or_create_group(db, ADMIN_GROUP, _user_id(db, ADMIN_USER))
        for group_id in (primary, admin):
            _assign(db, group_id, kind, row_id, RESOURCE_PERMISSIONS[kind])

    # -- users -------------------------------------------------------------------------------

    def user_id(self, username: str) -> int | None:
        """The Django user's id; None if they have never logged in."""
        with self._tree.connection() as db:
            return _user_id(db, username)

    def log_in(self, username: str) -> None:
        """What a user's first request does: create the Django user (bossoidc2's backend),
        then their ``<user>-primary`` group and membership of it and of ``public``
        (``load_user_roles``, bosscore/privileges.py)."""
        with self._tree.connection(write=True) as db:
            db.execute("INSERT OR IGNORE INTO auth_user (username) VALUES (?)", (username,))
            user_id = _user_id(db, username)
            for name in (f"{username}-primary", PUBLIC_GROUP):
                group_id = _get_or_create_group(db, name, user_id)
                db.execute("INSERT OR IGNORE INTO group_member VALUES (?, ?)", (group_id, user_id))

    def bearer_login(self, authorization: str | None) -> bool:
        """Whether an ``Authorization`` header carries an access token the Keycloak stand-in
        issued; its user is logged in (`log_in`) if so."""
        words = (authorization or "").split()
        if len(words) != 2 or words[0].lower() != "bearer":
            return False
        with self._tokens_lock:
            username = self._tokens.get(words[1])
        if username is None:
            return False
        self.log_in(username)
        return True

    # -- groups ------------------------------------------------------------------------------

    def group(self, name: str) -> Group | None:
        """The group called `name`, or None."""
        with self._tree.connection() as db:
            row = db.execute(
                "SELECT g.id, g.name, u.username FROM auth_group AS g"
                " LEFT JOIN auth_user AS u ON u.id = g.creator_id WHERE g.name = ?",
                (name,),
            ).fetchone()
        return None if row is None else Group(row[0], row[1], row[2])

    def create_group(self, name: str, creator: str) -> bool:
        """Create a group as ``BossUserGroup.post`` does; False if the name is taken.

        Its creator's primary group and the admin group maintain it; its creator is its first
        member.
        """
        with self._tree.connection(write=True) as db:
            if db.execute("SELECT 1 FROM auth_group WHERE name = ?", (name,)).fetchone():
                return False
            creator_id = _user_id(db, creator)
            group_id = _get_or_create_group(db, name, creator_id)
            for holder in (f"{creator}-primary", ADMIN_GROUP):
                holder_id = _get_or_create_group(db, holder, creator_id)
                db.execute("INSERT OR IGNORE INTO maintainer_group VALUES (?, ?)",
                           (group_id, holder_id))
            db.execute("INSERT OR IGNORE INTO group_member VALUES (?, ?)", (group_id, creator_id))
            return True

    def delete_group(self, group_id: int) -> None:
        """Delete a group with its memberships, the maintainers of its ``BossGroup``, what it
        maintains and its permission sets (Django's cascade from ``Group``)."""
        with self._tree.connection(write=True) as db:
            db.execute("DELETE FROM auth_group WHERE id = ?", (group_id,))

    def all_groups(self) -> list[str]:
        """Every group with a ``BossGroup``: what guardian's ``get_objects_for_user`` gives
        a superuser."""
        with self._tree.connection() as db:
            return [r[0] for r in db.execute(
                "SELECT name FROM auth_group WHERE creator_id IS NOT NULL ORDER BY id")]

    def groups_of(self, username: str) -> list[tuple[int, str]]:
        """The (id, name) of each group the user is a member of (``user.groups``)."""
        with self._tree.connection() as db:
            return [(r[0], r[1]) for r in db.execute(
                "SELECT g.id, g.name FROM auth_group AS g JOIN group_member AS m"
                " ON m.group_id = g.id JOIN auth_user AS u ON u.id = m.user_id"
                " WHERE u.username = ? ORDER BY g.id", (username,))]

    def members(self, group_id: int) -> list[str]:
        """The usernames of a group's members (``group.user_set``)."""
        with self._tree.connection() as db:
            return [r[0] for r in db.execute(
                "SELECT u.username FROM auth_user AS u JOIN group_member AS m"
                " ON m.user_id = u.id WHERE m.group_id = ? ORDER BY u.id", (group_id,))]

    def is_member(self, group_id: int, user_id: int) -> bool:
        """Whether a user is a member of a group."""
        with self._tree.connection() as db:
            return db.execute("SELECT 1 FROM group_member WHERE group_id = ? AND user_id = ?",
                              (group_id, user_id)).fetchone() is not None

    def set_member(self, group_id: int, user_id: int, member: bool) -> None:
        """Add a user to a group, or remove them (``user_set.add``/``remove``)."""
        sql = ("INSERT OR IGNORE INTO group_member VALUES (?, ?)" if member else
               "DELETE FROM group_member WHERE group_id = ? AND user_id = ?")
        with self._tree.connection(write=True) as db:
            db.execute(sql, (group_id, user_id))

    def maintainers(self, group_id: int) -> list[str]:
        """The users holding ``maintain_group`` on a group, directly or through a group they
        are in, superusers only so (guardian's ``get_users_with_perms``)."""
        with self._tree.connection() as db:
            return [r[0] for r in db.execute(
                f"SELECT username FROM auth_user WHERE id IN ({_MAINTAINER_IDS}) ORDER BY id",
                (group_id, group_id))]

    def is_maintainer(self, group_id: int, user_id: int) -> bool:
        """Whether a user has ``maintain_group`` on a group: a superuser always has
        (``User.has_perm``)."""
        with self._tree.connection() as db:
            row = db.execute("SELECT is_superuser FROM auth_user WHERE id = ?", (user_id,))
            if row.fetchone()[0]:
                return True
            ids = db.execute(_MAINTAINER_IDS, (group_id, group_id)).fetchall()
        return any(r[0] == user_id for r in ids)

    def set_maintainer(self, group_id: int, user_id: int, maintainer: bool) -> None:
        """Assign ``maintain_group`` on a group to a user, or remove the user's own
        (``assign_perm``/``remove_perm``; one held through a group stays)."""
        sql = ("INSERT OR IGNORE INTO maintainer_user VALUES (?, ?)" if maintainer else
               "DELETE FROM maintainer_user WHERE bossgroup_id = ? AND user_id = ?")
        with self._tree.connection(write=True) as db:
            db.execute(sql, (group_id, user_id))

    # -- permission sets ---------------------------------------------------------------------

    def locate(self, names: Sequence[str]) -> tuple[int | None, int]:
        """Find the collection, experiment or channel `names` (collection first) lead to,
        soft-deleted or not, as the permission view's ``get_object`` does: (its id,
        ``len(names)``), or (None, the index of the first name without a row)."""
        steps = (
            "SELECT id FROM collection WHERE name = ?",
            "SELECT id FROM experiment WHERE name = ? AND collection_id = ?",
            "SELECT id FROM channel WHERE name = ? AND experiment_id = ?",
        )
        found: int | None = None
        with self._tree.connection() as db:
            for index, name in enumerate(names):
                args = (name,) if found is None else (name, found)
                row = db.execute(steps[index], args).fetchone()
                if row is None:
                    return None, index
                found = row[0]
        return found, len(names)

    def permissions(self, group_id: int, kind: str, object_id: int) -> list[str]:
        """The codenames a group holds on a resource (guardian's ``get_perms``), in codename
        order (guardian returns a set's order)."""
        with self._tree.connection() as db:
            return [r[0] for r in db.execute(
                "SELECT codename FROM permission_set WHERE group_id = ? AND kind = ?"
                " AND object_id = ? ORDER BY codename", (group_id, kind, object_id))]

    def objects_for_group(
        self, group_id: int, kind: str, codenames: Iterable[str]
    ) -> list[tuple[int, dict[str, str]]]:
        """The resources of one kind on which a group holds any of `codenames` (all
        resources it holds any permission on if none are given), in id order, each with its
        route: guardian's ``get_objects_for_group(..., any_perm=True)``. Soft-deleted
        resources are included; removed ones are not (the query filters existing rows)."""
        wanted = sorted(set(codenames))
        marks = ", ".join("?" for _ in wanted)
        sql = (f"SELECT DISTINCT p.object_id FROM permission_set AS p JOIN {kind} AS o"
               " ON o.id = p.object_id WHERE p.group_id = ? AND p.kind = ?")
        if wanted:
            sql += f" AND p.codename IN ({marks})"
        with self._tree.connection() as db:
            ids = [r[0] for r in db.execute(sql + " ORDER BY p.object_id",
                                            (group_id, kind, *wanted))]
            return [(object_id, _route(db, kind, object_id)) for object_id in ids]

    def assign(self, group_id: int, kind: str, object_id: int, codenames: Iterable[str]) -> None:
        """Give a group permissions on a resource (``assign_perm`` for each)."""
        with self._tree.connection(write=True) as db:
            _assign(db, group_id, kind, object_id, codenames)

    def remove_all(self, group_id: int, kind: str, object_id: int) -> None:
        """Take every permission a group holds on a resource away
        (``delete_all_permissions_group``)."""
        with self._tree.connection(write=True) as db:
            db.execute("DELETE FROM permission_set WHERE group_id = ? AND kind = ?"
                       " AND object_id = ?", (group_id, kind, object_id))

    # -- Keycloak ----------------------------------------------------------------------------

    def keycloak_user(self, username: str) -> dict[str, Any] | None:
        """A Keycloak account's fields (id, username, first_name, last_name, email), or None."""
        with self._tree.connection() as db:
            row = db.execute("SELECT id, username, first_name, last_name, email"
                             " FROM keycloak_user WHERE username = ?", (username,)).fetchone()
        return None if row is None else dict(row)

    def add_keycloak_user(
        self, username: str, first_name: Any, last_name: Any, email: Any, password: Any
    ) -> str | None:
        """Create a Keycloak account; None, or Keycloak's 409 ``errorMessage`` when the
        username or the email is taken."""
        salt = secrets.token_bytes(16)
        secret = _hash(password, salt) if isinstance(password, str) else None
        with self._tree.connection(write=True) as db:
            if db.execute("SELECT 1 FROM keycloak_user WHERE username = ?", (username,)).fetchone():
                return "User exists with same username"
            if email is not None and db.execute(
                "SELECT 1 FROM keycloak_user WHERE email = ?", (email,)
            ).fetchone():
                return "User exists with same email"
            db.execute(
                "INSERT INTO keycloak_user VALUES (?, ?, ?, ?, ?, ?, ?)",
                (str(uuid.uuid4()), username, first_name, last_name, email, salt, secret),
            )
        return None

    def delete_keycloak_user(self, username: str) -> bool:
        """Delete a Keycloak account and end its sessions; whether it existed. The Django
        user stays, as on the BOSS."""
        with self._tree.connection(write=True) as db:
            gone = db.execute("DELETE FROM keycloak_user WHERE username = ?", (username,))
        with self._tokens_lock:
            for token in [t for t, user in self._tokens.items() if user == username]:
                del self._tokens[token]
        return gone.rowcount > 0

    def issue_token(self, username: str, password: str) -> str | None:
        """A new access token for a Keycloak account's password grant; None if the
        credentials are wrong."""
        with self._tree.connection() as db:
            row = db.execute("SELECT salt, password_hash FROM keycloak_user WHERE username = ?",
                             (username,)).fetchone()
        if row is None or row[1] is None or not hmac.compare_digest(_hash(password, row[0]),
                                                                     row[1]):
            return None
        token = secrets.token_urlsafe(32)
        with self._tokens_lock:
            self._tokens[token] = username
        return token


_MAINTAINER_IDS = (
    "SELECT user_id FROM maintainer_user WHERE bossgroup_id = ?"
    " UNION SELECT m.user_id FROM group_member AS m JOIN maintainer_group AS h"
    " ON h.holder_id = m.group_id WHERE h.bossgroup_id = ?"
)


def _user_id(db: sqlite3.Connection, username: str) -> int | None:
    row = db.execute("SELECT id FROM auth_user WHERE username = ?", (username,)).fetchone()
    return None if row is None else row[0]


def _get_or_create_group(db: sqlite3.Connection, name: str, creator_id: int | None) -> int:
    """``Group.objects.get_or_create``, with a ``BossGroup`` by `creator_id` when created."""
    row = db.execute("SELECT id FROM auth_group WHERE name = ?", (name,)).fetchone()
    if row is not None:
        return row[0]  # type: ignore[no-any-return]
    cursor = db.execute("INSERT INTO auth_group (name, creator_id) VALUES (?, ?)",
                        (name, creator_id))
    return cursor.lastrowid  # type: ignore[return-value]


def _assign(
    db: sqlite3.Connection, group_id: int, kind: str, object_id: int, codenames: Iterable[str]
) -> None:
    db.executemany("INSERT OR IGNORE INTO permission_set VALUES (?, ?, ?, ?)",
                   [(group_id, kind, object_id, codename) for codename in codenames])


def _route(db: sqlite3.Connection, kind: str, object_id: int) -> dict[str, str]:
    names = db.execute(_ROUTE_SQL[kind], (object_id,)).fetchone()
    return dict(zip(RESOURCE_KINDS, names))
