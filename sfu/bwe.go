package sfu

import (
	"encoding/binary"
	"errors"
	"sync"
	"sync/atomic"

	"github.com/pion/interceptor"
	"github.com/pion/interceptor/pkg/cc"
	"github.com/pion/interceptor/pkg/gcc"
	"github.com/pion/rtp"
	"github.com/pion/sdp/v3"
)

// Bandwidth estimation towards a subscriber: pion's send-side GCC runs on
// the transport-wide congestion control feedback the browser returns for
// every packet (the transport-cc header extension is negotiated on the
// subscribing connection). Browsers that negotiate REMB instead are served
// from the REMB value they send.

// Estimator bounds.
const (
	// DefaultStartBitrate is where a room's estimate starts: enough for the
	// middle layer, so a terminal shows a sharp picture at once and probes
	// up to the full layer within seconds.
	DefaultStartBitrate = 1_000_000
	// HubStartBitrate suits the city hub on its fibre link: every room's
	// small layer fits from the start.
	HubStartBitrate = 30_000_000
	minEstimate     = 30_000
	maxEstimate     = 100_000_000
)

// newCongestionController returns the congestion control interceptor
// factory for one subscribing connection.
func newCongestionController(start int, onBWE func(cc.BandwidthEstimator)) (*cc.InterceptorFactory, error) {
	f, err := cc.NewInterceptor(func() (cc.BandwidthEstimator, error) {
		return gcc.NewSendSideBWE(
			gcc.SendSideBWEInitialBitrate(min(max(start, minEstimate), maxEstimate)),
			gcc.SendSideBWEMinBitrate(minEstimate),
			gcc.SendSideBWEMaxBitrate(maxEstimate),
			gcc.SendSideBWEPacer(&passPacer{}),
		)
	})
	if err != nil {
		return nil, err
	}
	f.OnNewPeerConnection(func(_ string, e cc.BandwidthEstimator) { onBWE(e) })
	return f, nil
}

// passPacer is the congestion controller's pacer: it sends every packet at
// once. Down tracks already forward at the publisher's pace, and a leaky
// bucket per subscriber would cost a goroutine and a queue per room for
// little gain. Unlike gcc.NoOpPacer it passes packets of SSRCs it was not
// told about (retransmissions on an RTX stream) instead of failing them: all
// streams of a connection end in the same SRTP session.
type passPacer struct {
	mu      sync.Mutex
	writers atomic.Pointer[map[uint32]interceptor.RTPWriter]
	any     atomic.Pointer[interceptor.RTPWriter]
}

// AddStream implements gcc.Pacer.
func (p *passPacer) AddStream(ssrc uint32, w interceptor.RTPWriter) {
	p.mu.Lock()
	defer p.mu.Unlock()
	next := map[uint32]interceptor.RTPWriter{ssrc: w}
	if old := p.writers.Load(); old != nil {
		for k, v := range *old {
			next[k] = v
		}
	}
	p.writers.Store(&next)
	p.any.Store(&w)
}

// Write implements gcc.Pacer.
func (p *passPacer) Write(h *rtp.Header, payload []byte, a interceptor.Attributes) (int, error) {
	if m := p.writers.Load(); m != nil {
		if w, ok := (*m)[h.SSRC]; ok {
			return w.Write(h, payload, a)
		}
	}
	if w := p.any.Load(); w != nil {
		return (*w).Write(h, payload, a)
	}
	return 0, gcc.ErrUnknownStream
}

// SetTargetBitrate implements gcc.Pacer; the allocator, not the pacer, keeps
// the rate within the estimate.
func (p *passPacer) SetTargetBitrate(int) {}

// Close implements gcc.Pacer.
func (p *passPacer) Close() error { return nil }

// stampFactory builds the outermost interceptor of a subscribing
// connection: it writes the connection's next transport-wide sequence
// number into every packet, which the congestion controller reads back from
// the subscriber's feedback. It does what pion's
// twcc.HeaderExtensionInterceptor does without the allocations that one
// costs per packet: the marshalled extension (one), and the attribute map
// the controller makes when it is given none (two: the map and its first
// group). Each stream keeps its extension bytes and an attribute map,
// reused for every packet. (The header's extension list is the down
// track's to keep: DownTrack.write reuses it.) Unlike pion's, it writes an
// ID over 14 with the two-byte header profile instead of corrupting it.
type stampFactory struct{}

// NewInterceptor implements interceptor.Factory.
func (stampFactory) NewInterceptor(string) (interceptor.Interceptor, error) {
	return &stamp{}, nil
}

type stamp struct {
	interceptor.NoOp
	next atomic.Uint32 // the connection's next transport-wide sequence number
}

// BindLocalStream implements interceptor.Interceptor.
func (s *stamp) BindLocalStream(info *interceptor.StreamInfo, w interceptor.RTPWriter) interceptor.RTPWriter {
	var id uint8
	for _, e := range info.RTPHeaderExtensions {
		if e.URI == sdp.TransportCCURI && e.ID > 0 && e.ID < 256 {
			id = uint8(e.ID)
			break
		}
	}
	if id == 0 {
		return w
	}
	return &stampedStream{conn: s, id: id, next: w, attrs: interceptor.Attributes{}}
}

// stampedStream writes one local stream's packets. Its lock keeps the
// reused extension bytes and attributes to one packet at a time; the down
// track that writes the stream holds its own lock already, so it is never
// contended.
type stampedStream struct {
	conn  *stamp
	id    uint8
	next  interceptor.RTPWriter
	mu    sync.Mutex
	ext   [2]byte
	attrs interceptor.Attributes
}

// Write implements interceptor.RTPWriter. The header keeps a reference to
// the stream's extension bytes after it returns: the caller resets the
// header's extensions before its next packet.
func (st *stampedStream) Write(h *rtp.Header, payload []byte, a interceptor.Attributes) (int, error) {
	if h == nil {
		return 0, errNilHeader
	}
	st.mu.Lock()
	defer st.mu.Unlock()
	binary.BigEndian.PutUint16(st.ext[:], uint16(st.conn.next.Add(1)-1))
	if st.id > 14 && !h.Extension {
		// SetExtension would pick the one-byte profile, which has no room
		// for this ID.
		h.Extension, h.ExtensionProfile = true, rtp.ExtensionProfileTwoByte
	}
	if err := h.SetExtension(st.id, st.ext[:]); err != nil {
		return 0, err
	}
	if a == nil {
		a = st.attrs
	}
	return st.next.Write(h, payload, a)
}

var errNilHeader = errors.New("sfu: nil RTP header")
