"""The permission service: ``/v1/permissions/``, the permission sets groups hold on
collections, experiments and channels, as boss django/bosscore/views/views_permission.py
(``ResourceUserPermission``) answers them, with ``BossPermissionManager``'s validation
(django/bosscore/permissions.py).

Every request acts as bossadmin, a superuser: the views' membership and ``assign_group`` /
``remove_group`` checks pass. What is kept on purpose, each from views_permission.py:

- a set may only hold the codenames of its resource's model (bosscore/models.py): a
  collection or experiment takes none of the three ``*_volumetric_data``;
- the ``public`` group may only get ``read`` and ``read_volumetric_data`` (a PATCH only
  ``['read']``);
- a PATCH removes the group's permissions first, and keeps them removed if the new list is
  refused (the view returns its error instead of raising, so ``transaction.atomic`` commits);
- the unfiltered listing gives each experiment and channel the *collection's* permission
  list, and narrows each later group's query to the codenames last seen (the view reuses
  ``col_perms``, ``exp_perms`` and ``channel_perms`` as loop variables);
- a DELETE naming a missing resource is a 500 with code 9002 (its ``except Exception``
  comes before ``except BossError``);
- permission sets stay on a soft-deleted resource, which can still be named.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from .accounts import ADMIN_USER, PUBLIC_GROUP, RESOURCE_KINDS, RESOURCE_PERMISSIONS, Accounts
from .datarequest import Backend
from .errors import BossError, ErrorCodes, ServerError, group_not_found
from .http import Request, Response

__all__ = ["permission_view"]

_Target = tuple[str, int, dict[str, str]]  # kind, id, route


def permission_view(backend: Backend, request: Request) -> Response:
    """``ResourceUserPermission``: GET lists, POST adds (201), PATCH replaces (200), DELETE
    removes all of a group's permissions on a resource (204)."""
    if request.method == "GET":
        return _get(backend.accounts, request)
    if request.method == "DELETE":
        return _delete(backend.accounts, request)
    return _post_or_patch(backend.accounts, request)


def _target(accounts: Accounts, params: Mapping[str, Any]) -> _Target | None:
    """``get_object``: the resource the names lead to; None without a collection name; the
    BOSS's ``BossError`` (404, 4000, ``'<name> does not exist'``) at a missing name."""
    names: list[str] = []
    for kind in RESOURCE_KINDS:
        value = params.get(kind)
        if not value:
            break
        names.append(str(value))
    if not params.get("collection"):
        return None
    object_id, depth = accounts.locate(names)
    if object_id is None:
        raise BossError(ErrorCodes.RESOURCE_NOT_FOUND, f"{names[depth]} does not exist")
    kind = RESOURCE_KINDS[len(names) - 1]
    return kind, object_id, dict(zip(RESOURCE_KINDS, names))


def _entry(group: str, route: Mapping[str, str], permissions: list[str]) -> dict[str, Any]:
    return {"group": group, **route, "permissions": permissions}


# -- GET ---------------------------------------------------------------------------------------


def _get(accounts: Accounts, request: Request) -> Response:
    params = {k: request.query_value(k) for k in ("group", *RESOURCE_KINDS)}
    group_name = params["group"]
    target = _target(accounts, params)
    entries: list[dict[str, Any]] = []
    if group_name and target:
        group = accounts.group(group_name)
        if group is None:
            raise group_not_found(group_name)
        kind, object_id, route = target
        held = accounts.permissions(group.id, kind, object_id)
        if held:
            entries.append(_entry(group.name, route, held))
    elif target:
        kind, object_id, route = target
        for group_id, name in accounts.groups_of(ADMIN_USER):
            held = accounts.permissions(group_id, kind, object_id)
            if held:
                entries.append(_entry(name, route, held))
    elif group_name:
        group = accounts.group(group_name)
        if group is None:
            raise group_not_found(group_name)
        for kind in RESOURCE_KINDS:
            for object_id, route in accounts.objects_for_group(group.id, kind, ()):
                entries.append(_entry(group.name, route, accounts.permissions(group.id, kind,
                                                                              object_id)))
    else:
        entries = _unfiltered(accounts)
    return Response.json(200, {"permission-sets": entries})


def _unfiltered(accounts: Accounts) -> list[dict[str, Any]]:
    """The no-filter branch of ``ResourceUserPermission.get``, its reuse of variables kept:
    each query is narrowed to the codenames held on the last object of its kind seen, and
    experiments and channels are listed with the collection list's codenames."""
    last = {kind: list(RESOURCE_PERMISSIONS[kind]) for kind in RESOURCE_KINDS}
    entries: list[dict[str, Any]] = []
    for group_id, name in accounts.groups_of(ADMIN_USER):
        for kind in RESOURCE_KINDS:
            for object_id, route in accounts.objects_for_group(group_id, kind, last[kind]):
                last[kind] = accounts.permissions(group_id, kind, object_id)
                entries.append(_entry(name, route, last["collection"]))
    return entries


# -- POST and PATCH ------------------------------------------------------------------------------


def _body(request: Request) -> dict[str, Any]:
    body = request.json()
    if isinstance(body, dict):
        return body
    # DRF hands the view other JSON as it came: ``'permissions' in data`` tests a list's
    # items (then ``dict(data)`` fails) and fails on a number.
    if not isinstance(body, (list, str)) or "permissions" in body:
        raise ServerError(f"request.data is a {type(body).__name__}")
    return {}


def _post_or_patch(accounts: Accounts, request: Request) -> Response:
    patch = request.method == "PATCH"
    missing = ErrorCodes.UNABLE_TO_VALIDATE if patch else ErrorCodes.INVALID_URL
    data = _body(request)
    if "permissions" not in data:
        raise BossError(missing, "Permission are not included in the request")
    perm_list = data["permissions"]
    if "group" not in data:
        raise BossError(missing, "Group are not included in the request")
    if "collection" not in data:
        raise BossError(missing, "Invalid resource or missing resource name in request")
    group_name = data.get("group")
    if group_name == PUBLIC_GROUP and not _only_read(perm_list, patch):
        raise BossError(
            ErrorCodes.INVALID_POST_ARGUMENT, "The public group can only have read permissions"
        )
    target = _target(accounts, data)
    if target is None:
        raise BossError(ErrorCodes.UNABLE_TO_VALIDATE, "Unable to validate the resource")
    kind, object_id, _ = target
    if patch:  # delete_all_permissions_group, committed whatever follows
        accounts.remove_all(_group_id(accounts, group_name), kind, object_id)
    _add(accounts, group_name, kind, object_id, perm_list)
    return Response(200 if patch else 201)


def _only_read(perm_list: Any, patch: bool) -> bool:
    """Whether the public group may get `perm_list`: POST takes a subset of read and
    read_volumetric_data, PATCH exactly ``['read']``."""
    try:
        if patch:
            return len(perm_list) == 1 and perm_list[0] == "read"  # type: ignore[no-any-return]
        return set(perm_list) <= {"read", "read_volumetric_data"}
    except (TypeError, KeyError) as error:
        raise ServerError(f"{type(error).__name__}: {error}") from error


def _group_id(accounts: Accounts, name: Any) -> int:
    group = None if name is None else accounts.group(str(name))
    if group is None:
        raise group_not_found(name)
    return group.id


def _add(accounts: Accounts, group_name: Any, kind: str, object_id: int, perm_list: Any) -> None:
    """``BossPermissionManager.add_permissions_group``: the codenames are checked against
    the model's before the group is looked up."""
    try:
        valid = set(perm_list) <= set(RESOURCE_PERMISSIONS[kind])
    except TypeError as error:
        raise ServerError(f"TypeError: {error}") from error
    if not valid:
        raise BossError(
            ErrorCodes.INVALID_POST_ARGUMENT, f"Invalid permissions {perm_list} in the request"
        )
    accounts.assign(_group_id(accounts, group_name), kind, object_id, list(perm_list))


# -- DELETE --------------------------------------------------------------------------------------


def _delete(accounts: Accounts, request: Request) -> Response:
    if "group" not in request.query:
        raise BossError(ErrorCodes.INVALID_URL, "Group are not included in the request")
    if "collection" not in request.query:
        raise BossError(
            ErrorCodes.INVALID_URL, "Invalid resource or missing resource name in request"
        )
    params = {k: request.query_value(k) for k in ("group", *RESOURCE_KINDS)}
    try:
        target = _target(accounts, params)
    except BossError as error:
        # str() of the BOSS's BossError, whose args are (message, code)
        text = f"({error.message!r}, <ErrorCodes.{error.code.name}: {int(error.code)}>)"
        raise BossError(ErrorCodes.UNHANDLED_EXCEPTION, text) from error
    if target is None:
        raise BossError(ErrorCodes.UNABLE_TO_VALIDATE, "Unable to validate the resource")
    kind, object_id, _ = target
    accounts.remove_all(_group_id(accounts, params["group"]), kind, object_id)
    return Response(204)

