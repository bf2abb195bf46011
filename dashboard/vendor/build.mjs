// Copy the dashboard's third-party browser files from node_modules/ (installed by `npm ci` from
// package-lock.json) into dashboard/static/vendor/<lib>/, with their licences, and write
// dashboard/static/vendor/manifest.json (each library's version and each file's sha256).
//
//   node build.mjs          replace dashboard/static/vendor/ with fresh copies
//   node build.mjs --check  exit 1 if the committed copies differ from node_modules/ (nothing written)
//
// Only the files named in FILES are copied: minified builds, their CSS and what those load.
import { createHash } from "node:crypto";
import { cpSync, existsSync, mkdirSync, readFileSync, readdirSync, rmSync, statSync, writeFileSync } from "node:fs";
import { dirname, join, relative } from "node:path";
import { fileURLToPath } from "node:url";

const HERE = dirname(fileURLToPath(import.meta.url));
const MODULES = join(HERE, "node_modules");
const OUT = join(HERE, "..", "static", "vendor");

// lib (the directory under static/vendor/) -> [npm package, files or directories inside it]
const FILES = {
  leaflet: ["leaflet", ["dist/leaflet.js", "dist/leaflet.css", "dist/images", "LICENSE"]],
  uplot: ["uplot", ["dist/uPlot.iife.min.js", "dist/uPlot.min.css", "LICENSE"]],
  "swagger-ui": ["swagger-ui-dist", ["swagger-ui-bundle.js", "swagger-ui-bundle.js.LICENSE.txt", "swagger-ui.css",
                                     "favicon-32x32.png", "LICENSE", "NOTICE"]],
  "noble-ed25519": ["@noble/ed25519", ["index.js", "LICENSE"]],
  "axe-core": ["axe-core", ["axe.min.js", "LICENSE", "LICENSE-3RD-PARTY.txt"]],
  "hash-wasm": ["hash-wasm", ["dist/argon2.umd.min.js", "LICENSE"]], // Argon2id only, its wasm inlined
  tweetnacl: ["tweetnacl", ["nacl.min.js", "LICENSE"]],
};

const flat = (path) => path.replace(/^dist\//, ""); // dist/leaflet.js -> leaflet.js

function walk(path) {
  return statSync(path).isDirectory() ? readdirSync(path).sort().flatMap((name) => walk(join(path, name))) : [path];
}

function sha256(path) {
  return createHash("sha256").update(readFileSync(path)).digest("hex");
}

function planned() {
  const manifest = {};
  const copies = [];
  for (const [lib, [pkg, files]] of Object.entries(FILES)) {
    const root = join(MODULES, pkg);
    if (!existsSync(join(root, "package.json"))) {
      throw new Error(`${pkg} is not installed: run \`npm ci --ignore-scripts\` in ${HERE} first`);
    }
    const { version, license } = JSON.parse(readFileSync(join(root, "package.json"), "utf8"));
    const entry = { package: pkg, version, license, files: {} };
    for (const file of files) {
      for (const source of walk(join(root, file))) {
        const target = join(lib, flat(relative(root, source)));
        copies.push([source, join(OUT, target)]);
        entry.files[flat(relative(root, source))] = sha256(source);
      }
    }
    manifest[lib] = entry;
  }
  return { manifest, copies };
}

const { manifest, copies } = planned();
const manifestText = JSON.stringify(manifest, null, 2) + "\n";

if (process.argv.includes("--check")) {
  const wanted = new Set(copies.map(([, target]) => target).concat([join(OUT, "manifest.json")]));
  const present = existsSync(OUT) ? walk(OUT) : [];
  const problems = [
    ...copies.filter(([source, target]) => !existsSync(target) || sha256(source) !== sha256(target))
      .map(([, target]) => `differs or missing: ${relative(OUT, target)}`),
    ...present.filter((path) => !wanted.has(path)).map((path) => `not in build.mjs: ${relative(OUT, path)}`),
  ];
  if (!existsSync(join(OUT, "manifest.json")) || readFileSync(join(OUT, "manifest.json"), "utf8") !== manifestText) {
    problems.push("differs or missing: manifest.json");
  }
  if (problems.length) {
    console.error(`dashboard/static/vendor/ is not what build.mjs makes:\n  ${problems.join("\n  ")}`);
    process.exit(1);
  }
  console.log(`dashboard/static/vendor/ matches node_modules/ (${copies.length} files)`);
} else {
  rmSync(OUT, { recursive: true, force: true });
  for (const [source, target] of copies) {
    mkdirSync(dirname(target), { recursive: true });
    cpSync(source, target);
  }
  writeFileSync(join(OUT, "manifest.json"), manifestText);
  for (const [lib, { package: pkg, version }] of Object.entries(manifest)) {
    console.log(`static/vendor/${lib}/: ${pkg}@${version}`);
  }
}
