"""The server's OpenAPI 3.1 document, written from the served models' signatures, and /docs.

The app is plain Starlette (no request models on the hot path), so the document is built
here: every endpoint, and for each served model the schema of one instance and an example
request that can be sent as is. ``/docs`` renders the document on the server as one HTML
page: no script, no CDN, no external style, under a strict Content-Security-Policy.
"""

from __future__ import annotations

import base64
import hashlib
import html
from typing import Any

import orjson

from loopml.kinds import CATEGORICAL, DATETIME, NUMERIC, TEXT
from loopml.registry.signature import Signature
from loopml.serve.runtime import ModelSet, example_instance

DOCS_STYLE = (
    "body{font:15px/1.5 system-ui,sans-serif;max-width:60rem;margin:2rem auto;padding:0 1rem;"
    "color:#1b1f23}code,pre{font:13px ui-monospace,monospace}pre{background:#f6f8fa;"
    "padding:.6rem;overflow:auto}section{border-top:1px solid #ddd;padding:.4rem 0}"
    ".m{display:inline-block;min-width:4rem;font-weight:bold}.get{color:#1a7f37}"
    ".post{color:#0550ae}table{border-collapse:collapse}td{padding:0 .8rem 0 0}"
)
_STYLE_HASH = base64.b64encode(hashlib.sha256(DOCS_STYLE.encode()).digest()).decode()
DOCS_HEADERS = {
    "Content-Security-Policy": f"default-src 'none'; style-src 'sha256-{_STYLE_HASH}'; "
    "base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}

ERROR_SCHEMA = {
    "type": "object",
    "required": ["code", "message"],
    "properties": {
        "code": {"type": "string", "examples": ["invalid_input"]},
        "message": {"type": "string"},
        "where": {"type": "object", "description": "row, field, model, input ... at fault"},
        "hint": {"type": ["string", "null"]},
        "error": {"type": "string", "description": "V2 endpoints: the message, per the spec"},
    },
}

TENSOR_SCHEMA = {
    "type": "object",
    "required": ["name", "shape", "datatype", "data"],
    "properties": {
        "name": {"type": "string"},
        "shape": {"type": "array", "items": {"type": "integer", "minimum": 0}},
        "datatype": {"type": "string", "examples": ["FP64", "BYTES", "INT64"]},
        "parameters": {"type": "object"},
        "data": {"type": "array"},
    },
}


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _json(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _errors(*codes: int) -> dict[str, Any]:
    text = {
        400: "Malformed JSON (code invalid_json)",
        401: "Missing or wrong bearer token",
        404: "No such model or version on this server",
        409: "The new version failed to load or warm up; the old one keeps serving",
        413: "The body or the number of rows is over the server's limit",
        415: "The body is not sent as application/json",
        421: "The Host header names a host this server does not answer for",
        422: "The input does not match the model signature; `where` names row and field",
    }
    return {str(c): _json(_ref("Error"), text[c]) for c in codes}


def instance_schema(sig: Signature) -> dict[str, Any]:
    """JSON Schema of one ``instances`` item for a model."""
    props: dict[str, Any] = {}
    for f in sig.inputs:
        if f.kind == CATEGORICAL:
            prop: dict[str, Any] = {"type": ["string", "null"] if f.nullable else "string"}
            if f.categories:
                prop["enum"] = [*f.categories, None] if f.nullable else list(f.categories)
        elif f.kind == DATETIME:
            prop = {"type": ["string", "null"] if f.nullable else "string", "format": "date-time"}
        elif f.kind == TEXT:  # free text, any string
            prop = {"type": ["string", "null"] if f.nullable else "string"}
        else:
            prop = {"type": ["number", "null"] if f.nullable else "number"}
            if f.min is not None and f.max is not None:
                prop["description"] = f"seen in training: {f.min:g} to {f.max:g}"
        props[f.name] = prop
    return {
        "type": "object",
        "required": sig.names,
        "additionalProperties": True,  # extra fields (an id) are ignored
        "properties": props,
    }


def build_openapi(models: ModelSet | None, version: str) -> dict[str, Any]:
    """The OpenAPI document for the models this server serves right now."""
    served = models.served if models is not None else {}
    names = sorted(served)
    schemas: dict[str, Any] = {"Error": ERROR_SCHEMA, "Tensor": TENSOR_SCHEMA}
    v1_examples: dict[str, Any] = {}
    v2_examples: dict[str, Any] = {}
    instance_refs = []
    for name in names:
        runtime = served[name][0].runtime
        if runtime is None:
            continue
        sig = runtime.signature
        schemas[f"Instance_{name}"] = instance_schema(sig)
        instance_refs.append(_ref(f"Instance_{name}"))
        example = example_instance(sig)
        v1_examples[name] = {"summary": f"one row for {name}", "value": {"instances": [example]}}
        v2_examples[name] = {
            "summary": f"one row for {name}",
            "value": {
                "id": "example-1",
                "inputs": [
                    {
                        "name": f.name,
                        "shape": [1],
                        "datatype": "FP64" if f.kind == NUMERIC else "BYTES",
                        "data": [example[f.name]],
                    }
                    for f in sig.inputs
                ],
            },
        }
    instance_item: dict[str, Any] = (
        {"anyOf": instance_refs} if instance_refs else {"type": "object"}
    )
    schemas["PredictRequest"] = {
        "type": "object",
        "required": ["instances"],
        "additionalProperties": False,
        "properties": {"instances": {"type": "array", "minItems": 1, "items": instance_item}},
    }
    schemas["PredictResponse"] = {
        "type": "object",
        "properties": {
            "model": {"type": "string"},
            "version": {"type": "integer"},
            "predictions": {
                "type": "array",
                "items": {
                    "type": "object",
                    "properties": {
                        "prediction_id": {"type": "string"},
                        "prediction": {},
                        "probabilities": {
                            "type": "object",
                            "additionalProperties": {"type": "number"},
                            "description": "class -> probability (classifiers only)",
                        },
                    },
                },
            },
        },
    }
    schemas["InferRequest"] = {
        "type": "object",
        "required": ["inputs"],
        "properties": {
            "id": {"type": "string"},
            "parameters": {"type": "object"},
            "inputs": {"type": "array", "items": _ref("Tensor")},
            "outputs": {
                "type": "array",
                "items": {"type": "object", "properties": {"name": {"type": "string"}}},
            },
        },
    }
    schemas["InferResponse"] = {
        "type": "object",
        "properties": {
            "model_name": {"type": "string"},
            "model_version": {"type": "string"},
            "id": {"type": "string"},
            "outputs": {"type": "array", "items": _ref("Tensor")},
        },
    }
    schemas["ModelList"] = {
        "type": "object",
        "properties": {
            "models": {
                "type": "array",
                "items": {
                    "type": "object",
                    "properties": {
                        "name": {"type": "string"},
                        "model": {"type": "string"},
                        "reference": {"type": "string", "examples": ["cancer@champion"]},
                        "version": {"type": ["integer", "null"]},
                        "ready": {"type": "boolean"},
                        "last_error": {"type": ["string", "null"]},
                    },
                },
            }
        },
    }
    schemas["RepositoryIndex"] = {
        "type": "array",
        "items": {
            "type": "object",
            "required": ["name", "state"],
            "properties": {
                "name": {"type": "string"},
                "version": {"type": "string"},
                "state": {"type": "string", "enum": ["READY", "UNAVAILABLE"]},
                "reason": {"type": "string"},
            },
        },
    }
    name_param = {
        "name": "name",
        "in": "path",
        "required": True,
        "schema": {"type": "string", "enum": names} if names else {"type": "string"},
    }
    v1_name_param = {
        "name": "name",
        "in": "path",
        "required": True,
        "description": "a served name, or NAME@VERSION (NAME@ALIAS) for one of its versions",
        "schema": {"type": "string", "examples": names} if names else {"type": "string"},
    }
    version_param = {
        "name": "version",
        "in": "path",
        "required": True,
        "schema": {"type": "string"},
    }
    v1_body: dict[str, Any] = {"schema": _ref("PredictRequest")}
    if v1_examples:
        v1_body["examples"] = v1_examples
    v2_body: dict[str, Any] = {"schema": _ref("InferRequest")}
    if v2_examples:
        v2_body["examples"] = v2_examples
    infer_op = {
        "tags": ["v2"],
        "summary": "Open Inference Protocol inference",
        "requestBody": {"required": True, "content": {"application/json": v2_body}},
        "responses": {
            "200": _json(_ref("InferResponse"), "Outputs"),
            **_errors(400, 404, 413, 415, 422),
        },
    }
    meta_op = {
        "tags": ["v2"],
        "summary": "Model metadata: inputs and outputs with V2 datatypes",
        "responses": {"200": {"description": "Model metadata"}, **_errors(404)},
    }
    ready_op = {
        "tags": ["v2"],
        "summary": "Whether the model is loaded",
        "responses": {"200": {"description": "name and ready"}, **_errors(404)},
    }
    paths: dict[str, Any] = {
        "/v1/models/{name}:predict": {
            "post": {
                "tags": ["v1"],
                "summary": "Predict records",
                "parameters": [v1_name_param],
                "requestBody": {"required": True, "content": {"application/json": v1_body}},
                "responses": {
                    "200": _json(_ref("PredictResponse"), "One prediction per instance"),
                    **_errors(400, 404, 413, 415, 422),
                },
            }
        },
        "/v1/models/{name}:recommend": {  # serve/recommend.py
            "post": {
                "tags": ["v1"],
                "summary": "Top-k items of a recommender for a user (a user never seen in "
                "training gets the popular items, with fallback: popular)",
                "parameters": [v1_name_param],
                "requestBody": {
                    "required": True,
                    "content": {
                        "application/json": {
                            "schema": {
                                "type": "object",
                                "required": ["user"],
                                "properties": {
                                    "user": {"oneOf": [{"type": "string"}, {"type": "integer"}]},
                                    "k": {"type": "integer", "minimum": 1, "default": 10},
                                    "exclude_seen": {"type": "boolean", "default": True},
                                },
                                "additionalProperties": False,
                            }
                        }
                    },
                },
                "responses": {
                    "200": {"description": "items, scores, known_user, fallback"},
                    **_errors(400, 404, 413, 415),
                },
            }
        },
        "/v1/models/{name}:reload": {
            "post": {
                "tags": ["v1"],
                "summary": "Re-resolve the model's alias now and swap in a new version "
                "(after it loads and warms up)",
                "parameters": [v1_name_param],
                "security": [{"bearer": []}],
                "responses": {
                    "200": {"description": "previous and current version"},
                    **_errors(401, 404, 409),
                },
            }
        },
        "/v1/models": {
            "get": {
                "tags": ["v1"],
                "summary": "What is served: name, model, reference, version, ready, last error",
                "responses": {"200": _json(_ref("ModelList"), "One item per served reference")},
            }
        },
        "/v2/repository/index": {
            "post": {
                "tags": ["v2"],
                "summary": "Model repository index (KServe extension): name, version, state, "
                "reason of every served version",
                "requestBody": {
                    "required": False,
                    "content": {
                        "application/json": {
                            "schema": {
                                "type": "object",
                                "properties": {"ready": {"type": "boolean"}},
                                "additionalProperties": False,
                            }
                        }
                    },
                },
                "responses": {
                    "200": _json(_ref("RepositoryIndex"), "One item per served version"),
                    **_errors(400, 415),
                },
            }
        },
        "/v2": {
            "get": {
                "tags": ["v2"],
                "summary": "Server metadata",
                "responses": {"200": {"description": "name, version, extensions"}},
            }
        },
        "/v2/health/live": {
            "get": {
                "tags": ["v2"],
                "summary": "Liveness",
                "responses": {"200": {"description": "live"}},
            }
        },
        "/v2/health/ready": {
            "get": {
                "tags": ["v2"],
                "summary": "Readiness: every served model is loaded",
                "responses": {"200": {"description": "ready"}, "503": {"description": "not ready"}},
            }
        },
        "/v2/models/{name}": {"get": {**meta_op, "parameters": [name_param]}},
        "/v2/models/{name}/versions/{version}": {
            "get": {**meta_op, "parameters": [name_param, version_param]}
        },
        "/v2/models/{name}/ready": {"get": {**ready_op, "parameters": [name_param]}},
        "/v2/models/{name}/versions/{version}/ready": {
            "get": {**ready_op, "parameters": [name_param, version_param]}
        },
        "/v2/models/{name}/infer": {"post": {**infer_op, "parameters": [name_param]}},
        "/v2/models/{name}/versions/{version}/infer": {
            "post": {**infer_op, "parameters": [name_param, version_param]}
        },
        "/metrics": {
            "get": {
                "tags": ["ops"],
                "summary": "Prometheus metrics",
                "responses": {
                    "200": {
                        "description": "text exposition format 0.0.4",
                        "content": {"text/plain": {}},
                    }
                },
            }
        },
    }
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "loopml model server",
            "version": version,
            "description": "Records endpoint (v1) and the Open Inference Protocol (v2). "
            "Served models: " + (", ".join(names) or "none"),
        },
        "paths": paths,
        "components": {
            "schemas": schemas,
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        },
    }


def _operation_html(path: str, method: str, op: dict[str, Any]) -> str:
    esc = html.escape
    parts = [
        f'<section><h3><span class="m {esc(method)}">{esc(method.upper())}</span>'
        f"<code>{esc(method.upper())} {esc(path)}</code></h3>",
        f"<p>{esc(str(op.get('summary', '')))}</p>",
    ]
    if op.get("security"):
        parts.append("<p>Needs <code>Authorization: Bearer &lt;token&gt;</code>.</p>")
    params = op.get("parameters") or []
    if params:
        rows = "".join(
            f"<tr><td><code>{esc(p['name'])}</code></td><td>{esc(p['in'])}</td>"
            f"<td>{esc(', '.join(map(str, p.get('schema', {}).get('enum', []))))}</td></tr>"
            for p in params
        )
        parts.append(f"<table>{rows}</table>")
    content = (op.get("requestBody") or {}).get("content", {}).get("application/json", {})
    for name, example in (content.get("examples") or {}).items():
        body = orjson.dumps(example.get("value"), option=orjson.OPT_INDENT_2).decode()
        parts.append(f"<p>Example for <code>{esc(name)}</code>:</p><pre>{esc(body)}</pre>")
    codes = ", ".join(
        f"{esc(code)} {esc(str(r.get('description', '')))}"
        for code, r in (op.get("responses") or {}).items()
    )
    parts.append(f"<p>Responses: {codes}</p></section>")
    return "".join(parts)


def docs_page(document: dict[str, Any]) -> str:
    """The /docs page: every operation of the OpenAPI document rendered on the server,
    with the example requests; no script and nothing loaded from elsewhere."""
    title = html.escape(str(document.get("info", {}).get("title", "loopml")))
    description = html.escape(str(document.get("info", {}).get("description", "")))
    ops = [
        _operation_html(path, method, op)
        for path, methods in document.get("paths", {}).items()
        for method, op in methods.items()
    ]
    return (
        '<!doctype html><html lang="en"><head><meta charset="utf-8">'
        f"<title>{title} - API docs</title><style>{DOCS_STYLE}</style></head><body>"
        f"<h1>{title}</h1><p>{description}</p><p>The OpenAPI document is at "
        '<a href="openapi.json">openapi.json</a>. POST bodies are JSON: send '
        "<code>Content-Type: application/json</code>.</p>"
        f"{''.join(ops)}</body></html>"
    )
