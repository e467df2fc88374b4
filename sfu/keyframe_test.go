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
