"""The OpenAPI document's access rules: bearer API keys (web/auth.py) and the Host/Origin checks (web/hosts.py)."""

from __future__ import annotations

_ERROR = {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}

UNAUTHORIZED = ("No key where one is needed (key_required: with --require-key, or a write off loopback), or a key "
                "the server does not know (bad_key: mistyped or revoked); WWW-Authenticate: Bearer")
FORBIDDEN = ("A write with a read key (write_scope_required), or a request from another site's page "
             "(cross_origin: its Origin is neither the server's own nor an --allowed-origin)")
BAD_HOST = "A Host header naming a host the server is not known by (host_not_allowed: --allowed-host adds names)"


def _add(responses: dict, status: str, description: str) -> None:
    if status in responses:
        responses[status] = {**responses[status], "description": f"{responses[status]['description']}; {description}"}
    else:
        responses[status] = {"description": description, "content": _ERROR}


def add_access_control(spec: dict) -> dict:
    """``spec`` with the bearer scheme, and the 400, 401 and 403 answers every operation may give."""
    spec["components"]["securitySchemes"] = {"apiKey": {"type": "http", "scheme": "bearer"}}
    spec["security"] = [{"apiKey": []}, {}]  # a key, or none where the server needs none (loopback)
    for path, item in spec["paths"].items():
        for method, op in item.items():
            if path == "/api/health":
                op["security"] = []  # answered without a key, always
                _add(op.setdefault("responses", {}), "400", BAD_HOST)
                continue
            responses = op.setdefault("responses", {})
            _add(responses, "400", BAD_HOST)
            _add(responses, "401", UNAUTHORIZED)
            if method != "get":
                _add(responses, "403", FORBIDDEN)
    return spec
