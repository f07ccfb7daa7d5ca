"""Uploads read into memory, capped in size, never spooled to a file.

Starlette's own form parser spools a file part over 1 MB to a temporary file; an uploaded
query image must never be written anywhere, so the body is read here (refused as soon as it
passes the cap) and its multipart parts are parsed from memory with python-multipart.
"""

from __future__ import annotations

from starlette.requests import Request

from medsim.serve.service import RequestError, TooLargeError

__all__ = ["FORM_OVERHEAD", "multipart_body", "parse_multipart", "read_body"]

FORM_OVERHEAD = 64 * 1024  # boundaries, part headers and the small text fields of a form


async def read_body(request: Request, cap: int) -> bytes:
    """The request body, or :class:`TooLargeError` once it is over ``cap`` bytes."""
    message = f"the upload is over {cap / 2**20:.0f} MB"
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > cap:
        raise TooLargeError(message)
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > cap:
            raise TooLargeError(message)
        chunks.append(chunk)
    return b"".join(chunks)


def parse_multipart(body: bytes, content_type: str) -> dict[str, tuple[str | None, bytes]]:
    """``multipart/form-data`` ``body`` -> field name -> (file name or None, bytes)."""
    from python_multipart.multipart import MultipartParser, parse_options_header

    kind, options = parse_options_header(content_type or "")
    boundary = options.get(b"boundary")
    if kind != b"multipart/form-data" or not boundary:
        raise RequestError("send the image as multipart/form-data (a form field named 'image')")
    parts: dict[str, tuple[str | None, bytes]] = {}
    state: dict[str, list] = {"field": [], "value": [], "headers": [], "data": []}

    def on_header_field(data: bytes, start: int, end: int) -> None:
        state["field"].append(data[start:end])

    def on_header_value(data: bytes, start: int, end: int) -> None:
        state["value"].append(data[start:end])

    def on_header_end() -> None:
        state["headers"].append((b"".join(state["field"]).lower(), b"".join(state["value"])))
        state["field"], state["value"] = [], []

    def on_part_data(data: bytes, start: int, end: int) -> None:
        state["data"].append(data[start:end])

    def on_part_end() -> None:
        headers = dict(state["headers"])
        _, disposition = parse_options_header(headers.get(b"content-disposition", b""))
        name = disposition.get(b"name", b"").decode("utf-8", "replace")
        filename = disposition.get(b"filename")
        parts[name] = (
            filename.decode("utf-8", "replace") if filename is not None else None,
            b"".join(state["data"]),
        )
        state["headers"], state["data"] = [], []

    parser = MultipartParser(
        boundary,
        {
            "on_header_field": on_header_field,
            "on_header_value": on_header_value,
            "on_header_end": on_header_end,
            "on_part_data": on_part_data,
            "on_part_end": on_part_end,
        },
    )
    try:
        parser.write(body)
        parser.finalize()
    except Exception as exc:  # python-multipart raises its own error types for bad framing
        raise RequestError(f"malformed multipart form ({type(exc).__name__})") from exc
    return parts


def multipart_body(
    properties: dict[str, dict], required: list[str] | None = None, description: str = ""
) -> dict:
    """The OpenAPI ``requestBody`` of a multipart upload endpoint (``openapi_extra``): the
    upload is read by hand (size-capped while it streams), so FastAPI cannot infer it."""
    schema: dict = {"type": "object", "properties": properties}
    if required:
        schema["required"] = required
    if description:
        schema["description"] = description
    return {
        "requestBody": {
            "required": True,
            "content": {"multipart/form-data": {"schema": schema}},
        }
    }
