// Build the anywidget bundle, or build and run the node tests.
//
//   node js/build.mjs          -> src/sqlrooms_nb/static/widget.js + widget.css (ESM, minified)
//   node js/build.mjs --test   -> bundles js/**/*.test.ts to node_modules/.cache/sqlrooms-nb-tests
//                                 and runs them with node's built-in test runner
//
// `loro-crdt` is aliased to `loro-crdt/base64` everywhere (ours and loro-codemirror's imports), so
// the bundle holds exactly one Loro instance with its wasm inlined; the build fails otherwise.
import { spawnSync } from "node:child_process";
import { readdirSync, rmSync, statSync } from "node:fs";
import { dirname, join, relative } from "node:path";
import { fileURLToPath } from "node:url";
import * as esbuild from "esbuild";

const root = join(dirname(fileURLToPath(import.meta.url)), "..");
const alias = { "loro-crdt": "loro-crdt/base64" };

/** Files under `dir` (recursively) whose name ends with `suffix`. */
function findFiles(dir, suffix) {
  return readdirSync(dir).flatMap((name) => {
    const path = join(dir, name);
    if (statSync(path).isDirectory()) return findFiles(path, suffix);
    return name.endsWith(suffix) ? [path] : [];
  });
}

function checkOneLoro(metafile) {
  const loro = Object.keys(metafile.inputs).filter((p) => p.includes("node_modules/loro-crdt/"));
  const other = loro.filter((p) => !p.includes("node_modules/loro-crdt/base64/"));
  if (loro.length === 0 || other.length > 0) {
    throw new Error(`expected exactly one Loro build (loro-crdt/base64) in the bundle, got: ${loro.join(", ")}`);
  }
}

async function buildWidget() {
  const outfile = join(root, "src/sqlrooms_nb/static/widget.js");
  const result = await esbuild.build({
    absWorkingDir: root,
    entryPoints: ["js/widget.ts"],
    outfile,
    bundle: true,
    format: "esm",
    platform: "browser",
    target: ["es2022"],
    minify: true,
    legalComments: "none",
    alias,
    metafile: true,
    logLevel: "warning",
  });
  checkOneLoro(result.metafile);
  for (const [path, out] of Object.entries(result.metafile.outputs)) {
    console.log(`${path}  ${(out.bytes / 1024 / 1024).toFixed(2)} MB`);
  }
}

async function buildAndRunTests() {
  const outdir = join(root, "node_modules/.cache/sqlrooms-nb-tests");
  rmSync(outdir, { recursive: true, force: true });
  const entryPoints = findFiles(join(root, "js"), ".test.ts").map((p) => relative(root, p));
  await esbuild.build({
    absWorkingDir: root,
    entryPoints,
    outdir,
    outbase: "js",
    outExtension: { ".js": ".mjs" },
    bundle: true,
    format: "esm",
    platform: "node",
    target: ["node20"],
    sourcemap: "inline",
    alias,
    // node: builtins stay external; everything else (loro-crdt/base64, apache-arrow) is bundled.
    logLevel: "warning",
  });
  const files = findFiles(outdir, ".test.mjs");
  const run = spawnSync(process.execPath, ["--enable-source-maps", "--test", ...files], { stdio: "inherit" });
  process.exit(run.status ?? 1);
}

if (process.argv.includes("--test")) {
  await buildAndRunTests();
} else {
  await buildWidget();
}
