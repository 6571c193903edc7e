#!/usr/bin/env node
// A `solc` command line for crytic-compile (Slither), answered by the pinned solc-js (wasm) in
// contracts/node_modules: no solc binary, no solc-select, no download. It speaks the two calls
// crytic-compile's solc-json framework makes:
//   solc-slither.js --version                       "Version: 0.8.37+commit..." on stdout
//   solc-slither.js --standard-json [--allow-paths D] ...   standard JSON input on stdin, output on stdout
// Sources given by "urls" (as crytic-compile adds them) are read from disk here; imports resolve
// from contracts/node_modules (@openzeppelin/...), then contracts/src, then the working directory.
// Settings that the input leaves out default to build.js's (viaIR, optimizer runs 200, prague).
// SOLC_SLITHER_AST_ONLY=1 (set by slither_check.py): ask solc for the AST, ABI and NatSpec only and
// answer every contract's evm.bytecode / evm.deployedBytecode with empty object and sourceMap strings.
// Slither's detectors read the AST; skipping code generation makes the run ~4x faster. The bytecode
// itself is build.js's job (make contracts / make check-contracts).
const fs = require("fs");
const path = require("path");
const solc = require("solc");

const HERE = __dirname;
const ROOTS = [path.join(HERE, "node_modules"), path.join(HERE, "src"), process.cwd()];
const DEFAULTS = { optimizer: { enabled: true, runs: 200 }, viaIR: true, evmVersion: "prague" };

function findImport(p) {
  const candidates = path.isAbsolute(p) ? [p] : ROOTS.map((r) => path.join(r, p));
  for (const c of candidates) if (fs.existsSync(c)) return { contents: fs.readFileSync(c, "utf8") };
  return { error: "not found: " + p + " (looked in " + candidates.join(", ") + ")" };
}

function fail(message) {
  // a standard JSON error, so crytic-compile reports the message instead of "invalid JSON"
  process.stdout.write(JSON.stringify({ errors: [{ severity: "error", type: "WrapperError",
    component: "solc-slither.js", message, formattedMessage: message }] }));
  process.exit(0);
}

const args = process.argv.slice(2);
if (args.includes("--version")) {
  process.stdout.write("solc, the solidity compiler commandline interface\nVersion: " + solc.version() + "\n");
} else if (args.includes("--standard-json")) {
  let input;
  try {
    input = JSON.parse(fs.readFileSync(0, "utf8"));
  } catch (e) {
    fail("solc-slither.js: stdin is not standard JSON input: " + e.message);
  }
  for (const [name, source] of Object.entries(input.sources || {})) {
    if (source.content !== undefined) continue;
    const found = (source.urls || []).map(findImport).find((r) => r.contents !== undefined);
    if (!found) fail("solc-slither.js: cannot read source " + name + " from " + JSON.stringify(source.urls));
    input.sources[name] = { content: found.contents };
  }
  const settings = (input.settings = input.settings || {});
  for (const [key, value] of Object.entries(DEFAULTS)) if (settings[key] === undefined) settings[key] = value;
  const astOnly = process.env.SOLC_SLITHER_AST_ONLY === "1";
  if (astOnly) settings.outputSelection = { "*": { "*": ["abi", "devdoc", "userdoc"], "": ["ast"] } };
  const output = solc.compile(JSON.stringify(input), { import: findImport });
  if (!astOnly) {
    process.stdout.write(output);
  } else {
    const parsed = JSON.parse(output);
    const empty = () => ({ object: "", sourceMap: "" });
    for (const contracts of Object.values(parsed.contracts || {}))
      for (const c of Object.values(contracts)) c.evm = { bytecode: empty(), deployedBytecode: empty() };
    process.stdout.write(JSON.stringify(parsed));
  }
} else {
  process.stderr.write("solc-slither.js: only --version and --standard-json are supported (got: " + args.join(" ") + ")\n");
  process.exit(2);
}
