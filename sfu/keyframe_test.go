package sfu

import (
	"os"
	"path/filepath"
	"testing"

	"citybridge/sfu/sfutest"

	"github.com/pion/rtp/codecs"
	"github.com/pion/webrtc/v4/pkg/media/ivfreader"
)

// TestVP8KeyframesFromClip packetizes the 360p clip (a keyframe every 60
// frames) and checks that exactly the first packet of each keyframe is
// recognised.
func TestVP8KeyframesFromClip(t *testing.T) {
	f, err := os.Open(filepath.Join(sfutest.TestdataDir(), "video-360p.ivf"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	r, _, err := ivfreader.NewWith(f)
	if err != nil {
		t.Fatal(err)
	}
	for _, pictureID := range []bool{false, true} {
		pay := &codecs.VP8Payloader{EnablePictureID: pictureID}
		if _, err := f.Seek(0, 0); err != nil {
			t.Fatal(err)
		}
		r, _, err = ivfreader.NewWith(f)
		if err != nil {
			t.Fatal(err)
		}
		var keyframes []int
		for frame := 0; ; frame++ {
			b, _, err := r.ParseNextFrame()
			if err != nil {
				break
			}
			for i, p := range pay.Payload(1200, b) {
				if isVP8Keyframe(p) {
					if i != 0 {
						t.Fatalf("frame %d: packet %d of a frame taken for a keyframe start", frame, i)
					}
					keyframes = append(keyframes, frame)
				}
			}
		}
		if len(keyframes) < 5 || keyframes[0] != 0 || keyframes[1] != 60 {
			t.Fatalf("pictureID=%v: keyframes at frames %v, want every 60 from 0", pictureID, keyframes)
		}
	}
}

func TestH264Keyframes(t *testing.T) {
	for _, c := range []struct {
		name    string
		payload []byte
		want    bool
	}{
		{"IDR single NAL", []byte{0x65, 0x88}, true},
		{"SPS single NAL", []byte{0x67, 0x42}, true},
		{"non-IDR slice", []byte{0x41, 0x9a}, false},
		{"STAP-A with SPS, PPS", []byte{0x78, 0x00, 0x02, 0x67, 0x42, 0x00, 0x02, 0x68, 0xce}, true},
		{"STAP-A with SEI only", []byte{0x78, 0x00, 0x02, 0x06, 0x05}, false},
		{"STAP-A truncated size", []byte{0x78, 0x00, 0x09, 0x67}, false},
		{"FU-A start of IDR", []byte{0x7c, 0x85, 0x88}, true},
		{"FU-A middle of IDR", []byte{0x7c, 0x05, 0x88}, false},
		{"FU-A start of non-IDR", []byte{0x7c, 0x81, 0x9a}, false},
		{"FU-A header only", []byte{0x7c}, false},
		{"empty", nil, false},
	} {
		if got := isKeyframe(codecH264, c.payload); got != c.want {
			t.Errorf("%s: isKeyframe = %v, want %v", c.name, got, c.want)
		}
	}
}

func TestVP8KeyframeDescriptors(t *testing.T) {
	for _, c := range []struct {
		name    string
		payload []byte
		want    bool
	}{
		{"minimal descriptor, key", []byte{0x10, 0x00}, true},
		{"minimal descriptor, delta", []byte{0x10, 0x01}, false},
		{"not a partition start", []byte{0x00, 0x00}, false},
		{"partition 1", []byte{0x11, 0x00}, false},
		{"7-bit picture ID", []byte{0x90, 0x80, 0x05, 0x00}, true},
		{"15-bit picture ID, TL0PICIDX, TID", []byte{0x90, 0xe0, 0x81, 0x05, 0x07, 0x40, 0x00}, true},
		{"truncated after X", []byte{0x90}, false},
		{"truncated picture ID", []byte{0x90, 0x80, 0x81}, false},
		{"empty", nil, false},
	} {
		if got := isKeyframe(codecVP8, c.payload); got != c.want {
			t.Errorf("%s: isKeyframe = %v, want %v", c.name, got, c.want)
		}
	}
}

// FuzzKeyframeDetect: whatever a publisher sends, detection neither
// panics nor reads past the payload.
func FuzzKeyframeDetect(f *testing.F) {
	for _, seed := range [][]byte{{0x10, 0x00}, {0x90, 0xe0, 0x81, 0x05, 0x07, 0x40, 0x00}, {0x78, 0x00, 0x02, 0x67, 0x42}, {0x7c, 0x85}} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, p []byte) {
		_ = isKeyframe(codecVP8, p)
		_ = isKeyframe(codecH264, p)
	})
}
