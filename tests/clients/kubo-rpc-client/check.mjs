// node check.mjs URL FILE
//
// Drives `din-lab ipfs daemon` (or any Kubo RPC API at URL) with the npm kubo-rpc-client, the
// official JS RPC client: adds FILE's bytes as CIDv0 (the default) and as CIDv1 with raw leaves,
// cats both back (whole and a range) and compares the bytes here, adds again with a progress
// callback, runs pin ls / rm / add and block stat, and prints one JSON object to stdout.
// Any exception: its message on stderr, exit 1.
// tests/test_kubo_rpc_client.py runs it and checks the CIDs against din_lab.storage.cid_of.
import { readFile } from 'node:fs/promises'
import { create } from 'kubo-rpc-client'

async function collect (iterable) {
  const chunks = []
  for await (const chunk of iterable) chunks.push(chunk)
  return Buffer.concat(chunks)
}

async function pinList (ipfs, options = {}) {
  const pins = []
  for await (const pin of ipfs.pin.ls(options)) pins.push({ cid: pin.cid.toString(), type: pin.type })
  return pins.sort((a, b) => a.cid.localeCompare(b.cid))
}

async function addAndRead (ipfs, data, options) {
  const added = await ipfs.add(data, options)
  const cid = added.cid
  const back = await collect(ipfs.cat(cid))
  // a window across the first chunk boundary when the file has one (offset/length of `ipfs cat`)
  const offset = Math.max(0, Math.min(262144 - 10, data.length - 20))
  const length = Math.min(20, data.length - offset)
  const range = await collect(ipfs.cat(cid, { offset, length }))
  const block = await ipfs.block.stat(cid)
  return {
    cid: cid.toString(),
    cidVersion: cid.version,
    path: added.path,
    size: added.size,
    catLength: back.length,
    catEqual: Buffer.compare(back, data) === 0,
    range: { offset, length, equal: Buffer.compare(range, data.subarray(offset, offset + length)) === 0 },
    blockStat: { cid: block.cid.toString(), size: block.size }
  }
}

async function main () {
  const [url, file] = process.argv.slice(2)
  if (url == null || file == null) throw new Error('usage: node check.mjs URL FILE')
  const data = await readFile(file)
  const ipfs = create({ url })

  const v0 = await addAndRead(ipfs, data, {})
  const v1 = await addAndRead(ipfs, data, { cidVersion: 1, rawLeaves: true })

  // with a progress callback the client sends progress=true; Kubo then streams {Name, Bytes} lines
  // before the result ({Name, Hash, Size}), and the client calls back with each line's Bytes
  const events = []
  const withProgress = await ipfs.add(data, { progress: (bytes, name) => events.push({ bytes, name }) })
  const progress = { cid: withProgress.cid.toString(), size: withProgress.size, events }

  const pins = {}
  pins.initial = await pinList(ipfs)
  pins.lsPath = await pinList(ipfs, { paths: [v0.cid] })
  pins.rm = (await ipfs.pin.rm(v0.cid)).toString()
  pins.afterRm = await pinList(ipfs)
  pins.add = (await ipfs.pin.add(v0.cid)).toString()
  pins.afterAdd = await pinList(ipfs)

  const id = await ipfs.id()
  const node = { id: id.id.toString(), agentVersion: id.agentVersion, online: await ipfs.isOnline() }
  process.stdout.write(JSON.stringify({ url, file, fileLength: data.length, v0, v1, progress, pins, node }) + '\n')
}

main().catch((err) => {
  process.stderr.write(`kubo-rpc-client check failed: ${err?.stack ?? err}\n`)
  if (err?.response != null) process.stderr.write(`HTTP ${err.response.status} ${err.response.url}\n`)
  process.exit(1)
})
