package sfu

import (
	"time"

	"github.com/pion/webrtc/v4"
)

// Thinning a VP8 stream's frame rate for one subscriber: the host's wall
// shows every room as a thumbnail, and a thumbnail needs no 30 frames a
// second (issue 24: a wall of 116 rooms at full rate was several thousand
// decodes a second on the hub's office PC).
//
// Chromium sends every VP8 simulcast layer with three temporal layers
// (measured on Chromium 156: the payload descriptor's TID runs 0, 2, 1, 2,
// so at 30 frames a second TID 0 alone is 7.5, TIDs 0 and 1 are 15). A
// frame of temporal layer t is referenced only by frames of layers above
// t, so the upper layers can be left out without breaking the pictures
// that remain. The down track keeps the subscriber's stream whole: the
// sequence numbers and picture IDs of the frames left out are closed up,
// as for padding, so the receiver sees neither loss nor a missing
// picture (libwebrtc's VP8 reference finder waits for a missing picture
// ID before it decodes any frame of a higher layer after it).
//
// A publisher whose VP8 carries no TID (the descriptor's T bit clear),
// and H.264, are forwarded whole: there is nothing to tell the layers
// apart by.

// AllTemporal is the temporal layer cap that forwards every frame.
const AllTemporal = 3

// dropHistory is how many left-out packets (and pictures) a down track
// remembers, to place late packets (reordered ones, retransmissions from
// the publisher) on the subscriber's sequence: a second or more of them at
// the frame rates a wall thins.
const dropHistory = 64

// dropMemory is how long a left-out packet counts for placing late ones:
// longer than a retransmission from the publisher may be late and still be
// forwarded (lateRetransmission).
const dropMemory = int64(time.Second)

// dropLog remembers the most recent sequence numbers (or picture IDs) a
// down track left out, newest last, and when.
type dropLog struct {
	vals [dropHistory]uint16
	at   [dropHistory]int64
	n    int // entries written in all; the newest is at (n-1) % dropHistory
}

func (l *dropLog) add(v uint16, now int64) {
	i := l.n % dropHistory
	l.vals[i], l.at[i] = v, now
	l.n++
}

func (l *dropLog) reset() { l.n = 0 }

// after counts the values left out within dropMemory that come after v in
// a sequence of modulus mask+1 (a power of two). For the newest packet it
// is 0 at the cost of one comparison.
func (l *dropLog) after(v uint16, mask uint16, now int64) uint16 {
	if l.n == 0 {
		return 0
	}
	newer := func(a, b uint16) bool { d := (a - b) & mask; return d != 0 && d <= mask>>1 } // a after b
	newest := (l.n - 1) % dropHistory
	if !newer(l.vals[newest], v) {
		return 0
	}
	var k uint16
	for i := 0; i < min(l.n, dropHistory); i++ {
		if now-l.at[i] <= dropMemory && newer(l.vals[i], v) {
			k++
		}
	}
	return k
}

// temporalFilter is a down track's thinning state, guarded by the down
// track's mutex.
type temporalFilter struct {
	cap      uint8   // the highest TID forwarded now
	dropping bool    // frames were left out since the last reset
	seq      dropLog // input sequence numbers left out (padding included)
	pic      dropLog // input picture IDs left out, 15-bit
	newest   uint16  // newest input sequence number forwarded or left out
	seen     bool
	lastPic  uint16 // newest input picture ID forwarded or left out, 15-bit
	havePic  bool
}

// reset starts the filter over at a layer switch (a keyframe): the new
// layer's numbers are unrelated to the old one's, and from a keyframe on
// every temporal layer up to want can be decoded.
func (f *temporalFilter) reset(want uint8) {
	f.cap, f.dropping = want, false
	f.seq.reset()
	f.pic.reset()
	f.seen, f.havePic = false, false
}

// leaveOut says whether a VP8 packet is left out at cap want. The cap goes
// down at the start of any frame (dropping the upper layers never breaks
// the lower ones) and up at a keyframe, or at a frame marked as depending
// on the base layer only (Y), to that frame's layer; the caller asks for a
// keyframe when the cap is raised (SetMaxTemporal), in case no such frame
// comes.
func (f *temporalFilter) leaveOut(d *vp8Desc, payload []byte, want uint8) bool {
	if !d.hasTID {
		return false
	}
	if d.start && d.pid == 0 {
		switch {
		case want < f.cap:
			f.cap = want
		case want > f.cap && isKeyframe(codecVP8, payload):
			f.cap = want
		case want > f.cap && d.sync && d.tid > f.cap && d.tid <= want:
			f.cap = d.tid
		}
	}
	if d.tid > f.cap {
		f.dropping = true
		return true
	}
	return false
}

// note records the newest packet forwarded, so that a later one left out
// is known as newer. d is nil for codecs without picture IDs.
func (f *temporalFilter) note(seq uint16, d *vp8Desc) {
	if !f.seen || seqBefore(f.newest, seq) {
		f.newest, f.seen = seq, true
	}
	if d != nil && d.hasPicID {
		pic := d.picID & d.picIDMask()
		if !f.havePic || picAfter(pic, f.lastPic, d.picIDMask()) {
			f.lastPic, f.havePic = pic, true
		}
	}
}

// leftOut records a packet not forwarded and reports how much the
// sequence number offset and the picture ID offset grow to close its gap:
// 1 each for a packet newer than any before it (0 for a picture already
// counted); 0 for a late one, whose place was taken or is a hole left.
func (f *temporalFilter) leftOut(seq uint16, d *vp8Desc, now int64) (seqGrow, picGrow uint16) {
	if f.seen && !seqBefore(f.newest, seq) {
		return 0, 0
	}
	f.newest, f.seen = seq, true
	f.seq.add(seq, now)
	seqGrow = 1
	if d != nil && d.hasPicID {
		mask := d.picIDMask()
		pic := d.picID & mask
		if !f.havePic || picAfter(pic, f.lastPic, mask) {
			f.lastPic, f.havePic = pic, true
			f.pic.add(pic, now)
			picGrow = 1
		}
	}
	return seqGrow, picGrow
}

// late is how much smaller the offsets are for a packet older than some
// left out after it: the packets and pictures left out after it had not
// yet been closed up when it was sent.
func (f *temporalFilter) late(seq uint16, d *vp8Desc, now int64) (seqLess, picLess uint16) {
	seqLess = f.seq.after(seq, 0xffff, now)
	if d != nil && d.hasPicID {
		mask := d.picIDMask()
		picLess = f.pic.after(d.picID&mask, mask, now)
	}
	return seqLess, picLess
}

// picAfter reports whether picture ID a comes after b, modulo mask+1.
func picAfter(a, b, mask uint16) bool {
	d := (a - b) & mask
	return d != 0 && d <= mask>>1
}

// MaxTemporal returns the highest VP8 temporal layer forwarded.
func (d *DownTrack) MaxTemporal() int { return int(d.maxTemporal.Load()) }

// SetMaxTemporal caps the VP8 temporal layers forwarded (see temporal.go):
// 0 is the base layer alone, AllTemporal every frame. Lowering takes
// effect at the next frame; raising at the next frame that depends on the
// base layer only, or at a keyframe, which is asked for if frames were
// being left out.
func (d *DownTrack) SetMaxTemporal(n int) {
	n = min(max(n, 0), AllTemporal)
	if old := d.maxTemporal.Swap(int32(n)); int32(n) <= old || d.kind != webrtc.RTPCodecTypeVideo {
		return
	}
	d.mu.Lock()
	raise := d.thin.dropping && int(d.thin.cap) < n
	d.mu.Unlock()
	if l := d.current.Load(); raise && l != noLayer {
		d.track.requestKeyframe(int(l))
	}
}

// closeGap closes the gap in the subscriber's sequence numbers and
// picture IDs that a packet not forwarded (padding, a frame thinned out)
// leaves. desc is nil for a packet without a VP8 descriptor. d.mu is held.
func (d *DownTrack) closeGap(seq uint16, desc *vp8Desc, now int64) {
	seqGrow, picGrow := d.thin.leftOut(seq, desc, now)
	d.seqOffset += seqGrow
	d.vp8.picOff = (d.vp8.picOff + picGrow) & vp8PicIDMask15
}
