"""Validates Kubernetes objects against the published CustomResourceDefinitions of their kinds, the
way an API server with strict field validation (kubectl apply --validate=strict) would:

- the CRD's openAPIV3Schema becomes a JSON Schema: every object node with `properties` and no
  `additionalProperties` / `x-kubernetes-preserve-unknown-fields` refuses unknown fields,
  `x-kubernetes-int-or-string` and `nullable` are honoured, embedded resources may carry
  apiVersion/kind/metadata, and `metadata` at the root is checked as an ObjectMeta;
- schema defaults are applied first (the API server defaults before it validates);
- the CRD's CEL rules (`x-kubernetes-validations`) are evaluated with cel-python where their
  functions are standard CEL; a rule using a Kubernetes-only CEL function is counted as skipped,
  and transition rules (oldSelf) do not apply to a create.

Usage: python3 crd_validate.py CRD_DIR FILE.yaml...   (exit 1 when any object is invalid)
Prints one JSON line: {"objects": n, "rules_checked": n, "rules_skipped": n, "errors": [...]}.
"""

import copy
import json
import os
import sys

import jsonschema
import yaml

# libyaml's loader when PyYAML has it: the CRDs are megabytes of YAML
YamlLoader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)

try:
    import celpy  # cel-python
except ImportError:  # the structural checks still run; every CEL rule counts as skipped
    celpy = None

DNS_SUBDOMAIN = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"
STRING_MAP = {"type": "object", "additionalProperties": {"type": "string"}}
OBJECT_META = {
    "type": "object",
    "properties": {
        "name": {"type": "string", "maxLength": 253, "pattern": DNS_SUBDOMAIN},
        "generateName": {"type": "string"},
        "namespace": {"type": "string", "maxLength": 63},
        "labels": STRING_MAP,
        "annotations": STRING_MAP,
        "finalizers": {"type": "array", "items": {"type": "string"}},
        "ownerReferences": {"type": "array", "items": {"type": "object"}},
    },
    "additionalProperties": False,
}


def to_json_schema(node):
    """A CRD structural schema node as a JSON Schema node (recursively)."""
    if not isinstance(node, dict):
        return node
    out = {}
    for key, value in node.items():
        if key in ("properties", "patternProperties"):
            out[key] = {k: to_json_schema(v) for k, v in value.items()}
        elif key in ("items", "additionalProperties", "not"):
            out[key] = to_json_schema(value) if isinstance(value, dict) else value
        elif key in ("allOf", "anyOf", "oneOf"):
            out[key] = [to_json_schema(v) for v in value]
        elif key.startswith("x-kubernetes-") or key in ("description", "format", "example"):
            continue
        else:
            out[key] = value
    if node.get("x-kubernetes-int-or-string"):
        out.pop("type", None)
        out["anyOf"] = out.get("anyOf", []) + [{"type": "integer"}, {"type": "string"}]
    if node.get("x-kubernetes-embedded-resource"):
        props = out.setdefault("properties", {})
        props.setdefault("apiVersion", {"type": "string"})
        props.setdefault("kind", {"type": "string"})
        props.setdefault("metadata", {"type": "object"})
    if (
        out.get("type") == "object"
        and "properties" in out
        and "additionalProperties" not in node
        and not node.get("x-kubernetes-preserve-unknown-fields")
    ):
        out["additionalProperties"] = False
    if node.get("nullable") and "type" in out:
        out["type"] = [out["type"], "null"]
    out.pop("nullable", None)
    return out


def apply_defaults(schema, value):
    """Fills absent fields with their schema defaults, as the API server does before validating."""
    if isinstance(value, dict):
        for key, sub in (schema.get("properties") or {}).items():
            if key not in value and "default" in sub:
                value[key] = copy.deepcopy(sub["default"])
            if key in value:
                apply_defaults(sub, value[key])
        extra = schema.get("additionalProperties")
        if isinstance(extra, dict):
            for key in value:
                if key not in (schema.get("properties") or {}):
                    apply_defaults(extra, value[key])
    elif isinstance(value, list) and isinstance(schema.get("items"), dict):
        for item in value:
            apply_defaults(schema["items"], item)


class CelChecker:
    def __init__(self):
        self.env = celpy.Environment() if celpy else None
        self.programs = {}
        self.checked = 0
        self.skipped = 0

    def rule(self, text):
        if text not in self.programs:
            try:
                self.programs[text] = self.env.program(self.env.compile(text))
            except Exception:  # noqa: BLE001 - a Kubernetes-only function or syntax: not checkable here
                self.programs[text] = None
        return self.programs[text]

    def walk(self, schema, value, path, errors):
        for v in schema.get("x-kubernetes-validations") or []:
            text = v.get("rule", "")
            if "oldSelf" in text:
                continue
            prog = self.rule(text) if self.env else None
            if prog is None:
                self.skipped += 1
                continue
            try:
                result = prog.evaluate({"self": celpy.json_to_cel(value)})
            except Exception:  # noqa: BLE001
                result = None
            if not isinstance(result, (bool, celpy.celtypes.BoolType)):
                self.skipped += 1
                continue
            self.checked += 1
            if not bool(result):
                errors.append(f"{path}: {v.get('message') or text}")
        if isinstance(value, dict):
            props = schema.get("properties") or {}
            for key, sub in props.items():
                if key in value:
                    self.walk(sub, value[key], f"{path}.{key}", errors)
            extra = schema.get("additionalProperties")
            if isinstance(extra, dict):
                for key in value:
                    if key not in props:
                        self.walk(extra, value[key], f"{path}.{key}", errors)
        elif isinstance(value, list) and isinstance(schema.get("items"), dict):
            for i, item in enumerate(value):
                self.walk(schema["items"], item, f"{path}[{i}]", errors)


def load_crds(directory):
    crds = {}
    for name in sorted(os.listdir(directory)):
        if not name.endswith((".yaml", ".yml")):
            continue
        with open(os.path.join(directory, name), encoding="utf-8") as f:
            for doc in yaml.load_all(f, Loader=YamlLoader):
                if not doc or doc.get("kind") != "CustomResourceDefinition":
                    continue
                spec = doc["spec"]
                for version in spec["versions"]:
                    if version.get("served", True):
                        key = (f"{spec['group']}/{version['name']}", spec["names"]["kind"])
                        crds[key] = version["schema"]["openAPIV3Schema"]
    return crds


def main(argv):
    crds = load_crds(argv[1])
    cel = CelChecker()
    errors = []
    count = 0
    for path in argv[2:]:
        with open(path, encoding="utf-8") as f:
            for obj in yaml.load_all(f, Loader=YamlLoader):
                if not obj:
                    continue
                count += 1
                where = f"{os.path.basename(path)} {obj.get('kind')}/{(obj.get('metadata') or {}).get('name')}"
                raw = crds.get((obj.get("apiVersion"), obj.get("kind")))
                if raw is None:
                    errors.append(f"{where}: no CRD for {obj.get('apiVersion')} {obj.get('kind')} in {argv[1]}")
                    continue
                schema = to_json_schema(raw)
                props = schema.setdefault("properties", {})
                props["metadata"] = OBJECT_META
                props["apiVersion"] = {"const": obj.get("apiVersion")}
                schema["additionalProperties"] = False
                schema["required"] = sorted(set(schema.get("required", [])) | {"apiVersion", "kind", "metadata"})
                obj = copy.deepcopy(obj)
                apply_defaults(raw, obj)
                validator = jsonschema.Draft202012Validator(schema)
                found = sorted(validator.iter_errors(obj), key=lambda e: list(e.absolute_path))
                for e in found:
                    at = ".".join(str(p) for p in e.absolute_path) or "(root)"
                    errors.append(f"{where}: {at}: {e.message}")
                if not found:
                    cel.walk(raw, obj, where, errors)
    print(json.dumps({"objects": count, "rules_checked": cel.checked, "rules_skipped": cel.skipped, "errors": errors}))
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
