// js-libp2p 3.x calls Promise.withResolvers (Node >= 22); the machines and CI run Node 20.
// Imported first by kad-peer.mjs so it is in place before any libp2p module runs.
if (typeof Promise.withResolvers !== 'function') {
  Object.defineProperty(Promise, 'withResolvers', {
    configurable: true,
    writable: true,
    value: function withResolvers () {
      let resolve, reject
      const promise = new this((res, rej) => { resolve = res; reject = rej })
      return { promise, resolve, reject }
    }
  })
}
