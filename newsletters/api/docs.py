"""The OpenAPI document, and a page that shows it to people: open to all, no key needed.

The page is rendered here from the document, with no script: the API's docs viewers
(ReDoc, Swagger UI) load from a CDN and inject inline styles, which the CSP forbids.
"""

import re

from flask import Blueprint, current_app, jsonify, render_template

bp = Blueprint("api_docs", __name__, url_prefix="/api/v1")
METHODS = ("get", "post", "put", "patch", "delete")


@bp.get("/openapi.json")
def openapi_json():
    """Return the OpenAPI 3.1 document of the API, generated from its views."""
    return jsonify(spec())


@bp.get("/docs")
def page():
    """Show every operation of the API: its parameters, body and answers."""
    document = spec()
    return render_template("api/docs.html", info=document["info"], operations=operations(document))


def spec() -> dict:
    """Return the API's OpenAPI document as a dict."""
    return current_app.extensions["newsletters.api"].spec.to_dict()


def operations(document: dict) -> list[dict]:
    """Return each operation of ``document`` with what the page shows of it, in path order."""
    schemas = document.get("components", {}).get("schemas", {})
    found = []
    for path, item in document["paths"].items():
        for method in METHODS:
            operation = item.get(method)
            if operation is None:
                continue
            body = operation.get("requestBody", {}).get("content", {})
            found.append(
                {
                    "method": method.upper(),
                    "path": path,
                    # Letters, digits and dashes only: a fragment may not hold a path's braces.
                    "anchor": re.sub(r"[^a-z0-9]+", "-", f"{method}-{path}".lower()).strip("-"),
                    "summary": operation.get("summary", ""),
                    "description": operation.get("description", ""),
                    "parameters": [*item.get("parameters", []), *operation.get("parameters", [])],
                    "body": {t: _fields(c.get("schema", {}), schemas) for t, c in body.items()},
                    "responses": [
                        {
                            "status": status,
                            "description": response.get("description", ""),
                            "fields": [
                                name
                                for content in response.get("content", {}).values()
                                for name, _ in _fields(content.get("schema", {}), schemas)
                            ],
                        }
                        for status, response in sorted(operation.get("responses", {}).items())
                        if "$ref" not in response
                    ],
                }
            )
    return found


def _fields(schema: dict, schemas: dict) -> list[tuple[str, str]]:
    """Return (name, type and description) of each property of ``schema``."""
    if "$ref" in schema:
        schema = schemas.get(schema["$ref"].rsplit("/", 1)[-1], {})
    required = set(schema.get("required", []))
    shown = []
    for name, prop in schema.get("properties", {}).items():
        kind = prop.get("type") or prop.get("$ref", "").rsplit("/", 1)[-1] or "object"
        if isinstance(kind, list):
            kind = " or ".join(kind)
        note = ("required; " if name in required else "") + prop.get("description", "")
        shown.append((name, f"{kind}{' — ' + note if note else ''}".rstrip("; ")))
    return shown
