"""The fleet model's arithmetic (scripts/fleet_model.py)."""

from __future__ import annotations

import json
import os
import sys

import pytest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
import fleet_model  # noqa: E402

# A custom-networking node's warm-up: the ENIConfig checked, one ENI created, attached and
# marked delete-on-termination.
WARM_UP = {
    "DescribeSubnets": 1,
    "DescribeSecurityGroups": 1,
    "CreateNetworkInterface": 1,
    "AttachNetworkInterface": 1,
    "ModifyNetworkInterfaceAttribute": 1,
}


def test_buckets_are_the_emulators():
    assert fleet_model.bucket("AttachNetworkInterface") == (50, 5.0)
    assert fleet_model.bucket("CreateNetworkInterface") == (100, 5.0)
    assert fleet_model.bucket("DescribeNetworkInterfaces") == (100, 20.0)
    assert fleet_model.bucket("CreateTags") == (100, 10.0)


def test_an_action_within_its_burst_costs_no_time():
    assert fleet_model.action_floor("AttachNetworkInterface", 50) == 0.0
    assert fleet_model.action_floor("AttachNetworkInterface", 10) == 0.0
    assert fleet_model.action_floor("AttachNetworkInterface", 51) == pytest.approx(0.2)


def test_one_hundred_nodes_wait_for_the_attach_bucket():
    f = fleet_model.floor(fleet_model.fleet_calls(WARM_UP, 100))
    # 100 attaches, 50 at once, then 5 per second.
    assert f.binding == "AttachNetworkInterface"
    assert f.seconds == pytest.approx(10.0)
    assert f.by_action["CreateNetworkInterface"] == 0.0
    assert f.by_action["DescribeSubnets"] == 0.0


def test_large_fleets_and_which_bucket_binds():
    rows = fleet_model.model(WARM_UP, [1000, 5000], ratio=1.2)
    thousand, five = rows
    assert thousand.floor.binding == "AttachNetworkInterface"
    assert thousand.floor.seconds == pytest.approx((1000 - 50) / 5)
    assert thousand.floor.by_action["CreateNetworkInterface"] == pytest.approx((1000 - 100) / 5)
    assert thousand.floor.by_action["DescribeSubnets"] == pytest.approx((1000 - 100) / 20)
    assert five.floor.seconds == pytest.approx(990.0)
    assert five.expected == pytest.approx(990.0 * 1.2)
    assert five.total_calls == 25000


def test_a_describe_heavy_profile_binds_on_its_describe():
    profile = dict(WARM_UP, DescribeNetworkInterfaces=5)
    f = fleet_model.floor(fleet_model.fleet_calls(profile, 1000))
    # 5000 describes at 20/s after a burst of 100: 245 s, more than the attach's 190 s.
    assert f.binding == "DescribeNetworkInterfaces"
    assert f.seconds == pytest.approx(245.0)


def test_a_small_fleet_has_no_binding_bucket():
    f = fleet_model.floor(fleet_model.fleet_calls(WARM_UP, 10))
    assert f.binding is None and f.seconds == 0.0
    assert fleet_model.floor({}).binding is None


def test_share_of_a_bucket_at_rest():
    # 5000 nodes, 2 calls an hour each, against a 20/s describe bucket: under 14 %.
    share = fleet_model.describe_share_at_rest(2, 5000, "DescribeNetworkInterfaces")
    assert share == pytest.approx(10000 / 3600 / 20)


def test_the_command_line(tmp_path, capsys):
    profile = tmp_path / "calls.json"
    profile.write_text(json.dumps(WARM_UP))
    assert fleet_model.main(["--profile", str(profile), "--nodes", "100", "5000", "--ratio", "1.1"]) == 0
    out = capsys.readouterr().out
    assert "| 5000 | 25000 |" in out
    assert "AttachNetworkInterface" in out and "16.5 min (990 s)" in out
    with pytest.raises(SystemExit):
        fleet_model.main(["--profile", str(profile), "--nodes", "0"])


def test_the_command_line_at_rest(tmp_path, capsys):
    profile = tmp_path / "calls.json"
    profile.write_text(json.dumps(WARM_UP))
    rest = tmp_path / "rest.json"
    rest.write_text(json.dumps({"DescribeNetworkInterfaces": 1.0}))
    assert fleet_model.main(["--profile", str(profile), "--nodes", "5000", "--rest", str(rest)]) == 0
    out = capsys.readouterr().out
    # 5000 calls an hour: 1.39/s of a 20/s refill.
    assert "| 5000 | 1.39/s = 6.9 % of the refill |" in out
    rest.write_text(json.dumps({"DescribeNetworkInterfaces": -1}))
    with pytest.raises(SystemExit):
        fleet_model.main(["--profile", str(profile), "--rest", str(rest)])
