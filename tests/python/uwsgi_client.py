"""A client for the uwsgi.it customer API that behaves like xrmx/uwsgiit-py 0.10.0
(spec ../../shared/spec/uwsgi-rest-compat.md §9), written with the standard library only.

What it reproduces on the wire:
* URLs: the base URL and the path segments joined with '/', each string segment stripped
  of leading/trailing '/', integers in decimal -- so no request ever ends with a slash;
* HTTP basic auth on every call, news included (``None:None`` without credentials, as
  ``requests`` sends it);
* GET parameters in the query string (none when empty);
* POST bodies ``json.dumps(data)`` sent WITHOUT a Content-Type header;
* DELETE with a JSON body only when there is data (only ``delete_domain``), otherwise an
  empty body with ``Content-Length: 0``;
* ``create_alarm_key`` is a GET;
* error = status >= 400, with ``umessage`` built from the reason phrase like requests'
  ``raise_for_status``: ``"<code> Client Error: <REASON> for url: <url>"``.
"""

import base64
import http.client
import json
import urllib.parse


class Response:
    """What uwsgiit-py hands back: the answer plus ``error``/``umessage``."""

    def __init__(self, method, url, status, reason, headers, body):
        self.method = method
        self.url = url
        self.status_code = status
        self.reason = reason
        self.headers = headers
        self.content = body
        self.text = body.decode("utf-8", "replace")
        self.error = status >= 400
        self.umessage = None
        if 400 <= status < 500:
            self.umessage = "%s Client Error: %s for url: %s" % (status, reason, url)
        elif status >= 500:
            self.umessage = "%s Server Error: %s for url: %s" % (status, reason, url)

    def json(self):
        return json.loads(self.text)

    def __repr__(self):
        return "<Response %s %s: %s %s %r>" % (self.method, self.url, self.status_code, self.reason, self.text[:300])


class UwsgiItClient:
    def __init__(self, username, password, url):
        self.username = username
        self.password = password
        self.url = url
        self.requests = []  # (method, url, headers, body) of every request sent, for checks

    # -- plumbing ---------------------------------------------------------------------

    def _url(self, *parts):
        segments = [self.url.strip("/")]
        for part in parts:
            segments.append(str(part) if isinstance(part, int) else str(part).strip("/"))
        return "/".join(segments)

    def _auth(self):
        token = "%s:%s" % (self.username, self.password)
        return "Basic " + base64.b64encode(token.encode("utf-8")).decode("ascii")

    def _send(self, method, url, params=None, body=None, auth=True):
        if params:
            url = url + "?" + urllib.parse.urlencode(params)
        parsed = urllib.parse.urlsplit(url)
        path = parsed.path + ("?" + parsed.query if parsed.query else "")
        headers = {
            "User-Agent": "python-requests/2.31.0 (uwsgi_client.py)",
            "Accept": "*/*",
        }
        if auth:
            headers["Authorization"] = self._auth()
        data = None
        if body is not None:
            data = body.encode("utf-8")
            headers["Content-Length"] = str(len(data))
        elif method in ("POST", "DELETE"):
            headers["Content-Length"] = "0"
        self.requests.append((method, url, dict(headers), body))
        conn = http.client.HTTPConnection(parsed.hostname, parsed.port or 80, timeout=60)
        try:
            # skip_accept_encoding: like requests, we set our own headers; http.client adds
            # no Content-Type on its own.
            conn.putrequest(method, path, skip_accept_encoding=True)
            for key, value in headers.items():
                conn.putheader(key, value)
            conn.endheaders(data)
            answer = conn.getresponse()
            raw = answer.read()
            return Response(method, url, answer.status, answer.reason, dict(answer.getheaders()), raw)
        finally:
            conn.close()

    def get(self, resource, params=None):
        return self._send("GET", self._url(*resource) if isinstance(resource, (list, tuple)) else self._url(resource), params=params or None)

    def post(self, resource, data, params=None):
        url = self._url(*resource) if isinstance(resource, (list, tuple)) else self._url(resource)
        return self._send("POST", url, params=params or None, body=json.dumps(data))

    def delete(self, resource, data=None):
        url = self._url(*resource) if isinstance(resource, (list, tuple)) else self._url(resource)
        return self._send("DELETE", url, body=json.dumps(data) if data else None)

    # -- the wrapper methods of uwsgiit-py ---------------------------------------------

    def news(self):
        return self.get("news")

    def me(self):
        return self.get("me")

    def update_me(self, data):
        return self.post("me", data)

    def containers(self, tags=None):
        return self.get("containers", {"tags": ",".join(tags)} if tags else None)

    def container(self, id):
        return self.get(("containers", id))

    def update_container(self, id, data):
        return self.post(("containers", id), data)

    def container_set_distro(self, id, distro):
        return self.update_container(id, {"distro": distro})

    def container_set_keys(self, id, keys):
        return self.update_container(id, {"ssh_keys": keys})

    def reboot_container(self, id):
        return self.update_container(id, {"reboot": 1})

    def distros(self):
        return self.get("distros")

    def domains(self, tags=None):
        return self.get("domains", {"tags": ",".join(tags)} if tags else None)

    def domain(self, id):
        return self.get(("domains", id))

    def add_domain(self, name):
        return self.post("domains", {"name": name})

    def delete_domain(self, name):
        return self.delete("domains", {"name": name})

    def update_domain(self, id, data):
        return self.post(("domains", id), data)

    def create_tag(self, name):
        return self.post("tags", {"name": name})

    def delete_tag(self, id):
        return self.delete(("tags", id))

    def list_tags(self):
        return self.get("tags")

    def container_metric(self, id, metric, params=None):
        return self.get(("metrics", "container.%s" % metric, id), params)

    def domain_metric(self, id, metric, params=None):
        return self.get(("metrics", "domain.%s" % metric, id), params)

    def loopboxes(self, container=None, tags=None):
        params = {}
        if tags:
            params["tags"] = ",".join(tags)
        if container:
            params["container"] = container
        return self.get("loopboxes", params or None)

    def loopbox(self, id):
        return self.get(("loopboxes", id))

    def create_loopbox(self, container, filename, mountpoint, readonly=False):
        return self.post(
            "loopboxes",
            {"container": container, "filename": filename, "mountpoint": mountpoint, "ro": bool(readonly)},
        )

    def update_loopbox(self, id, data):
        return self.post(("loopboxes", id), data)

    def delete_loopbox(self, id):
        return self.delete(("loopboxes", id))

    ALARM_FILTERS = ("container", "class", "color", "vassal", "level", "line", "filename", "func", "with_total", "range")
    ALARM_FIELDS = ("class", "color", "vassal", "level", "line", "filename", "func", "unix")

    def alarms(self, params=None):
        params = params or {}
        for key in params:
            if key not in self.ALARM_FILTERS:
                raise KeyError(key)
        return self.get("alarms", params or None)

    def alarm(self, id):
        return self.get(("alarms", id))

    def create_alarm(self, container, msg, params=None):
        params = params or {}
        for key in params:
            if key not in self.ALARM_FIELDS:
                raise KeyError(key)
        return self.post(("alarms", "raise", container), msg, params=params or None)

    def create_alarm_key(self, container):
        return self.get(("alarm_key", container))

    def delete_alarm(self, id):
        return self.delete(("alarms", id))
