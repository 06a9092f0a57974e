"""Watches and lists: ordering, resume, expiry, bookmarks, selectors, pagination."""

from __future__ import annotations

import json
from typing import Any

import pytest
from kubernetes import client
from kubernetes.client.rest import ApiException
from test_apiserver_helpers import http, watch_events

from dev_cluster.apiserver.testing import ThreadedAPIServer, start_in_thread

CMS = "/api/v1/namespaces/default/configmaps"


@pytest.fixture
def small() -> Any:
    """A server keeping only 20 events of history, so expiry is reachable."""
    with start_in_thread(history_size=20, bookmark_interval=0.3) as srv:
        yield srv


def _cm(name: str, **labels: str) -> dict[str, Any]:
    return {"metadata": {"name": name, "labels": labels}}


def test_watch_replays_in_order_and_resumes(small: ThreadedAPIServer) -> None:
    _code, first = http(small.url, "POST", CMS, _cm("w0"))
    start = first["metadata"]["resourceVersion"]
    for i in range(1, 4):
        http(small.url, "POST", CMS, _cm(f"w{i}"))
    http(small.url, "PATCH", f"{CMS}/w1", {"data": {"a": "1"}}, "application/merge-patch+json")
    http(small.url, "DELETE", f"{CMS}/w2")
    events = watch_events(small.url, f"{CMS}?watch=true&resourceVersion={start}", 5)
    assert [(e["type"], e["object"]["metadata"]["name"]) for e in events] == [
        ("ADDED", "w1"),
        ("ADDED", "w2"),
        ("ADDED", "w3"),
        ("MODIFIED", "w1"),
        ("DELETED", "w2"),
    ]
    rvs = [int(e["object"]["metadata"]["resourceVersion"]) for e in events]
    assert rvs == sorted(rvs) and rvs[0] > int(start)
    # The DELETED event carries the final object.
    assert events[-1]["object"]["metadata"]["name"] == "w2"
    resumed = watch_events(small.url, f"{CMS}?watch=true&resourceVersion={rvs[2]}", 2)
    assert [e["type"] for e in resumed] == ["MODIFIED", "DELETED"]


def test_watch_without_version_lists_first(small: ThreadedAPIServer) -> None:
    http(small.url, "POST", CMS, _cm("initial"))
    events = watch_events(small.url, f"{CMS}?watch=true", 1)
    assert events[0]["type"] == "ADDED"
    assert events[0]["object"]["metadata"]["name"] == "initial"


def test_expired_version_is_410(small: ThreadedAPIServer) -> None:
    for i in range(30):
        http(small.url, "POST", CMS, _cm(f"e{i}"))
    events = watch_events(small.url, f"{CMS}?watch=true&resourceVersion=2", 1)
    assert events[0]["type"] == "ERROR"
    status = events[0]["object"]
    assert (status["kind"], status["code"], status["reason"]) == ("Status", 410, "Expired")
    assert status["message"].startswith("too old resource version: 2 (")


def test_continue_pagination_and_expiry(small: ThreadedAPIServer) -> None:
    for i in range(5):
        http(small.url, "POST", CMS, _cm(f"p{i}"))
    code, page1 = http(small.url, "GET", f"{CMS}?limit=2")
    assert [i["metadata"]["name"] for i in page1["items"]] == ["p0", "p1"]
    assert page1["metadata"]["remainingItemCount"] == 3
    # Changes after the first page do not leak into later pages (consistent snapshot).
    http(small.url, "POST", CMS, _cm("p5"))
    http(small.url, "DELETE", f"{CMS}/p3")
    token = page1["metadata"]["continue"]
    code, page2 = http(small.url, "GET", f"{CMS}?limit=2&continue={token}")
    assert [i["metadata"]["name"] for i in page2["items"]] == ["p2", "p3"]
    code, page3 = http(small.url, "GET", f"{CMS}?limit=2&continue={page2['metadata']['continue']}")
    assert [i["metadata"]["name"] for i in page3["items"]] == ["p4"]
    assert "continue" not in page3["metadata"]
    for i in range(30):
        http(small.url, "POST", CMS, _cm(f"q{i}"))
    code, body = http(small.url, "GET", f"{CMS}?limit=2&continue={token}")
    assert code == 410 and body["reason"] == "Expired"
    assert body["message"].startswith("The provided continue parameter is too old")


def test_bookmarks_and_timeout(small: ThreadedAPIServer) -> None:
    _code, listed = http(small.url, "GET", CMS)
    rv = listed["metadata"]["resourceVersion"]
    events = watch_events(
        small.url,
        f"{CMS}?watch=true&resourceVersion={rv}&allowWatchBookmarks=true&timeoutSeconds=5",
        1,
    )
    assert events[0]["type"] == "BOOKMARK"
    assert int(events[0]["object"]["metadata"]["resourceVersion"]) >= int(rv)
    # timeoutSeconds ends the stream: reading everything returns instead of hanging.
    import urllib.request

    with urllib.request.urlopen(
        small.url + f"{CMS}?watch=true&resourceVersion={rv}&timeoutSeconds=1", timeout=10
    ) as resp:
        assert resp.read() == b""


def test_send_initial_events_ends_with_marked_bookmark(small: ThreadedAPIServer) -> None:
    http(small.url, "POST", CMS, _cm("si"))
    events = watch_events(
        small.url,
        f"{CMS}?watch=true&sendInitialEvents=true&resourceVersionMatch=NotOlderThan"
        "&allowWatchBookmarks=true",
        2,
    )
    assert events[0]["type"] == "ADDED"
    assert events[1]["type"] == "BOOKMARK"
    assert events[1]["object"]["metadata"]["annotations"] == {"k8s.io/initial-events-end": "true"}


def test_label_selectors_on_list_and_watch(small: ThreadedAPIServer) -> None:
    http(small.url, "POST", CMS, _cm("l1", app="a", tier="web"))
    http(small.url, "POST", CMS, _cm("l2", app="b", tier="db"))
    _, rv_list = http(small.url, "POST", CMS, _cm("l3", app="c"))
    cases = {
        "app=a": ["l1"],
        "app!=a": ["l2", "l3"],
        "app in (a,b)": ["l1", "l2"],
        "app notin (a,b)": ["l3"],
        "tier": ["l1", "l2"],
        "!tier": ["l3"],
        "app=a,tier=web": ["l1"],
    }
    for selector, expected in cases.items():
        _code, body = http(small.url, "GET", f"{CMS}?labelSelector={_q(selector)}")
        names = [i["metadata"]["name"] for i in body["items"] if i["metadata"]["name"][0] == "l"]
        assert names == expected, selector
    rv = rv_list["metadata"]["resourceVersion"]
    # An object that stops matching is DELETED for the watcher; one that starts is ADDED.
    http(
        small.url,
        "PATCH",
        f"{CMS}/l1",
        {"metadata": {"labels": {"app": "z"}}},
        "application/merge-patch+json",
    )
    http(
        small.url,
        "PATCH",
        f"{CMS}/l3",
        {"metadata": {"labels": {"app": "a"}}},
        "application/merge-patch+json",
    )
    events = watch_events(
        small.url, f"{CMS}?watch=true&resourceVersion={rv}&labelSelector=app%3Da", 2
    )
    assert [(e["type"], e["object"]["metadata"]["name"]) for e in events] == [
        ("DELETED", "l1"),
        ("ADDED", "l3"),
    ]


def _q(text: str) -> str:
    from urllib.parse import quote

    return quote(text)


def test_field_selectors(small: ThreadedAPIServer) -> None:
    pods = "/api/v1/namespaces/default/pods"
    for name, node in (("f1", "n1"), ("f2", "n2")):
        http(
            small.url,
            "POST",
            pods,
            {
                "metadata": {"name": name},
                "spec": {"nodeName": node, "containers": [{"name": "c", "image": "i"}]},
            },
        )
    code, body = http(small.url, "GET", f"{pods}?fieldSelector=spec.nodeName%3Dn2")
    assert [p["metadata"]["name"] for p in body["items"]] == ["f2"]
    code, body = http(
        small.url, "GET", f"{pods}?fieldSelector=status.phase%3DPending,metadata.name!%3Df2"
    )
    assert [p["metadata"]["name"] for p in body["items"]] == ["f1"]
    code, body = http(small.url, "GET", "/api/v1/pods?fieldSelector=metadata.namespace%3Ddefault")
    assert len(body["items"]) == 2
    code, body = http(small.url, "GET", f"{pods}?fieldSelector=spec.bogus%3Dx")
    assert code == 400 and body["message"] == "field label not supported: spec.bogus"


def test_watch_all_namespaces_with_client(small: ThreadedAPIServer) -> None:
    from kubernetes import watch
    from test_apiserver_helpers import api_client

    api = api_client(small.url)
    core = client.CoreV1Api(api)
    core.create_namespace({"metadata": {"name": "wa"}})
    rv = core.list_config_map_for_all_namespaces().metadata.resource_version
    core.create_namespaced_config_map("wa", _cm("x"))
    core.create_namespaced_config_map("default", _cm("y"))
    seen = []
    w = watch.Watch()
    for event in w.stream(
        core.list_config_map_for_all_namespaces, resource_version=rv, timeout_seconds=5
    ):
        seen.append((event["object"].metadata.namespace, event["object"].metadata.name))
        if len(seen) == 2:
            w.stop()
    assert seen == [("wa", "x"), ("default", "y")]
    with pytest.raises(ApiException) as exc:
        core.read_namespaced_config_map("x", "default")
    assert json.loads(exc.value.body)["reason"] == "NotFound"
    api.close()
