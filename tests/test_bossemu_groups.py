"""Groups, their members and maintainers, users, and permission sets in the emulator, through
the real intern client over HTTP, as boss django/bosscore/views/views_group.py,
views_permission.py, django/bosscore/permissions.py and django/sso/views/views_user.py answer
them. The emulator acts as bossadmin, a superuser in bossadmin-primary, public and admin
(boss django/bosscore/test/setup_db.py). Each test's docstring names the BOSS source it
follows.
"""

from __future__ import annotations

import datetime
import itertools

import pytest
import requests
from intern.resource.boss.resource import (
    ChannelResource,
    CollectionResource,
    CoordinateFrameResource,
    ExperimentResource,
)

from ndframework.bossemu import BossEmulator
from bossapi_calls import api, boss_error, http_error

pytestmark = pytest.mark.timeout(60)

TOKEN = "bossemu-groups-test-token-5d2e"
ALL = {"read", "update", "delete", "add", "assign_group", "remove_group"}
VOLUMETRIC = {"add_volumetric_data", "read_volumetric_data", "delete_volumetric_data"}
_names = itertools.count()


@pytest.fixture(scope="module")
def boss():
    with BossEmulator(token=TOKEN) as emulator:
        yield emulator


@pytest.fixture(scope="module")
def remote(boss):
    return boss.remote()


def unique(prefix: str = "g") -> str:
    return f"{prefix}{next(_names)}"


def logged_in_user(boss, remote) -> str:
    """A user created in Keycloak who has logged in once, as intern's group suite makes one."""
    name = unique("user")
    remote.add_user(name, "John", "Doe", f"{name}@example.org", "pw-" + name)
    token = requests.post(
        f"{boss.url}/auth/realms/BOSS/protocol/openid-connect/token",
        data={"grant_type": "password", "client_id": "endpoint", "username": name,
              "password": "pw-" + name},
        timeout=30,
    ).json()["access_token"]
    requests.get(f"{boss.url}/v1/collection/", headers={"Authorization": f"Bearer {token}"},
                 timeout=30)
    return name


@pytest.fixture(scope="module")
def project(remote):
    """A collection, experiment and channel made by bossadmin."""
    coll = remote.create_project(CollectionResource(unique("coll")))
    remote.create_project(CoordinateFrameResource(f"{coll.name}_f", "", 0, 8, 0, 8, 0, 8))
    exp = remote.create_project(ExperimentResource("exp", coll.name, f"{coll.name}_f",
                                                   time_step_unit="seconds"))
    chan = remote.create_project(ChannelResource("ch", coll.name, "exp", "image",
                                                 datatype="uint8"))
    return coll, exp, chan


# -- groups ---------------------------------------------------------------------------------


def test_bossadmin_starts_in_its_primary_public_and_admin_groups(boss, remote):
    """``load_user_roles`` (bosscore/privileges.py) and setup_db.py's ``create_super_user``;
    a superuser maintains every group (guardian's ``get_objects_for_user``,
    views_group.py ``BossUserGroup.get``)."""
    assert remote.list_groups("member") == ["bossadmin-primary", "public", "admin"]
    name = unique()
    remote.create_group(name)
    assert remote.list_groups("member")[-1] == name
    assert name in remote.list_groups("maintainer") and name in remote.list_groups()
    message = boss_error(api(boss, "GET", "groups/?filter=owner"), 400, 1004)
    assert message.startswith("Unrecogizes value {} in filter")


def test_a_new_group_has_its_creator_as_owner_member_and_maintainer(remote):
    """``BossUserGroup.post``: the creator joins, the creator's primary group and admin
    maintain it; ``get`` gives owner and resources (views_group.py)."""
    name = unique()
    remote.create_group(name)
    assert remote.get_group(name) == {"name": name, "owner": "bossadmin", "resources": []}
    assert remote.list_group_members(name) == ["bossadmin"]
    assert remote.list_group_maintainers(name) == ["bossadmin"]
    assert remote.get_is_group_member(name, "bossadmin") is True


def test_group_errors_carry_the_boss_codes(boss, remote):
    """views_group.py: a taken name (6001), a missing group (4001), the managed groups
    (1006), a missing user (4002), removing bossadmin (1006), a maintainer URL without a
    user (1000)."""
    name = unique()
    remote.create_group(name)
    message = boss_error(http_error(remote.create_group, name), 404, 6001)
    assert message == f"A group  with name {name} already exist"
    assert boss_error(http_error(remote.get_group, "nope"), 404, 4001) == "nope does not exist."
    boss_error(http_error(remote.delete_group, "nope"), 404, 4001)
    for group in ("admin", "public"):
        boss_error(http_error(remote.delete_group, group), 400, 1006)
        boss_error(http_error(remote.add_group_member, group, "bossadmin"), 400, 1006)
    message = boss_error(http_error(remote.get_is_group_member, name, "ghost"), 404, 4002)
    assert message == "ghost does not exist. Ensure that the user has logged in"
    boss_error(http_error(remote.delete_group_member, name, "bossadmin"), 400, 1006)
    boss_error(http_error(remote.delete_group_maintainer, name, "bossadmin"), 400, 1006)
    boss_error(api(boss, "POST", f"groups/{name}/maintainers/"), 400, 1000)


def test_members_and_maintainers_of_a_logged_in_user(boss, remote):
    """A user the BOSS knows only after logging in (``BossUserNotFoundError``); members and
    maintainers added and removed (``BossGroupMember``, ``BossGroupMaintainer``)."""
    name = unique("kc")
    remote.add_user(name, "A", "B", f"{name}@example.org", "secret")
    group = unique()
    remote.create_group(group)
    boss_error(http_error(remote.add_group_member, group, name), 404, 4002)
    user = logged_in_user(boss, remote)
    assert user + "-primary" in remote.list_groups()
    remote.add_group_member(group, user)
    remote.add_group_maintainer(group, user)
    assert remote.list_group_members(group) == ["bossadmin", user]
    assert remote.list_group_maintainers(group) == ["bossadmin", user]
    remote.delete_group_member(group, user)
    remote.delete_group_maintainer(group, user)
    assert not remote.get_is_group_member(group, user)
    assert not remote.get_is_group_maintainer(group, user)
    message = boss_error(http_error(remote.delete_group_maintainer, group, user), 403, 3001)
    assert message == (
        f"The user {user} does not have the maintain_group permission on the group {group}"
    )
    remote.delete_group(group)
    boss_error(http_error(remote.list_group_members, group), 404, 4001)


def test_users_in_keycloak(boss, remote):
    """views_user.py ``BossUser``: a taken name is Keycloak's 409, deleting a missing user
    its 404, deleting bossadmin a 500 (``BossKeycloakError``); a bad password is refused by
    the token endpoint."""
    name = unique("kc")
    remote.add_user(name, "A", "B", None, "secret")
    assert remote.get_user(name)["username"] == name
    response = http_error(remote.add_user, name, "A", "B", None, "secret")
    assert response.status_code == 409 and response.json()["code"] == 7001
    token_url = f"{boss.url}/auth/realms/BOSS/protocol/openid-connect/token"
    refused = requests.post(token_url, data={"grant_type": "password", "client_id": "endpoint",
                                             "username": name, "password": "wrong"}, timeout=30)
    assert refused.status_code == 401 and refused.json()["error"] == "invalid_grant"
    remote.delete_user(name)
    response = http_error(remote.delete_user, name)
    assert response.status_code == 404 and response.json()["error"] == "User not found"
    assert http_error(remote.delete_user, "bossadmin").status_code == 500


# -- permissions ------------------------------------------------------------------------------


def test_a_new_resource_grants_everything_to_its_creators_primary_group_and_admin(remote,
                                                                                project):
    """views_resource.py, each ``post``: ``add_permissions_primary_group`` and
    ``add_permissions_admin_group`` (bosscore/permissions.py); channels get the volumetric
    permissions too."""
    coll, exp, chan = project
    for group in ("bossadmin-primary", "admin"):
        assert set(remote.get_permissions(group, coll)) == ALL
        assert set(remote.get_permissions(group, exp)) == ALL
        assert set(remote.get_permissions(group, chan)) == ALL | VOLUMETRIC
    sets = remote.list_permissions(resource=coll)
    assert [s["group"] for s in sets] == ["bossadmin-primary", "admin"]


def test_permission_sets_are_added_listed_replaced_and_deleted(remote, project):
    """``ResourceUserPermission`` post (201), get filtered by group, patch (200), delete
    (204) (views_permission.py); ``BossUserGroup.get`` lists the group's resources."""
    coll, _, chan = project
    group = unique()
    remote.create_group(group)
    remote.add_permissions(group, chan, ["read", "add_volumetric_data"])
    remote.add_permissions(group, coll, ["read"])
    assert remote.get_permissions(group, chan) == ["add_volumetric_data", "read"]
    assert [len(r) for r in remote.get_group(group)["resources"]] == [1, 3]
    listed = remote.list_permissions(group_name=group)
    assert [(s.get("channel"), s["permissions"]) for s in listed] == [
        (None, ["read"]), ("ch", ["add_volumetric_data", "read"])]
    remote.update_permissions(group, chan, ["update"])
    assert remote.get_permissions(group, chan) == ["update"]
    remote.delete_permissions(group, chan)
    assert remote.get_permissions(group, chan) == []


def test_permission_refusals(boss, remote, project):
    """views_permission.py and ``add_permissions_group``: codenames of another model (1003),
    public only read (1003), a missing group (4001) or resource (4000; a DELETE's is 9002),
    a body without permissions (1000); a refused PATCH keeps the group's permissions
    removed."""
    coll, exp, chan = project
    group = unique()
    remote.create_group(group)
    message = boss_error(http_error(remote.add_permissions, group, exp, ["read_volumetric_data"]),
                         400, 1003)
    assert message == "Invalid permissions ['read_volumetric_data'] in the request"
    boss_error(http_error(remote.add_permissions, "public", coll, ["update"]), 400, 1003)
    boss_error(http_error(remote.add_permissions, "nope", coll, ["read"]), 404, 4001)
    missing = CollectionResource("no_such_collection")
    message = boss_error(http_error(remote.add_permissions, group, missing, ["read"]), 404, 4000)
    assert message == "no_such_collection does not exist"
    message = boss_error(http_error(remote.delete_permissions, group, missing), 500, 9002)
    assert message == ("('no_such_collection does not exist', "
                       "<ErrorCodes.RESOURCE_NOT_FOUND: 4000>)")
    boss_error(api(boss, "POST", "permissions/", json={"group": group}), 400, 1000)
    remote.add_permissions(group, chan, ["read"])
    boss_error(http_error(remote.update_permissions, group, chan, ["bogus"]), 400, 1003)
    assert remote.get_permissions(group, chan) == []


def test_the_unfiltered_listing_reuses_the_collection_permissions(remote):
    """The no-filter branch of ``ResourceUserPermission.get`` lists an experiment or a
    channel with the collection list's ``col_perms`` (views_permission.py)."""
    coll = unique("coll")
    remote.create_project(CollectionResource(coll))
    remote.create_project(CoordinateFrameResource(f"{coll}_f", "", 0, 8, 0, 8, 0, 8))
    remote.create_project(ExperimentResource("exp", coll, f"{coll}_f", time_step_unit="seconds"))
    chan = remote.create_project(ChannelResource("ch", coll, "exp", "image", datatype="uint8"))
    mine = [s for s in remote.list_permissions() if s["collection"] == coll]
    assert len(mine) == 6  # bossadmin-primary's and admin's sets
    channel_sets = [s for s in mine if "channel" in s]
    assert all(set(s["permissions"]) == ALL for s in channel_sets)
    assert set(remote.get_permissions("admin", chan)) == ALL | VOLUMETRIC


def test_a_deleted_resource_keeps_its_permission_sets_until_it_is_purged():
    """A soft delete leaves guardian's rows (views_resource.py ``delete``); the delete step
    function removes the resource but not them (boss-tools activities/delete_cuboid.py), so a
    new resource of the same name starts with only its creator's sets."""
    with BossEmulator(token=TOKEN) as boss:
        remote = boss.remote()
        remote.create_project(CollectionResource("c"))
        remote.create_group("g")
        remote.add_permissions("g", CollectionResource("c"), ["read"])
        remote.delete_project(CollectionResource("c"))
        assert remote.get_permissions("g", CollectionResource("c")) == ["read"]
        assert remote.get_group("g")["resources"] == [{"collection": "c"}]
        boss.purge(older_than=datetime.timedelta(0))
        assert remote.get_group("g")["resources"] == []
        remote.create_project(CollectionResource("c"))
        assert remote.get_permissions("g", CollectionResource("c")) == []


def test_groups_and_permissions_survive_a_restart_of_a_store(tmp_path):
    """Everything is kept in the store's resources.sqlite, as the BOSS keeps it in its
    database (bosscore/models.py ``BossGroup``; guardian's tables)."""
    first = BossEmulator(token=TOKEN, store=tmp_path / "boss")
    with first:
        remote = first.remote()
        remote.create_project(CollectionResource("c"))
        remote.create_group("g")
        remote.add_permissions("g", CollectionResource("c"), ["read", "update"])
        user = logged_in_user(first, remote)
        remote.add_group_maintainer("g", user)
    with BossEmulator(token=TOKEN, store=tmp_path / "boss") as second:
        remote = second.remote()
        assert remote.get_permissions("g", CollectionResource("c")) == ["read", "update"]
        assert remote.list_group_maintainers("g") == ["bossadmin", user]
        assert remote.list_groups("member") == ["bossadmin-primary", "public", "admin", "g"]
