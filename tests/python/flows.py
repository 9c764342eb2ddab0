"""The checks of uwsgiit-py's test-suite (spec §9.3), run against a live server.

usage: python3 flows.py <api url> <username> <password> <container uid> <domain id>

Exits non-zero on the first failure, printing what failed.
"""

import json
import os
import sys
import uuid

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from uwsgi_client import UwsgiItClient  # noqa: E402


class Failed(Exception):
    pass


def check(condition, what, response=None):
    if not condition:
        raise Failed("%s%s" % (what, "" if response is None else "\n  response: %r" % (response,)))
    print("ok   %s" % what)


def ok(response, what):
    check(not response.error, "%s is not an error" % what, response)
    return response


def flows(url, username, password, uid, domain_id):
    client = UwsgiItClient(username, password, url)
    anonymous = UwsgiItClient(None, None, url)

    # news: with and without credentials (None:None), JSON-decodable.
    for who, c in (("with credentials", client), ("None:None", anonymous)):
        r = ok(c.news(), "news %s" % who)
        check(isinstance(r.json(), list), "news %s is a JSON list" % who, r)
    check(len(client.news().json()) >= len(anonymous.news().json()), "customers see at least the public news")

    # me / update_me.
    me = ok(client.me(), "me").json()
    for key in ("email", "vat", "company", "uuid", "containers", "servers"):
        check(key in me, "me has %s" % key, me)
    company = "Company %s" % uuid.uuid4().hex[:8]
    ok(client.update_me({"company": company}), "update_me company")
    check(client.me().json()["company"] == company, "me()['company'] after update_me")

    # Password change round trip.
    new_password = password + "-2"
    ok(client.update_me({"password": new_password}), "update_me password")
    check(client.me().status_code == 401, "the old password no longer works")
    client.password = new_password
    ok(client.me(), "me with the new password")
    ok(client.update_me({"password": password}), "update_me password back")
    client.password = password

    # distros / container_set_distro (ids passed as strings, used as-is).
    distros = ok(client.distros(), "distros").json()
    check(distros and all(isinstance(d["id"], int) for d in distros), "distros have integer ids", distros)
    did = distros[-1]["id"]
    ok(client.container_set_distro(str(uid), did), "container_set_distro")
    check(client.container(str(uid)).json()["distro"] == did, "container()['distro'] == distro id")

    # ssh keys round trip.
    ok(client.container_set_keys(uid, ["ssh-rsa miao"]), "container_set_keys")
    check(client.container(uid).json()["ssh_keys"] == ["ssh-rsa miao"], "ssh keys round trip")

    # domain(100) → 404; add_domain(random) → FORBIDDEN in the message.
    r = client.domain(100)
    check(r.status_code == 404 and r.error, "domain(100) is a 404", r)
    check("404 Client Error: NOT FOUND for url: " in r.umessage, "404 message has NOT FOUND", r.umessage)
    name = str(uuid.uuid4())
    r = client.add_domain(name)
    check(r.error, "add_domain without TXT record is an error", r)
    check("FORBIDDEN" in r.umessage, "add_domain error message contains FORBIDDEN", r.umessage)
    check(r.umessage == "403 Client Error: FORBIDDEN for url: %s/domains" % url.rstrip("/"), "exact requests-style message", r.umessage)
    r = client.delete_domain(name)
    check(r.status_code == 404, "delete_domain of an unknown name is a 404", r)

    # tags.
    r = ok(client.create_tag("mytag"), "create_tag")
    check(r.status_code == 201, "create_tag answers 201", r)
    tag_id = r.json()["id"]
    check(isinstance(tag_id, int), "create_tag returns an integer id", r)
    check(any(t["id"] == tag_id for t in ok(client.list_tags(), "list_tags").json()), "new tag listed")
    ok(client.update_domain(domain_id, {"tags": ["mytag"], "note": "n"}), "update_domain")
    check(client.domain(domain_id).json()["tags"] == ["mytag"], "domain tagged")
    ok(client.update_container(uid, {"tags": ["mytag"]}), "update_container tags")
    tagged = ok(client.containers(tags=["mytag", "other"]), "containers(tags=...)").json()
    check([c["uid"] for c in tagged] == [int(uid)], "containers filtered by tag", tagged)
    check(len(ok(client.domains(tags=["mytag"]), "domains(tags=...)").json()) == 1, "domains filtered by tag")
    r = ok(client.delete_tag(tag_id), "delete_tag")
    check(r.json() == {"message": "Ok"}, "delete_tag answers Ok", r)
    check(all(t["id"] != tag_id for t in client.list_tags().json()), "deleted tag absent from list_tags")
    check(ok(client.containers(tags=["mytag"]), "containers(tags) after delete").json() == [], "no container carries the deleted tag")
    ok(client.domains(tags=["nothing"]), "domains(tags=...) empty")

    # reboot.
    ok(client.reboot_container(uid), "reboot_container")

    # metrics.
    r = ok(client.container_metric(uid, "io.read"), "container_metric io.read")
    check(isinstance(r.json(), list), "container metric is a JSON array", r)
    r = ok(client.container_metric(uid, "cpu", {"year": 2024, "month": 2, "day": 29}), "container_metric with a day")
    check(isinstance(r.json(), list), "container metric of a day is a JSON array", r)
    first_domain = ok(client.domains(), "domains").json()[0]["id"]
    r = ok(client.domain_metric(first_domain, "net.rx"), "domain_metric net.rx")
    check(isinstance(r.json(), list), "domain metric is a JSON array", r)

    # loopboxes.
    r = ok(client.create_loopbox(uid, "myloopbox", "myloop"), "create_loopbox")
    check(r.json()["message"] == "Created", "create_loopbox message Created", r)
    found = [
        b
        for b in ok(client.loopboxes(), "loopboxes").json()
        if b["container"] == int(uid) and b["filename"] == "myloopbox" and b["mountpoint"] == "myloop"
    ]
    check(len(found) == 1, "new loopbox listed", found)
    lid = found[0]["id"]
    check(found[0]["ro"] is False, "ro sent as a JSON boolean false", found)
    check(len(ok(client.loopboxes(container=uid), "loopboxes(container=...)").json()) == 1, "loopboxes by container")
    ok(client.loopbox(lid), "loopbox(id)")
    r = ok(client.update_loopbox(lid, {"tags": []}), "update_loopbox")
    r = ok(client.delete_loopbox(lid), "delete_loopbox")
    check(r.json()["message"] == "Ok", "delete_loopbox message Ok", r)
    check(client.loopbox(lid).status_code == 403, "deleted loopbox is gone")

    # alarms.
    klass = "class-%s" % uuid.uuid4().hex[:8]
    r = ok(client.create_alarm(uid, "myalarm", {"class": klass}), "create_alarm")
    check(r.json()["message"] == "Created", "create_alarm message Created", r)
    alarms = ok(client.alarms({"class": klass}), "alarms(class)").json()
    check(isinstance(alarms, list) and len(alarms) == 1, "alarms(class) is a bare list of one", alarms)
    check(alarms[0]["msg"] == json.dumps("myalarm"), "the JSON-encoded message is stored verbatim (quotes included)", alarms)
    with_total = ok(client.alarms({"class": klass, "with_total": 1}), "alarms with_total").json()
    check(with_total["total"] == 1 and len(with_total["alarms"]) == 1, "with_total shape", with_total)
    aid = alarms[0]["id"]
    ok(client.alarm(aid), "alarm(id)")
    r = ok(client.delete_alarm(aid), "delete_alarm")
    check(r.json()["message"] == "Ok", "delete_alarm message Ok", r)
    try:
        client.alarms({"bogus": 1})
        check(False, "client-side whitelist of alarm filters")
    except KeyError:
        check(True, "client-side whitelist of alarm filters")

    # alarm key: a GET, JSON, and it authenticates raises.
    r = ok(client.create_alarm_key(uid), "create_alarm_key")
    key = r.json()["alarm_key"]
    check(r.method == "GET" and len(key) == 36, "create_alarm_key is a GET returning a key", r)
    keyed = UwsgiItClient(None, None, url)
    r = keyed._send("POST", keyed._url("alarms", "raise", uid), params={"key": key, "class": klass}, body="by key", auth=False)
    check(r.status_code == 201, "raise with ?key=", r)

    # Transport: no request had a trailing slash or a Content-Type.
    for method, sent_url, headers, body in client.requests:
        path = sent_url.split("?")[0]
        check(not path.endswith("/"), "no trailing slash in %s %s" % (method, sent_url))
        check("Content-Type" not in headers, "no Content-Type in %s %s" % (method, sent_url))


def main():
    if len(sys.argv) != 6:
        print(__doc__)
        return 2
    url, username, password, uid, domain_id = sys.argv[1:]
    try:
        flows(url, username, password, uid, int(domain_id))
    except Failed as e:
        print("FAILED: %s" % e)
        return 1
    print("all flows passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
