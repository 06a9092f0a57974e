"""Container environment and `$(VAR)` expansion, as the kubelet computes them (pure)."""

from __future__ import annotations

import base64
import re
from collections.abc import Mapping
from typing import Any

Obj = dict[str, Any]


class ConfigError(Exception):
    """The pod references something that is missing (CreateContainerConfigError)."""


_VAR = re.compile(r"\$\$|\$\(([A-Za-z_][A-Za-z0-9_.\-]*)\)")


def expand(text: str, env: Mapping[str, str]) -> str:
    """Expand `$(VAR)` from env; `$$` escapes; unknown references stay as written."""

    def repl(m: re.Match[str]) -> str:
        if m.group(0) == "$$":
            return "$"
        name = m.group(1)
        return env[name] if name in env else m.group(0)

    return _VAR.sub(repl, text)


def field_value(pod: Obj, path: str) -> str:
    """A downward-API fieldRef (`metadata.labels['x']`, `status.podIP`, ...)."""
    meta = pod.get("metadata") or {}
    spec = pod.get("spec") or {}
    status = pod.get("status") or {}
    m = re.fullmatch(r"metadata\.(labels|annotations)\['([^']*)'\]", path)
    if m:
        return str((meta.get(m.group(1)) or {}).get(m.group(2), ""))
    simple: dict[str, Any] = {
        "metadata.name": meta.get("name"),
        "metadata.namespace": meta.get("namespace"),
        "metadata.uid": meta.get("uid"),
        "spec.nodeName": spec.get("nodeName"),
        "spec.serviceAccountName": spec.get("serviceAccountName") or "default",
        "status.podIP": status.get("podIP"),
        "status.hostIP": status.get("hostIP"),
        "status.podIPs": status.get("podIP"),
        "status.hostIPs": status.get("hostIP"),
    }
    if path in ("metadata.labels", "metadata.annotations"):
        items = meta.get(path.split(".")[1]) or {}
        return "\n".join(f'{k}="{v}"' for k, v in sorted(items.items()))
    if path not in simple:
        raise ConfigError(f"unsupported fieldRef fieldPath {path!r}")
    return str(simple[path] or "")


def resource_value(container: Obj, ref: Mapping[str, Any]) -> str:
    """A resourceFieldRef (limits.cpu, requests.memory, ...) as an integer string."""
    from .quantity import parse_quantity

    resource = str(ref.get("resource", ""))
    kind, _, name = resource.partition(".")
    value = ((container.get("resources") or {}).get(kind) or {}).get(name)
    if value is None:
        return "0"
    divisor = parse_quantity(ref.get("divisor", "1"))
    amount = parse_quantity(value) / divisor
    return str(int(amount) if amount == int(amount) else int(amount) + 1)


def _secret_data(secret: Obj) -> dict[str, str]:
    data = {k: base64.b64decode(v).decode() for k, v in (secret.get("data") or {}).items()}
    data.update(secret.get("stringData") or {})
    return data


def lookup_key(
    kind: str, ref: Mapping[str, Any], namespace: str, objects: Mapping[tuple[str, str], Obj]
) -> str | None:
    name = str(ref.get("name", ""))
    obj = objects.get((namespace, name))
    optional = bool(ref.get("optional"))
    if obj is None:
        if optional:
            return None
        raise ConfigError(f'{kind} "{name}" not found')
    data = _secret_data(obj) if kind == "secret" else dict(obj.get("data") or {})
    key = str(ref.get("key"))
    if key not in data:
        if optional:
            return None
        raise ConfigError(f"couldn't find key {key} in {kind.capitalize()} {namespace}/{name}")
    return str(data[key])


def container_env(
    pod: Obj,
    container: Obj,
    configmaps: Mapping[tuple[str, str], Obj],
    secrets: Mapping[tuple[str, str], Obj],
    base: Mapping[str, str] | None = None,
) -> dict[str, str]:
    """envFrom then env (later wins), with `$(VAR)` expanded against what came before."""
    ns = str((pod.get("metadata") or {}).get("namespace") or "default")
    env: dict[str, str] = dict(base or {})
    for source in container.get("envFrom") or []:
        prefix = str(source.get("prefix") or "")
        if "configMapRef" in source:
            ref = source["configMapRef"]
            obj = configmaps.get((ns, ref.get("name", "")))
            if obj is None and not ref.get("optional"):
                raise ConfigError(f'configmap "{ref.get("name")}" not found')
            data = dict((obj or {}).get("data") or {})
        elif "secretRef" in source:
            ref = source["secretRef"]
            obj = secrets.get((ns, ref.get("name", "")))
            if obj is None and not ref.get("optional"):
                raise ConfigError(f'secret "{ref.get("name")}" not found')
            data = _secret_data(obj or {})
        else:
            continue
        for k, v in data.items():
            env[prefix + k] = str(v)
    for item in container.get("env") or []:
        name = str(item.get("name", ""))
        if "value" in item:
            env[name] = expand(str(item.get("value") or ""), env)
            continue
        source = item.get("valueFrom") or {}
        value: str | None = ""
        if "fieldRef" in source:
            value = field_value(pod, str(source["fieldRef"].get("fieldPath", "")))
        elif "resourceFieldRef" in source:
            value = resource_value(container, source["resourceFieldRef"])
        elif "configMapKeyRef" in source:
            value = lookup_key("configmap", source["configMapKeyRef"], ns, configmaps)
        elif "secretKeyRef" in source:
            value = lookup_key("secret", source["secretKeyRef"], ns, secrets)
        if value is not None:
            env[name] = value
    return env


def container_argv(container: Obj, env: Mapping[str, str]) -> list[str]:
    """command + args (or the image's assumed entrypoint) with `$(VAR)` expanded."""
    from .images import with_entrypoint

    command = [expand(str(a), env) for a in (container.get("command") or [])]
    args = [expand(str(a), env) for a in (container.get("args") or [])]
    return with_entrypoint(str(container.get("image") or ""), command, args)
