"""Check a built wheel: mapped packages under diag/, rule files shipped, nothing at the top level."""

import sys
import zipfile

names = zipfile.ZipFile(sys.argv[1]).namelist()
top = {n.split("/")[0] for n in names if not n.split("/")[0].endswith((".dist-info", ".data"))}
problems = []
if top != {"diag"}:
    problems.append(f"top-level entries other than diag/: {sorted(top - {'diag'})}")
for required in ("diag/adapters/__init__.py", "diag/tui/__init__.py", "diag/knowledge_base/__init__.py",
                 "diag/schemas/trace.schema.json", "diag/cli/__init__.py", "diag/preflight/__init__.py",
                 "diag/sweep/__init__.py", "diag/engine/conditions/__init__.py", "diag/engine/kb/__init__.py",
                 "diag/adapters/importers/__init__.py", "diag/adapters/importers/names.yaml"):
    if required not in names:
        problems.append(f"missing {required}")
if not any(n.startswith("diag/knowledge_base/") and n.endswith(".yaml") for n in names):
    problems.append("no knowledge-base YAML in the wheel")
if problems:
    sys.exit("wheel check failed:\n  " + "\n  ".join(problems))
print(f"wheel ok: {len(names)} files, top level {sorted(top)}")
