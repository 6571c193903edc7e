// Reference UnixFS file CIDs, computed with the npm reference importer (ipfs-unixfs-importer,
// pinned in package.json) into an in-memory blockstore, written to vectors.json beside this file.
//   node generate.mjs            write vectors.json
//   node generate.mjs --check    recompute; exit 1 (and print the differences) if vectors.json differs
// Content of a "shake" vector: SHAKE256(label as UTF-8) squeezed to `size` bytes, i.e. in Python
// hashlib.shake_256(label.encode()).digest(size). See README.md for the options and why they equal
// `ipfs add` / `ipfs add --cid-version=1`.
import crypto from "node:crypto";
import fs from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { MemoryBlockstore } from "blockstore-core/memory";
import { importer } from "ipfs-unixfs-importer";
import { fixedSize } from "ipfs-unixfs-importer/chunker";
import { balanced } from "ipfs-unixfs-importer/layout";

const HERE = path.dirname(fileURLToPath(import.meta.url));
const OUT = path.join(HERE, "vectors.json");

const KUBO_CHUNK = 262144; // ipfs add default chunker: size-262144
const KUBO_LINKS = 174; // go-unixfs/boxo balanced layout: DefaultLinksPerBlock
const STREAM_PIECE = 1 << 20; // content is fed to the importer in 1 MiB pieces

// Known `ipfs add` outputs the importer must reproduce (the v0 ones measured with Kubo; the v1 ones
// are raw blocks, i.e. base32 of 0x01 0x55 0x12 0x20 || sha256(content)).
const ANCHORS = {
  "v0/hello": "QmWfVY9y3xjsixTgbd9AorQxH7VtMpzfx2HaWtsoUYecaX",
  "v0/empty": "QmbFMke1KXqnYyBBWxB74N4c5SBnJMVAiMNRcGu6x1AwQH",
  "v1/hello": "bafkreibm6jg3ux5qumhcn2b3flc3tyu6dmlb4xa7u5bf44yegnrjhc4yeq",
  "v1/empty": "bafkreihdwdcefgh4dqkjv67uzcmw7ojee6xedzdetojuzjevtenxquvyku",
};

// Option sets equal to Kubo's `ipfs add` (cid_version 0) and `ipfs add --cid-version=1` (which
// implies --raw-leaves); chunker and layout are passed explicitly so the small-parameter trees can
// vary them.
function importOptions(cidVersion, chunkSize, maxLinks) {
  return {
    cidVersion,
    rawLeaves: cidVersion === 1,
    reduceSingleLeafToSelf: true,
    leafType: "file",
    chunker: fixedSize({ chunkSize }),
    layout: balanced({ maxChildrenPerNode: maxLinks }),
  };
}

function shake(label, size) {
  if (size === 0) return new Uint8Array(0);
  const buf = crypto.createHash("shake256", { outputLength: size }).update(label, "utf8").digest();
  if (buf.length !== size) throw new Error(`shake256 gave ${buf.length} bytes, wanted ${size}`);
  return buf;
}

async function* pieces(buf) {
  for (let i = 0; i < buf.length; i += STREAM_PIECE) yield buf.subarray(i, i + STREAM_PIECE);
}

async function addFile(content, options) {
  const blockstore = new MemoryBlockstore();
  const entries = [];
  for await (const entry of importer([{ content: pieces(content) }], blockstore, options)) entries.push(entry);
  if (entries.length !== 1) throw new Error(`importer yielded ${entries.length} entries, expected 1`);
  return entries[0];
}

// The vector list, in output order: [name suffix, {label|literal}, size, chunk, links].
function specs() {
  const out = [];
  const shakeLabel = (size) => `din-lab/unixfs/${size}`;
  const param = (chunk, links) => (chunk === KUBO_CHUNK && links === KUBO_LINKS ? "" : `c${chunk}-l${links}/`);
  const lit = (name, text) => out.push({ name, label: null, literal: text, chunk: KUBO_CHUNK, links: KUBO_LINKS });
  const sh = (size, chunk = KUBO_CHUNK, links = KUBO_LINKS) =>
    out.push({ name: `${param(chunk, links)}shake-${size}`, label: shakeLabel(size), literal: null, size, chunk, links });

  lit("hello", "hello");
  lit("empty", "");
  for (const size of [0, 1, 5, 1000, 1024, 262143, 262144, 262145, 1048577, 3000000,
    174 * 262144, 174 * 262144 + 1, 50000000]) sh(size);
  for (const size of [0, 1, 1023, 1024, 1025, 3072, 3073, 9216, 9217, 27649, 100000]) sh(size, 1024, 3);
  for (const size of [1, 2, 3, 5, 9]) sh(size, 1, 2);
  for (const size of [174 * 4096 + 1, 174 * 174 * 4096 + 1]) sh(size, 4096, 174);
  return out;
}

async function compute() {
  const vectors = [];
  for (const spec of specs()) {
    const content = spec.literal !== null ? new TextEncoder().encode(spec.literal) : shake(spec.label, spec.size);
    for (const cidVersion of [0, 1]) {
      const entry = await addFile(content, importOptions(cidVersion, spec.chunk, spec.links));
      vectors.push({
        name: `v${cidVersion}/${spec.name}`,
        label: spec.label,
        literal: spec.literal,
        size: content.length,
        cid_version: cidVersion,
        raw_leaves: cidVersion === 1,
        chunk_size: spec.chunk,
        max_links: spec.links,
        cid: entry.cid.toString(),
        cumulative_size: Number(entry.size),
      });
    }
  }
  vectors.sort((a, b) => a.cid_version - b.cid_version); // all v0 first, then all v1 (sort is stable)
  for (const [name, cid] of Object.entries(ANCHORS)) {
    const got = vectors.find((v) => v.name === name);
    if (got?.cid !== cid) throw new Error(`anchor ${name}: importer gave ${got?.cid}, ipfs add gives ${cid}`);
  }
  return vectors;
}

function render(vectors) {
  return "[\n" + vectors.map((v) => "  " + JSON.stringify(v)).join(",\n") + "\n]\n";
}

async function main() {
  const check = process.argv.includes("--check");
  const t0 = performance.now();
  const vectors = await compute();
  const text = render(vectors);
  const secs = ((performance.now() - t0) / 1000).toFixed(1);
  if (!check) {
    fs.writeFileSync(OUT, text);
    console.log(`wrote ${path.relative(process.cwd(), OUT) || OUT}: ${vectors.length} vectors in ${secs} s`);
    return;
  }
  let old;
  try {
    old = fs.readFileSync(OUT, "utf8");
  } catch (e) {
    console.error(`${OUT}: ${e.message}`);
    process.exit(1);
  }
  if (old === text) {
    console.log(`vectors.json is up to date: ${vectors.length} vectors in ${secs} s`);
    return;
  }
  let committed;
  try {
    committed = JSON.parse(old);
  } catch (e) {
    console.error(`vectors.json is not valid JSON (${e.message}); run: node generate.mjs`);
    process.exit(1);
  }
  const byName = new Map(committed.map((v) => [v.name, v]));
  const fresh = new Map(vectors.map((v) => [v.name, v]));
  for (const v of vectors) {
    const o = byName.get(v.name);
    if (o === undefined) console.error(`missing from vectors.json: ${v.name}`);
    else if (JSON.stringify(o) !== JSON.stringify(v))
      console.error(`differs: ${v.name}\n  vectors.json: ${JSON.stringify(o)}\n  recomputed:   ${JSON.stringify(v)}`);
  }
  for (const o of committed) if (!fresh.has(o.name)) console.error(`not produced any more: ${o.name}`);
  console.error("vectors.json differs from a fresh computation (formatting or order, if nothing is listed above); run: node generate.mjs");
  process.exit(1);
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
