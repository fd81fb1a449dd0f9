"""The group service: ``/v1/groups/``, its members and its maintainers, as boss
django/bosscore/views/views_group.py answers them (URLs: django/bosscore/urls/group-urls.py).

Every request acts as `~ndframework.bossemu.accounts.ADMIN_USER`, a superuser with the
``admin`` role, so the views' role and permission checks (``check_role``,
``check_is_member_or_maintainer``, ``has_perm('maintain_group', ...)``) always pass, as they
do for bossadmin on the BOSS. What the views refuse whoever asks is reproduced: the ``admin``
and ``public`` groups' members and maintainers, removing bossadmin, a name taken, a group or
user missing.

Django 2.2 (the BOSS's pin) passes an optional URL group that did not match as None, so a
member URL without a user name reaches the view, which looks up the user ``None``.
"""

from __future__ import annotations

from .accounts import ADMIN_GROUP, ADMIN_USER, PUBLIC_GROUP, RESOURCE_KINDS, Accounts, Group
from .datarequest import Backend
from .errors import BossError, ErrorCodes, ServerError, group_not_found, user_not_found
from .http import Request, Response

__all__ = ["group_view", "member_view", "maintainer_view"]

_MANAGED = (PUBLIC_GROUP, ADMIN_GROUP)


def _group(accounts: Accounts, name: str) -> Group:
    """``Group.objects.get`` and ``BossGroup.objects.get``; 404, 4001 if missing."""
    group = accounts.group(name)
    if group is None:
        raise group_not_found(name)
    return group


def _user_id(accounts: Accounts, name: str | None) -> int:
    """``User.objects.get``; 404, 4002 if the user never logged in."""
    user_id = None if name is None else accounts.user_id(name)
    if user_id is None:
        raise user_not_found(name)
    return user_id


def _needs(name: str | None, method: str) -> str:
    """A view method called without its positional ``group_name``: Python's TypeError."""
    if name is None:
        raise ServerError(f"{method}() missing 1 required positional argument: 'group_name'")
    return name


def _managed(action: str, name: str) -> None:
    if name in _MANAGED:
        raise BossError(
            ErrorCodes.BAD_REQUEST,
            f"Cannot {action} the group {name}. This is an admin managed group",
        )


# -- BossUserGroup ------------------------------------------------------------------------------


def group_view(backend: Backend, request: Request) -> Response:
    """``BossUserGroup``: list groups, get one with the resources it holds permissions on,
    create one (201) or delete one (204)."""
    accounts, name = backend.accounts, request.params.get("group_name")
    if request.method == "GET":
        if name is None:
            return _list_groups(accounts, request.query_value("filter"), "filter" in request.query)
        return Response.json(200, _group_body(accounts, _group(accounts, name)))
    if request.method == "POST":
        if not accounts.create_group(_needs(name, "post"), ADMIN_USER):
            raise BossError(ErrorCodes.GROUP_EXISTS, f"A group  with name {name} already exist")
        return Response(201)
    group = _group(accounts, _needs(name, "delete"))
    if group.name in _MANAGED:
        raise BossError(ErrorCodes.BAD_REQUEST, "Admin and public groups cannot be deleted.")
    accounts.delete_group(group.id)
    return Response(204)


def _list_groups(accounts: Accounts, value: str | None, filtered: bool) -> Response:
    """The groups the user is a member of, maintains (a superuser: all), or both.

    Without a filter the view answers ``list(set(member).union(maintainer))``, an order of
    its own; this answers members first, then the rest, each in creation order.
    """
    members = [name for _, name in accounts.groups_of(ADMIN_USER)]
    maintained = accounts.all_groups()
    if not filtered:
        return Response.json(200, {"groups": members + [g for g in maintained if g not in members]})
    if value == "member":
        return Response.json(200, {"groups": members})
    if value == "maintainer":
        return Response.json(200, {"groups": maintained})
    # The BOSS's message is not formatted: its '{}' is sent as is.
    raise BossError(
        ErrorCodes.UNABLE_TO_VALIDATE,
        "Unrecogizes value {} in filter. Valid parameters are member or maintainer.",
    )


def _group_body(accounts: Accounts, group: Group) -> dict[str, object]:
    """``{"name", "owner", "resources"}``: the collections, then experiments, then channels
    the group holds any permission on (``get_objects_for_group``), soft-deleted included."""
    if group.creator is None:
        raise BossError(
            ErrorCodes.UNABLE_TO_VALIDATE,
            f"The group {group.name} is not configured correctly and does not have a creator. "
            "Contact an admin to update it",
        )
    resources = [
        route
        for kind in RESOURCE_KINDS
        for _, route in accounts.objects_for_group(group.id, kind, ())
    ]
    return {"name": group.name, "owner": group.creator, "resources": resources}


# -- BossGroupMember ------------------------------------------------------------------------------


def member_view(backend: Backend, request: Request) -> Response:
    """``BossGroupMember``: list a group's members, say whether a user is one, add one (204)
    or remove one (204)."""
    accounts, method = backend.accounts, request.method
    name, user = request.params["group_name"], request.params.get("user_name")
    if method == "GET":
        group = _group(accounts, name)
        if user is None:
            return Response.json(200, {"members": accounts.members(group.id)})
        member = accounts.is_member(group.id, _user_id(accounts, user))
        return Response.json(200, {"result": member})
    _managed("add a member to" if method == "POST" else "remove a user from", name)
    group = _group(accounts, name)
    if method == "DELETE" and user == ADMIN_USER:
        raise BossError(ErrorCodes.BAD_REQUEST, f"Cannot remove {ADMIN_USER} from any group")
    accounts.set_member(group.id, _user_id(accounts, user), method == "POST")
    return Response(204)


# -- BossGroupMaintainer ------------------------------------------------------------------------


def maintainer_view(backend: Backend, request: Request) -> Response:
    """``BossGroupMaintainer``: list a group's maintainers, say whether a user is one, make
    one (204) or unmake one (204; 403 if the user does not maintain the group)."""
    accounts, method = backend.accounts, request.method
    name, user = request.params["group_name"], request.params.get("user_name")
    if method == "GET":
        group = _group(accounts, name)
        if user is None:
            return Response.json(200, {"maintainers": accounts.maintainers(group.id)})
        user_id = _user_id(accounts, user)
        return Response.json(200, {"result": accounts.is_maintainer(group.id, user_id)})
    adding = method == "POST"
    _managed("add a maintainer to" if adding else "remove a maintainer from", name)
    if user is None:
        text = "Missing username in post." if adding else "Missing username parameter in post."
        raise BossError(ErrorCodes.INVALID_URL, text)
    if not adding and user == ADMIN_USER:
        raise BossError(
            ErrorCodes.BAD_REQUEST, f"Cannot remove {ADMIN_USER} maintainer from any group"
        )
    group = _group(accounts, name)
    user_id = _user_id(accounts, user)
    if not adding and not accounts.is_maintainer(group.id, user_id):
        raise BossError(
            ErrorCodes.MISSING_PERMISSION,
            f"The user {user} does not have the maintain_group permission on the group {name}",
        )
    accounts.set_maintainer(group.id, user_id, adding)
    return Response(204)
