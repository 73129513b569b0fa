"""`diag explain` builds its models without looking up third-party pydantic plugins.

The lookup reads every installed distribution's entry points (~6.5 ms with 150 installed).
A real plugin package (a module and its dist-info with a ``pydantic`` entry point) is put on the
path; it records that pydantic loaded it. A plain pydantic model loads it (so the package is a
working plugin); explain does not, unless the user set ``PYDANTIC_DISABLE_PLUGINS`` themselves.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "examples" / "healthy.jsonl"

PLUGIN = '''
import os
from pathlib import Path

Path(os.environ["PROBE_MARKER"]).write_text("loaded")


class _Plugin:
    def new_schema_validator(self, schema, schema_type, schema_type_path, schema_kind, config, plugin_settings):
        return None, None, None


plugin = _Plugin()
'''


def _site_with_plugin(tmp_path: Path) -> Path:
    site = tmp_path / "site"
    (site / "probe_plugin-0.1.dist-info").mkdir(parents=True, exist_ok=True)
    (site / "probe_plugin.py").write_text(PLUGIN)
    (site / "probe_plugin-0.1.dist-info" / "METADATA").write_text("Metadata-Version: 2.1\nName: probe-plugin\nVersion: 0.1\n")
    (site / "probe_plugin-0.1.dist-info" / "entry_points.txt").write_text("[pydantic]\nprobe = probe_plugin:plugin\n")
    return site


def _run(args: list[str], tmp_path: Path, **extra) -> tuple[subprocess.CompletedProcess, bool]:
    marker = tmp_path / "marker"
    marker.unlink(missing_ok=True)
    env = {k: v for k, v in os.environ.items() if k != "PYDANTIC_DISABLE_PLUGINS"}
    env.update(PYTHONPATH=str(_site_with_plugin(tmp_path)), PROBE_MARKER=str(marker),
               DIAG_CACHE_DIR=str(tmp_path / "cache"), **extra)
    done = subprocess.run([sys.executable, *args], env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    return done, marker.exists()


def test_the_probe_is_a_working_pydantic_plugin(tmp_path):
    _, loaded = _run(["-c", "import pydantic\nclass M(pydantic.BaseModel):\n    x: int = 0"], tmp_path)
    assert loaded


def test_explain_does_not_look_up_pydantic_plugins_and_prints_the_same(tmp_path):
    done, loaded = _run(["-m", "diag", "explain", str(EXAMPLE), "--format", "json"], tmp_path)
    assert not loaded
    # The user's own choice stands: naming another plugin to disable leaves this one on.
    chosen, loaded = _run(["-m", "diag", "explain", str(EXAMPLE), "--format", "json"], tmp_path,
                          PYDANTIC_DISABLE_PLUGINS="some_other_plugin")
    assert loaded
    assert chosen.stdout == done.stdout and '"causes"' in done.stdout


def test_explain_does_not_import_the_plugin_loader_and_leaves_the_real_one_for_later(tmp_path):
    # The loader's import of importlib.metadata is most of what looking plugins up cost; in-process,
    # a model built after explain still gets the real loader (and the plugin).
    script = f'''
import sys
import pydantic
from diag.cli import main
main(["explain", {str(EXAMPLE)!r}, "--output", {str(tmp_path / "out.txt")!r}])
print("after explain:", "importlib.metadata" in sys.modules, "pydantic.plugin._loader" in sys.modules)
class M(pydantic.BaseModel):
    x: int = 0
print("after a model:", hasattr(sys.modules["pydantic.plugin._loader"], "entry_points"))
'''
    done, loaded = _run(["-c", script], tmp_path)
    assert done.stdout.splitlines() == ["after explain: False False", "after a model: True"]
    assert loaded


def test_the_stand_in_loader_hands_what_it_does_not_know_to_pydantics_own(tmp_path):
    # pydantic's loader is private: a version that asks it for another name gets the real one.
    script = f'''
import os, sys
from diag.cli.explain_cmd import PLUGIN_LOADER, _no_pydantic_plugins
with _no_pydantic_plugins():
    loader = sys.modules[PLUGIN_LOADER]
    print(list(loader.get_plugins()), "importlib.metadata" in sys.modules)
    from pydantic.plugin._loader import entry_points
    print(sys.modules[PLUGIN_LOADER].get_plugins.__module__, sys.modules[PLUGIN_LOADER] is not loader)
'''
    done, _ = _run(["-c", script], tmp_path)
    assert done.stdout.splitlines() == ["[] False", "pydantic.plugin._loader True"]
