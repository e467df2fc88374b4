package record

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"citybridge/sfu/record/recordtest"

	"github.com/pion/rtp"
	"github.com/pion/rtp/codecs"
	"github.com/pion/webrtc/v4"
)

// senderTrack is a fakeTrack of publisher pub whose sender reports put
// its first packet's RTP timestamp at sender time base (the publisher's
// own clock, not the server's).
type senderTrack struct {
	fakeTrack
	pub     string
	base    time.Time
	firstTS uint32
	have    bool
}

func (s *senderTrack) PublisherID() string { return s.pub }
func (s *senderTrack) SenderTime(_ int, ts uint32) (time.Time, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.have {
		return time.Time{}, false
	}
	return s.base.Add(time.Duration(int64(int32(ts-s.firstTS)) * int64(time.Second) / int64(s.codec.ClockRate))), true
}

// makeFlashClips encodes seconds of a black picture (VP8, IVF) that is
// white for 0.1 s at each of the flash times, and a silence (Opus, Ogg)
// with a 1 kHz beep at the same times.
func makeFlashClips(t *testing.T, dir string, seconds int, flashes []float64) (ivf, ogg string) {
	t.Helper()
	var on []string
	for _, f := range flashes {
		on = append(on, "between(t,"+strconv.FormatFloat(f, 'f', 3, 64)+","+strconv.FormatFloat(f+0.099, 'f', 3, 64)+")")
	}
	expr := strings.Join(on, "+")
	d := strconv.Itoa(seconds)
	ivf, ogg = filepath.Join(dir, "flash.ivf"), filepath.Join(dir, "beep.ogg")
	for _, args := range [][]string{
		{"-f", "lavfi", "-i", "color=c=black:s=320x180:r=30:d=" + d,
			"-vf", "drawbox=c=white:t=fill:enable='" + expr + "'",
			"-c:v", "libvpx", "-g", "30", "-deadline", "realtime", "-b:v", "300k", "-f", "ivf", ivf},
		{"-f", "lavfi", "-i", "aevalsrc=exprs='0.8*sin(2*PI*1000*t)*(" + expr + ")':s=48000:c=stereo:d=" + d,
			"-c:a", "libopus", "-frame_duration", "20", "-page_duration", "20000", "-b:a", "64k", "-f", "ogg", ogg},
	} {
		if out, err := exec.Command("ffmpeg", append([]string{"-v", "error", "-y"}, args...)...).CombinedOutput(); err != nil {
			t.Fatalf("ffmpeg %v: %v: %s", args, err, out)
		}
	}
	return ivf, ogg
}

// TestRecordingAVSync: a hub whose picture flashes white and whose sound
// beeps at the same moments, recorded in 3-second segments, with a room
// holding the floor for a while (the layout changes). The video reaches
// the server 150 ms after the sound sampled with it (encoding, a longer
// path), as a browser's does; the sender reports say when each was
// sampled. In the minutes video each beep starts within 80 ms of its
// flash: the segments were placed by the sender clocks, not by arrival.
func TestRecordingAVSync(t *testing.T) {
	recordtest.NeedTools(t, "ffmpeg")
	dir := recordFlashing(t)
	done := make(chan MinutesJob, 100)
	r := NewRenderer(RendererOptions{Workers: 1, OnChange: func(j MinutesJob) { done <- j }})
	defer r.Close()
	r.Render("c1", dir, MinutesSpec{Title: "Sync test", Names: map[string]string{"ward-001": "Ward 1"}})
	job := waitJob(t, done, 120*time.Second)
	if job.State != JobDone {
		t.Fatalf("render: %+v", job)
	}
	checkFlashSync(t, filepath.Join(dir, MinutesName), 4)
}

// TestMinutesRangeAVSync: TestRecordingAVSync's recording, rendered
// from 3.3 s to 6 s of its wall clock (the server's: the recording
// started at 09:00:00): the video lasts those 2.7 s (ffprobe), beside
// the whole's minutes.mp4 (not made); the hub's sound from 3.3 s is
// there though its segment began before (entered past its start): the
// flashes at 3.5 and 5.5 s of the meeting are at 0.2 and 2.2 s, each
// with its beep within 80 ms.
func TestMinutesRangeAVSync(t *testing.T) {
	recordtest.NeedTools(t, "ffmpeg", "ffprobe")
	dir := recordFlashing(t)
	start := newClock().now()
	spec := MinutesSpec{Title: "Sync test", From: start.Add(3300 * time.Millisecond), To: start.Add(6 * time.Second)}
	done := make(chan MinutesJob, 100)
	r := NewRenderer(RendererOptions{Workers: 1, OnChange: func(j MinutesJob) { done <- j }})
	defer r.Close()
	r.Render("c1", dir, spec)
	job := waitJob(t, done, 120*time.Second)
	if job.State != JobDone || job.File != "minutes-20261206T090003.3Z-20261206T090006Z.mp4" || job.DurationMS != 2700 {
		t.Fatalf("render: %+v", job)
	}
	if _, err := os.Stat(filepath.Join(dir, MinutesName)); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the whole's video: %v, want none", err)
	}
	out := filepath.Join(dir, job.File)
	probe, err := recordtest.ProbeFile(out)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("%s: %v", job.File, probe.Duration)
	if (probe.Duration - 2700*time.Millisecond).Abs() > 100*time.Millisecond {
		t.Errorf("the range's video lasts %v, want 2.7 s", probe.Duration)
	}
	flashAt := checkFlashSync(t, out, 2)
	for i, want := range []time.Duration{200 * time.Millisecond, 2200 * time.Millisecond} {
		if i < len(flashAt) && (flashAt[i]-want).Abs() > 80*time.Millisecond {
			t.Errorf("flash %d at %v, want %v (the meeting's %v)", i, flashAt[i], want, want+3300*time.Millisecond)
		}
	}
}

// recordFlashing records, in 3-second segments from 09:00:00 on the
// server's clock, a hub whose picture flashes white and whose sound
// beeps at 1.5, 3.5, 5.5 and 7.5 s of its 9 s, and a room holding the
// floor from 3 to 6 s (see TestRecordingAVSync); it returns the
// recording's directory.
func recordFlashing(t *testing.T) string {
	t.Helper()
	const seconds = 9
	flashes := []float64{1.5, 3.5, 5.5, 7.5}
	tmp := t.TempDir()
	ivf, ogg := makeFlashClips(t, tmp, seconds, flashes)
	video := readVP8(t, ivf, seconds*30)
	audio := readOpus(t, ogg, seconds*50)

	dir := t.TempDir()
	clk := newClock()
	rec, err := New("c1", Options{Dir: dir, SegmentLength: 3 * time.Second, QueuePackets: 1 << 16, Now: clk.now, IdleClose: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	// The publishers' clocks are not the server's: the hub's runs 40 s
	// behind, the room's 3 s ahead.
	hubBase := clk.now().Add(-40 * time.Second)
	cam := &senderTrack{fakeTrack: fakeTrack{kind: webrtc.RTPCodecTypeVideo, codec: codec(webrtc.MimeTypeVP8, 90000)}, pub: "hub", base: hubBase}
	mic := &senderTrack{fakeTrack: fakeTrack{kind: webrtc.RTPCodecTypeAudio, codec: codec(webrtc.MimeTypeOpus, 48000)}, pub: "hub", base: hubBase}
	room := &senderTrack{fakeTrack: fakeTrack{kind: webrtc.RTPCodecTypeVideo, codec: codec(webrtc.MimeTypeVP8, 90000)}, pub: "ward-001", base: clk.now().Add(3 * time.Second)}
	if err := rec.Start("chair", false); err != nil {
		t.Fatal(err)
	}
	hubOnly := []Source{{cam, "hub-camera"}, {mic, "hub-audio"}}
	rec.Set(hubOnly)
	pv := packetizer(&codecs.VP8Payloader{}, 96, 90000)
	pr := packetizer(&codecs.VP8Payloader{}, 97, 90000)
	po := packetizer(&codecs.OpusPayloader{}, 111, 48000)
	send := func(tr *senderTrack, pkts []*rtp.Packet) {
		for _, p := range pkts {
			tr.mu.Lock()
			if !tr.have {
				tr.firstTS, tr.have = p.Timestamp, true
			}
			tr.mu.Unlock()
			tr.send(p)
		}
	}
	const (
		audioDelay = 20 * time.Millisecond
		videoDelay = 170 * time.Millisecond // 150 ms after the sound
		step       = 10 * time.Millisecond
	)
	floor := false
	va, vv := 0, 0
	for now := time.Duration(0); va < len(audio) || vv < len(video); now += step {
		// Media sampled at m arrives at m + its delay.
		for ; va < len(audio) && time.Duration(va)*20*time.Millisecond+audioDelay <= now; va++ {
			send(mic, po.Packetize(audio[va], 960))
		}
		for ; vv < len(video) && time.Duration(vv)*time.Second/30+videoDelay <= now; vv++ {
			send(cam, pv.Packetize(video[vv], 3000))
			if floor {
				send(room, pr.Packetize(video[vv], 3000))
			}
		}
		switch {
		case !floor && now >= 3*time.Second && now < 6*time.Second:
			floor = true
			rec.Set(append(hubOnly, Source{room, "ward-001-camera"}))
		case floor && now >= 6*time.Second:
			floor = false
			rec.Set(hubOnly)
		}
		clk.advance(step)
	}
	if err := rec.Stop(); err != nil {
		t.Fatal(err)
	}
	m := rec.Manifest()
	tracks := map[string]int{}
	for _, s := range m.Segments {
		tracks[s.Track]++
		if s.SenderStart.IsZero() {
			t.Errorf("%s: no sender time", s.File)
		}
	}
	if tracks["hub-camera"] < 2 || tracks["hub-audio"] < 2 || tracks["ward-001-camera"] != 1 {
		t.Fatalf("segments %v, want the hub's cut in several and one of the room's", tracks)
	}
	return rec.Dir()
}

// checkFlashSync finds want flashes and as many beeps in a minutes
// video, each beep within 80 ms of its flash and the flashes 2 s apart,
// and returns the flashes' times.
func checkFlashSync(t *testing.T, out string, want int) []time.Duration {
	t.Helper()
	flashAt := findFlashes(t, out)
	beepAt := findBeeps(t, out)
	t.Logf("flashes at %v, beeps at %v", flashAt, beepAt)
	if len(flashAt) != want || len(beepAt) != want {
		t.Fatalf("%d flashes and %d beeps found, want %d of each", len(flashAt), len(beepAt), want)
	}
	var worst time.Duration
	for i := range flashAt {
		d := beepAt[i] - flashAt[i]
		worst = max(worst, d.Abs())
		if d.Abs() > 80*time.Millisecond {
			t.Errorf("beep %d at %v, its flash at %v: %v apart, want at most 80 ms", i, beepAt[i], flashAt[i], d)
		}
		if i > 0 {
			if gap := flashAt[i] - flashAt[i-1]; (gap - 2*time.Second).Abs() > 80*time.Millisecond {
				t.Errorf("flashes %d and %d %v apart, want 2 s", i-1, i, gap)
			}
		}
	}
	t.Logf("worst audio-video distance %v", worst)
	return flashAt
}

// waitJob waits for a render's end, as OnChange tells it.
func waitJob(t *testing.T, ch <-chan MinutesJob, within time.Duration) MinutesJob {
	t.Helper()
	deadline := time.After(within)
	for {
		select {
		case j := <-ch:
			if j.State != JobQueued && j.State != JobRendering {
				return j
			}
		case <-deadline:
			t.Fatalf("no render ended within %v", within)
		}
	}
}

// findFlashes: when the left half of the picture (the hub's place in
// every layout) turns bright, from ffmpeg's signalstats on every frame.
func findFlashes(t *testing.T, path string) []time.Duration {
	t.Helper()
	out, err := exec.Command("ffmpeg", "-v", "error", "-i", path, "-an", "-vf",
		"crop=iw/2:ih:0:0,signalstats,metadata=print:key=lavfi.signalstats.YAVG:file=-", "-f", "null", "-").Output()
	if err != nil {
		t.Fatalf("signalstats: %v", err)
	}
	var at []time.Duration
	var pts float64
	bright := false
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		line := sc.Text()
		if i := strings.Index(line, "pts_time:"); i >= 0 {
			pts, _ = strconv.ParseFloat(strings.Fields(line[i+len("pts_time:"):])[0], 64)
			continue
		}
		if v, ok := strings.CutPrefix(line, "lavfi.signalstats.YAVG="); ok {
			y, _ := strconv.ParseFloat(v, 64)
			if now := y > 70; now && !bright {
				at = append(at, time.Duration(pts*float64(time.Second)))
				bright = true
			} else if !now {
				bright = false
			}
		}
	}
	return at
}

// findBeeps: where the sound starts after a quiet stretch, from the
// decoded samples (mono, 48 kHz).
func findBeeps(t *testing.T, path string) []time.Duration {
	t.Helper()
	pcm, err := exec.Command("ffmpeg", "-v", "error", "-i", path, "-vn", "-ac", "1", "-ar", "48000", "-f", "s16le", "-").Output()
	if err != nil {
		t.Fatalf("decoding the sound: %v", err)
	}
	var at []time.Duration
	quiet := 48000 // samples since the last loud one
	for i := 0; i+1 < len(pcm); i += 2 {
		v := int16(binary.LittleEndian.Uint16(pcm[i:]))
		if v > 8000 || v < -8000 {
			if quiet >= 24000 {
				at = append(at, time.Duration(i/2)*time.Second/48000)
			}
			quiet = 0
			continue
		}
		quiet++
	}
	return at
}
