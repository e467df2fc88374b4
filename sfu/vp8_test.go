package sfu

import (
	"bytes"
	"encoding/binary"
	"os"
	"path/filepath"
	"testing"

	"citybridge/sfu/sfutest"

	"github.com/pion/rtp/codecs"
)

func TestParseVP8Desc(t *testing.T) {
	for _, c := range []struct {
		name    string
		payload []byte
		ok      bool
		want    vp8Desc
	}{
		{"minimal, start", []byte{0x10, 0x00}, true, vp8Desc{start: true, size: 1}},
		{"minimal, partition 3, no data", []byte{0x03}, true, vp8Desc{pid: 3, size: 1}},
		{"X without fields", []byte{0x80, 0x00, 0xaa}, true, vp8Desc{size: 2}},
		{"7-bit picture ID", []byte{0x90, 0x80, 0x05, 0x00},
			true, vp8Desc{start: true, hasPicID: true, picID: 5, picIDOff: 2, size: 3}},
		{"15-bit picture ID", []byte{0x90, 0x80, 0x85, 0x06, 0x00},
			true, vp8Desc{start: true, hasPicID: true, picIDWide: true, picID: 0x0506, picIDOff: 2, size: 4}},
		{"15-bit picture ID, TL0PICIDX, TID", []byte{0x90, 0xe0, 0x81, 0x05, 0x07, 0x40, 0x00},
			true, vp8Desc{start: true, hasPicID: true, picIDWide: true, picID: 0x0105, picIDOff: 2, hasTL0: true, tl0: 7, tl0Off: 4, hasTID: true, tid: 1, size: 6}},
		{"TID 2 with the layer sync bit", []byte{0x90, 0xe0, 0x81, 0x05, 0x07, 0xa0, 0x00},
			true, vp8Desc{start: true, hasPicID: true, picIDWide: true, picID: 0x0105, picIDOff: 2, hasTL0: true, tl0: 7, tl0Off: 4, hasTID: true, tid: 2, sync: true, size: 6}},
		{"KEYIDX without T: no TID", []byte{0x90, 0x90, 0x81, 0x05, 0xe3, 0x00},
			true, vp8Desc{start: true, hasPicID: true, picIDWide: true, picID: 0x0105, picIDOff: 2, size: 5}},
		{"7-bit picture ID, TL0PICIDX, KEYIDX", []byte{0x80, 0xd0, 0x7f, 0xff, 0x1f, 0x9a},
			true, vp8Desc{hasPicID: true, picID: 0x7f, picIDOff: 2, hasTL0: true, tl0: 0xff, tl0Off: 3, size: 5}},
		{"TL0PICIDX only", []byte{0x80, 0x40, 0x09, 0x00},
			true, vp8Desc{hasTL0: true, tl0: 9, tl0Off: 2, size: 3}},
		{"reserved bits set", []byte{0xe8, 0x8f, 0x7f, 0x00},
			true, vp8Desc{hasPicID: true, picID: 0x7f, picIDOff: 2, size: 3}},
		{"pion payloader, 15-bit", []byte{0x90, 0x80, 0xff, 0xff, 0x9d},
			true, vp8Desc{start: true, hasPicID: true, picIDWide: true, picID: 0x7fff, picIDOff: 2, size: 4}},
		{"descriptor only", []byte{0x90, 0xe0, 0x81, 0x05, 0x07, 0x40},
			true, vp8Desc{start: true, hasPicID: true, picIDWide: true, picID: 0x0105, picIDOff: 2, hasTL0: true, tl0: 7, tl0Off: 4, hasTID: true, tid: 1, size: 6}},
		{"empty", nil, false, vp8Desc{}},
		{"truncated after X", []byte{0x90}, false, vp8Desc{}},
		{"truncated before picture ID", []byte{0x90, 0x80}, false, vp8Desc{}},
		{"truncated 15-bit picture ID", []byte{0x90, 0x80, 0x81}, false, vp8Desc{}},
		{"truncated before TL0PICIDX", []byte{0x90, 0xc0, 0x05}, false, vp8Desc{}},
		{"truncated before TID", []byte{0x90, 0xa0, 0x05}, false, vp8Desc{}},
		{"truncated before KEYIDX", []byte{0x90, 0xf0, 0x81, 0x05, 0x07}, false, vp8Desc{}},
	} {
		got, ok := parseVP8Desc(c.payload)
		if ok != c.ok || got != c.want {
			t.Errorf("%s: parseVP8Desc = %+v, %v; want %+v, %v", c.name, got, ok, c.want, c.ok)
		}
	}
}

// vp8Pkt builds a payload with a descriptor carrying the given fields (pic
// or tl0 negative: absent) and four bytes of VP8 data.
func vp8Pkt(pic int, wide bool, tl0 int, start bool) []byte {
	p := []byte{0x80, 0x00}
	if start {
		p[0] |= 0x10
	}
	if pic >= 0 {
		p[1] |= 0x80
		if wide {
			p = append(p, 0x80|byte(pic>>8), byte(pic))
		} else {
			p = append(p, byte(pic))
		}
	}
	if tl0 >= 0 {
		p[1] |= 0x40
		p = append(p, byte(tl0))
	}
	p[1] |= 0x20 // a TID byte, to have one field after the rewritten ones
	p = append(p, 0x40)
	return append(p, 0xde, 0xad, 0xbe, 0xef)
}

// mungerStep is one call in a munger scenario: a switch to the layer whose
// keyframe carries (pic, tl0), or a rewrite of a packet carrying them,
// expected to come out as (wantPic, wantTL0).
type mungerStep struct {
	sw               bool
	pic, tl0         int
	wantPic, wantTL0 int
}

func TestVP8MungerRewrite(t *testing.T) {
	sw := func(pic, tl0 int) mungerStep { return mungerStep{sw: true, pic: pic, tl0: tl0} }
	wr := func(pic, tl0, wantPic, wantTL0 int) mungerStep {
		return mungerStep{pic: pic, tl0: tl0, wantPic: wantPic, wantTL0: wantTL0}
	}
	for _, c := range []struct {
		name  string
		wide  bool
		steps []mungerStep
	}{
		{"first layer passes through", true, []mungerStep{
			sw(100, 5), wr(100, 5, 100, 5), wr(101, 5, 101, 5), wr(102, 6, 102, 6),
		}},
		{"no switch at all passes through", true, []mungerStep{
			wr(7, 1, 7, 1), wr(8, 2, 8, 2),
		}},
		{"switch continues both fields", true, []mungerStep{
			sw(100, 5), wr(100, 5, 100, 5), wr(200, 9, 200, 9),
			sw(7000, 50), wr(7000, 50, 201, 10), wr(7000, 50, 201, 10), wr(7001, 51, 202, 11),
			sw(3, 200), wr(3, 200, 203, 12),
		}},
		{"reordered older packet maps alike and does not move last", true, []mungerStep{
			sw(10, 0), wr(10, 0, 10, 0), wr(12, 2, 12, 2), wr(11, 1, 11, 1),
			sw(500, 100), wr(500, 100, 13, 3),
		}},
		{"15-bit output wraps", true, []mungerStep{
			sw(0x7ffe, 0), wr(0x7ffe, 0, 0x7ffe, 0),
			sw(10, 0), wr(10, 0, 0x7fff, 1), wr(11, 1, 0, 2), wr(12, 2, 1, 3),
		}},
		{"15-bit input wraps", true, []mungerStep{
			sw(5, 0), wr(5, 0, 5, 0),
			sw(0x7fff, 0), wr(0x7fff, 0, 6, 1), wr(0, 1, 7, 2), wr(1, 2, 8, 3),
		}},
		{"15-bit reordered across the wrap", true, []mungerStep{
			sw(0x7ffe, 0), wr(0x7ffe, 0, 0x7ffe, 0), wr(0, 2, 0, 2), wr(0x7fff, 1, 0x7fff, 1),
			sw(40, 7), wr(40, 7, 1, 3),
		}},
		{"7-bit output wraps", false, []mungerStep{
			sw(120, 0), wr(126, 0, 126, 0),
			sw(50, 0), wr(50, 0, 127, 1), wr(51, 1, 0, 2), wr(52, 2, 1, 3),
		}},
		{"7-bit input wraps", false, []mungerStep{
			sw(3, 0), wr(3, 0, 3, 0),
			sw(127, 9), wr(127, 9, 4, 1), wr(0, 10, 5, 2),
		}},
		{"7-bit reordered across the wrap", false, []mungerStep{
			sw(126, 0), wr(126, 0, 126, 0), wr(0, 2, 0, 2), wr(127, 1, 127, 1),
			sw(40, 0), wr(40, 0, 1, 3),
		}},
		{"TL0PICIDX wraps", true, []mungerStep{
			sw(1, 250), wr(1, 254, 1, 254),
			sw(9, 3), wr(9, 3, 2, 255), wr(10, 4, 3, 0), wr(11, 5, 4, 1),
		}},
		{"picture ID without TL0PICIDX", true, []mungerStep{
			sw(100, -1), wr(100, -1, 100, -1),
			sw(900, -1), wr(900, -1, 101, -1),
		}},
		{"TL0PICIDX without picture ID", true, []mungerStep{
			sw(-1, 30), wr(-1, 30, -1, 30),
			sw(-1, 90), wr(-1, 90, -1, 31),
		}},
	} {
		var m vp8Munger
		dst := make([]byte, 64)
		for i, s := range c.steps {
			p := vp8Pkt(s.pic, c.wide, s.tl0, s.sw)
			d, ok := parseVP8Desc(p)
			if !ok {
				t.Fatalf("%s: step %d: test packet %x does not parse", c.name, i, p)
			}
			if s.sw {
				m.switchTo(d)
				continue
			}
			orig := append([]byte(nil), p...)
			out := m.rewrite(dst, p, d)
			if !bytes.Equal(p, orig) {
				t.Fatalf("%s: step %d: input changed", c.name, i)
			}
			if len(out) != len(p) {
				t.Fatalf("%s: step %d: output length %d, want %d", c.name, i, len(out), len(p))
			}
			od, ok := parseVP8Desc(out)
			if !ok || od.size != d.size || od.picIDWide != d.picIDWide || od.hasPicID != d.hasPicID || od.hasTL0 != d.hasTL0 {
				t.Fatalf("%s: step %d: output descriptor %+v, input %+v", c.name, i, od, d)
			}
			gotPic, gotTL0 := -1, -1
			if od.hasPicID {
				gotPic = int(od.picID)
			}
			if od.hasTL0 {
				gotTL0 = int(od.tl0)
			}
			if gotPic != s.wantPic || gotTL0 != s.wantTL0 {
				t.Errorf("%s: step %d: (%d, %d) -> (%d, %d), want (%d, %d)", c.name, i, s.pic, s.tl0, gotPic, gotTL0, s.wantPic, s.wantTL0)
			}
			unchanged := gotPic == s.pic && gotTL0 == s.tl0
			if unchanged != (&out[0] == &p[0]) {
				t.Errorf("%s: step %d: values unchanged=%v but payload returned=%v", c.name, i, unchanged, &out[0] == &p[0])
			}
			checkOnlyFieldsChanged(t, p, out, d)
		}
	}
}

// checkOnlyFieldsChanged fails the test when out differs from in anywhere
// but in the picture ID and TL0PICIDX fields d locates (the M bit included:
// it must not change either).
func checkOnlyFieldsChanged(t *testing.T, in, out []byte, d vp8Desc) {
	t.Helper()
	for i := range in {
		mask := byte(0xff)
		switch {
		case d.hasPicID && i == d.picIDOff:
			mask = 0x80
		case d.hasPicID && d.picIDWide && i == d.picIDOff+1:
			mask = 0
		case d.hasTL0 && i == d.tl0Off:
			mask = 0
		}
		if (in[i]^out[i])&mask != 0 {
			t.Fatalf("byte %d changed outside the rewritten fields: %x -> %x", i, in, out)
		}
	}
}

func TestVP8MungerNothingToRewrite(t *testing.T) {
	var m vp8Munger
	m.switchTo(vp8Desc{hasPicID: true, picIDWide: true, picID: 10})
	m.rewrite(nil, vp8Pkt(10, true, -1, true), vp8Desc{hasPicID: true, picIDWide: true, picID: 10, picIDOff: 2, size: 5})
	m.switchTo(vp8Desc{hasPicID: true, picIDWide: true, picID: 3000})
	for _, p := range [][]byte{{0x10, 0x9d}, {0x90, 0x00, 0x9d}, {0x90, 0x20, 0x40, 0x9d}} {
		d, ok := parseVP8Desc(p)
		if !ok {
			t.Fatalf("%x does not parse", p)
		}
		if out := m.rewrite(make([]byte, 8), p, d); &out[0] != &p[0] {
			t.Errorf("%x: rewritten to %x, want the payload itself", p, out)
		}
	}
	// A buffer too small is replaced, not overrun.
	p := vp8Pkt(3001, true, -1, false)
	d, _ := parseVP8Desc(p)
	if out := m.rewrite(make([]byte, 2), p, d); len(out) != len(p) || &out[0] == &p[0] {
		t.Errorf("short dst: got %x", out)
	}
}

func TestVP8MungerDoesNotAllocate(t *testing.T) {
	var m vp8Munger
	key := []byte{0x90, 0xe0, 0x81, 0x05, 0x07, 0x40, 0x10, 0x02, 0x00, 0x9d, 0x01, 0x2a}
	delta := []byte{0x90, 0xe0, 0x81, 0x06, 0x08, 0x40, 0x11, 0x02, 0x00}
	dst := make([]byte, 1500)
	m.switchTo(vp8Desc{hasPicID: true, picIDWide: true, picID: 9000, hasTL0: true, tl0: 1})
	m.rewrite(dst, key, vp8Desc{hasPicID: true, picIDWide: true, picID: 9000, picIDOff: 2, hasTL0: true, tl0: 1, tl0Off: 4, size: 6})
	allocs := testing.AllocsPerRun(1000, func() {
		d, _ := parseVP8Desc(key)
		m.switchTo(d)
		_ = m.rewrite(dst, key, d)
		d, _ = parseVP8Desc(delta)
		_ = m.rewrite(dst, delta, d)
		_, _, _ = vp8KeyframeSize(key)
	})
	if allocs != 0 {
		t.Fatalf("%v allocations per packet, want 0", allocs)
	}
}

func TestVP8KeyframeSize(t *testing.T) {
	// Descriptor (15-bit picture ID), frame tag with P=0, start code, then
	// 1280 and 720 little endian.
	key := []byte{0x90, 0x80, 0x80, 0x00, 0x70, 0x55, 0x01, 0x9d, 0x01, 0x2a, 0x00, 0x05, 0xd0, 0x02, 0x39}
	with := func(i int, b byte) []byte {
		p := append([]byte(nil), key...)
		p[i] = b
		return p
	}
	for _, c := range []struct {
		name    string
		payload []byte
		w, h    int
		ok      bool
	}{
		{"1280x720", key, 1280, 720, true},
		{"scaling bits ignored", with(11, 0xc5), 1280, 720, true},
		{"height scaling bits ignored", with(13, 0x42), 1280, 720, true},
		{"minimal descriptor 320x180", []byte{0x10, 0x30, 0x38, 0x00, 0x9d, 0x01, 0x2a, 0x40, 0x01, 0xb4, 0x00}, 320, 180, true},
		{"interframe", with(4, 0x71), 0, 0, false},
		{"not a partition start", with(0, 0x80), 0, 0, false},
		{"partition 1", with(0, 0x91), 0, 0, false},
		{"bad start code", with(8, 0x02), 0, 0, false},
		{"zero width", append(with(10, 0)[:11], 0x00, 0xd0, 0x02, 0x39), 0, 0, false},
		{"truncated height", key[:13], 0, 0, false},
		{"truncated descriptor", key[:3], 0, 0, false},
		{"descriptor only", key[:4], 0, 0, false},
		{"empty", nil, 0, 0, false},
	} {
		w, h, ok := vp8KeyframeSize(c.payload)
		if w != c.w || h != c.h || ok != c.ok {
			t.Errorf("%s: vp8KeyframeSize = %d, %d, %v; want %d, %d, %v", c.name, w, h, ok, c.w, c.h, c.ok)
		}
	}
}

// FuzzVP8Desc: whatever a publisher sends, parsing and rewriting neither
// panic nor touch anything but the two fields, and never change the length.
func FuzzVP8Desc(f *testing.F) {
	for _, seed := range [][]byte{
		{0x10, 0x00}, {0x90, 0x80, 0x05, 0x00}, {0x90, 0x80, 0xff, 0xff, 0x9d},
		{0x90, 0xe0, 0x81, 0x05, 0x07, 0x40, 0x00}, {0x80, 0xd0, 0x7f, 0xff, 0x1f}, {0x90, 0x80, 0x81},
	} {
		f.Add(seed, uint16(0x7fff), uint8(0xff))
	}
	f.Fuzz(func(t *testing.T, p []byte, lastPic uint16, lastTL0 uint8) {
		orig := append([]byte(nil), p...)
		d, ok := parseVP8Desc(p)
		_, _, _ = vp8KeyframeSize(p)
		if !ok {
			if d != (vp8Desc{}) {
				t.Fatalf("failed parse returned %+v", d)
			}
		} else if d.size < 1 || d.size > len(p) ||
			(d.hasPicID && (d.picIDOff >= d.size || d.picIDWide && d.picIDOff+1 >= d.size)) ||
			(d.hasTL0 && d.tl0Off >= d.size) {
			t.Fatalf("%x: descriptor %+v out of range", p, d)
		}
		// A munger that has written lastPic and lastTL0 on another layer,
		// then switches to this packet's frame.
		m := vp8Munger{picValid: true, lastPic: lastPic & vp8PicIDMask15, tl0Valid: true, lastTL0: lastTL0}
		m.switchTo(d)
		dst := make([]byte, len(p))
		out := m.rewrite(dst, p, d)
		if !bytes.Equal(p, orig) {
			t.Fatalf("input changed: %x -> %x", orig, p)
		}
		if len(out) != len(p) {
			t.Fatalf("output length %d, want %d", len(out), len(p))
		}
		checkOnlyFieldsChanged(t, p, out, d)
		if d.hasPicID {
			od, _ := parseVP8Desc(out)
			if want := (lastPic + 1) & d.picIDMask(); od.picID != want {
				t.Fatalf("%x: picture ID %d after switch, want %d", p, od.picID, want)
			}
		}
		if d.hasTL0 && out[d.tl0Off] != lastTL0+1 {
			t.Fatalf("%x: TL0PICIDX %d after switch, want %d", p, out[d.tl0Off], lastTL0+1)
		}
		// A stale descriptor (from another packet) must not make rewrite
		// write outside payload either.
		_ = m.rewrite(dst, p[:len(p)/2], d)
	})
}

// vp8Clip is one of the simulcast test clips and the picture size coded in
// its keyframes.
type vp8Clip struct {
	file string
	w, h int
}

var vp8Clips = []vp8Clip{
	{"video-720p.ivf", 1280, 720},
	{"video-360p.ivf", 640, 360},
	{"video-180p.ivf", 320, 180},
}

// readIVF returns the frames of an IVF file in testdata: a 32-byte file
// header ("DKIF", header size at offset 6), then per frame a 12-byte header
// (4-byte little-endian size, 8-byte timestamp) and the frame.
func readIVF(t testing.TB, name string) [][]byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(sfutest.TestdataDir(), name))
	if err != nil {
		t.Fatal(err)
	}
	if len(b) < 32 || string(b[:4]) != "DKIF" || string(b[8:12]) != "VP80" {
		t.Fatalf("%s: not a VP8 IVF file", name)
	}
	var frames [][]byte
	for i := int(binary.LittleEndian.Uint16(b[6:])); i < len(b); {
		if i+12 > len(b) {
			t.Fatalf("%s: truncated frame header at %d", name, i)
		}
		n := int(binary.LittleEndian.Uint32(b[i:]))
		i += 12
		if n == 0 || i+n > len(b) {
			t.Fatalf("%s: bad frame size %d at %d", name, n, i)
		}
		frames = append(frames, b[i:i+n])
		i += n
	}
	return frames
}

// packetizeVP8 packetizes frames as pion's VP8 payloader does for a
// publisher, with 15-bit picture IDs starting at firstPicID. It returns the
// packets of each frame.
func packetizeVP8(frames [][]byte, firstPicID uint16) [][][]byte {
	pay := &codecs.VP8Payloader{EnablePictureID: true}
	for i := uint16(0); i < firstPicID; i++ {
		pay.Payload(1200, []byte{0}) // the payloader's counter is private
	}
	out := make([][][]byte, len(frames))
	for i, f := range frames {
		out[i] = pay.Payload(1200, f)
	}
	return out
}

// TestVP8ClipsKeyframes packetizes all three clips and checks that
// isKeyframe holds exactly for the first packet of frames whose frame tag
// says key frame, that those packets give the clip's picture size, and that
// every packet's descriptor parses to the payloader's picture ID.
func TestVP8ClipsKeyframes(t *testing.T) {
	for _, c := range vp8Clips {
		frames := readIVF(t, c.file)
		keyframes := 0
		for f, pkts := range packetizeVP8(frames, 0) {
			key := frames[f][0]&0x01 == 0 // frame tag P bit
			if key {
				keyframes++
			}
			for i, p := range pkts {
				want := key && i == 0
				if got := isKeyframe(codecVP8, p); got != want {
					t.Errorf("%s: frame %d packet %d (P bit %d): isKeyframe = %v, want %v", c.file, f, i, frames[f][0]&1, got, want)
				}
				w, h, ok := vp8KeyframeSize(p)
				if ok != want || (ok && (w != c.w || h != c.h)) {
					t.Errorf("%s: frame %d packet %d: vp8KeyframeSize = %d, %d, %v; want %dx%d %v", c.file, f, i, w, h, ok, c.w, c.h, want)
				}
				d, ok := parseVP8Desc(p)
				if !ok || !d.hasPicID || !d.picIDWide || int(d.picID) != f&vp8PicIDMask15 || d.start != (i == 0) || d.hasTL0 || d.size != 4 {
					t.Errorf("%s: frame %d packet %d: descriptor %+v, %v", c.file, f, i, d, ok)
				}
			}
		}
		if keyframes != (len(frames)+59)/60 {
			t.Errorf("%s: %d keyframes in %d frames, want one every 60", c.file, keyframes, len(frames))
		}
	}
}

// TestVP8MungerClipSwitch simulates a subscriber moved between the three
// layers every 60 frames (at their keyframes). Each layer's payloader starts
// at a different picture ID, near the 15-bit wrap for two; the subscriber
// must see one picture ID per frame, each one more than the last. Some
// frames' packets arrive in reverse order and a packet of the previous
// frame arrives late (also as the last packet before each switch, where
// letting it count as the newest would break the next switch): those keep
// their frame's picture ID.
func TestVP8MungerClipSwitch(t *testing.T) {
	// 720p, 360p, 180p. 180p comes first, so the output wraps at frame 28;
	// 720p's own IDs wrap at frame 168, while it is being forwarded.
	starts := []uint16{32600, 1000, 32740}
	var layers [][][][]byte
	for i, c := range vp8Clips {
		layers = append(layers, packetizeVP8(readIVF(t, c.file), starts[i]))
	}
	n := min(len(layers[0]), len(layers[1]), len(layers[2]))
	schedule := []int{2, 1, 0, 2, 0, 1, 2} // layer index per 60 frames
	var (
		m       vp8Munger
		dst     = make([]byte, 1500)
		first   = -1 // output picture ID of frame 0
		layer   = -1
		written int
	)
	for f := 0; f < n && f/60 < len(schedule); f++ {
		pkts := layers[schedule[f/60]][f]
		if l := schedule[f/60]; l != layer {
			d, ok := parseVP8Desc(pkts[0])
			if !ok || !isKeyframe(codecVP8, pkts[0]) {
				t.Fatalf("frame %d: layer %d does not start with a keyframe", f, l)
			}
			m.switchTo(d)
			layer = l
		}
		order := make([]int, len(pkts))
		for i := range order {
			order[i] = i
			if f%7 == 3 && f%60 != 0 { // reversed, except at a switch
				order[i] = len(pkts) - 1 - i
			}
		}
		if (f%11 == 5 || f%60 == 59) && f%60 != 0 { // late packet of the previous frame, same layer
			prev := layers[layer][f-1]
			order = append(order, -1)
			pkts = append(append([][]byte(nil), pkts...), prev[len(prev)-1])
		}
		for _, i := range order {
			wantPic := (first + f) & vp8PicIDMask15
			p := pkts[len(pkts)-1]
			if i >= 0 {
				p = pkts[i]
			} else {
				wantPic = (first + f - 1) & vp8PicIDMask15
			}
			d, ok := parseVP8Desc(p)
			if !ok {
				t.Fatalf("frame %d: packet does not parse", f)
			}
			out := m.rewrite(dst, p, d)
			od, _ := parseVP8Desc(out)
			if first < 0 {
				first = int(od.picID)
				wantPic = first
			}
			if int(od.picID) != wantPic {
				t.Fatalf("frame %d (layer %d, packet %d): picture ID %d -> %d, want %d", f, layer, i, d.picID, od.picID, wantPic)
			}
			if len(out) != len(p) || !bytes.Equal(out[d.size:], p[d.size:]) || out[0] != p[0] || out[1] != p[1] {
				t.Fatalf("frame %d: bytes other than the picture ID changed", f)
			}
			written++
		}
	}
	if first != int(starts[2]) {
		t.Errorf("first picture ID written %d, want the first layer's own %d", first, starts[2])
	}
	if written == 0 {
		t.Fatal("nothing written")
	}
}
