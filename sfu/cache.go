package sfu

import "sync"

// packetCache keeps the newest packets of one upstream layer so that
// subscribers' NACKs are answered from one shared copy, not from a send
// buffer per subscriber. Only packets that were forwarded to somebody are
// kept, so layers nobody receives cost nothing.
type packetCache struct {
	mu    sync.Mutex
	slots []cacheSlot
	mask  uint16
}

type cacheSlot struct {
	seq    uint16
	valid  bool
	marker bool
	ts     uint32
	data   []byte // payload, reused when the slot is overwritten
}

// cacheSizes are the packets kept per layer, a few seconds of each at
// Chromium's rates (q ~30, h ~70, f ~280 packets per second).
var cacheSizes = [MaxLayers]int{256, 512, 1024}

func newPacketCache(size int) *packetCache {
	return &packetCache{slots: make([]cacheSlot, size), mask: uint16(size - 1)}
}

// put stores a copy of a packet. It allocates only until every slot has a
// buffer large enough.
func (c *packetCache) put(seq uint16, ts uint32, marker bool, payload []byte) {
	c.mu.Lock()
	s := &c.slots[seq&c.mask]
	s.seq, s.ts, s.marker, s.valid = seq, ts, marker, true
	if cap(s.data) < len(payload) {
		s.data = make([]byte, len(payload), max(len(payload), 1200))
	}
	s.data = s.data[:len(payload)]
	copy(s.data, payload)
	c.mu.Unlock()
}

// get copies packet seq's payload into dst and returns its length,
// timestamp and marker; ok is false when it is no longer (or never was) in
// the cache, or dst is too small.
func (c *packetCache) get(seq uint16, dst []byte) (n int, ts uint32, marker, ok bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	s := &c.slots[seq&c.mask]
	if !s.valid || s.seq != seq || len(dst) < len(s.data) {
		return 0, 0, false, false
	}
	return copy(dst, s.data), s.ts, s.marker, true
}
