package sfu

import (
	"runtime"
	"sync"
	"sync/atomic"

	"github.com/pion/rtp"
)

// A large fan-out is spread over a few goroutines: the hub's packet to 168
// rooms is 168 encryptions and 168 send system calls, and on one goroutine
// the last room gets each packet ~3 ms after the first. The read loop keeps
// one shard of the down tracks and hands the others to the pool's workers,
// then waits for them before it reads the next packet. So the packet buffer
// is still the read loop's own (no copy), every down track still gets the
// layer's packets in order, and one down track is only ever written by one
// goroutine at a time.

// fanShard is the fewest down tracks worth handing to another goroutine:
// below it, waking a worker costs more than it saves.
const fanShard = 32

// maxFanWorkers caps the automatic worker count, and the shards one packet
// is cut into (the read loop's own plus this many): past a few, handing
// shards over costs more than the sends it spreads.
const maxFanWorkers = 7

// fanWorkers is how many workers Config.FanoutWorkers asks for: 0 is one
// fewer than the CPUs Go may use (none on one CPU), at most maxFanWorkers;
// negative is none.
func fanWorkers(configured int) int {
	switch {
	case configured < 0:
		return 0
	case configured > 0:
		return configured
	}
	return min(runtime.GOMAXPROCS(0)-1, maxFanWorkers)
}

// fanPool is the SFU's fan-out workers, shared by every track. A nil pool
// forwards on the read loop alone.
type fanPool struct {
	workers int
	jobs    chan fanJob
	stop    chan struct{}
	wg      sync.WaitGroup

	// closed: later fan-outs run on their read loops alone. One that
	// offered shards just before needs no worker to finish: its read loop
	// writes every shard no worker started.
	closed atomic.Bool
}

// fanJob offers one shard of one packet's fan-out to a worker. It travels
// by value: handing it over allocates nothing.
type fanJob struct {
	shard *fanShardState
	gen   uint64 // the fan-out it belongs to
	layer int32
	p     *rtp.Packet
	now   int64
	done  *fanDone
}

// fanDone is where a read loop's shards meet: one per layer, since each
// layer has one read loop, reused for each packet.
type fanDone struct {
	wg     sync.WaitGroup // shards claimed and not yet written
	n      atomic.Uint64  // copies the workers wrote
	gen    uint64         // read loop only: the current fan-out
	shards [maxFanWorkers]fanShardState
}

// fanShardState is one shard offered to the workers. Whoever claims it
// first, a worker or the read loop once its own shard is done, writes it:
// the read loop never waits for a worker that has not started.
type fanShardState struct {
	// state is the fan-out's generation shifted left by one, plus 1 once
	// claimed. A job left in the queue from an earlier packet carries an
	// older generation, so its claim fails.
	state atomic.Uint64
	downs []*DownTrack
}

// claim takes the shard for fan-out gen; false when someone else has it or
// it belongs to another fan-out.
func (s *fanShardState) claim(gen uint64) bool {
	return s.state.CompareAndSwap(gen<<1, gen<<1|1)
}

// newFanPool starts n workers; nil when n is 0.
func newFanPool(n int) *fanPool {
	if n <= 0 {
		return nil
	}
	fp := &fanPool{workers: n, jobs: make(chan fanJob, 4*n), stop: make(chan struct{})}
	fp.wg.Add(n)
	for range n {
		go fp.work()
	}
	return fp
}

func (fp *fanPool) work() {
	defer fp.wg.Done()
	for {
		select {
		case j := <-fp.jobs:
			if j.shard.claim(j.gen) {
				j.done.n.Add(forwardTo(j.shard.downs, j.layer, j.p, j.now))
				j.done.wg.Done()
			}
		case <-fp.stop:
			return
		}
	}
}

// close stops the workers once each has finished the shard it is writing;
// later fan-outs run on their read loops alone.
func (fp *fanPool) close() {
	if fp == nil {
		return
	}
	if fp.closed.CompareAndSwap(false, true) {
		close(fp.stop)
	}
	fp.wg.Wait()
}

// forwardTo copies p to each of downs and returns how many took it.
func forwardTo(downs []*DownTrack, l int32, p *rtp.Packet, now int64) uint64 {
	var n uint64
	for _, d := range downs {
		if d.forward(l, p, now) {
			n++
		}
	}
	return n
}

// fan copies p to every one of downs and returns how many took it, using
// the workers when downs is large enough to share. It returns only when
// every copy is written.
func (fp *fanPool) fan(done *fanDone, downs []*DownTrack, l int32, p *rtp.Packet, now int64) uint64 {
	shards := len(downs) / fanShard
	if fp == nil || shards < 2 {
		return forwardTo(downs, l, p, now)
	}
	if fp.closed.Load() {
		return forwardTo(downs, l, p, now)
	}
	// More workers than shards per packet still help: they take the shards
	// of other tracks' packets at the same time.
	shards = min(shards, fp.workers+1, len(done.shards)+1)
	size := (len(downs) + shards - 1) / shards
	done.gen++
	gen := done.gen
	var n uint64
	offered := done.shards[:0]
	for rest := downs[size:]; len(rest) > 0; {
		k := min(size, len(rest))
		offered = offered[:len(offered)+1]
		s := &offered[len(offered)-1]
		s.downs = rest[:k]
		s.state.Store(gen << 1)
		done.wg.Add(1)
		select {
		case fp.jobs <- fanJob{shard: s, gen: gen, layer: l, p: p, now: now, done: done}:
		default: // the queue is full: no worker would start it soon
		}
		rest = rest[k:]
	}
	n += forwardTo(downs[:size], l, p, now)
	for i := range offered {
		if s := &offered[i]; s.claim(gen) { // no worker started it: write it here
			n += forwardTo(s.downs, l, p, now)
			done.wg.Done()
		}
	}
	done.wg.Wait()
	return n + done.n.Swap(0)
}
