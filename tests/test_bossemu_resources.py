"""The emulator's resource tree and errors against the BOSS's own source (jhuapl-boss/boss)
and against what intern 1.4.2 sends and parses (intern/service/boss/v1/project.py)."""

from __future__ import annotations

import json
import sqlite3
import threading

import pytest
from intern.resource.boss.resource import (
    ChannelResource,
    CollectionResource,
    CoordinateFrameResource,
    ExperimentResource,
)
from intern.service.boss.v1.project import ProjectService_1

from ndframework.bossemu import errors
from ndframework.bossemu.errors import RESP_CODES, BossError, ErrorCodes, ServerError
from ndframework.bossemu.paths import ResourcePath
from ndframework.bossemu.resources import ResourceTree

COLL = ResourcePath(collection="col1")
FRAME = ResourcePath(coord="frame1")
EXP = ResourcePath(collection="col1", experiment="exp1")


def chan(name: str) -> ResourcePath:
    return ResourcePath(collection="col1", experiment="exp1", channel=name)


FRAME_BODY = {
    "description": "a frame",
    "x_start": 0,
    "x_stop": 1024,
    "y_start": 0,
    "y_stop": 1024,
    "z_start": 0,
    "z_stop": 64,
    "x_voxel_size": 4,
    "y_voxel_size": 4,
    "z_voxel_size": 40,
    "voxel_unit": "nanometers",
}


@pytest.fixture
def tree():
    with ResourceTree.open(None) as tree:
        yield tree


@pytest.fixture
def exp_tree(tree):
    tree.create(COLL, {"description": "c"})
    tree.create(FRAME, FRAME_BODY)
    tree.create(EXP, {"coord_frame": "frame1", "num_hierarchy_levels": 3})
    return tree


def image(tree, name, *, admin=True, **extra):
    return tree.create(chan(name), {"type": "image", "datatype": "uint8", **extra}, admin=admin)


def raises(code: ErrorCodes, status: int, call, *args, **kwargs) -> BossError:
    with pytest.raises(BossError) as info:
        call(*args, **kwargs)
    assert (info.value.code, info.value.status) == (code, status), info.value
    return info.value


# -- errors ------------------------------------------------------------------------------------


def test_error_codes_and_statuses_are_the_boss_table():
    """bosscore/error.py: every ErrorCodes member and its RESP_CODES status; a code missing
    from RESP_CODES is answered 400 (BossError.__init__)."""
    assert len(ErrorCodes) == 37
    assert ErrorCodes.INVALID_POST_ARGUMENT == 1003 and ErrorCodes.RESOURCE_EXISTS == 6002
    assert ErrorCodes.UNSUPPORTED_VERSION == 9003
    assert set(RESP_CODES) == set(ErrorCodes) - {ErrorCodes.ACCESS_DENIED_UNKNOWN}
    assert RESP_CODES[ErrorCodes.INVALID_STATE] == 409
    assert RESP_CODES[ErrorCodes.RESOURCE_EXISTS] == 404  # sic: "exists" is a 404 there
    assert RESP_CODES[ErrorCodes.REQUEST_TOO_LARGE] == 413
    assert errors.status_for(ErrorCodes.ACCESS_DENIED_UNKNOWN) == 400


def test_error_bodies_have_the_boss_keys():
    """bosscore/error.py BossHTTPError: {'status', 'code', 'message'}; renderer_helper.py:
    429 and 403 of the renderers carry code 3004; Django's bare 500 page."""
    err = errors.resource_not_found("col9")
    assert json.loads(err.to_json()) == {
        "status": 404,
        "code": 4000,
        "message": "col9 does not exist.",
    }
    assert errors.throttled("api").body() == {
        "status": 429,
        "code": 3004,
        "message": "API is throttled. Expected available tomorrow.",
    }
    assert errors.access_denied().status == 403
    assert (
        errors.permission_denied("read", "col1").message
        == "Missing read permissions on the resource col1"
    )
    page = ServerError("boom").page
    assert (page.status, page.content_type) == (500, "text/html")
    assert b"502 Bad Gateway" in errors.gateway_error_page(502).body


# -- JSON shapes against intern ----------------------------------------------------------------


def test_intern_requests_are_accepted_and_responses_parse(tree):
    """intern/service/boss/v1/project.py: the bodies intern sends (_get_*_params) create each
    resource, and intern's parsers (_get_collection, _get_coordinate, _get_experiment,
    _get_channel) accept what comes back; keys as bosscore/serializers.py lists them."""
    service = ProjectService_1()
    coll = CollectionResource("col1", "my collection")
    frame = CoordinateFrameResource("frame1", "f", 0, 10, -5, 5, 3, 6, 1, 1, 1, "nanometers")
    exp = ExperimentResource(
        "exp1", "col1", "frame1", "e", 1, "isotropic", time_step=2, time_step_unit="nanoseconds"
    )
    source = ChannelResource("src", "col1", "exp1", "image", "s", 0, "uint8", 0)
    ann = ChannelResource("ann", "col1", "exp1", "annotation", "a", 0, "uint64", 0, sources=["src"])

    body = tree.create(COLL, service._get_resource_params(coll))
    assert list(body) == ["name", "public", "description", "experiments", "creator"]
    assert service._get_collection(body).description == "my collection"

    body = tree.create(FRAME, service._get_resource_params(frame))
    assert "creator" not in body and body["x_voxel_size"] == 1.0
    parsed = service._get_coordinate(body)
    assert (parsed.y_start, parsed.y_stop, parsed.voxel_unit) == (-5, 5, "nanometers")

    body = tree.create(EXP, service._get_resource_params(exp))
    assert list(body) == [
        "channels",
        "name",
        "public",
        "description",
        "collection",
        "coord_frame",
        "num_hierarchy_levels",
        "hierarchy_method",
        "num_time_samples",
        "time_step",
        "time_step_unit",
        "creator",
    ]
    parsed = service._get_experiment(body, "col1")
    assert (parsed.coord_frame, parsed.time_step, parsed.time_step_unit) == (
        "frame1",
        2,
        "nanoseconds",
    )

    tree.create(chan("src"), service._get_resource_params(source))
    body = tree.create(chan("ann"), service._get_resource_params(ann))
    assert list(body) == [
        "name",
        "public",
        "description",
        "experiment",
        "default_time_sample",
        "type",
        "base_resolution",
        "datatype",
        "creator",
        "sources",
        "downsample_status",
        "related",
        "storage_type",
        "bucket",
        "cv_path",
    ]
    parsed = service._get_channel(body, "col1", "exp1")
    assert (parsed.type, parsed.datatype, parsed.sources, parsed.cutout_ready) == (
        "annotation",
        "uint64",
        ["src"],
        True,
    )
    assert (body["experiment"], body["storage_type"], body["bucket"]) == ("exp1", "spdb", None)

    assert tree.get(EXP)["channels"] == ["src", "ann"]
    assert service._get_resource_list(tree.list("channel", EXP)) == ["src", "ann"]
    assert service._get_resource_list(tree.list("coord")) == ["frame1"]


def test_intern_updates_change_what_the_boss_lets_them(tree):
    """intern's update params (for_update=True) against the update serializers
    (bosscore/serializers.py *UpdateSerializer) and views_resource.py put()."""
    service = ProjectService_1()
    tree.create(COLL, {})
    tree.create(FRAME, FRAME_BODY)
    tree.create(EXP, {"coord_frame": "frame1", "time_step": 0, "time_step_unit": "seconds"})
    frame = CoordinateFrameResource("frame2", "renamed", 0, 99, 0, 99, 0, 99)
    body = tree.update(FRAME, service._get_resource_params(frame, for_update=True))
    assert (body["name"], body["description"], body["x_stop"]) == ("frame2", "renamed", 1024)
    exp = ExperimentResource("exp2", "col1", "frame2", "new", 2, "anisotropic")
    body = tree.update(EXP, service._get_resource_params(exp, for_update=True))
    assert (body["name"], body["num_hierarchy_levels"], body["coord_frame"]) == (
        "exp2",
        2,
        "frame2",
    )
    assert service._get_experiment(body, "col1").num_time_samples == 1


def test_null_time_step_unit_is_rendered_and_intern_cannot_parse_it(tree):
    """bosscore/models.py: Experiment.time_step and time_step_unit are nullable and default to
    null; the serializer renders null, which intern 1.4.2's ExperimentResource rejects
    (validate_time_units calls .lower()): a BOSS quirk reproduced, not fixed."""
    tree.create(COLL, {})
    tree.create(FRAME, FRAME_BODY)
    body = tree.create(EXP, {"coord_frame": "frame1"})
    assert (body["time_step"], body["time_step_unit"]) == (None, None)
    assert (body["num_hierarchy_levels"], body["hierarchy_method"], body["num_time_samples"]) == (
        1,
        "anisotropic",
        1,
    )
    with pytest.raises(AttributeError):
        ProjectService_1()._get_experiment(body, "col1")


# -- errors of the resource views --------------------------------------------------------------


def test_duplicate_names_are_400_with_code_1003(exp_tree):
    """views_resource.py post(): the serializer's unique checks, answered
    BossHTTPError(str(serializer.errors), INVALID_POST_ARGUMENT), not 409."""
    err = raises(ErrorCodes.INVALID_POST_ARGUMENT, 400, exp_tree.create, COLL, {})
    assert "collection with this Name of the Collection already exists." in err.message
    err = raises(ErrorCodes.INVALID_POST_ARGUMENT, 400, exp_tree.create, FRAME, FRAME_BODY)
    assert "coordinate frame with this Name" in err.message
    err = raises(
        ErrorCodes.INVALID_POST_ARGUMENT, 400, exp_tree.create, EXP, {"coord_frame": "frame1"}
    )
    assert err.message == (
        "{'non_field_errors': [ErrorDetail(string='The fields collection, name must "
        "make a unique set.', code='unique')]}"
    )
    image(exp_tree, "ch1")
    err = raises(ErrorCodes.INVALID_POST_ARGUMENT, 400, image, exp_tree, "ch1")
    assert "The fields experiment, name must make a unique set." in err.message


def test_in_use_deletes_are_400_with_code_4003(exp_tree):
    """views_resource.py delete(): INTEGRITY_ERROR while live children (or derived channels)
    reference the resource."""
    image(exp_tree, "src")
    exp_tree.create(chan("ann"), {"type": "annotation", "datatype": "uint64", "sources": ["src"]})
    err = raises(ErrorCodes.INTEGRITY_ERROR, 400, exp_tree.delete, COLL)
    assert err.message.startswith("Collection col1 has experiments")
    raises(ErrorCodes.INTEGRITY_ERROR, 400, exp_tree.delete, FRAME)
    raises(ErrorCodes.INTEGRITY_ERROR, 400, exp_tree.delete, EXP)
    raises(ErrorCodes.INTEGRITY_ERROR, 400, exp_tree.delete, chan("src"))
    exp_tree.delete(chan("ann"))
    exp_tree.delete(chan("src"))  # its only derived channel is marked for deletion
    exp_tree.delete(EXP)
    exp_tree.delete(FRAME)
    exp_tree.delete(COLL)


def test_missing_resources_are_404_with_code_4000(exp_tree):
    """views_resource.py: BossResourceNotFoundError names the first missing level; an
    experiment's unknown coordinate frame too; the list views let DoesNotExist escape (500)."""
    err = raises(ErrorCodes.RESOURCE_NOT_FOUND, 404, exp_tree.get, ResourcePath(collection="nope"))
    assert err.message == "nope does not exist."
    raises(ErrorCodes.RESOURCE_NOT_FOUND, 404, exp_tree.get, chan("nope"))
    raises(ErrorCodes.RESOURCE_NOT_FOUND, 404, exp_tree.delete, ResourcePath(coord="nope"))
    raises(
        ErrorCodes.RESOURCE_NOT_FOUND,
        404,
        exp_tree.update,
        ResourcePath(collection="col1", experiment="x"),
        {},
    )
    err = raises(
        ErrorCodes.RESOURCE_NOT_FOUND,
        404,
        exp_tree.create,
        ResourcePath(collection="col1", experiment="e2"),
        {"coord_frame": "nowhere"},
    )
    assert err.message == "nowhere does not exist."
    err = raises(
        ErrorCodes.INVALID_POST_ARGUMENT,
        400,
        exp_tree.create,
        ResourcePath(collection="col1", experiment="e2"),
        {},
    )
    assert err.message == "This request requires a valid coordinate frame"
    with pytest.raises(ServerError):
        exp_tree.list("experiment", ResourcePath(collection="nope"))


def test_bad_names_and_values_are_400_with_drf_messages(exp_tree):
    """bosscore/models.py NameValidator ('Invalid Name.') and the serializers' field checks,
    rendered as DRF 3.11 error dicts (views_resource.py post())."""
    err = raises(
        ErrorCodes.INVALID_POST_ARGUMENT,
        400,
        exp_tree.create,
        ResourcePath(collection="bad.name"),
        {},
    )
    assert err.message == "{'name': [ErrorDetail(string='Invalid Name.', code='invalid')]}"
    err = raises(
        ErrorCodes.INVALID_POST_ARGUMENT,
        400,
        exp_tree.create,
        ResourcePath(coord="f2"),
        {"x_start": "a"},
    )
    assert (
        "'x_start': [ErrorDetail(string='A valid integer is required.', code='invalid')]"
        in err.message
    )
    assert (
        "'voxel_unit': [ErrorDetail(string='This field is required.', code='required')]"
        in err.message
    )
    err = raises(
        ErrorCodes.INVALID_POST_ARGUMENT,
        400,
        exp_tree.create,
        ResourcePath(collection="col1", experiment="e2"),
        {"coord_frame": "frame1", "hierarchy_method": "iso"},
    )
    assert '"iso" is not a valid choice.' in err.message


def test_datatypes_follow_the_model_not_the_channel_type(exp_tree):
    """bosscore/models.py Channel.DATATYPE_CHOICES: uint8/16/32/64 for any type (an annotation
    channel of uint8 is created, bosscore/test/test_resource_views.py); others refused."""
    err = raises(
        ErrorCodes.INVALID_POST_ARGUMENT,
        400,
        exp_tree.create,
        chan("c"),
        {"type": "image", "datatype": "float32"},
    )
    assert (
        err.message
        == "{'datatype': [ErrorDetail(string='\"float32\" is not a valid choice.', code='invalid_choice')]}"
    )
    raises(ErrorCodes.INVALID_POST_ARGUMENT, 400, exp_tree.create, chan("c"), {"type": "image"})
    assert (
        exp_tree.create(chan("a8"), {"type": "annotation", "datatype": "uint8"})["datatype"]
        == "uint8"
    )
    assert (
        exp_tree.create(chan("i32"), {"type": "image", "datatype": "uint32"})["datatype"]
        == "uint32"
    )
    err = raises(
        ErrorCodes.INVALID_POST_ARGUMENT,
        400,
        exp_tree.create,
        chan("t"),
        {"type": "image", "datatype": "uint8", "default_time_sample": 1},
    )
    assert "less that the experiments num_time_samples 1." in err.message


def test_channel_rules_of_the_views(exp_tree):
    """views_resource.py ChannelDetail: source/related validation (1003), admin-only bucket
    (403, 3001), cloudvol defaults, sources replaced by a PUT that omits them, readonly
    fields refused, a rename onto a sibling left to the database (500)."""
    image(exp_tree, "a")
    image(exp_tree, "b")
    err = raises(
        ErrorCodes.INVALID_POST_ARGUMENT, 400, image, exp_tree, "c", sources=["a"], related=["a"]
    )
    assert err.message == "Related channels have to be different from source channels"
    raises(ErrorCodes.INVALID_POST_ARGUMENT, 400, image, exp_tree, "c", sources=["zz"])
    raises(
        ErrorCodes.MISSING_PERMISSION, 403, image, exp_tree, "c", bucket="my.bucket", admin=False
    )
    cv = image(exp_tree, "cv", storage_type="cloudvol")
    assert (cv["cv_path"], cv["downsample_status"]) == ("/col1/exp1/cv", "DOWNSAMPLED")
    body = image(exp_tree, "c", sources=["a"], related=["b"])
    assert exp_tree.get(chan("b"))["related"] == ["c"]  # related is symmetric
    body = exp_tree.update(chan("c"), {"public": True})
    assert (body["public"], body["sources"], body["related"]) == (True, [], [])
    err = raises(
        ErrorCodes.INVALID_POST_ARGUMENT, 400, exp_tree.update, chan("c"), {"datatype": "uint16"}
    )
    assert (
        err.message == "{'fields': [\"Cannot update the following readonly fields:['datatype'].\"]}"
    )
    with pytest.raises(ServerError):
        exp_tree.update(chan("c"), {"name": "a"})
    assert exp_tree.update(chan("c"), {"name": "d"})["name"] == "d"


# -- soft deletes, persistence, concurrency ---------------------------------------------------


def test_soft_deletes_hide_but_keep_the_name(exp_tree):
    """views_resource.py delete() sets to_be_deleted; get() answers 404/4005; the list views
    and children lists leave the row out; the unique checks still see it (400/1003) until the
    delete step functions remove it (boss-tools activities/delete_cuboid.py), after which the
    name is free and the new channel gets a new id; request.py's data checks answer 4005."""
    image(exp_tree, "ch1")
    old_key = exp_tree.resolve(chan("ch1")).lookup_key
    exp_tree.delete(chan("ch1"))
    err = raises(ErrorCodes.RESOURCE_MARKED_FOR_DELETION, 404, exp_tree.get, chan("ch1"))
    assert err.message == "Invalid Request. This Resource has been marked for deletion"
    err = raises(ErrorCodes.RESOURCE_MARKED_FOR_DELETION, 404, exp_tree.resolve, chan("ch1"))
    assert err.message == "Invalid Request. This resource ch1 has been marked for deletion"
    assert exp_tree.list("channel", EXP) == {"channels": []}
    assert exp_tree.get(EXP)["channels"] == []
    exp_tree.delete(chan("ch1"))  # again: 204, as the BOSS
    raises(ErrorCodes.INVALID_POST_ARGUMENT, 400, image, exp_tree, "ch1")
    assert exp_tree.purge() == [old_key]
    image(exp_tree, "ch1")
    new_key = exp_tree.resolve(chan("ch1")).lookup_key
    assert new_key != old_key and new_key.startswith("1&1&")


def test_public_collections_stay_listed_after_delete(tree):
    """views_resource.py CollectionList: the union with public collections does not exclude
    soft-deleted ones."""
    tree.create(COLL, {"public": True})
    tree.create(ResourcePath(collection="col2"), {})
    tree.delete(COLL)
    tree.delete(ResourcePath(collection="col2"))
    assert tree.list("collection") == {"collections": ["col1"]}


def test_tree_survives_reopening(tmp_path):
    """The emulator's store (DESIGN.md, `--store DIR`): resources, id counters (spdb
    ObjectIndices.reserve_ids, starting at 1) and metadata persist; the database is in WAL."""
    path = tmp_path / "tree.sqlite"
    with ResourceTree.open(path) as tree:
        tree.create(COLL, {})
        tree.create(FRAME, FRAME_BODY)
        tree.create(EXP, {"coord_frame": "frame1"})
        image(tree, "ch1")
        key = tree.resolve(chan("ch1")).lookup_key
        assert tree.reserve_ids(key, 10) == 1
        tree.meta_set(key, "mkey", "v")
    with ResourceTree.open(path) as tree:
        assert tree.get(chan("ch1"))["datatype"] == "uint8"
        assert tree.reserve_ids(key, 5) == 11
        assert tree.meta_keys(key) == ["mkey"] and tree.meta_get(key, "mkey") == "v"
        resolved = tree.resolve(chan("ch1"))
        assert (resolved.coord_frame["z_stop"], resolved.experiment["name"]) == (64, "exp1")
    with sqlite3.connect(path) as db:
        assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_concurrent_creates_from_threads(exp_tree):
    """views_resource.py runs each request in @transaction.atomic: concurrent creates of one
    name make one channel and 400/1003 for the rest; distinct names all succeed with
    distinct ids; concurrent reservations never overlap."""
    outcomes: list[str] = []
    firsts: list[int] = []
    barrier = threading.Barrier(8)

    def work(worker: int) -> None:
        barrier.wait()
        for i in range(10):
            image(exp_tree, f"w{worker}_{i}")
            try:
                image(exp_tree, "shared")
                outcomes.append("created")
            except BossError as err:
                outcomes.append(str(int(err.code)))
            firsts.append(exp_tree.reserve_ids("1&1&1", 3))

    threads = [threading.Thread(target=work, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not any(thread.is_alive() for thread in threads)
    assert outcomes.count("created") == 1 and outcomes.count("1003") == 79
    assert len(exp_tree.list("channel", EXP)["channels"]) == 81
    assert sorted(firsts) == list(range(1, 240, 3))
