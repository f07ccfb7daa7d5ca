"""How ``medsim search --server URL`` (or ``MEDSIM_SERVER``) asks a running ``medsim serve``.

A search in a fresh process pays seconds to import torch and load the encoder; a running
server has them loaded, so the CLI sends the query there and prints the same rows. Only the
standard library is used, so this path imports nothing heavy. A server that cannot be reached
raises :class:`ServerUnavailable` (the CLI then searches locally); a server that refuses the
query (4xx) raises :class:`~medsim.errors.MedsimError` with the server's one-line message.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any
from urllib.error import HTTPError, URLError
from urllib.parse import urlencode
from urllib.request import Request, urlopen

from medsim.errors import MedsimError

__all__ = ["ServerUnavailable", "search_via_server"]

TIMEOUT_S = 60.0  # a first image query on a cold server can take seconds


class ServerUnavailable(Exception):
    """No server answered at the URL (refused, timed out, not medsim)."""


def _multipart(field: str, filename: str, data: bytes) -> tuple[bytes, str]:
    boundary = uuid.uuid4().hex
    head = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="{field}"; '
        f'filename="{filename}"\r\nContent-Type: application/octet-stream\r\n\r\n'
    ).encode()
    return head + data + f"\r\n--{boundary}--\r\n".encode(), boundary


def search_via_server(
    url: str,
    *,
    text: str | None = None,
    image: str | Path | None = None,
    pmid: str | None = None,
    item: str | None = None,
    k: int = 10,
    types: Sequence[str] | None = None,
    bits: int | None = None,
    binary: bool = False,
    timeout: float = TIMEOUT_S,
) -> list[dict[str, Any]]:
    """The rows of ``/api/search`` (as ``medsim search --json`` prints them) for one query."""
    params: list[tuple[str, Any]] = [("k", k)]
    params += [("type", t) for t in types or ()]
    if bits is not None:
        params.append(("bits", bits))
    elif binary:
        params.append(("binary", "true"))
    base = url.rstrip("/")
    if image is not None:
        path = Path(image)
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise MedsimError(f"cannot read image {path}: {exc.strerror or exc}") from exc
        body, boundary = _multipart("image", str(path), data)
        request = Request(
            f"{base}/api/search/image?{urlencode(params)}",
            data=body,
            headers={"Content-Type": f"multipart/form-data; boundary={boundary}"},
        )
    else:
        source = {"q": text, "pmid": pmid, "id": item}
        params += [(name, value) for name, value in source.items() if value is not None]
        request = Request(f"{base}/api/search?{urlencode(params)}")
    try:
        with urlopen(request, timeout=timeout) as response:
            rows = json.loads(response.read())
    except HTTPError as exc:
        if 400 <= exc.code < 500:
            try:
                detail = json.loads(exc.read())["detail"]
            except (ValueError, KeyError, TypeError):
                detail = f"HTTP {exc.code}"
            raise MedsimError(f"the server refused the query: {detail}") from exc
        raise ServerUnavailable(f"the server at {url} failed (HTTP {exc.code})") from exc
    except (URLError, OSError, ValueError) as exc:
        reason = getattr(exc, "reason", exc)
        raise ServerUnavailable(f"no medsim server at {url} ({reason})") from exc
    if not isinstance(rows, list):
        raise ServerUnavailable(f"{url} did not answer like a medsim server")
    return rows
