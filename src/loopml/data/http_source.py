"""HTTP JSON APIs as a source: records from one URL, page after page.

``HttpSource("https://api.example.com/v1/tx", records_path="data.items", paginate="cursor")``
reads a JSON body per page: a list of records, or an object holding the list at
``records_path`` (dotted; found automatically under ``records``, ``data``, ``items`` or
``results`` when not given). Pagination:

- ``page``: ``?page=1``, ``2``, ... (``page_param``, ``page_start``) until a page is empty or
  shorter than ``page_size`` (sent as ``size_param`` when given);
- ``offset``: ``?offset=0&limit=N``, the offset advancing by the records received;
- ``cursor``: the next cursor from the body (``cursor_path``, default ``next_cursor``; a value
  that is a URL is followed as it is, otherwise sent as ``cursor_param``) or from a
  ``Link: <...>; rel="next"`` header, until there is none.

Headers are given as ``"Name=value"``; ``${VAR}`` in a value is read from the environment
when the request is sent, so a token is never stored (the source describes itself with the
header names only). 429 and 5xx answers and failed connections are retried with exponential
backoff and jitter (``Retry-After`` honoured, up to ``max_retry_after`` seconds).

Only ``http`` and ``https`` URLs are read, and none whose host is or resolves to a loopback,
private, link-local, multicast or reserved address — checked for the first URL, every page
and every redirect hop — unless the host is in ``allow_hosts`` (names, addresses or CIDR
networks; the ``http_allow_hosts`` setting) or ``allow_private`` is set
(``http_allow_private``). The check resolves the name before each request; a DNS answer that
changes between the check and the connection is not caught.
"""

from __future__ import annotations

import inspect
import ipaddress
import json
import os
import random
import re
import socket
import time
from collections.abc import Iterator, Mapping, Sequence
from email.utils import parsedate_to_datetime
from typing import Any, ClassVar
from urllib.parse import parse_qsl, urlencode, urljoin, urlsplit, urlunsplit

import httpx
import pyarrow as pa

from loopml.data.sources import Source
from loopml.errors import InvalidInputError, NotFoundError, StoreError
from loopml.stores.registry import redact_uri
from loopml.utils import shorten

PAGINATIONS = ("page", "offset", "cursor")
RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})
_RECORD_FIELDS = ("records", "data", "items", "results")
_ENV = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")
_NEXT_LINK = re.compile(r'<([^>]*)>\s*;[^,]*\brel="?next"?', re.IGNORECASE)
_MAX_REDIRECTS = 5


class HttpSource(Source):
    """Records from an HTTP JSON API, read page by page."""

    format: ClassVar[str] = "http"

    def __init__(
        self,
        url: str,
        *,
        records_path: str | None = None,
        paginate: str | None = None,
        page_param: str = "page",
        page_start: int = 1,
        page_size: int | None = None,
        size_param: str = "limit",
        offset_param: str = "offset",
        cursor_param: str = "cursor",
        cursor_path: str = "next_cursor",
        headers: Mapping[str, str] | Sequence[str] | None = None,
        timeout: float = 30.0,
        retries: int = 4,
        backoff: float = 0.5,
        max_retry_after: float = 60.0,
        max_pages: int = 10_000,
        batch_rows: int = 100_000,
        allow_hosts: Sequence[str] | str = (),
        allow_private: bool = False,
    ) -> None:
        parts = urlsplit(url) if isinstance(url, str) else None
        if parts is None or parts.scheme.lower() not in ("http", "https") or not parts.hostname:
            raise InvalidInputError(
                f"not an http(s) URL: {shorten(url, 120)}",
                where={"source": shorten(url, 120)},
                hint="Give a URL starting with https:// (or http://) and naming a host",
            )
        if paginate is not None and paginate not in PAGINATIONS:
            raise InvalidInputError(
                f"unknown pagination {paginate!r}",
                where={"source": redact_uri(url), "field": "paginate"},
                hint=f"Use one of {', '.join(PAGINATIONS)} (or leave it out for one page)",
            )
        if paginate == "offset" and page_size is None:
            page_size = 100
        self.url = url
        self.records_path = records_path or None
        self.paginate = paginate
        self.page_param, self.page_start, self.page_size = page_param, page_start, page_size
        self.size_param, self.offset_param = size_param, offset_param
        self.cursor_param, self.cursor_path = cursor_param, cursor_path
        self.headers = _parse_headers(headers, redact_uri(url))
        self.timeout, self.retries, self.backoff = timeout, retries, backoff
        self.max_retry_after, self.max_pages, self.batch_rows = (
            max_retry_after,
            max_pages,
            batch_rows,
        )
        hosts = allow_hosts.split(",") if isinstance(allow_hosts, str) else list(allow_hosts)
        self.allow_hosts = [h.strip().lower() for h in hosts if h.strip()]
        self.allow_private = allow_private
        self._client: httpx.Client | None = None

    # -- the Source interface -----------------------------------------------------------------

    def describe(self) -> str:
        extra = []
        if self.paginate:
            extra.append(f"paginate={self.paginate}")
        if self.headers:
            extra.append("headers=" + ",".join(name for name, _ in self.headers))
        return redact_uri(self.url) + (f" ({'; '.join(extra)})" if extra else "")

    def read(self) -> pa.Table:
        parts = [pa.Table.from_batches([b]) if isinstance(b, pa.RecordBatch) else b for b in self]
        table = pa.concat_tables(parts, promote_options="permissive") if parts else None
        if table is None or table.num_rows == 0:
            raise InvalidInputError(
                f"{self.describe()} returned no records",
                where={"source": redact_uri(self.url)},
                hint="Check the URL, its query and records_path (--records-path)",
            )
        return table

    def batches(self) -> Iterator[pa.Table]:
        """Tables of up to ``batch_rows`` records (several pages each), in page order."""
        return iter(self)

    def __iter__(self) -> Iterator[pa.Table]:
        buffer: list[dict[str, Any]] = []
        for records in self.pages():
            buffer.extend(records)
            if len(buffer) >= self.batch_rows:
                yield self._table(buffer)
                buffer = []
        if buffer:
            yield self._table(buffer)

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None

    # -- pages --------------------------------------------------------------------------------

    def pages(self) -> Iterator[list[dict[str, Any]]]:
        """The records of each page, in order."""
        url = self._first_url()
        page, offset, seen = self.page_start, 0, set()
        for number in range(1, self.max_pages + 1):
            response = self._get(url, number)
            body = self._json(response, url, number)
            records = self._records(body, url, number)
            yield records
            if self.paginate is None:
                return
            if self.paginate == "page":
                if not records or (self.page_size and len(records) < self.page_size):
                    return
                page += 1
                url = _with_params(url, {self.page_param: page})
            elif self.paginate == "offset":
                if not records or (self.page_size and len(records) < self.page_size):
                    return
                offset += len(records)
                url = _with_params(url, {self.offset_param: offset})
            else:
                nxt = self._next_cursor(body, response, url)
                if nxt is None:
                    return
                if nxt in seen:
                    raise InvalidInputError(
                        f"{self.describe()}: page {number} gives the cursor {shorten(nxt, 60)} "
                        "again; the pages would never end",
                        where={"source": redact_uri(self.url), "page": number},
                        hint="Check cursor_path (the field holding the next cursor)",
                    )
                seen.add(nxt)
                url = nxt
        raise InvalidInputError(
            f"{self.describe()}: more than {self.max_pages} pages",
            where={"source": redact_uri(self.url), "page": self.max_pages},
            hint="Raise max_pages, or check that the pagination ends (an empty last page)",
        )

    def _first_url(self) -> str:
        params: dict[str, Any] = {}
        if self.paginate == "page":
            params[self.page_param] = self.page_start
        if self.paginate == "offset":
            params[self.offset_param] = 0
        if self.paginate in ("page", "offset") and self.page_size:
            params[self.size_param] = self.page_size
        return _with_params(self.url, params) if params else self.url

    def _next_cursor(self, body: Any, response: httpx.Response, url: str) -> str | None:
        value = _at_path(body, self.cursor_path) if isinstance(body, dict) else None
        if value not in (None, ""):
            text = str(value)
            if text.startswith(("http://", "https://", "/")):
                return urljoin(url, text)
            return _with_params(url, {self.cursor_param: text})
        link = _NEXT_LINK.search(response.headers.get("link", ""))
        return urljoin(url, link.group(1)) if link else None

    # -- one request --------------------------------------------------------------------------

    def _get(self, url: str, page: int) -> httpx.Response:
        """GET ``url`` (checked), following redirects hop by hop (each checked), retrying."""
        client = self._client or httpx.Client(timeout=self.timeout, follow_redirects=False)
        self._client = client
        headers = self._header_values()
        for _hop in range(_MAX_REDIRECTS + 1):
            self._check_url(url, page)
            response = self._send(client, url, headers, page)
            if response.is_redirect and "location" in response.headers:
                url = urljoin(url, response.headers["location"])
                continue
            return self._check_status(response, url, page)
        raise InvalidInputError(
            f"{redact_uri(url)} (page {page}): more than {_MAX_REDIRECTS} redirects",
            where={"source": redact_uri(self.url), "page": page},
            hint="Give the URL the redirects end at",
        )

    def _send(
        self, client: httpx.Client, url: str, headers: dict[str, str], page: int
    ) -> httpx.Response:
        last: str = ""
        for attempt in range(self.retries + 1):
            try:
                response = client.get(url, headers=headers)
            except httpx.HTTPError as exc:
                last = f"{type(exc).__name__}: {exc}"
                if attempt == self.retries:
                    raise StoreError(
                        f"cannot reach {redact_uri(url)} (page {page}): {last}",
                        where={"source": redact_uri(self.url), "page": page},
                        hint="Check the URL, the network and the timeout (--timeout)",
                        code="source_unreachable",
                    ) from exc
                time.sleep(self._delay(attempt, None))
                continue
            if response.status_code not in RETRY_STATUSES or attempt == self.retries:
                return response
            time.sleep(self._delay(attempt, response.headers.get("retry-after")))
        raise AssertionError("unreachable")  # pragma: no cover

    def _delay(self, attempt: int, retry_after: str | None) -> float:
        """Seconds before retry ``attempt + 1``: Retry-After when given, else exponential
        backoff with full jitter between half and all of ``backoff * 2**attempt``."""
        if retry_after:
            wait = _retry_after_seconds(retry_after)
            if wait is not None:
                return min(max(wait, 0.0), self.max_retry_after)
        base = self.backoff * (2**attempt)
        return random.uniform(base / 2, base)

    def _check_status(self, response: httpx.Response, url: str, page: int) -> httpx.Response:
        status = response.status_code
        if status < 400:
            return response
        where = {"source": redact_uri(self.url), "page": page, "status": status}
        text = shorten(response.text.strip().replace("\n", " "), 160)
        what = f"{redact_uri(url)} (page {page}) answered {status}"
        if status in (401, 403):
            raise InvalidInputError(
                f"{what}: not authorised: {text}",
                where=where,
                hint="Check the Authorization header and that its environment variable holds "
                "a valid token (--header 'Authorization=Bearer ${API_TOKEN}')",
                code="source_auth",
            )
        if status == 404:
            raise NotFoundError(f"{what}: not found", where=where, hint="Check the URL's path")
        if status in RETRY_STATUSES:
            raise StoreError(
                f"{what} after {self.retries} retries: {text}",
                where=where,
                hint="The server is busy or failing: try again later, or raise retries",
                code="source_unavailable",
            )
        raise InvalidInputError(
            f"{what}: {text}", where=where, hint="Check the URL and its query parameters"
        )

    def _json(self, response: httpx.Response, url: str, page: int) -> Any:
        try:
            return json.loads(response.content)
        except (ValueError, UnicodeDecodeError) as exc:
            kind = response.headers.get("content-type", "no content type")
            start = shorten(response.text[:80].strip().replace("\n", " "), 60)
            raise InvalidInputError(
                f"{redact_uri(url)} page {page} is not JSON ({kind}): {exc}; it starts "
                f"with {start!r}",
                where={"source": redact_uri(self.url), "page": page},
                hint="Check that the URL is the API's JSON endpoint (not its web page) and the "
                "Accept header",
            ) from exc

    def _records(self, body: Any, url: str, page: int) -> list[dict[str, Any]]:
        where = {"source": redact_uri(self.url), "page": page}
        found: Any
        if self.records_path:
            found = _at_path(body, self.records_path)
            if found is None:
                keys = ", ".join(sorted(body)[:20]) if isinstance(body, dict) else "none"
                raise InvalidInputError(
                    f"{redact_uri(url)} page {page} has no {self.records_path!r} "
                    f"(top-level keys: {keys})",
                    where={**where, "field": self.records_path},
                    hint="Give the dotted path of the list of records (--records-path data.items)",
                )
        elif isinstance(body, list):
            found = body
        elif isinstance(body, dict):
            hits = [k for k in _RECORD_FIELDS if isinstance(body.get(k), list)]
            if not hits:
                raise InvalidInputError(
                    f"{redact_uri(url)} page {page}: cannot tell where the records are "
                    f"(keys: {', '.join(sorted(body)[:20])})",
                    where=where,
                    hint="Give the field holding the list of records (--records-path)",
                )
            found = body[hits[0]]
        else:
            found = body
        if not isinstance(found, list):
            raise InvalidInputError(
                f"{redact_uri(url)} page {page}: the records are a JSON "
                f"{type(found).__name__}, not a list",
                where=where,
                hint="Point --records-path at a list of objects",
            )
        for i, record in enumerate(found):
            if not isinstance(record, dict):
                raise InvalidInputError(
                    f"{redact_uri(url)} page {page}: record {i} is a JSON "
                    f"{type(record).__name__}, not an object",
                    where={**where, "row": i},
                    hint="Each record must be a JSON object of column: value",
                )
        return found

    def _table(self, records: list[dict[str, Any]]) -> pa.Table:
        try:
            return pa.Table.from_pylist(records)
        except (pa.ArrowInvalid, pa.ArrowTypeError) as exc:
            raise InvalidInputError(
                f"{self.describe()}: the records do not form a table: {exc}",
                where={"source": redact_uri(self.url)},
                hint="Give each field one JSON type in every record",
            ) from exc

    # -- safety -------------------------------------------------------------------------------

    def _header_values(self) -> dict[str, str]:
        out = {}
        for name, template in self.headers:
            missing = [v for v in _ENV.findall(template) if v not in os.environ]
            if missing:
                raise InvalidInputError(
                    f"{self.describe()}: header {name} needs the environment variable "
                    f"{missing[0]}, which is not set",
                    where={"source": redact_uri(self.url), "field": name},
                    hint=f"export {missing[0]}=... before running",
                )
            out[name] = _ENV.sub(lambda m: os.environ[m.group(1)], template)
        return out

    def _check_url(self, url: str, page: int) -> None:
        parts = urlsplit(url)
        where = {"source": redact_uri(self.url), "page": page}
        if parts.scheme.lower() not in ("http", "https") or not parts.hostname:
            raise InvalidInputError(
                f"{redact_uri(url)} (page {page}): only http(s) URLs are read",
                where=where,
                hint="The API redirected or pointed to another scheme; give an https:// URL",
            )
        host = parts.hostname.lower()
        if self.allow_private or host in self.allow_hosts:
            return
        try:
            port = parts.port or (443 if parts.scheme.lower() == "https" else 80)
            infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        except (socket.gaierror, UnicodeError, ValueError) as exc:
            raise StoreError(
                f"cannot resolve the host of {redact_uri(url)} (page {page}): {exc}",
                where=where,
                hint="Check the host name and the network",
                code="source_unreachable",
            ) from exc
        for info in infos:
            address = ipaddress.ip_address(str(info[4][0]).split("%", 1)[0])
            if _is_private(address) and not self._allowed(address):
                raise InvalidInputError(
                    f"{redact_uri(url)} (page {page}): {host} is {address}, a loopback, private "
                    "or link-local address, which HTTP sources do not read",
                    where={**where, "host": host},
                    hint="Allow it explicitly in the settings: http_allow_hosts "
                    f"(LOOPML_HTTP_ALLOW_HOSTS={host}) or http_allow_private",
                    code="source_forbidden",
                )

    def _allowed(self, address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
        for entry in self.allow_hosts:
            try:
                if address in ipaddress.ip_network(entry, strict=False):
                    return True
            except ValueError:
                continue  # a host name, compared before resolving
        return False


def make(uri: str, format: str | None = None, **options: Any) -> HttpSource:
    """The scheme factory for ``http://`` and ``https://`` (options left None: not given)."""
    given = {k: v for k, v in options.items() if v is not None and (k, v) != ("header", True)}
    if format not in (None, "json"):
        raise InvalidInputError(
            f"{redact_uri(uri)}: HTTP sources read JSON, not {format!r}",
            where={"source": redact_uri(uri), "field": "format"},
            hint="Leave --format out",
        )
    settings = given.pop("settings", None)
    if settings is None and "allow_hosts" not in given and "allow_private" not in given:
        from loopml.settings import Settings

        settings = Settings()  # type: ignore[call-arg]  # LOOPML_HTTP_ALLOW_* from the environment
    if settings is not None:
        given.setdefault("allow_hosts", settings.http_allow_hosts)
        given.setdefault("allow_private", settings.http_allow_private)
    known = set(inspect.signature(HttpSource.__init__).parameters) - {"self", "url"}
    unknown = sorted(set(given) - known)
    if unknown:
        raise InvalidInputError(
            f"{redact_uri(uri)}: option {unknown[0]!r} is not one for HTTP sources",
            where={"source": redact_uri(uri), "field": unknown[0]},
            hint=f"HTTP options: {', '.join(sorted(known))}",
        )
    return HttpSource(uri, **given)


def _is_private(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return bool(
        address.is_loopback
        or address.is_private
        or address.is_link_local
        or address.is_multicast
        or address.is_reserved
        or address.is_unspecified
    )


def _parse_headers(
    headers: Mapping[str, str] | Sequence[str] | None, source: str
) -> list[tuple[str, str]]:
    if headers is None:
        return []
    items: list[tuple[str, str]] = []
    if isinstance(headers, Mapping):
        items = [(str(k), str(v)) for k, v in headers.items()]
    else:
        for text in headers:
            name, sep, value = str(text).partition("=")
            if not sep or not name.strip():
                raise InvalidInputError(
                    f"header {shorten(text, 40)!r} is not Name=value",
                    where={"source": source, "field": "header"},
                    hint="Write --header 'Authorization=Bearer ${API_TOKEN}' (the variable is "
                    "read when the request is sent)",
                )
            items.append((name.strip(), value.strip()))
    for name, _ in items:
        if not re.fullmatch(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+", name):
            raise InvalidInputError(
                f"{name!r} is not a valid header name",
                where={"source": source, "field": "header"},
                hint="Use letters, digits and dashes (Authorization, X-Api-Key)",
            )
    return items


def _with_params(url: str, params: Mapping[str, Any]) -> str:
    parts = urlsplit(url)
    query = [(k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True) if k not in params]
    query.extend((k, str(v)) for k, v in params.items())
    return urlunsplit(parts._replace(query=urlencode(query)))


def _at_path(body: Any, path: str) -> Any:
    node = body
    for part in path.split("."):
        if isinstance(node, dict) and part in node:
            node = node[part]
        elif isinstance(node, list) and part.isdigit() and int(part) < len(node):
            node = node[int(part)]
        else:
            return None
    return node


def _retry_after_seconds(value: str) -> float | None:
    try:
        return float(value)
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return when.timestamp() - time.time()
