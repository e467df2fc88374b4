package sfu

import (
	"encoding/hex"
	"testing"
)

// Captured RTP payloads for keyframe detection, so that the unit tests do
// not depend on an encoder or on files outside the package. Keyframe
// detection reads only the payload descriptor or NAL unit headers and the
// first bytes after them, so payloads longer than 40 bytes are kept to their
// first 40 bytes (the "len" comments give the full length). The 180p and
// 360p captures predate those clips' re-encoding with three temporal
// layers (testdata/gen.sh): they are fixtures now, not the clips' bytes.

// unhex decodes a captured payload.
func unhex(t *testing.T, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(s)
	if err != nil {
		t.Fatalf("bad capture %q: %v", s, err)
	}
	return b
}

// TestVP8CapturedKeyframes uses payload prefixes from the testdata clips
// (video-720p.ivf, video-360p.ivf, video-180p.ivf; see testdata/gen.sh),
// each packetized from frame 0 by pion's codecs.VP8Payloader
// {EnablePictureID: true} with Payload(1200, frame): a 4-byte descriptor
// with a 15-bit picture ID equal to the frame index, S set only on a
// frame's first packet. Later packets of a keyframe whose first VP8 byte
// happens to have its low bit clear are included on purpose: only the S bit
// tells them from a keyframe start.
func TestVP8CapturedKeyframes(t *testing.T) {
	for _, c := range []struct {
		name    string
		payload string
		key     bool
		w, h    int
		picID   uint16
	}{
		// 720p, frame 0 (keyframe), packet 0 of 6; len 1200.
		{"720p keyframe start", "908080007055019d012a0005d002396d000e1c240c2c2c44cc2441b0097a5b40f098c7a90d08dbcf", true, 1280, 720, 0},
		// 720p, frame 0, packet 1; len 1200.
		{"720p keyframe packet 1", "80808000a5e0898667bac1f0f6cff29fff108de089d370cb568ef044b64baae7bf952f6006730ead", false, 0, 0, 0},
		// 720p, frame 0, packet 5 (last); len 908. First VP8 byte 0xce is even.
		{"720p keyframe last packet", "80808000cee4c6b60d9503b742797d271aa542cea84777b1f6187ab6b09e0ba12b578866528020e6", false, 0, 0, 0},
		// 720p, frame 1 (interframe), packet 0 of 2; len 1200.
		{"720p interframe start", "90808001119200e537ffcc87efaf104f4fb10a2fe5e0203b42cbe3060e8d4df0733aa8e6bef74e07", false, 0, 0, 1},
		// 720p, frame 60 (keyframe), packet 0 of 10; len 1200.
		{"720p second keyframe start", "9080803c7090019d012a0005d0023955000a1c240c2c2c44cc24414c0dca1de7566e57ea87192679", true, 1280, 720, 60},
		// 360p, frame 0 (keyframe), packet 0 of 3; len 1200.
		{"360p keyframe start", "908080001077009d012a80026801395d000d1c240c2c2c44cc2441700dca1cc186c88af3e2b78846", true, 640, 360, 0},
		// 360p, frame 60, packet 2; len 1200. First VP8 byte 0x00.
		{"360p keyframe middle packet", "8080803c00cdafd66eae101f19d95027147072a3b0961e25fcebaf354583512ad41a2663c266659b", false, 0, 0, 60},
		// 360p, frame 61 (interframe), packet 1 of 2; len 735.
		{"360p interframe packet 1", "8080803d9d54607c6f90d2cb04141a4b3bed58d595651d26f2d6395a07759f42742cc58022696d37", false, 0, 0, 61},
		// 180p, frame 0 (keyframe), packet 0 of 2; len 1200.
		{"180p keyframe start", "908080003038009d012a4001b400395100101c240c2c2c44cc244140011a902726549cfd01fdff21", true, 320, 180, 0},
		// 180p, frame 0, packet 1; len 708.
		{"180p keyframe packet 1", "808080005daa7c5a542256fb1a9ea407f6037dfe0d6f3c3669c9f91dfb5cfbc8b193a819df14d1e7", false, 0, 0, 0},
		// 180p, frame 1 (interframe), the only packet; len 467.
		{"180p interframe", "90808001d11300e537ffd4bb67af104f4fb10a2fe5e0202f6c68defa08185fe465c41e61412bff7a", false, 0, 0, 1},
	} {
		p := unhex(t, c.payload)
		if got := isKeyframe(codecVP8, p); got != c.key {
			t.Errorf("%s: isKeyframe = %v, want %v", c.name, got, c.key)
		}
		w, h, ok := vp8KeyframeSize(p)
		if ok != c.key || w != c.w || h != c.h {
			t.Errorf("%s: vp8KeyframeSize = %d, %d, %v; want %d, %d, %v", c.name, w, h, ok, c.w, c.h, c.key)
		}
		if d, ok := parseVP8Desc(p); !ok || !d.hasPicID || !d.picIDWide || d.picID != c.picID || d.size != 4 {
			t.Errorf("%s: descriptor %+v, %v; want 15-bit picture ID %d", c.name, d, ok, c.picID)
		}
	}
}

// TestH264CapturedKeyframes uses payloads that pion's codecs.H264Payloader
// (github.com/pion/rtp v1.10.6) made from two 1-second clips encoded by
// ffmpeg 5.1 with libx264 (core 164 r3095):
//
//	ffmpeg -f lavfi -i testsrc2=size=320x180:rate=30 -t 1 -c:v libx264 \
//	  -profile:v baseline -g 10 -bsf:v h264_mp4toannexb -f h264 out.h264
//	ffmpeg (the same) -x264-params slice-max-size=250 ... -f h264 slices.h264
//
// Every IDR of out.h264 is one slice, preceded by SPS and PPS (and, in the
// first frame, x264's SEI with its settings). The whole Annex-B file was
// given to Payload at once, with MTU 300 (the IDR and most P slices become
// FU-A, SPS+PPS a STAP-A), MTU 1200 (P slices fit in one packet), or MTU 300
// with DisableStapA (SPS and PPS sent alone). slices.h264 cuts every
// picture into slices of at most 250 bytes, so with MTU 300 each slice,
// IDR ones included, is a single NAL unit packet.
func TestH264CapturedKeyframes(t *testing.T) {
	for _, c := range []struct {
		name    string
		payload string
		key     bool
	}{
		// out.h264, MTU 300, packet 0: STAP-A of SPS (25 bytes) and PPS (5 bytes); complete.
		{"STAP-A SPS+PPS", "7800196742c00dd901419f9f0110000003001000000303c0f142a480000568cb83cb20", true},
		// out.h264, MTU 300, packet 1: FU-A start of the SEI; len 300.
		{"FU-A start of SEI", "1c8605ffff6bdc45e9bde6d948b7962cd820d923eeef78323634202d20636f726520313634207233", false},
		// out.h264, MTU 300, packet 4: FU-A start of the first IDR slice; len 300.
		{"FU-A start of IDR", "7c85888415f1088ab830217e0215910000800d6a0c3000a5e37c848f85d57ff899ff2c93155bfc27", true},
		// out.h264, MTU 300, packet 5: FU-A middle of that IDR slice; len 300.
		{"FU-A middle of IDR", "7c055798f3345c2ebbffdff2644c55eff3075a98242b85cd5ec493920f6564bfea0ea2268a1763fb", false},
		// out.h264, MTU 300, packet 16: FU-A end of that IDR slice; len 206.
		{"FU-A end of IDR", "7c45ab88510dda3242496fc024026aa6376fcaae5f8ac21ffb0d4c1aab69c18a13b5dd6ffef81600", false},
		// out.h264, MTU 300, packet 17: FU-A start of the first P slice; len 300.
		{"FU-A start of non-IDR", "5c819a382bf866a4c27c20002214968404846000c1506c851f9a592debd359beab5d50dc000cef93", false},
		// out.h264, MTU 300, packet 18: FU-A middle of that P slice; len 300.
		{"FU-A middle of non-IDR", "5c010c3fe83578488f6395b65f885646a25c7c0111abb550f0267f4054835ac5a08c1b8443848013", false},
		// out.h264, MTU 300, packet 55: FU-A start of the second IDR (frame 10); len 300.
		{"FU-A start of second IDR", "7c85888209f1088aa830217e02146cc007ad4186000f13c33a10d8a81d267ffbf3543667372d55cd", true},
		// out.h264, MTU 1200, packet 1: the SEI in one packet; len 623.
		{"single SEI", "0605ffff6bdc45e9bde6d948b7962cd820d923eeef78323634202d20636f72652031363420723330", false},
		// out.h264, MTU 1200, packet 8: a whole P slice (frame 2); len 913.
		{"single non-IDR slice", "419a540aff041cbdd5d797e13bc008027fa55dfdf16ffbba7849568b06d997627ff8627d10e621cc", false},
		// out.h264, MTU 300, DisableStapA, packet 0: SPS alone; complete.
		{"single SPS", "6742c00dd901419f9f0110000003001000000303c0f142a480", true},
		// out.h264, MTU 300, DisableStapA, packet 1: PPS alone; complete.
		{"single PPS", "68cb83cb20", false},
		// slices.h264, MTU 300, packet 4: first slice of the first IDR; len 154.
		{"single IDR slice", "65888415f1088ab830217e0215910000800d6a0c3000a5e37c848f85d57ff899ff2c93155bfc272b", true},
		// slices.h264, MTU 300, packet 5: second slice of the same IDR; len 148.
		{"single IDR slice, not the first", "654221057c7110c185da9c0e8200ecb0023518b2b55e2e3bffc081f000a5e37c848f85d67ffa9746", true},
		// slices.h264, MTU 300, packet 29: first slice of the first P frame; len 238.
		{"single non-IDR slice of many", "419a382bf866a4c27c20002214968404846000c1506c851f9a592debd359beab5d50dc000cef9364", false},
	} {
		if got := isKeyframe(codecH264, unhex(t, c.payload)); got != c.key {
			t.Errorf("%s: isKeyframe = %v, want %v", c.name, got, c.key)
		}
	}
}
