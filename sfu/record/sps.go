package record

// spsSize reads the picture size from an H.264 sequence parameter set
// (ITU-T H.264 7.3.2.1.1), for the segment's header. A set it cannot
// read gives 0x0: players take the size from the stream itself.
func spsSize(sps []byte) (w, h int) {
	r := bitReader{b: unescape(sps[1:])}
	profile := r.bits(8)
	r.bits(16) // constraint flags, level
	r.ue()     // seq_parameter_set_id
	chroma := 1
	switch profile {
	case 100, 110, 122, 244, 44, 83, 86, 118, 128, 138, 139, 134, 135:
		chroma = r.ue()
		if chroma == 3 {
			r.bits(1)
		}
		r.ue() // bit depth luma
		r.ue() // bit depth chroma
		r.bits(1)
		if r.bits(1) == 1 { // seq_scaling_matrix_present_flag
			n := 8
			if chroma == 3 {
				n = 12
			}
			for i := 0; i < n; i++ {
				if r.bits(1) == 1 {
					size := 16
					if i >= 6 {
						size = 64
					}
					last, next := 8, 8
					for j := 0; j < size && next != 0; j++ {
						next = (last + r.se() + 256) % 256
						if next != 0 {
							last = next
						}
					}
				}
			}
		}
	}
	r.ue()          // log2_max_frame_num_minus4
	switch r.ue() { // pic_order_cnt_type
	case 0:
		r.ue()
	case 1:
		r.bits(1)
		r.se()
		r.se()
		for n := r.ue(); n > 0 && !r.bad; n-- {
			r.se()
		}
	}
	r.ue()    // max_num_ref_frames
	r.bits(1) // gaps_in_frame_num_value_allowed_flag
	mbW, mbH := r.ue()+1, r.ue()+1
	frameMbsOnly := r.bits(1)
	if frameMbsOnly == 0 {
		r.bits(1)
	}
	r.bits(1) // direct_8x8_inference_flag
	var cl, cr, ct, cb int
	if r.bits(1) == 1 { // frame_cropping_flag
		cl, cr, ct, cb = r.ue(), r.ue(), r.ue(), r.ue()
	}
	if r.bad {
		return 0, 0
	}
	cropX, cropY := 1, 2-frameMbsOnly
	if chroma == 1 || chroma == 2 {
		cropX = 2
	}
	if chroma == 1 {
		cropY *= 2
	}
	w = mbW*16 - cropX*(cl+cr)
	h = (2-frameMbsOnly)*mbH*16 - cropY*(ct+cb)
	if w <= 0 || h <= 0 {
		return 0, 0
	}
	return w, h
}

// unescape removes emulation prevention bytes (00 00 03).
func unescape(b []byte) []byte {
	out := make([]byte, 0, len(b))
	zeros := 0
	for _, c := range b {
		if zeros >= 2 && c == 3 {
			zeros = 0
			continue
		}
		if c == 0 {
			zeros++
		} else {
			zeros = 0
		}
		out = append(out, c)
	}
	return out
}

type bitReader struct {
	b   []byte
	pos int
	bad bool
}

func (r *bitReader) bits(n int) int {
	v := 0
	for i := 0; i < n; i++ {
		if r.pos >= len(r.b)*8 {
			r.bad = true
			return 0
		}
		v = v<<1 | int(r.b[r.pos/8]>>(7-r.pos%8)&1)
		r.pos++
	}
	return v
}

func (r *bitReader) ue() int {
	zeros := 0
	for r.bits(1) == 0 && !r.bad && zeros < 32 {
		zeros++
	}
	if r.bad || zeros >= 32 {
		r.bad = true
		return 0
	}
	return 1<<zeros - 1 + r.bits(zeros)
}

func (r *bitReader) se() int {
	v := r.ue()
	if v&1 == 1 {
		return (v + 1) / 2
	}
	return -v / 2
}
