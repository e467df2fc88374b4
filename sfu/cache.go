package sfu

import (
	"sync"
	"time"
)

// packetCache keeps the newest packets of one upstream layer so that
// subscribers' NACKs are answered from one shared copy, not from a send
// buffer per subscriber. Only packets that were forwarded to somebody are
// kept, so layers nobody receives cost nothing.
//
// It also remembers where the newest keyframe starts, so that a subscriber
// starting the layer shortly after one went by is served that keyframe and
// the frames since from here instead of asking the publisher for another
// (DownTrack.startFromCache).
type packetCache struct {
	mu    sync.Mutex
	slots []cacheSlot
	mask  uint16

	kfValid bool
	kfSeq   uint16 // the newest keyframe's first packet
	kfTS    uint32
	kfAt    int64  // when it came (monotonic ns)
	newest  uint16 // the newest sequence number put
	any     bool   // something was put
}

// gopReplayAge is how old the newest keyframe may be for a subscriber with
// no picture (new, or paused) to be started from the cache rather than by
// a keyframe request. A request costs the subscriber a round trip and an
// encode, up to the throttle's interval when another subscriber just
// asked, and costs every other subscriber of the layer a keyframe they did
// not need; a replay costs only this subscriber a burst of the keyframe and
// at most this much of the layer, which the allocator chose because the
// subscriber's link carries it. It covers the throttle's interval: of many
// rooms joining at once, those after the first keyframe are served here.
const gopReplayAge = 500 * time.Millisecond

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

// put stores a copy of a packet; key says it is (part of) a keyframe, now
// when it came. It allocates only until every slot has a buffer large
// enough.
func (c *packetCache) put(seq uint16, ts uint32, marker bool, payload []byte, key bool, now int64) {
	c.mu.Lock()
	if key {
		switch {
		case !c.kfValid || ts != c.kfTS && (seqAfter32(ts, c.kfTS) || now-c.kfAt > int64(gopReplayAge)):
			c.kfValid, c.kfSeq, c.kfTS, c.kfAt = true, seq, ts, now
		case ts == c.kfTS && seqBefore(seq, c.kfSeq):
			c.kfSeq = seq // the keyframe's first packet came late (retransmitted)
		}
	}
	if !c.any || seqBefore(c.newest, seq) {
		c.newest, c.any = seq, true
	}
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

// gop returns the first sequence number of the newest keyframe when a
// subscriber starting at packet next can be served from the cache: next is
// newer than anything cached (not a retransmission or a reordered packet,
// which would leave the packets after it unsent), the keyframe is at most
// gopReplayAge old, and every packet from it up to next is still here
// (none lost upstream, none overwritten).
func (c *packetCache) gop(next uint16, now int64) (uint16, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.kfValid || now-c.kfAt > int64(gopReplayAge) || !seqBefore(c.newest, next) {
		return 0, false
	}
	n := next - c.kfSeq
	if n == 0 || int(n) > len(c.slots)/2 || seqBefore(next, c.kfSeq) {
		return 0, false
	}
	for seq := c.kfSeq; seq != next; seq++ {
		if s := &c.slots[seq&c.mask]; !s.valid || s.seq != seq {
			return 0, false
		}
	}
	return c.kfSeq, true
}

// fresh reports whether a keyframe went by within gopReplayAge, so that a
// subscriber starting now will likely be served from the cache.
func (c *packetCache) fresh(now int64) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.kfValid && now-c.kfAt <= int64(gopReplayAge)
}
