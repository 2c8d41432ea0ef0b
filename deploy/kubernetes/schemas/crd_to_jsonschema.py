"""Turn a CustomResourceDefinition's openAPIV3Schema into the JSON Schema files kubeconform
reads (`<group>/<kind>_<version>.json`), strict: an object that lists its properties accepts no
others, as the API server's pruning would drop them silently.

    python3 crd_to_jsonschema.py CRD.yaml... --out .   (in deploy/kubernetes/schemas)

The vendored KEDA schemas here were made from keda.sh_scaledobjects.yaml and
keda.sh_triggerauthentications.yaml of the Go module github.com/kedacore/keda/v2 v2.21.0
(config/crd/bases; Apache-2.0, see LICENSE-KEDA.md).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import yaml  # type: ignore[import-untyped]


def convert(node: Any) -> Any:
    if isinstance(node, list):
        return [convert(x) for x in node]
    if not isinstance(node, dict):
        return node
    out = {k: convert(v) for k, v in node.items() if not k.startswith("x-kubernetes-")}
    if node.get("x-kubernetes-int-or-string"):
        out.pop("type", None)
        out["oneOf"] = [{"type": "string"}, {"type": "integer"}]
    if ("properties" in node and "additionalProperties" not in node
            and not node.get("x-kubernetes-preserve-unknown-fields")):
        out["additionalProperties"] = False
    return out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("crds", nargs="+", type=Path)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    for path in args.crds:
        crd = yaml.safe_load(path.read_text())
        group, kind = crd["spec"]["group"], crd["spec"]["names"]["kind"].lower()
        for version in crd["spec"]["versions"]:
            schema = convert(version["schema"]["openAPIV3Schema"])
            target = args.out / group / f"{kind}_{version['name']}.json"
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(json.dumps(schema, indent=1, sort_keys=True) + "\n")
            print(target)


if __name__ == "__main__":
    main()
