"""Reading the skops files inside a bundle: allowlisted types only, every failure translated.

Before skops builds anything, every node of the file's ``schema.json`` is read and the type
or function it names is compared with :func:`loopml.registry.allowlist.allowed_types` plus
the names the user trusted when registering the version. The names skops itself reports as
untrusted (methods, a generator's bit generator) are added to the same check. Only when
nothing is refused does skops load the file, trusting exactly the names that were checked;
then :mod:`loopml.registry.structure` checks the indices inside trees.

Whatever goes wrong (a pickle, a damaged zip, malformed JSON, an exception inside skops or
scikit-learn) is an :class:`~loopml.errors.IntegrityError`, or an
:class:`~loopml.errors.UnsafeFormatError` when the file names something loopml does not load.
"""

from __future__ import annotations

import io
import json
import zipfile
from collections.abc import Collection
from typing import Any

from loopml.errors import IntegrityError, LoopmlError, UnsafeFormatError
from loopml.registry.allowlist import allowed_types

SCHEMA = "schema.json"
_DATA_ONLY = ("JsonNode", "CachedNode")  # nodes that import nothing
_PICKLE_MAGIC = b"\x80"  # pickle protocols 2 and later start with PROTO
_SHOWN = 8  # refused names listed in a message
# the most a zip inside an artifact may unpack to (all its members, as declared); Python's
# zipfile never inflates a member past its declared size, so this bounds a zip bomb
MAX_UNPACKED_BYTES = 4 << 30


def check_unpacked(zf: zipfile.ZipFile, what: str, member: str | None = None) -> None:
    """UnsafeFormatError when the members of ``zf`` would unpack to more than the limit."""
    total = sum(info.file_size for info in zf.infolist())
    if total <= MAX_UNPACKED_BYTES:
        return
    where: dict[str, Any] = {"artifact": what}
    if member is not None:
        where["file"] = member
    raise UnsafeFormatError(
        f"{what}{': ' + member if member else ''} would unpack to {total} bytes, more than "
        f"the {MAX_UNPACKED_BYTES} loopml reads from one artifact",
        where=where,
        hint="A file that inflates this much is damaged or a zip bomb; retrain the model",
    )


def _damaged(what: str, member: str, detail: str) -> IntegrityError:
    return IntegrityError(
        f"{what}: {member} is not a readable skops file ({detail})",
        where={"artifact": what, "file": member},
        hint="The artifact is damaged or was not written by loopml; retrain or re-register "
        "the model",
    )


def _schema(data: bytes, member: str, what: str) -> Any:
    if data.startswith(_PICKLE_MAGIC):
        raise UnsafeFormatError(
            f"{what}: {member} is a pickle, which loopml never loads",
            where={"artifact": what, "file": member},
            hint="Loading a pickle runs code its author chose; save models with loopml "
            "(skops inside a bundle) instead",
        )
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as zf:
            check_unpacked(zf, what, member)
            return json.loads(zf.read(SCHEMA))
    except LoopmlError:
        raise
    except Exception as exc:  # BadZipFile, KeyError, zlib/JSON/Unicode errors, EOF...
        raise _damaged(what, member, f"{type(exc).__name__}: {exc}"[:200]) from exc


def type_names(data: bytes, member: str, what: str) -> set[str]:
    """Every type and function name the skops file ``data`` would import to build itself."""
    from loopml.registry.skopsio import skops_io

    sio = skops_io()

    schema = _schema(data, member, what)
    names: set[str] = set()
    stack = [schema]
    while stack:
        node = stack.pop()
        if isinstance(node, list):
            stack.extend(node)
            continue
        if not isinstance(node, dict):
            continue
        stack.extend(node.values())
        loader = node.get("__loader__")
        if loader is None or loader in _DATA_ONLY:
            continue
        module, cls = node.get("__module__"), node.get("__class__")
        if not isinstance(loader, str) or not isinstance(module, str) or not isinstance(cls, str):
            raise _damaged(what, member, "a node without its module or class")
        # a dotted class never resolves in skops; keep it visible so that it is refused
        names.add(f"{module}.{cls}" if "." not in cls else f"{module}:{cls}")
        if loader == "MethodNode":
            names.add(f"{module}.{cls}.{_content(node, 'func')}")
        elif loader == "FunctionNode" and isinstance(node.get("content"), dict):
            # skops's first protocol named the function in the content instead
            names.add(f"{_content(node, 'module_path')}.{_content(node, 'function')}")
        elif loader == "RandomGeneratorNode":
            names.add(f"numpy.random.{_bit_generator(node, member, what)}")
    try:
        names.update(sio.get_untrusted_types(data=data))
    except Exception as exc:
        raise _damaged(what, member, f"{type(exc).__name__}: {exc}"[:200]) from exc
    return names


def _content(node: dict[str, Any], key: str) -> str:
    content = node.get("content")
    value = content.get(key) if isinstance(content, dict) else None
    return value if isinstance(value, str) else "?"


def _bit_generator(node: dict[str, Any], member: str, what: str) -> str:
    """The bit generator's class name, which skops keeps as a plain string in the state."""
    try:
        state = node["content"]["bit_generator"]["content"]["bit_generator"]
        name = json.loads(state["content"])
    except (KeyError, TypeError, ValueError) as exc:
        raise _damaged(what, member, "a random generator without its bit generator") from exc
    if not isinstance(name, str):
        raise _damaged(what, member, "a random generator without its bit generator")
    return name


def refused_names(names: Collection[str], trusted: Collection[str]) -> list[str]:
    """The names neither on loopml's allowlist nor trusted, sorted."""
    allowed = allowed_types()
    return sorted(n for n in names if n not in allowed and n not in trusted)


def unsafe(refused: list[str], what: str, member: str | None = None) -> UnsafeFormatError:
    shown = ", ".join(refused[:_SHOWN])
    more = f" (and {len(refused) - _SHOWN} more)" if len(refused) > _SHOWN else ""
    where: dict[str, Any] = {"artifact": what}
    if member is not None:
        where["file"] = member
    return UnsafeFormatError(
        f"{what} contains types loopml does not load without an opt-in: {shown}{more}",
        types=refused,
        where=where,
        hint="A function, or a type loopml does not list, in a model file runs code its "
        "author chose. If you built this model yourself and trust it, register it with "
        f"trust={refused!r} (register_model(..., trust=[...]) or fit_bundle(..., "
        "trust=[...]), or model: {trust: [...]} in loopml.yaml); the opt-in is recorded on "
        "the version and shown by 'loopml models show'",
    )


def load_skops(
    data: bytes,
    member: str,
    what: str,
    trusted: Collection[str] = (),
    *,
    names: set[str] | None = None,
) -> Any:
    """The object in the skops file ``data``, after the checks in this module's docstring.

    ``names`` is what :func:`type_names` returned for ``data``, when already computed.
    """
    from loopml.registry.skopsio import skops_io

    sio = skops_io()

    from loopml.registry.structure import check_structure

    if names is None:
        names = type_names(data, member, what)
    refused = refused_names(names, trusted)
    if refused:
        raise unsafe(refused, what, member)
    try:
        obj = sio.loads(data, trusted=sorted(names))
        check_structure(obj, what)
    except LoopmlError:
        raise
    except Exception as exc:  # anything skops or scikit-learn raises on a bad file
        raise _damaged(what, member, f"{type(exc).__name__}: {exc}"[:200]) from exc
    return obj


__all__ = ["load_skops", "refused_names", "type_names", "unsafe"]
