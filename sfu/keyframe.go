package sfu

// Keyframe detection on RTP payloads. A down track may only start a layer,
// or switch to another one, at a keyframe of that layer: anything else would
// hand the decoder a frame that refers to pictures it never saw.

// Codec families the forwarding path understands.
const (
	codecOther = iota
	codecVP8
	codecH264
)

// isKeyframe reports whether payload starts (or, for H.264, contains) a
// keyframe for the given codec family. It never allocates and never reads
// outside payload, whatever the bytes are.
func isKeyframe(codec int, payload []byte) bool {
	switch codec {
	case codecVP8:
		return isVP8Keyframe(payload)
	case codecH264:
		return isH264Keyframe(payload)
	}
	return false
}

// isVP8Keyframe parses the VP8 payload descriptor (RFC 7741 section 4.2) and
// looks at the first byte of the VP8 frame header: P bit 0 means key frame.
// Only the first packet of partition 0 (S=1, PID=0) carries that header.
func isVP8Keyframe(p []byte) bool {
	if len(p) < 1 {
		return false
	}
	b0 := p[0]
	if b0&0x10 == 0 || b0&0x07 != 0 { // S must be set and PID must be 0
		return false
	}
	i := 1
	if b0&0x80 != 0 { // X: extension byte present
		if len(p) <= i {
			return false
		}
		x := p[i]
		i++
		if x&0x80 != 0 { // I: picture ID
			if len(p) <= i {
				return false
			}
			if p[i]&0x80 != 0 { // M: 15-bit picture ID
				i++
			}
			i++
		}
		if x&0x40 != 0 { // L: TL0PICIDX
			i++
		}
		if x&0x30 != 0 { // T or K: TID/Y/KEYIDX byte
			i++
		}
	}
	if len(p) <= i {
		return false
	}
	return p[i]&0x01 == 0
}

// H.264 NAL unit types that start a decodable picture for our purposes.
const (
	naluIDR  = 5
	naluSPS  = 7
	naluSTAP = 24
	naluFUA  = 28
)

// isH264Keyframe reports whether an H.264 RTP payload (RFC 6184) carries an
// SPS or an IDR slice: in a single NAL unit, inside a STAP-A aggregate, or as
// the start fragment of an FU-A.
func isH264Keyframe(p []byte) bool {
	if len(p) < 1 {
		return false
	}
	switch t := p[0] & 0x1f; t {
	case naluIDR, naluSPS:
		return true
	case naluSTAP:
		for i := 1; i+2 < len(p); {
			size := int(p[i])<<8 | int(p[i+1])
			i += 2
			if size == 0 || i+size > len(p) {
				return false
			}
			if nt := p[i] & 0x1f; nt == naluIDR || nt == naluSPS {
				return true
			}
			i += size
		}
	case naluFUA:
		if len(p) < 2 {
			return false
		}
		start := p[1]&0x80 != 0
		nt := p[1] & 0x1f
		return start && (nt == naluIDR || nt == naluSPS)
	}
	return false
}
