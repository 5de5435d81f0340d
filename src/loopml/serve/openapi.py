"""The server's OpenAPI 3.1 document, written from the served models' signatures.

The app is plain Starlette (no request models on the hot path), so the document is built
here: every endpoint, and for each served model the schema of one instance and an example
request that "Try it out" in ``/docs`` can send as is.
"""

from __future__ import annotations

import html
from typing import Any

from loopml.kinds import CATEGORICAL
from loopml.registry.signature import Signature
from loopml.serve.runtime import ModelSet

SWAGGER_HTML = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>loopml model server - API docs</title>
<link rel="stylesheet" href="https://cdn.jsdelivr.net/npm/swagger-ui-dist@5/swagger-ui.css">
</head>
<body>
<div id="swagger-ui">{listing}</div>
<script src="https://cdn.jsdelivr.net/npm/swagger-ui-dist@5/swagger-ui-bundle.js"></script>
<script>
window.ui = SwaggerUIBundle({{url: "openapi.json", dom_id: "#swagger-ui", deepLinking: true}});
</script>
<noscript>The OpenAPI document is at <a href="openapi.json">openapi.json</a>.</noscript>
</body>
</html>
"""

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
        else:
            prop = {"type": ["number", "null"] if f.nullable else "number"}
            if f.min is not None and f.max is not None:
                prop["description"] = f"seen in training: {f.min:g} to {f.max:g}"
        props[f.name] = prop
    return {
        "type": "object",
        "required": sig.names,
        "additionalProperties": False,
        "properties": props,
    }


def example_instance(sig: Signature) -> dict[str, Any]:
    """A valid instance: mid-range numbers, the first category."""
    out: dict[str, Any] = {}
    for f in sig.inputs:
        if f.kind == CATEGORICAL:
            out[f.name] = (f.categories or [""])[0]
        elif f.min is not None and f.max is not None:
            out[f.name] = round((f.min + f.max) / 2, 6)
        else:
            out[f.name] = 0.0
    return out


def build_openapi(models: ModelSet | None, version: str) -> dict[str, Any]:
    """The OpenAPI document for the models this server serves right now."""
    served = models.served if models is not None else {}
    names = sorted(served)
    schemas: dict[str, Any] = {"Error": ERROR_SCHEMA, "Tensor": TENSOR_SCHEMA}
    v1_examples: dict[str, Any] = {}
    v2_examples: dict[str, Any] = {}
    instance_refs = []
    for name in names:
        runtime = served[name].runtime
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
                        "datatype": "BYTES" if f.kind == CATEGORICAL else "FP64",
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
    name_param = {
        "name": "name",
        "in": "path",
        "required": True,
        "schema": {"type": "string", "enum": names} if names else {"type": "string"},
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
        "responses": {"200": _json(_ref("InferResponse"), "Outputs"), **_errors(400, 404, 422)},
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
                "parameters": [name_param],
                "requestBody": {"required": True, "content": {"application/json": v1_body}},
                "responses": {
                    "200": _json(_ref("PredictResponse"), "One prediction per instance"),
                    **_errors(400, 404, 422),
                },
            }
        },
        "/v1/models/{name}:reload": {
            "post": {
                "tags": ["v1"],
                "summary": "Re-resolve the model's alias now and swap in a new version",
                "parameters": [name_param],
                "security": [{"bearer": []}],
                "responses": {
                    "200": {"description": "previous and current version"},
                    **_errors(401, 404),
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


def docs_page(document: dict[str, Any]) -> str:
    """The /docs page: Swagger UI when its scripts load, and a plain listing of every
    operation rendered on the server, so the page is useful offline too."""
    items = []
    for path, ops in document.get("paths", {}).items():
        for method, op in ops.items():
            summary = html.escape(str(op.get("summary", "")))
            items.append(
                f"<li><code>{html.escape(method.upper())} {html.escape(path)}</code> {summary}</li>"
            )
    title = html.escape(str(document.get("info", {}).get("title", "loopml")))
    listing = (
        f"<h1>{title}</h1><p>The full OpenAPI document is at "
        f'<a href="openapi.json">openapi.json</a>.</p><ul>{"".join(items)}</ul>'
    )
    return SWAGGER_HTML.format(listing=listing)
