// A js-libp2p peer that checks a Bitterbot node speaks standard libp2p (issue #7).
//
//   node kad-peer.mjs find    <multiaddr/p2p/ID> <CID> [--timeout-ms N] [--count N]
//   node kad-peer.mjs provide <multiaddr/p2p/ID> <CID> [--timeout-ms N]
//
// Both dial the node, ping it and check what identify says it speaks. `find` then looks
// the CID up with Kademlia (client mode, /ipfs/kad/1.0.0) and prints one JSON line:
//   {"ok":true,"mode":"find","peer_id":..,"target":..,"ping_ms":..,"protocols":[..],
//    "agent":..,"providers":[{"id":..,"addrs":[..]}],"elapsed_ms":..}
// `provide` announces the CID as provided by this js peer, prints the same line (without
// providers) and keeps running until its stdin closes, so the other side can look it up.
// On failure: a JSON line {"ok":false,"error":..} on stdout, the message on stderr, exit 1
// (exit 2 for bad arguments).

import './node20.mjs' // before any libp2p module
import { noise } from '@chainsafe/libp2p-noise'
import { yamux } from '@chainsafe/libp2p-yamux'
import { identify } from '@libp2p/identify'
import { kadDHT, passthroughMapper } from '@libp2p/kad-dht'
import { ping } from '@libp2p/ping'
import { tcp } from '@libp2p/tcp'
import { multiaddr } from '@multiformats/multiaddr'
import { createLibp2p } from 'libp2p'
import { CID } from 'multiformats/cid'

const KAD = '/ipfs/kad/1.0.0' // the ID py-libp2p hard-codes
const REQUIRED = [KAD, '/ipfs/id/1.0.0', '/ipfs/ping/1.0.0']

class Failure extends Error {}
class UsageError extends Failure {}

function parseArgs (argv) {
  const [mode, addr, cidText, ...rest] = argv
  const opts = { timeoutMs: 15000, count: 1 }
  for (let i = 0; i < rest.length; i += 2) {
    const value = Number(rest[i + 1])
    if (rest[i] === '--timeout-ms' && value > 0) opts.timeoutMs = value
    else if (rest[i] === '--count' && Number.isInteger(value) && value > 0) opts.count = value
    else throw new UsageError(`unknown or bad option ${rest[i]} ${rest[i + 1] ?? ''}`)
  }
  if (!['find', 'provide'].includes(mode) || addr == null || cidText == null) {
    throw new UsageError('usage: kad-peer.mjs find|provide <multiaddr/p2p/ID> <CID> [--timeout-ms N] [--count N]')
  }
  let target, cid
  try {
    target = multiaddr(addr)
  } catch (err) {
    throw new UsageError(`bad multiaddr ${addr}: ${err.message}`)
  }
  const peerId = target.getComponents().find(c => c.name === 'p2p')?.value
  if (peerId == null) throw new UsageError(`the multiaddr needs /p2p/<peer ID>: ${addr}`)
  try {
    cid = CID.parse(cidText)
  } catch (err) {
    throw new UsageError(`bad CID ${cidText}: ${err.message}`)
  }
  return { mode, target, peerId, cid, ...opts }
}

async function withTimeout (what, ms, fn) {
  const signal = AbortSignal.timeout(ms)
  try {
    return await fn(signal)
  } catch (err) {
    if (signal.aborted) throw new Failure(`${what}: no answer within ${ms} ms`)
    throw new Failure(`${what}: ${err.message ?? err}`)
  }
}

async function checkPeer (node, args, identified, deadline) {
  const conn = await withTimeout(`dial ${args.target}`, deadline(), signal => node.dial(args.target, { signal }))
  const remote = conn.remotePeer.toString()
  if (remote !== args.peerId) throw new Failure(`dialled ${args.peerId} but reached ${remote}`)
  const pingMs = await withTimeout('ping', deadline(), signal => node.services.ping.ping(conn.remotePeer, { signal }))
  const info = await withTimeout('identify', deadline(), signal => Promise.race([
    identified,
    new Promise((resolve, reject) => signal.addEventListener('abort', () => reject(signal.reason)))
  ]))
  const protocols = [...info.protocols].sort()
  const missing = REQUIRED.filter(p => !protocols.includes(p))
  if (missing.length > 0) {
    throw new Failure(`identify: the node does not list ${missing.join(', ')} (it lists ${protocols.join(', ')})`)
  }
  return { target: remote, ping_ms: pingMs, protocols, agent: info.agentVersion ?? null }
}

async function findProviders (node, args, deadline) {
  const found = new Map()
  await withTimeout('findProviders', deadline(), async signal => {
    for await (const peer of node.contentRouting.findProviders(args.cid, { signal })) {
      const addrs = found.get(peer.id.toString()) ?? new Set()
      for (const ma of peer.multiaddrs) addrs.add(ma.toString())
      found.set(peer.id.toString(), addrs)
      if (found.size >= args.count) break
    }
  })
  return [...found].map(([id, addrs]) => ({ id, addrs: [...addrs].sort() }))
}

async function main () {
  const args = parseArgs(process.argv.slice(2))
  const started = Date.now()
  const deadline = () => Math.max(1, args.timeoutMs - (Date.now() - started))
  const node = await createLibp2p({
    addresses: { listen: ['/ip4/127.0.0.1/tcp/0'] }, // what `provide` advertises: loopback tests
    transports: [tcp()],
    connectionEncrypters: [noise()],
    streamMuxers: [yamux()],
    services: {
      identify: identify(),
      // our ping and the DHT's liveness ping of a new contact may overlap (default limit 1:
      // the DHT's ping then fails and it never adds the node to its routing table)
      ping: ping({ maxOutboundStreams: 4 }),
      // client mode; loopback addresses must survive (the default mapper drops private
      // ones); every query first waits for a self-query, by default started after 1 s
      dht: kadDHT({
        protocol: KAD,
        clientMode: true,
        peerInfoMapper: passthroughMapper,
        initialQuerySelfInterval: 50
      })
    }
  })
  const identified = new Promise(resolve => {
    node.addEventListener('peer:identify', event => {
      if (event.detail.peerId.toString() === args.peerId) resolve(event.detail)
    })
  })
  try {
    const seen = await checkPeer(node, args, identified, deadline)
    // the DHT adds the node to its routing table a little after identify; a query started
    // before that has no peer to ask and ends at once with nothing
    const target = node.getPeers().find(p => p.toString() === args.peerId)
    await withTimeout('routing table', deadline(), async signal => {
      while (!(await node.services.dht.routingTable.find(target))) {
        signal.throwIfAborted()
        await new Promise(resolve => setTimeout(resolve, 20))
      }
    })
    const out = { ok: true, mode: args.mode, peer_id: node.peerId.toString(), ...seen }
    if (args.mode === 'find') {
      out.providers = await findProviders(node, args, deadline)
    } else {
      await withTimeout('provide', deadline(), signal => node.contentRouting.provide(args.cid, { signal }))
      out.addrs = node.getMultiaddrs().map(String)
    }
    out.elapsed_ms = Date.now() - started
    process.stdout.write(JSON.stringify(out) + '\n')
    if (args.mode === 'provide') {
      // stay reachable until the test closes our stdin
      process.stdin.resume()
      await new Promise(resolve => process.stdin.on('end', resolve).on('close', resolve))
    }
  } finally {
    await node.stop()
  }
}

try {
  await main()
  process.exit(0)
} catch (err) {
  const message = err instanceof Failure ? err.message : `unexpected: ${err.stack ?? err}`
  process.stdout.write(JSON.stringify({ ok: false, error: message }) + '\n')
  process.stderr.write(`kad-peer: ${message}\n`)
  process.exit(err instanceof UsageError ? 2 : 1)
}
