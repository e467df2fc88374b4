package record

import (
	"os"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"
	"time"

	"citybridge/sfu/sfutest"

	"github.com/pion/rtp/codecs"
	"github.com/pion/webrtc/v4"
)

// BenchmarkMinutesRender records a synthetic meeting (default 3 minutes;
// MINUTES_BENCH_MINUTES sets it) and renders its minutes video as the
// server does (niced, one thread): the hub's 720p camera and microphone
// throughout, a room's 360p camera on the floor for the middle third,
// the screen (720p) shared for the last sixth; 1-minute segments. It
// reports the render's wall time and ffmpeg's CPU time per hour of
// meeting (extrapolated: the render's cost grows with the meeting's
// length). Run it once: -benchtime 1x.
func BenchmarkMinutesRender(b *testing.B) {
	minutes := 3
	if v, err := strconv.Atoi(os.Getenv("MINUTES_BENCH_MINUTES")); err == nil && v > 0 {
		minutes = v
	}
	hd := readVP8Bench(b, filepath.Join(sfutest.TestdataDir(), "video-720p.ivf"))
	sd := readVP8Bench(b, filepath.Join(sfutest.TestdataDir(), "video-360p.ivf"))
	sound := readOpus(b, filepath.Join(sfutest.TestdataDir(), "audio.ogg"), 1000)

	clk := newClock()
	rec, err := New("c1", Options{Dir: b.TempDir(), SegmentLength: time.Minute, QueuePackets: 1 << 16, Now: clk.now, IdleClose: time.Hour})
	if err != nil {
		b.Fatal(err)
	}
	video := func(pub string) *senderTrack {
		return &senderTrack{fakeTrack: fakeTrack{kind: webrtc.RTPCodecTypeVideo, codec: codec(webrtc.MimeTypeVP8, 90000)}, pub: pub}
	}
	cam, room, screen := video("hub"), video("ward-001"), video("hub")
	mic := &senderTrack{fakeTrack: fakeTrack{kind: webrtc.RTPCodecTypeAudio, codec: codec(webrtc.MimeTypeOpus, 48000)}, pub: "hub"}
	if err := rec.Start("bench", false); err != nil {
		b.Fatal(err)
	}
	hub := []Source{{cam, "hub-camera"}, {mic, "hub-audio"}}
	rec.Set(hub)
	pc, pr, ps := packetizer(&codecs.VP8Payloader{}, 96, 90000), packetizer(&codecs.VP8Payloader{}, 97, 90000), packetizer(&codecs.VP8Payloader{}, 98, 90000)
	po := packetizer(&codecs.OpusPayloader{}, 111, 48000)
	total := time.Duration(minutes) * time.Minute
	frames := int(total / (time.Second / 30))
	layout := 0
	for i, a := 0, 0; i < frames; i++ {
		now := time.Duration(i) * time.Second / 30
		for ; time.Duration(a)*20*time.Millisecond <= now; a++ {
			for _, p := range po.Packetize(sound[a%len(sound)], 960) {
				mic.send(p)
			}
		}
		want := 0
		switch {
		case now >= total/3 && now < total*2/3:
			want = 1
		case now >= total*5/6:
			want = 2
		}
		if want != layout {
			layout = want
			switch want {
			case 0:
				rec.Set(hub)
			case 1:
				rec.Set(append(hub, Source{room, "ward-001-camera"}))
			case 2:
				rec.Set(append(hub, Source{screen, "hub-screen"}))
			}
		}
		for _, p := range pc.Packetize(hd[i%len(hd)], 3000) {
			cam.send(p)
		}
		if layout == 1 {
			for _, p := range pr.Packetize(sd[i%len(sd)], 3000) {
				room.send(p)
			}
		}
		if layout == 2 {
			for _, p := range ps.Packetize(hd[i%len(hd)], 3000) {
				screen.send(p)
			}
		}
		clk.advance(time.Second / 30)
	}
	if err := rec.Stop(); err != nil {
		b.Fatal(err)
	}
	b.ResetTimer()
	done := make(chan MinutesJob, 1000)
	r := NewRenderer(RendererOptions{Workers: 1, OnChange: func(j MinutesJob) { done <- j }})
	defer r.Close()
	cpu0 := childCPU()
	began := time.Now()
	r.Render("c1", rec.Dir(), MinutesSpec{Title: "Benchmark"})
	for j := range done {
		if j.State == JobDone {
			break
		}
		if j.State != JobQueued && j.State != JobRendering {
			b.Fatalf("render: %+v", j)
		}
	}
	wall, cpu := time.Since(began), childCPU()-cpu0
	perHour := float64(time.Hour) / float64(total)
	b.ReportMetric(wall.Seconds(), "render-s")
	b.ReportMetric(wall.Minutes()*perHour, "render-min/meeting-hour")
	b.ReportMetric(cpu.Minutes()*perHour, "cpu-min/meeting-hour")
	info, err := ReadMinutesInfo(rec.Dir())
	if err != nil {
		b.Fatal(err)
	}
	b.Logf("%d-minute meeting, %d segments: rendered in %v (ffmpeg CPU %v), %.1f MB", minutes, info.Segments, wall.Round(time.Millisecond), cpu.Round(time.Millisecond), float64(info.Bytes)/1e6)
}

// childCPU is the CPU time of the finished child processes (ffmpeg).
func childCPU() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_CHILDREN, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
