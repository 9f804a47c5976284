"""Hatchling build hook: make sure the JS bundle exists before a wheel is built.

The bundle (`src/sqlrooms_nb/static/widget.js` + `widget.css`) is built from `js/` by esbuild and
is not committed. When it is missing, this hook runs `npm ci` (only if `node_modules/` is
missing) and `npm run build` in the project root; when it is present (the Makefile builds it
before `pip install -e`), the hook does nothing. It runs for standard and editable wheels alike.

Raises RuntimeError with what to do when npm is not installed or the build writes no bundle.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

from hatchling.builders.hooks.plugin.interface import BuildHookInterface

BUNDLE = Path("src", "sqlrooms_nb", "static", "widget.js")


class JsBundleHook(BuildHookInterface):  # type: ignore[type-arg]
    PLUGIN_NAME = "custom"

    def initialize(self, version: str, build_data: dict[str, Any]) -> None:
        root = Path(self.root)
        if (root / BUNDLE).is_file():
            return
        if not (root / "package.json").is_file():
            raise RuntimeError(
                f"sqlrooms_nb: {BUNDLE} is missing and there is no package.json in {root} to "
                "build it from; build from a git clone or an sdist that includes js/"
            )
        npm = shutil.which("npm")
        if npm is None:
            raise RuntimeError(
                f"sqlrooms_nb: {BUNDLE} is missing and npm is not on PATH; install Node.js 20+ "
                "with npm (Debian: apt-get install nodejs npm), or run `npm ci && npm run build` "
                "elsewhere and copy src/sqlrooms_nb/static/ here"
            )
        if not (root / "node_modules").is_dir():
            self._npm(npm, "ci", "--no-audit", "--no-fund")
        self._npm(npm, "run", "build")
        if not (root / BUNDLE).is_file():
            raise RuntimeError(f"sqlrooms_nb: `npm run build` finished but wrote no {BUNDLE}")

    def _npm(self, npm: str, *args: str) -> None:
        self.app.display_info(f"sqlrooms_nb: npm {' '.join(args)}")
        try:
            subprocess.run([npm, *args], cwd=self.root, check=True)
        except subprocess.CalledProcessError as exc:
            raise RuntimeError(
                f"sqlrooms_nb: `npm {' '.join(args)}` failed (exit status {exc.returncode}) "
                "while building the JS bundle; see its output above"
            ) from exc
