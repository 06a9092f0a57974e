"""Pod volumes as host directories, and the bind mounts that put them at mountPath.

| volume                  | host directory                                              |
| ----------------------- | ----------------------------------------------------------- |
| emptyDir (any medium)   | `<pod dir>/volumes/<name>`                                  |
| hostPath                | the path itself (created for `DirectoryOrCreate`/unset)     |
| persistentVolumeClaim   | the bound PersistentVolume's `hostPath`/`local` path        |
| configMap / secret      | files written into `<pod dir>/volumes/<name>`               |
| downwardAPI / projected | files (serviceAccountToken, configMap, secret, downwardAPI) |

The service-account volume is the API server's doing: its ServiceAccount admission plugin
adds a projected `kube-api-access-*` volume (a TokenRequest token, the `kube-root-ca.crt`
ConfigMap, the namespace) and its mounts to every pod that automounts; the kubelet
obtains the tokens (`token_sources`) and writes the files.
"""

from __future__ import annotations

import base64
import os
import shutil
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .envvars import ConfigError, field_value

Obj = dict[str, Any]
DEFAULT_TOKEN_SECONDS = 3600


@dataclass(frozen=True)
class TokenSource:
    """A projected serviceAccountToken: where it goes and what it is for."""

    volume: str
    path: str
    audience: str | None
    seconds: int


def token_sources(pod: Obj) -> list[TokenSource]:
    """Every projected serviceAccountToken of the pod."""
    out = []
    for vol in (pod.get("spec") or {}).get("volumes") or []:
        for source in (vol.get("projected") or {}).get("sources") or []:
            token = source.get("serviceAccountToken")
            if token is not None:
                out.append(
                    TokenSource(
                        str(vol.get("name")),
                        str(token.get("path") or "token"),
                        token.get("audience") or None,
                        int(token.get("expirationSeconds") or DEFAULT_TOKEN_SECONDS),
                    )
                )
    return out


@dataclass(frozen=True)
class Mount:
    source: Path
    target: str
    read_only: bool = False


def volume_path(
    ns: str, claim: str, pvcs: Mapping[tuple[str, str], Obj], pvs: Mapping[tuple[str, str], Obj]
) -> Path:
    """The host directory of a claim's bound PersistentVolume."""
    pvc = pvcs.get((ns, claim))
    if pvc is None:
        raise ConfigError(f'persistentvolumeclaim "{claim}" not found')
    volume_name = (pvc.get("spec") or {}).get("volumeName")
    pv = pvs.get(("", str(volume_name))) if volume_name else None
    if pv is None:
        raise ConfigError(f'persistentvolumeclaim "{claim}" is not bound to a volume yet')
    spec = pv.get("spec") or {}
    path = (spec.get("hostPath") or spec.get("local") or {}).get("path")
    if not path:
        raise ConfigError(f"volume {volume_name} has no local path this node can mount")
    return Path(str(path))


def _write_items(
    dest: Path, data: Mapping[str, bytes], items: list[Obj] | None, mode: int, optional: bool
) -> None:
    dest.mkdir(parents=True, exist_ok=True)
    chosen: list[tuple[str, str, int]] = []
    if items:
        for item in items:
            key = str(item.get("key"))
            if key not in data:
                if optional:
                    continue
                raise ConfigError(f"configmap/secret key {key!r} not found")
            chosen.append((key, str(item.get("path") or key), int(item.get("mode") or mode)))
    else:
        chosen = [(k, k, mode) for k in data]
    for key, rel, file_mode in chosen:
        target = dest / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data[key])
        os.chmod(target, file_mode)


def _source_data(
    kind: str, name: str, ns: str, objects: Mapping[tuple[str, str], Obj], optional: bool
) -> dict[str, bytes] | None:
    obj = objects.get((ns, name))
    if obj is None:
        if optional:
            return {}
        raise ConfigError(f'{kind} "{name}" not found')
    if kind == "secret":
        out = {k: base64.b64decode(v) for k, v in (obj.get("data") or {}).items()}
        out.update({k: str(v).encode() for k, v in (obj.get("stringData") or {}).items()})
        return out
    out = {k: str(v).encode() for k, v in (obj.get("data") or {}).items()}
    out.update({k: base64.b64decode(v) for k, v in (obj.get("binaryData") or {}).items()})
    return out


def _downward(pod: Obj, items: list[Obj]) -> dict[str, bytes]:
    out: dict[str, bytes] = {}
    for item in items:
        if "fieldRef" in item:
            out[str(item.get("path"))] = field_value(
                pod, str(item["fieldRef"].get("fieldPath"))
            ).encode()
    return out


def prepare_volumes(
    pod: Obj,
    pod_dir: Path,
    configmaps: Mapping[tuple[str, str], Obj],
    secrets: Mapping[tuple[str, str], Obj],
    pvcs: Mapping[tuple[str, str], Obj],
    pvs: Mapping[tuple[str, str], Obj],
    tokens: Mapping[tuple[str, str], bytes],
) -> dict[str, Path]:
    """Create every volume's directory; name → host path. ConfigError if one is missing."""
    meta, spec = pod.get("metadata") or {}, pod.get("spec") or {}
    ns = str(meta.get("namespace") or "default")
    volumes: dict[str, Path] = {}
    for vol in spec.get("volumes") or []:
        name = str(vol.get("name"))
        local = pod_dir / "volumes" / name
        if "emptyDir" in vol:
            local.mkdir(parents=True, exist_ok=True)
            volumes[name] = local
        elif "hostPath" in vol:
            path = Path(vol["hostPath"].get("path", ""))
            kind = vol["hostPath"].get("type") or ""
            if kind in ("", "DirectoryOrCreate"):
                path.mkdir(parents=True, exist_ok=True)
            elif kind == "FileOrCreate":
                path.parent.mkdir(parents=True, exist_ok=True)
                path.touch()
            elif not path.exists():
                raise ConfigError(f"hostPath type check failed: {path} is not a {kind}")
            volumes[name] = path
        elif "persistentVolumeClaim" in vol:
            claim = str(vol["persistentVolumeClaim"].get("claimName"))
            path = volume_path(ns, claim, pvcs, pvs)
            path.mkdir(parents=True, exist_ok=True)
            volumes[name] = path
        elif "configMap" in vol or "secret" in vol:
            kind = "configmap" if "configMap" in vol else "secret"
            src = vol.get("configMap") or vol.get("secret") or {}
            ref = str(src.get("name") or src.get("secretName") or "")
            optional = bool(src.get("optional"))
            data = _source_data(
                kind, ref, ns, configmaps if kind == "configmap" else secrets, optional
            )
            shutil.rmtree(local, ignore_errors=True)
            _write_items(
                local, data or {}, src.get("items"), int(src.get("defaultMode") or 0o644), optional
            )
            volumes[name] = local
        elif "downwardAPI" in vol:
            shutil.rmtree(local, ignore_errors=True)
            _write_items(
                local, _downward(pod, vol["downwardAPI"].get("items") or []), None, 0o644, False
            )
            volumes[name] = local
        elif "projected" in vol:
            shutil.rmtree(local, ignore_errors=True)
            mode = int(vol["projected"].get("defaultMode") or 0o644)
            for source in vol["projected"].get("sources") or []:
                if "serviceAccountToken" in source:
                    token_file = str(source["serviceAccountToken"].get("path") or "token")
                    token = tokens.get((name, token_file))
                    if token is None:
                        raise ConfigError(f"no service-account token for volume {name!r} yet")
                    _write_items(local, {token_file: token}, None, mode, False)
                elif "configMap" in source or "secret" in source:
                    kind = "configmap" if "configMap" in source else "secret"
                    src = source.get("configMap") or source.get("secret") or {}
                    optional = bool(src.get("optional"))
                    objs = configmaps if kind == "configmap" else secrets
                    data = _source_data(kind, str(src.get("name")), ns, objs, optional)
                    _write_items(local, data or {}, src.get("items"), mode, optional)
                elif "downwardAPI" in source:
                    items = source["downwardAPI"].get("items") or []
                    _write_items(local, _downward(pod, items), None, mode, False)
            local.mkdir(parents=True, exist_ok=True)
            volumes[name] = local
        else:
            local.mkdir(parents=True, exist_ok=True)
            volumes[name] = local
    return volumes


def container_mounts(container: Obj, volumes: Mapping[str, Path]) -> list[Mount]:
    """The container's volumeMounts as bind mounts."""
    mounts: list[Mount] = []
    for vm in container.get("volumeMounts") or []:
        name = str(vm.get("name"))
        if name not in volumes:
            raise ConfigError(f'volume "{name}" is mounted but not defined in the pod')
        source = volumes[name]
        sub = str(vm.get("subPath") or "")
        if sub:
            if sub.startswith("/") or ".." in Path(sub).parts:
                raise ConfigError(f"subPath {sub!r} must be a relative path inside the volume")
            source = source / sub
            if not source.exists():
                source.mkdir(parents=True, exist_ok=True)
        target = str(vm.get("mountPath"))
        mounts.append(Mount(source, target, bool(vm.get("readOnly"))))
    return mounts
