// Preloaded into `jco` (node --import) to work around jco 1.35 with
// @bytecodealliance/preview2-shim 0.26: the shim no longer preopens "/" by
// default, so jco's own WASI-hosted tools (wit parser, componentizer) fail with
// "failed to read path" / "failed to get path metadata" on any real file.
// Every copy of the shim npm installed gets the root preopen back. The build
// runs on the developer's machine on their own files, so this grants jco what
// it had before 0.26; it never reaches a plugin.
import { readdirSync, existsSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";

const root = join(dirname(fileURLToPath(import.meta.url)), "..", "node_modules");

function* shims(dir, depth) {
  const here = join(dir, "@bytecodealliance", "preview2-shim", "dist", "nodejs", "filesystem.js");
  if (existsSync(here)) yield here;
  if (depth === 0) return;
  for (const scope of ["", "@bytecodealliance"]) {
    const base = join(dir, scope);
    if (!existsSync(base)) continue;
    for (const name of readdirSync(base)) {
      const nested = join(base, name, "node_modules");
      if (existsSync(nested)) yield* shims(nested, depth - 1);
    }
  }
}

for (const file of shims(root, 2)) {
  const fs = await import(pathToFileURL(file).href);
  if (typeof fs._setPreopens === "function") fs._setPreopens({ "/": "/" });
}
