package sfu

import (
	"testing"
	"time"
)

// l1t3Pkt is a VP8 packet as Chromium's simulcast sends it: picture ID
// (15 bits), TL0PICIDX and TID with the layer sync bit; key makes it the
// first packet of a keyframe, start the first packet of any frame.
func l1t3Pkt(pic uint16, tl0 uint8, tid uint8, sync, start, key bool) []byte {
	b0 := byte(0x80)
	if start {
		b0 |= 0x10
	}
	t := tid << 6
	if sync {
		t |= 0x20
	}
	p := []byte{b0, 0xe0, 0x80 | byte(pic>>8), byte(pic), tl0, t}
	switch {
	case key:
		return append(p, 0x00, 0x00, 0x00, 0x9d, 0x01, 0x2a, 0x40, 0x01, 0xb4, 0x00) // P=0, start code, 320x180
	case start:
		return append(p, 0x01, 0x00, 0x00, 0xaa) // P=1: an interframe
	}
	return append(p, 0xbb, 0xcc)
}

// l1t3Frame is one frame of the 0, 2, 1, 2 pattern as the publisher sends
// it: n packets from seq on.
type l1t3Frame struct {
	seq  uint16
	pic  uint16
	tl0  uint8
	tid  uint8
	sync bool
	key  bool
	n    int
}

// l1t3Stream makes frames of the pattern from picture ID pic0 on,
// starting with a keyframe, each of two packets.
func l1t3Stream(frames int, seq0, pic0 uint16) []l1t3Frame {
	pattern := []uint8{0, 2, 1, 2}
	var out []l1t3Frame
	seq, tl0 := seq0, uint8(10)
	for i := 0; i < frames; i++ {
		tid := pattern[i%4]
		if tid == 0 && i > 0 {
			tl0++
		}
		out = append(out, l1t3Frame{seq: seq, pic: pic0 + uint16(i), tl0: tl0, tid: tid, sync: i%4 == 1 || i%4 == 2, key: i == 0, n: 2})
		seq += 2
	}
	return out
}

// written is what the subscriber got: output sequence number, picture ID,
// TL0PICIDX and TID of each packet.
type written struct {
	seq      uint16
	pic      uint16
	tl0, tid uint8
}

func writtenPackets(t *testing.T, w *recordingWriter, from int) []written {
	t.Helper()
	var out []written
	for i := from; i < len(w.headers); i++ {
		d, ok := parseVP8Desc(w.payloads[i])
		if !ok || !d.hasPicID || !d.hasTID {
			t.Fatalf("packet %d written without its descriptor: % x", i, w.payloads[i])
		}
		out = append(out, written{seq: w.headers[i].SequenceNumber, pic: d.picID, tl0: d.tl0, tid: d.tid})
	}
	return out
}

// TestTemporalThinning: a down track capped at TID 1 forwards the frames of
// temporal layers 0 and 1 of an L1T3 stream, and the subscriber sees
// sequence numbers and picture IDs without a gap (libwebrtc waits for a
// missing picture ID before decoding a higher layer's frame after it);
// a late packet (a retransmission from the publisher) of a frame forwarded
// goes where it was sent; raised to every layer, the upper frames come back
// at the next frame that depends on the base layer only; lowered to 0, only
// the base layer is left.
func TestTemporalThinning(t *testing.T) {
	now := int64(time.Second)
	tr := newBareTrack(&now)
	d := newDownTrack(tr, nil, "video-room-1", LayerLow)
	w := &recordingWriter{}
	bindFake(d, w, 777, 96)
	d.SetMaxTemporal(1)
	d.setTarget(LayerLow)

	send := func(f l1t3Frame, k int) bool {
		p := pkt(f.seq+uint16(k), 3000*uint32(f.pic), l1t3Pkt(f.pic, f.tl0, f.tid, f.sync, k == 0, f.key && k == 0))
		return d.forward(LayerLow, p, now)
	}
	frames := l1t3Stream(24, 65500, 32760) // both counters wrap on the way
	for _, f := range frames[:12] {
		now += int64(33 * time.Millisecond)
		for k := 0; k < f.n; k++ {
			if got, want := send(f, k), f.tid <= 1; got != want {
				t.Fatalf("frame pic %d tid %d packet %d: forwarded %v, want %v", f.pic, f.tid, k, got, want)
			}
		}
	}
	got := writtenPackets(t, w, 0)
	if len(got) != 6*2 {
		t.Fatalf("%d packets written for 6 frames of TID 0 and 1: %+v", len(got), got)
	}
	for i := 1; i < len(got); i++ {
		if got[i].seq != got[i-1].seq+1 {
			t.Errorf("packet %d: sequence number %d after %d", i, got[i].seq, got[i-1].seq)
		}
		if i%2 == 0 && got[i].pic != (got[i-1].pic+1)&vp8PicIDMask15 || i%2 == 1 && got[i].pic != got[i-1].pic {
			t.Errorf("packet %d: picture ID %d after %d", i, got[i].pic, got[i-1].pic)
		}
		if got[i].tid > 1 {
			t.Errorf("packet %d: TID %d forwarded", i, got[i].tid)
		}
	}
	if got[0].tl0 != 10 || got[len(got)-1].tl0 != 12 {
		t.Errorf("TL0PICIDX %d ... %d, want 10 ... 12 (base layer frames are all kept)", got[0].tl0, got[len(got)-1].tl0)
	}
	if n := tr.stats.thinned.Load(); n != 6*2 {
		t.Errorf("thinned counter %d, want 12", n)
	}

	// A late copy of the second packet of frame 6 (TID 0, forwarded):
	// same output as the first time.
	first := got[len(got)-4+1] // frames 8 (tid 0) and 10 (tid 1) are the last two kept; 8's second packet
	f8 := frames[8]
	before := len(w.headers)
	if !send(f8, 1) {
		t.Fatal("a late packet of a forwarded frame was not forwarded")
	}
	late := writtenPackets(t, w, before)[0]
	if late.seq != first.seq || late.pic != first.pic {
		t.Errorf("late packet went out as seq %d pic %d, first time %d/%d", late.seq, late.pic, first.seq, first.pic)
	}

	// Every layer again: from the next frame that depends on the base
	// layer only (frame 13: TID 2, sync).
	d.SetMaxTemporal(AllTemporal)
	before = len(w.headers)
	for _, f := range frames[12:20] {
		now += int64(33 * time.Millisecond)
		for k := 0; k < f.n; k++ {
			want := f.tid <= 1 || f.pic >= frames[13].pic
			if got := send(f, k); got != want {
				t.Fatalf("after raising: frame pic %d tid %d: forwarded %v, want %v", f.pic, f.tid, got, want)
			}
		}
	}
	more := writtenPackets(t, w, before)
	prev := got[len(got)-1]
	for i, p := range more {
		if p.seq != prev.seq+1 || (i%2 == 0) != (p.pic == (prev.pic+1)&vp8PicIDMask15) {
			t.Errorf("after raising, packet %d: seq %d pic %d after seq %d pic %d", i, p.seq, p.pic, prev.seq, prev.pic)
		}
		prev = p
	}

	// The base layer alone.
	d.SetMaxTemporal(0)
	before = len(w.headers)
	for _, f := range frames[20:] {
		now += int64(33 * time.Millisecond)
		for k := 0; k < f.n; k++ {
			if got := send(f, k); got != (f.tid == 0) {
				t.Fatalf("base layer only: frame pic %d tid %d: forwarded %v", f.pic, f.tid, got)
			}
		}
	}
	base := writtenPackets(t, w, before)
	if len(base) != 2 || base[0].seq != prev.seq+1 || base[0].pic != (prev.pic+1)&vp8PicIDMask15 {
		t.Errorf("base layer only: %+v after seq %d pic %d", base, prev.seq, prev.pic)
	}
}

// TestTemporalNoTID: VP8 without temporal layer indexes (the T bit clear,
// as pion's payloader writes it) is forwarded whole whatever the cap.
func TestTemporalNoTID(t *testing.T) {
	now := int64(time.Second)
	tr := newBareTrack(&now)
	d := newDownTrack(tr, nil, "video-room-1", LayerLow)
	w := &recordingWriter{}
	bindFake(d, w, 777, 96)
	d.SetMaxTemporal(0)
	d.setTarget(LayerLow)
	if !d.forward(LayerLow, pkt(1, 0, vp8Key), now) {
		t.Fatal("keyframe not forwarded")
	}
	for i := uint16(2); i < 10; i++ {
		now += int64(33 * time.Millisecond)
		if !d.forward(LayerLow, pkt(i, uint32(i)*3000, vp8Delta), now) {
			t.Fatalf("packet %d without a TID left out", i)
		}
	}
}
