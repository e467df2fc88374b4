package sfu

import (
	"encoding/binary"
	"errors"
	"testing"
	"time"

	"github.com/pion/interceptor"
	"github.com/pion/interceptor/pkg/cc"
	"github.com/pion/interceptor/pkg/report"
	"github.com/pion/interceptor/pkg/twcc"
	"github.com/pion/rtp"
	"github.com/pion/sdp/v3"
)

const benchTWCCID = 3

// writeChain builds the interceptors of one subscribing connection as
// subscribeInterceptors does, with the given outermost transport-wide
// sequence number stamper, and returns a function that binds a stream to
// it ending in bottom (in a connection: SRTP and the socket). The test's
// cleanup closes it.
func writeChain(tb testing.TB, stamper interceptor.Factory, bottom interceptor.RTPWriter) (bind func(ssrc uint32) interceptor.RTPWriter) {
	tb.Helper()
	ir := &interceptor.Registry{}
	sr, err := report.NewSenderInterceptor()
	if err != nil {
		tb.Fatal(err)
	}
	ir.Add(sr)
	ctrl, err := newCongestionController(DefaultStartBitrate, func(cc.BandwidthEstimator) {})
	if err != nil {
		tb.Fatal(err)
	}
	ir.Add(ctrl)
	ir.Add(stamper)
	chain, err := ir.Build("writechain")
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { _ = chain.Close() })
	return func(ssrc uint32) interceptor.RTPWriter {
		return chain.BindLocalStream(&interceptor.StreamInfo{
			SSRC: ssrc, ClockRate: 90000, MimeType: "video/VP8",
			RTPHeaderExtensions: []interceptor.RTPHeaderExtension{{URI: sdp.TransportCCURI, ID: benchTWCCID}},
		}, bottom)
	}
}

func pionStamper(tb testing.TB) interceptor.Factory {
	f, err := twcc.NewHeaderExtensionInterceptor()
	if err != nil {
		tb.Fatal(err)
	}
	return f
}

// TestStampNumbersEveryPacket: the stamper gives every packet of a
// connection, whatever its stream, the next transport-wide sequence
// number in the negotiated extension, and leaves the rest of the packet
// alone.
func TestStampNumbersEveryPacket(t *testing.T) {
	type seen struct {
		ssrc uint32
		twcc uint16
		seq  uint16
		n    int
	}
	var got []seen
	bottom := interceptor.RTPWriterFunc(func(h *rtp.Header, p []byte, _ interceptor.Attributes) (int, error) {
		ext := h.GetExtension(benchTWCCID)
		if !h.Extension || len(ext) != 2 {
			t.Fatalf("packet %d of SSRC %d reaches the bottom without the extension: %v", h.SequenceNumber, h.SSRC, h.Extensions)
		}
		got = append(got, seen{h.SSRC, binary.BigEndian.Uint16(ext), h.SequenceNumber, len(p)})
		return len(p), nil
	})
	bind := writeChain(t, stampFactory{}, bottom)
	video, audio := bind(1), bind(2)
	var h rtp.Header
	for i := range 6 {
		w, ssrc := video, uint32(1)
		if i%3 == 2 {
			w, ssrc = audio, 2
		}
		h = rtp.Header{Version: 2, PayloadType: 96, SequenceNumber: uint16(100 + i), SSRC: ssrc, Extensions: h.Extensions[:0]}
		if _, err := w.Write(&h, make([]byte, 10+i), nil); err != nil {
			t.Fatal(err)
		}
	}
	if len(got) != 6 {
		t.Fatalf("%d packets reached the bottom, want 6", len(got))
	}
	for i, s := range got {
		wantSSRC := uint32(1)
		if i%3 == 2 {
			wantSSRC = 2
		}
		if s.twcc != uint16(i) || s.ssrc != wantSSRC || s.seq != uint16(100+i) || s.n != 10+i {
			t.Errorf("packet %d: SSRC %d, transport-wide %d, seq %d, %d bytes; want SSRC %d, transport-wide %d, seq %d, %d bytes",
				i, s.ssrc, s.twcc, s.seq, s.n, wantSSRC, i, 100+i, 10+i)
		}
	}
	if _, err := video.Write(nil, nil, nil); err == nil {
		t.Error("a nil header was written")
	}
}

// chainWriter is a down track's writer that ends in a connection's
// interceptors, as pion's track binding does.
type chainWriter struct{ w interceptor.RTPWriter }

func (c chainWriter) WriteRTP(h *rtp.Header, payload []byte) (int, error) {
	return c.w.Write(h, payload, nil)
}

func (c chainWriter) Write([]byte) (int, error) { return 0, errors.New("not used") }

// chainAllocs is the allocations per packet that a down track forwarding
// through a connection's interceptors (with the given stamper) costs.
func chainAllocs(t *testing.T, stamper interceptor.Factory) float64 {
	discard := interceptor.RTPWriterFunc(func(_ *rtp.Header, p []byte, _ interceptor.Attributes) (int, error) { return len(p), nil })
	now := int64(0)
	tr := newBareTrack(&now)
	d := newDownTrack(tr, nil, "video-hub-1", LayerHigh)
	bindFake(d, chainWriter{writeChain(t, stamper, discard)(1)}, 1, 96)
	d.setTarget(LayerHigh)
	tr.addDown(d)
	tr.forward(LayerHigh, pkt(1, 0, vp8Key))
	p := pkt(2, 3000, vp8Delta)
	forward := func() {
		p.SequenceNumber++
		p.Timestamp += 3000
		now += int64(time.Millisecond)
		tr.forward(LayerHigh, p)
	}
	for range 1000 { // past the congestion controller's history size
		forward()
	}
	return testing.AllocsPerRun(2000, forward)
}

// TestStampSavesAllocations: a packet forwarded through a subscribing
// connection's interceptors allocates twice, in the congestion controller's
// feedback history (pion's, with no option to avoid it); the stamper and
// the down track add nothing. With pion's own stamper it costs three
// allocations more (bench/RESULTS.md). If a pion upgrade changes either
// figure, look again at whether the stamper is still needed.
func TestStampSavesAllocations(t *testing.T) {
	pion := chainAllocs(t, pionStamper(t))
	ours := chainAllocs(t, stampFactory{})
	t.Logf("allocations per forwarded packet through the interceptors: pion's stamper %.1f, ours %.1f", pion, ours)
	if ours > 2 || ours > pion-3 {
		t.Fatalf("a forwarded packet allocates %.1f times with our stamper and %.1f with pion's; want at most 2, and 3 fewer than pion's", ours, pion)
	}
}

// BenchmarkSubscriberWriteChain is the cost per packet of the interceptors
// between a down track and SRTP (sender reports, the congestion controller,
// the transport-wide sequence number), with pion's stamper and with ours.
func BenchmarkSubscriberWriteChain(b *testing.B) {
	for _, c := range []struct {
		name    string
		stamper func(testing.TB) interceptor.Factory
		keep    bool
	}{
		{"pion-twcc", pionStamper, false},
		{"stamp", func(testing.TB) interceptor.Factory { return stampFactory{} }, true},
	} {
		b.Run(c.name, func(b *testing.B) {
			discard := interceptor.RTPWriterFunc(func(_ *rtp.Header, p []byte, _ interceptor.Attributes) (int, error) { return len(p), nil })
			w := writeChain(b, c.stamper(b), discard)(1)
			payload := make([]byte, 1168)
			var h rtp.Header
			b.ReportAllocs()
			for i := 0; b.Loop(); i++ {
				ext := h.Extensions[:0]
				if !c.keep {
					ext = nil
				}
				h = rtp.Header{Version: 2, PayloadType: 96, SequenceNumber: uint16(i), Timestamp: uint32(i) * 3000, SSRC: 1, Extensions: ext}
				if _, err := w.Write(&h, payload, nil); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// TestStampTwoByteID: a transport-wide extension negotiated with an ID over
// 14 (a WHEP client's offer may choose one) goes out in the two-byte header
// profile and reads back intact.
func TestStampTwoByteID(t *testing.T) {
	for _, id := range []int{5, 20} {
		var wire []byte
		bottom := interceptor.RTPWriterFunc(func(h *rtp.Header, p []byte, _ interceptor.Attributes) (int, error) {
			var err error
			wire, err = (&rtp.Packet{Header: *h, Payload: p}).Marshal()
			return len(p), err
		})
		w := (&stamp{}).BindLocalStream(&interceptor.StreamInfo{SSRC: 1,
			RTPHeaderExtensions: []interceptor.RTPHeaderExtension{{URI: sdp.TransportCCURI, ID: id}}}, bottom)
		for seq := range 3 {
			h := rtp.Header{Version: 2, PayloadType: 96, SequenceNumber: uint16(seq), SSRC: 1}
			if _, err := w.Write(&h, []byte{1, 2, 3}, nil); err != nil {
				t.Fatalf("ID %d: %v", id, err)
			}
			var back rtp.Packet
			if err := back.Unmarshal(wire); err != nil {
				t.Fatalf("ID %d: the packet written does not parse: %v", id, err)
			}
			ext := back.GetExtension(uint8(id))
			if len(ext) != 2 || binary.BigEndian.Uint16(ext) != uint16(seq) {
				t.Fatalf("ID %d, packet %d: extension %v on the wire, want transport-wide number %d", id, seq, ext, seq)
			}
		}
	}
}
