package sfu

import (
	"net"
	"net/netip"
	"sync"
	"testing"
	"time"

	"github.com/pion/rtp"
)

// pooledTrack is a bare track (no packet cache) with n down tracks on layer
// f, each writing to the writer w(i) returns, and the pool fp.
func pooledTrack(t testing.TB, fp *fanPool, n int, w func(i int) rtpWriter) (*Track, *int64) {
	t.Helper()
	now := new(int64)
	tr := newBareTrack(now)
	tr.fan = fp
	for i := range n {
		d := newDownTrack(tr, nil, "video-hub-1", LayerHigh)
		bindFake(d, w(i), uint32(1000+i), 96)
		d.setTarget(LayerHigh)
		tr.addDown(d)
	}
	return tr, now
}

// rtpWriter is what a down track writes to (webrtc.TrackLocalWriter).
type rtpWriter interface {
	WriteRTP(*rtp.Header, []byte) (int, error)
	Write([]byte) (int, error)
}

// TestFanPoolForwardsEveryPacketInOrder: 200 down tracks over a pool of
// three workers; every one gets every packet, in order, with its own
// consecutive sequence numbers, and the counters count every copy.
func TestFanPoolForwardsEveryPacketInOrder(t *testing.T) {
	checkGoroutines(t)
	fp := newFanPool(3)
	defer fp.close()
	const rooms, packets = 200, 100
	ws := make([]*recordingWriter, rooms)
	tr, now := pooledTrack(t, fp, rooms, func(i int) rtpWriter { ws[i] = &recordingWriter{}; return ws[i] })
	// One packet, rewritten in place for each one read, as the read loop
	// does: a fan-out that returned before its last copy was written would
	// send some rooms the next packet's header (and -race would see it).
	p := pkt(1, 0, vp8Key)
	tr.forward(LayerHigh, p)
	p.Payload = vp8Delta
	for range packets - 1 {
		*now += int64(time.Millisecond)
		p.SequenceNumber++
		p.Timestamp += 3000
		tr.forward(LayerHigh, p)
	}
	for i, w := range ws {
		if len(w.headers) != packets {
			t.Fatalf("room %d got %d packets, want %d", i, len(w.headers), packets)
		}
		for k := 1; k < packets; k++ {
			if w.headers[k].SequenceNumber != w.headers[k-1].SequenceNumber+1 || w.headers[k].Timestamp != w.headers[k-1].Timestamp+3000 {
				t.Fatalf("room %d: packet %d is %d/%d after %d/%d (sequence number/timestamp)", i, k,
					w.headers[k].SequenceNumber, w.headers[k].Timestamp, w.headers[k-1].SequenceNumber, w.headers[k-1].Timestamp)
			}
			if w.headers[k].SSRC != uint32(1000+i) {
				t.Fatalf("room %d: SSRC %d", i, w.headers[k].SSRC)
			}
		}
	}
	if got := tr.stats.packetsForwarded.Load(); got != rooms*packets {
		t.Errorf("packetsForwarded %d, want %d", got, rooms*packets)
	}
}

// gateWriter says when its first write begins and holds it until open
// closes.
type gateWriter struct {
	entered chan<- struct{}
	open    <-chan struct{}
	once    sync.Once
}

func (w *gateWriter) WriteRTP(_ *rtp.Header, payload []byte) (int, error) {
	w.once.Do(func() {
		w.entered <- struct{}{}
		<-w.open
	})
	return len(payload), nil
}

func (w *gateWriter) Write(b []byte) (int, error) { return len(b), nil }

// TestFanPoolSharesTheFanOut: the first and the last of 128 down tracks are
// written at the same time, so the fan-out really runs on two goroutines:
// both writes begin while neither has returned. On the read loop alone the
// first would hold the loop, and the last would never begin.
func TestFanPoolSharesTheFanOut(t *testing.T) {
	checkGoroutines(t)
	fp := newFanPool(1)
	defer fp.close()
	entered, open := make(chan struct{}, 2), make(chan struct{})
	defer close(open) // before the pool closes: lets a stuck fan-out end
	const rooms = 128
	tr, _ := pooledTrack(t, fp, rooms, func(i int) rtpWriter {
		if i == 0 || i == rooms-1 {
			return &gateWriter{entered: entered, open: open}
		}
		return &discardWriter{}
	})
	go tr.forward(LayerHigh, pkt(1, 0, vp8Key))
	for range 2 {
		within(t, entered, 5*time.Second, "the first and last down tracks were not written at the same time")
	}
}

// TestFanPoolNeverWaitsForABusyWorker: the pool's one worker is stuck in
// another track's fan-out; a second track's read loop writes the shard it
// offered itself and finishes, instead of waiting for that worker.
func TestFanPoolNeverWaitsForABusyWorker(t *testing.T) {
	checkGoroutines(t)
	fp := newFanPool(1)
	defer fp.close()
	const rooms = 128
	// Track A: a stuck writer in each of its two shards, so its read loop
	// and the worker both get stuck in it.
	open, aDone := stuckFanOut(t, fp, rooms, "track A's two shards did not both start: the worker never took one")
	ws := make([]*discardWriter, rooms)
	b, _ := pooledTrack(t, fp, rooms, func(i int) rtpWriter { ws[i] = &discardWriter{}; return ws[i] })
	bDone := make(chan struct{})
	go func() { b.forward(LayerHigh, pkt(1, 0, vp8Key)); close(bDone) }()
	select {
	case <-bDone:
	case <-time.After(5 * time.Second):
		close(open)
		t.Fatal("track B waited for the busy worker")
	}
	for i, w := range ws {
		if w.n != 1 {
			t.Fatalf("track B room %d got %d packets, want 1", i, w.n)
		}
	}
	close(open)
	<-aDone
}

// stuckFanOut forwards one packet on a pooled track of n down tracks whose
// first and last writers (one in the read loop's shard, one in a worker's)
// hold until open is closed, and waits until both are being written; done
// is closed when the fan-out returns.
func stuckFanOut(t *testing.T, fp *fanPool, n int, failure string) (open, done chan struct{}) {
	t.Helper()
	entered := make(chan struct{}, 2)
	open, done = make(chan struct{}), make(chan struct{})
	tr, _ := pooledTrack(t, fp, n, func(i int) rtpWriter {
		if i == 0 || i == n-1 {
			return &gateWriter{entered: entered, open: open}
		}
		return &discardWriter{}
	})
	go func() { tr.forward(LayerHigh, pkt(1, 0, vp8Key)); close(done) }()
	for range 2 {
		within(t, entered, 5*time.Second, failure)
	}
	return open, done
}

// within fails the test unless c yields (or is closed) within d.
func within(t *testing.T, c <-chan struct{}, d time.Duration, failure string) {
	t.Helper()
	select {
	case <-c:
	case <-time.After(d):
		t.Fatal(failure)
	}
}

// waited is closed once wg's count is back to zero.
func waited(wg *sync.WaitGroup) <-chan struct{} {
	c := make(chan struct{})
	go func() { wg.Wait(); close(c) }()
	return c
}

// TestFanPoolDoesNotAllocate: handing shards to the workers and waiting
// for them allocates nothing per packet.
func TestFanPoolDoesNotAllocate(t *testing.T) {
	fp := newFanPool(3)
	defer fp.close()
	tr, now := pooledTrack(t, fp, 160, func(int) rtpWriter { return &discardWriter{} })
	tr.forward(LayerHigh, pkt(1, 0, vp8Key))
	p := pkt(2, 3000, vp8Delta)
	allocs := testing.AllocsPerRun(1000, func() {
		p.SequenceNumber++
		p.Timestamp += 3000
		*now += int64(time.Millisecond)
		tr.forward(LayerHigh, p)
	})
	if allocs != 0 {
		t.Fatalf("forwarding one packet to 160 down tracks over the pool allocates %.1f times", allocs)
	}
}

// TestFanPoolCloseWhileForwarding: the pool closes while a fan-out has a
// shard stuck in a worker and three more read loops are forwarding; every
// one finishes every packet, close returns once the stuck shard is
// written, and the workers are gone.
func TestFanPoolCloseWhileForwarding(t *testing.T) {
	checkGoroutines(t)
	fp := newFanPool(2)
	const rooms, packets = 100, 300
	// The stuck fan-out: a held writer in each of its shards, so its read
	// loop and a worker are both inside it when the pool closes.
	open, stuckDone := stuckFanOut(t, fp, 64, "the stuck fan-out's shards did not both start")
	var wg sync.WaitGroup
	writers := make([][]*discardWriter, 3)
	for l := range writers {
		writers[l] = make([]*discardWriter, rooms)
		tr, _ := pooledTrack(t, fp, rooms, func(i int) rtpWriter { writers[l][i] = &discardWriter{}; return writers[l][i] })
		wg.Add(1)
		go func() {
			defer wg.Done()
			tr.forward(LayerHigh, pkt(1, 0, vp8Key))
			for i := range packets - 1 {
				tr.forward(LayerHigh, pkt(uint16(2+i), uint32(3000*(1+i)), vp8Delta))
			}
		}()
	}
	closed := make(chan struct{})
	go func() { fp.close(); close(closed) }()
	select {
	case <-closed:
		t.Fatal("close returned while a worker was still writing a shard")
	case <-time.After(100 * time.Millisecond):
	}
	close(open)
	for _, c := range []chan struct{}{closed, stuckDone} {
		within(t, c, 10*time.Second, "close or the stuck fan-out did not finish 10 s after the shard was let go")
	}
	within(t, waited(&wg), 10*time.Second, "read loops still forwarding 10 s after the pool closed")
	for l := range writers {
		for i, w := range writers[l] {
			if w.n != packets {
				t.Fatalf("track %d room %d got %d packets, want %d", l, i, w.n, packets)
			}
		}
	}
}

// TestFanPoolManyWorkers: more workers than one packet's shards
// (--fanout-workers up to 64) still forward every copy.
func TestFanPoolManyWorkers(t *testing.T) {
	checkGoroutines(t)
	fp := newFanPool(20)
	defer fp.close()
	const rooms = 32 * 30
	ws := make([]*discardWriter, rooms)
	tr, _ := pooledTrack(t, fp, rooms, func(i int) rtpWriter { ws[i] = &discardWriter{}; return ws[i] })
	tr.forward(LayerHigh, pkt(1, 0, vp8Key))
	tr.forward(LayerHigh, pkt(2, 3000, vp8Delta))
	for i, w := range ws {
		if w.n != 2 {
			t.Fatalf("room %d got %d packets, want 2", i, w.n)
		}
	}
}

func TestFanWorkers(t *testing.T) {
	if got := fanWorkers(-1); got != 0 {
		t.Errorf("fanWorkers(-1) = %d, want 0", got)
	}
	if got := fanWorkers(5); got != 5 {
		t.Errorf("fanWorkers(5) = %d, want 5", got)
	}
	if got := fanWorkers(0); got < 0 || got > maxFanWorkers {
		t.Errorf("fanWorkers(0) = %d, want 0-%d", got, maxFanWorkers)
	}
	if newFanPool(0) != nil {
		t.Error("newFanPool(0) started a pool")
	}
}

// udpWriter sends each packet to a loopback socket nobody reads: the cost
// of a real copy's send system call, without SRTP.
type udpWriter struct {
	send func([]byte, netip.AddrPort) (int, error)
	to   netip.AddrPort
	buf  []byte
}

func (w *udpWriter) WriteRTP(h *rtp.Header, payload []byte) (int, error) {
	n, err := h.MarshalTo(w.buf)
	if err != nil {
		return 0, err
	}
	n += copy(w.buf[n:], payload)
	return w.send(w.buf[:n], w.to)
}

func (w *udpWriter) Write(b []byte) (int, error) { return w.send(b, w.to) }

// BenchmarkFanOutSpread copies a 1,180-byte packet to 116 down tracks whose
// writers each send it through one loopback socket, as every peer's
// packets leave through the ICE mux's one socket. ns/op is the time from
// the packet's arrival to its last copy sent: what the last room waits.
// alone: on the read loop; pool: over the pool's workers (CPUs − 1), with
// the socket a sendConn; pool-runtime-lock: the same through the runtime's
// own writes, which take turns on the socket.
func BenchmarkFanOutSpread(b *testing.B) {
	rx, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		b.Fatal(err)
	}
	defer rx.Close()
	tx, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		b.Fatal(err)
	}
	sc, err := newSendConn(tx, nil)
	if err != nil {
		b.Fatal(err)
	}
	defer sc.Close()
	for _, c := range []struct {
		name    string
		workers int
		send    func([]byte, netip.AddrPort) (int, error)
	}{{"alone", -1, sc.WriteToAddrPort}, {"pool", 0, sc.WriteToAddrPort}, {"pool-runtime-lock", 0, tx.WriteToUDPAddrPort}} {
		b.Run(c.name, func(b *testing.B) {
			fp := newFanPool(fanWorkers(c.workers))
			defer fp.close()
			const rooms = 116
			tr, now := pooledTrack(b, fp, rooms, func(int) rtpWriter {
				return &udpWriter{send: c.send, to: rx.LocalAddr().(*net.UDPAddr).AddrPort(), buf: make([]byte, 1500)}
			})
			tr.forward(LayerHigh, pkt(1, 0, append(append([]byte{}, vp8Key...), make([]byte, 1168)...)))
			p := pkt(2, 3000, append(append([]byte{}, vp8Delta...), make([]byte, 1168)...))
			b.ReportAllocs()
			for b.Loop() {
				p.SequenceNumber++
				p.Timestamp += 3000
				*now += int64(time.Millisecond)
				tr.forward(LayerHigh, p)
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*rooms), "ns/copy")
		})
	}
}
