package sfu

// VP8 payload descriptor parsing and picture ID rewriting (RFC 7741).
//
// Each simulcast layer is its own encoder with its own picture ID and
// TL0PICIDX sequences. A subscriber that is switched from one layer to
// another must still see both fields advance by one per frame, or its
// decoder (and libwebrtc's frame buffer, which orders frames by picture ID)
// takes the jump for loss or for a stale frame. vp8Munger keeps them
// continuous, the way DownTrack keeps sequence numbers and timestamps
// continuous.
//
//	      0 1 2 3 4 5 6 7
//	     +-+-+-+-+-+-+-+-+
//	     |X|R|N|S|R| PID | (REQUIRED)
//	     +-+-+-+-+-+-+-+-+
//	X:   |I|L|T|K| RSV   | (OPTIONAL)
//	     +-+-+-+-+-+-+-+-+
//	I:   |M| PictureID   | (OPTIONAL, second byte only when M is set)
//	     +-+-+-+-+-+-+-+-+
//	L:   |   TL0PICIDX   | (OPTIONAL)
//	     +-+-+-+-+-+-+-+-+
//	T/K: |TID|Y| KEYIDX  | (OPTIONAL)
//	     +-+-+-+-+-+-+-+-+

// Picture ID moduli: the M bit chooses a 15-bit or a 7-bit field.
const (
	vp8PicIDMask15 = 0x7fff
	vp8PicIDMask7  = 0x7f
)

// vp8Desc is what parseVP8Desc found in one packet's payload descriptor:
// the fields the forwarding path reads, and where the rewritable ones are.
type vp8Desc struct {
	start     bool   // S: the packet starts a VP8 partition
	pid       uint8  // partition index
	hasPicID  bool   // I: a picture ID is present
	picIDWide bool   // M: the picture ID is 15 bits wide (else 7)
	picID     uint16 // the picture ID, without the M bit
	picIDOff  int    // offset of the picture ID's first byte in the payload
	hasTL0    bool   // L: a TL0PICIDX is present
	tl0       uint8  // the TL0PICIDX
	tl0Off    int    // offset of the TL0PICIDX byte in the payload
	hasTID    bool   // T: a temporal layer index is present
	tid       uint8  // the temporal layer index (TID), 0 for the base layer
	sync      bool   // Y: the frame depends on the base layer only
	size      int    // descriptor length: the VP8 data starts at this offset
}

// picIDMask is the modulus minus one of d's picture ID field.
func (d *vp8Desc) picIDMask() uint16 {
	if d.picIDWide {
		return vp8PicIDMask15
	}
	return vp8PicIDMask7
}

// parseVP8Desc parses the payload descriptor at the start of a VP8 RTP
// payload. It reports false, with a zero vp8Desc, when the descriptor does
// not fit in payload; it never reads outside payload and never allocates. A packet holding a
// descriptor and no VP8 data is accepted (it has nothing to decode, but
// nothing to misread either).
func parseVP8Desc(payload []byte) (vp8Desc, bool) {
	var d vp8Desc
	if len(payload) < 1 {
		return vp8Desc{}, false
	}
	b0 := payload[0]
	d.start = b0&0x10 != 0
	d.pid = b0 & 0x07
	i := 1
	if b0&0x80 != 0 { // X: extension byte present
		if len(payload) <= i {
			return vp8Desc{}, false
		}
		x := payload[i]
		i++
		if x&0x80 != 0 { // I: picture ID
			if len(payload) <= i {
				return vp8Desc{}, false
			}
			d.hasPicID = true
			d.picIDOff = i
			if payload[i]&0x80 != 0 { // M: 15-bit picture ID
				if len(payload) <= i+1 {
					return vp8Desc{}, false
				}
				d.picIDWide = true
				d.picID = uint16(payload[i]&0x7f)<<8 | uint16(payload[i+1])
				i += 2
			} else {
				d.picID = uint16(payload[i])
				i++
			}
		}
		if x&0x40 != 0 { // L: TL0PICIDX
			if len(payload) <= i {
				return vp8Desc{}, false
			}
			d.hasTL0 = true
			d.tl0Off = i
			d.tl0 = payload[i]
			i++
		}
		if x&0x30 != 0 { // T or K: one TID/Y/KEYIDX byte
			if len(payload) <= i {
				return vp8Desc{}, false
			}
			if x&0x20 != 0 { // T: TID and Y mean something
				d.hasTID = true
				d.tid = payload[i] >> 6
				d.sync = payload[i]&0x20 != 0
			}
			i++
		}
	}
	d.size = i
	return d, true
}

// vp8Munger is one subscriber's picture ID and TL0PICIDX state for one VP8
// track. Output values are the input values minus an offset; switchTo
// chooses the offsets at each layer switch so that the first frame of the
// new layer follows the last frame written. It is not safe for concurrent
// use: DownTrack calls it under its mutex. A publisher that changes the
// picture ID width between layers gets IDs continuous modulo 2^7 only.
type vp8Munger struct {
	picValid bool   // lastPic means something: a picture ID was switched to or written
	picOff   uint16 // out = (in - picOff) mod the field's width
	lastPic  uint16 // newest picture ID written, 15-bit space
	tl0Valid bool   // lastTL0 means something
	tl0Off   uint8  // out = in - tl0Off (mod 2^8)
	lastTL0  uint8  // newest TL0PICIDX written
}

// switchTo prepares the munger for a new layer starting at the keyframe
// whose descriptor is d: that frame's picture ID will map to the last one
// written plus one, and its TL0PICIDX to the last one written plus one.
// For the first layer ever, values pass through unchanged. A field that d
// does not carry keeps its state for the next layer that does.
func (m *vp8Munger) switchTo(d vp8Desc) {
	if d.hasPicID {
		if m.picValid {
			m.picOff = (d.picID - (m.lastPic + 1)) & vp8PicIDMask15
		} else {
			m.picOff = 0
			m.lastPic = (d.picID - 1) & vp8PicIDMask15
			m.picValid = true
		}
	}
	if d.hasTL0 {
		if m.tl0Valid {
			m.tl0Off = d.tl0 - (m.lastTL0 + 1)
		} else {
			m.tl0Off = 0
			m.lastTL0 = d.tl0 - 1
			m.tl0Valid = true
		}
	}
}

// rewrite returns payload with its picture ID and TL0PICIDX mapped through
// the current offsets, keeping the picture ID's width (the 15-bit offset is
// applied modulo 2^7 to a 7-bit field). d must be parseVP8Desc(payload).
// The result is written into dst, which the caller owns and which should
// have a capacity of at least len(payload) (a smaller one is replaced by a
// new buffer); when there is nothing to change, payload itself is returned
// and dst is left alone. Reordered packets of older frames map with the
// same offsets; the newest values written, by modular comparison, are what
// the next switchTo continues from. It does not allocate when dst is large
// enough.
func (m *vp8Munger) rewrite(dst, payload []byte, d vp8Desc) []byte {
	// The bounds tests matter only for a d that does not describe payload:
	// its fields outside payload are then ignored rather than panicking.
	pic := d.hasPicID && d.picIDOff >= 0 && d.picIDOff < len(payload) && (!d.picIDWide || d.picIDOff+1 < len(payload))
	tl0 := d.hasTL0 && d.tl0Off >= 0 && d.tl0Off < len(payload)
	if !pic && !tl0 {
		return payload
	}
	var outPic uint16
	if pic {
		mask := d.picIDMask()
		outPic = (d.picID - m.picOff) & mask
		if !m.picValid {
			m.lastPic, m.picValid = outPic, true
		} else if diff := (outPic - m.lastPic) & mask; diff != 0 && diff <= mask>>1 {
			m.lastPic = outPic
		}
	}
	var outTL0 uint8
	if tl0 {
		outTL0 = d.tl0 - m.tl0Off
		if !m.tl0Valid {
			m.lastTL0, m.tl0Valid = outTL0, true
		} else if diff := outTL0 - m.lastTL0; diff != 0 && diff < 0x80 {
			m.lastTL0 = outTL0
		}
	}
	if (!pic || outPic == d.picID) && (!tl0 || outTL0 == d.tl0) {
		return payload
	}
	if cap(dst) < len(payload) {
		dst = make([]byte, len(payload))
	}
	out := dst[:len(payload)]
	copy(out, payload)
	if pic {
		if d.picIDWide {
			out[d.picIDOff] = 0x80 | byte(outPic>>8)
			out[d.picIDOff+1] = byte(outPic)
		} else {
			out[d.picIDOff] = byte(outPic)
		}
	}
	if tl0 {
		out[d.tl0Off] = outTL0
	}
	return out
}

// vp8KeyframeSize returns the picture size coded in the key frame header
// (RFC 6386 section 9.1) that follows the payload descriptor in the first
// packet of a VP8 key frame. ok is false for any other packet, a truncated
// header, a bad start code, or a zero dimension. The scaling bits are
// ignored.
func vp8KeyframeSize(payload []byte) (w, h int, ok bool) {
	d, ok := parseVP8Desc(payload)
	if !ok || !d.start || d.pid != 0 {
		return 0, 0, false
	}
	f := payload[d.size:]
	// 3-byte frame tag, 3-byte start code, 2 bytes each of width and height.
	if len(f) < 10 || f[0]&0x01 != 0 || f[3] != 0x9d || f[4] != 0x01 || f[5] != 0x2a {
		return 0, 0, false
	}
	w = int(f[6]) | int(f[7]&0x3f)<<8
	h = int(f[8]) | int(f[9]&0x3f)<<8
	if w == 0 || h == 0 {
		return 0, 0, false
	}
	return w, h, true
}
