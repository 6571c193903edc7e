// Compile the DIN contracts with the pinned solc-js (wasm, offline) and write the artifacts
// the Python package loads: din_lab/chain/artifacts/<Contract>.json (abi, bytecode) plus
// manifest.json (compiler, settings, sha256 of every source) so a test can prove the
// committed artifacts match the sources.
//   node build.js            write the artifacts
//   node build.js --check    exit 1 if the committed artifacts differ from a fresh build
const fs = require("fs");
const path = require("path");
const crypto = require("crypto");
const solc = require("solc");

const SRC = path.join(__dirname, "src");
const OUT = path.join(__dirname, "..", "din_lab", "chain", "artifacts");
const CONTRACTS = ["DINToken", "EvaluatorRegistry", "DINTask", "DINTaskScoring", "DINTaskFactory", "Allowlist", "BlockFlowReference", "ShuffleReference", "DINParameters", "EvaluatorLicence", "PublicGoodsFund", "VoiceCredits", "DINProposals", "TimelockController"];
const SETTINGS = {
  optimizer: { enabled: true, runs: 200 },
  viaIR: true,
  evmVersion: "prague", // py-evm stops at prague; solc 0.8.37 defaults to osaka
  outputSelection: { "*": { "*": ["abi", "evm.bytecode.object", "evm.deployedBytecode.object"] } },
};

function walk(dir) {
  return fs.readdirSync(dir, { withFileTypes: true }).flatMap((e) =>
    e.isDirectory() ? walk(path.join(dir, e.name)) : e.name.endsWith(".sol") ? [path.join(dir, e.name)] : []);
}

function findImport(p) {
  const candidates = [path.join(__dirname, "node_modules", p), path.join(SRC, p)];
  for (const c of candidates) if (fs.existsSync(c)) return { contents: fs.readFileSync(c, "utf8") };
  return { error: "not found: " + p };
}

function build() {
  const sources = {};
  for (const f of walk(SRC).sort()) sources[path.relative(SRC, f)] = { content: fs.readFileSync(f, "utf8") };
  const input = { language: "Solidity", sources, settings: SETTINGS };
  const output = JSON.parse(solc.compile(JSON.stringify(input), { import: findImport }));
  const errors = (output.errors || []).filter((e) => e.severity === "error");
  for (const e of output.errors || []) console.error(e.formattedMessage);
  if (errors.length) process.exit(2);
  const artifacts = {};
  for (const [file, contracts] of Object.entries(output.contracts)) {
    for (const [name, c] of Object.entries(contracts)) {
      if (!CONTRACTS.includes(name)) continue;
      const runtime = c.evm.deployedBytecode.object.length / 2;
      if (runtime > 24576) { console.error(`${name}: runtime ${runtime} bytes exceeds EIP-170`); process.exit(3); }
      artifacts[name] = { contractName: name, sourceName: file, abi: c.abi, bytecode: "0x" + c.evm.bytecode.object, runtimeSize: runtime };
    }
  }
  // a task is one address: DINTask delegates what it does not know to DINTaskScoring, so its
  // artifact's ABI is the union of both (one entry per signature)
  const key = (e) => e.type + " " + (e.name || "") + "(" + (e.inputs || []).map((i) => i.type).join(",") + ")";
  const seen = new Set(artifacts.DINTask.abi.map(key));
  for (const e of artifacts.DINTaskScoring.abi) {
    if (e.type === "constructor" || seen.has(key(e))) continue;
    artifacts.DINTask.abi.push(e);
    seen.add(key(e));
  }
  const hashes = {};
  for (const [f, s] of Object.entries(sources)) hashes[f] = crypto.createHash("sha256").update(s.content).digest("hex");
  const manifest = { compiler: solc.version(), settings: SETTINGS, sources: hashes,
    openzeppelin: require("@openzeppelin/contracts/package.json").version };
  return { artifacts, manifest };
}

const text = (o) => JSON.stringify(o, null, 1) + "\n";
const { artifacts, manifest } = build();
if (process.argv.includes("--check")) {
  let ok = true;
  for (const [name, a] of Object.entries(artifacts)) {
    const f = path.join(OUT, name + ".json");
    if (!fs.existsSync(f) || fs.readFileSync(f, "utf8") !== text(a)) { console.error("stale artifact: " + name); ok = false; }
  }
  const m = path.join(OUT, "manifest.json");
  if (!fs.existsSync(m) || fs.readFileSync(m, "utf8") !== text(manifest)) { console.error("stale manifest"); ok = false; }
  process.exit(ok ? 0 : 1);
}
fs.mkdirSync(OUT, { recursive: true });
for (const [name, a] of Object.entries(artifacts)) {
  fs.writeFileSync(path.join(OUT, name + ".json"), text(a));
  console.log(`${name}: ${a.runtimeSize} bytes runtime`);
}
fs.writeFileSync(path.join(OUT, "manifest.json"), text(manifest));
