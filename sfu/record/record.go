// Package record writes a conference's tracks to disk as they arrive,
// without decoding: one file per track and segment (WebM for VP8 and
// Opus, Matroska for H.264, muxed by ebml-go), each closed segment's
// SHA-256 in a manifest beside it. A crash loses at most the open
// segments. The SFU's read loops hand packets over through a bounded
// queue per track and never wait for the disk.
package record

import (
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"citybridge/sfu"

	"github.com/pion/webrtc/v4"
)

// ManifestName is the manifest's file name in a conference's directory.
const ManifestName = "manifest.json"

// Defaults for Options' zero values.
const (
	DefaultSegmentLength = 5 * time.Minute
	DefaultQueuePackets  = 2048 // 1280x720 at 2.5 Mbps: about 7 s of packets
	DefaultIdleClose     = 5 * time.Second
)

// ErrLowSpace is a recording refused for lack of free disk space.
var ErrLowSpace = errors.New("not enough free disk space to record")

// Options configure a Recorder.
type Options struct {
	// Dir is the recordings directory; each conference records into its
	// own subdirectory.
	Dir string
	// SegmentLength is how long a segment runs before the next is cut
	// (video at its next keyframe). Default 5 minutes.
	SegmentLength time.Duration
	// QueuePackets bounds each track's queue to its writer.
	QueuePackets int
	// IdleClose closes a track's segment after this long without frames.
	IdleClose time.Duration
	Logger    *slog.Logger
	Now       func() time.Time
	// OnNoSpace, if set, is told (once per run, on a goroutine of its
	// own) that a write failed for a full disk (space.go).
	OnNoSpace func(error)
}

// Track is what the recorder needs of a published track (*sfu.Track).
type Track interface {
	PublisherID() string
	Kind() webrtc.RTPCodecType
	Codec() webrtc.RTPCodecParameters
	// TopLayer is the best layer received now, -1 for none.
	TopLayer() int
	RequestKeyframe(layer int)
	// SetTap hands the track's packets to tap as they arrive (nil: stop).
	SetTap(tap sfu.Tap)
}

// SenderClock is what a Track may also do (*sfu.Track does): say when,
// by the publisher's clock, the media of an RTP timestamp was sampled.
type SenderClock interface {
	SenderTime(layer int, ts uint32) (time.Time, bool)
}

// Source is one track to record and the name its files carry (for
// example "hub-camera", "ward-001-audio").
type Source struct {
	Track Track
	Label string
}

// Segment is one closed segment in the manifest.
type Segment struct {
	File      string    `json:"file"`
	Track     string    `json:"track"`
	Publisher string    `json:"publisher"`
	Kind      string    `json:"kind"`
	Codec     string    `json:"codec"`
	Layer     string    `json:"layer,omitempty"`
	Width     int       `json:"width,omitempty"`
	Height    int       `json:"height,omitempty"`
	Start     time.Time `json:"start"` // wall clock at the first frame
	// SenderStart is when the first frame was sampled by the publisher's
	// own clock (its RTCP sender reports map RTP time to it); zero when
	// the publisher sent none. The minutes video aligns a publisher's
	// tracks by it (minutes_graph.go).
	SenderStart time.Time `json:"senderStart,omitzero"`
	End         time.Time `json:"end"` // wall clock at the last frame
	DurationMS  int64     `json:"durationMs"`
	Frames      int       `json:"frames"`
	Bytes       int64     `json:"bytes"`
	SHA256      string    `json:"sha256"`
}

// Run is one stretch of recording: started by someone, or resumed after
// a restart, until stopped (zero while running, or if the server died).
type Run struct {
	Started time.Time `json:"started"`
	By      string    `json:"by,omitempty"`
	Resumed bool      `json:"resumed,omitempty"`
	Stopped time.Time `json:"stopped,omitzero"`
	// StoppedBy is who stopped the run when no person did ("system":
	// the disk ran low).
	StoppedBy string `json:"stoppedBy,omitempty"`
}

// Manifest lists a conference's recording runs and closed segments.
type Manifest struct {
	Conference string    `json:"conference"`
	Runs       []Run     `json:"runs"`
	Segments   []Segment `json:"segments"`
}

// Recorder records one conference. Set says which tracks to record;
// the methods are safe for concurrent use.
type Recorder struct {
	opt  Options
	dir  string
	log  *slog.Logger
	pool sync.Pool
	seq  atomic.Int64 // numbers the segments' file names
	// noSpace: OnNoSpace was told during this run.
	noSpace atomic.Bool

	mu       sync.Mutex
	writers  map[Track]*trackWriter
	manifest Manifest
	running  bool
	dropped  uint64 // packets dropped by writers already stopped
}

// New prepares conference's recording directory and reads its manifest,
// if an earlier run left one. Nothing is recorded until Start.
func New(conference string, opt Options) (*Recorder, error) {
	if opt.SegmentLength <= 0 {
		opt.SegmentLength = DefaultSegmentLength
	}
	if opt.QueuePackets <= 0 {
		opt.QueuePackets = DefaultQueuePackets
	}
	if opt.IdleClose <= 0 {
		opt.IdleClose = DefaultIdleClose
	}
	if opt.Logger == nil {
		opt.Logger = slog.Default()
	}
	if opt.Now == nil {
		opt.Now = time.Now
	}
	if conference == "" || conference != filepath.Base(conference) || conference[0] == '.' {
		return nil, fmt.Errorf("record: bad conference ID %q", conference)
	}
	dir := filepath.Join(opt.Dir, conference)
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return nil, fmt.Errorf("record: %w", err)
	}
	r := &Recorder{opt: opt, dir: dir, log: opt.Logger, writers: map[Track]*trackWriter{}}
	r.pool.New = func() any { return new(packetBuf) }
	m, err := ReadManifest(dir)
	switch {
	case err == nil:
		r.manifest = m
	case errors.Is(err, os.ErrNotExist):
		r.manifest = Manifest{Conference: conference}
	default:
		return nil, err
	}
	return r, nil
}

// Dir is the conference's recording directory.
func (r *Recorder) Dir() string { return r.dir }

// Start begins a run (resumed: after a restart, not by a person).
func (r *Recorder) Start(by string, resumed bool) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.running {
		return nil
	}
	r.running = true
	r.noSpace.Store(false)
	r.manifest.Runs = append(r.manifest.Runs, Run{Started: r.opt.Now().UTC(), By: by, Resumed: resumed})
	return r.saveLocked()
}

// Set records exactly sources from now on: writers start for new ones
// and stop (closing their segments) for those no longer listed. Without
// a run started it records nothing.
func (r *Recorder) Set(sources []Source) {
	r.mu.Lock()
	if !r.running {
		r.mu.Unlock()
		return
	}
	want := map[Track]Source{}
	for _, s := range sources {
		if familyOf(s.Track.Codec().MimeType) != 0 {
			want[s.Track] = s
		}
	}
	var stopping []*trackWriter
	for t, w := range r.writers {
		if s, ok := want[t]; !ok || s.Label != w.label {
			stopping = append(stopping, w)
			delete(r.writers, t)
		}
	}
	for t, s := range want {
		if r.writers[t] == nil {
			w := newTrackWriter(r, s)
			r.writers[t] = w
			go w.run()
			t.SetTap(w)
			r.log.Info("recording track", "track", s.Label, "codec", t.Codec().MimeType)
		}
	}
	r.mu.Unlock()
	r.stopWriters(stopping)
}

func (r *Recorder) stopWriters(ws []*trackWriter) {
	for _, w := range ws {
		r.log.Info("recording track ends", "track", w.label, "dropped", w.dropped.Load())
		w.track.SetTap(nil)
		w.close()
		r.mu.Lock()
		r.dropped += w.dropped.Load()
		r.mu.Unlock()
	}
}

// Stop ends the run: every open segment is closed and entered in the
// manifest before it returns.
func (r *Recorder) Stop() error { return r.StopBy("") }

// StopBy is Stop, the manifest saying who stopped the run when it was
// not a person.
func (r *Recorder) StopBy(by string) error {
	r.mu.Lock()
	if !r.running {
		r.mu.Unlock()
		return nil
	}
	r.running = false
	var ws []*trackWriter
	for t, w := range r.writers {
		ws = append(ws, w)
		delete(r.writers, t)
	}
	r.mu.Unlock()
	r.stopWriters(ws)
	r.mu.Lock()
	defer r.mu.Unlock()
	if n := len(r.manifest.Runs); n > 0 {
		r.manifest.Runs[n-1].Stopped = r.opt.Now().UTC()
		r.manifest.Runs[n-1].StoppedBy = by
	}
	return r.saveLocked()
}

// Recording reports whether a run is going on.
func (r *Recorder) Recording() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.running
}

// Dropped is how many packets the writers' queues had no room for.
func (r *Recorder) Dropped() uint64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	n := r.dropped
	for _, w := range r.writers {
		n += w.dropped.Load()
	}
	return n
}

// Manifest returns a copy of the manifest as it stands.
func (r *Recorder) Manifest() Manifest {
	r.mu.Lock()
	defer r.mu.Unlock()
	m := r.manifest
	m.Runs = append([]Run(nil), m.Runs...)
	m.Segments = append([]Segment(nil), m.Segments...)
	return m
}

func (r *Recorder) addSegment(s Segment) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.manifest.Segments = append(r.manifest.Segments, s)
	if err := r.saveLocked(); err != nil {
		r.log.Error("recording manifest not written", "err", err)
		r.failed(err)
	}
	r.log.Info("recording segment closed", "file", s.File, "bytes", s.Bytes, "duration_ms", s.DurationMS, "sha256", s.SHA256)
}

// saveLocked writes the manifest beside the segments: a new file synced
// and renamed over the old, so a crash leaves one or the other whole.
func (r *Recorder) saveLocked() error {
	b, err := json.MarshalIndent(r.manifest, "", "  ")
	if err != nil {
		return err
	}
	tmp := filepath.Join(r.dir, ManifestName+".tmp")
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o640)
	if err != nil {
		return err
	}
	if _, err := f.Write(append(b, '\n')); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	if err := os.Rename(tmp, filepath.Join(r.dir, ManifestName)); err != nil {
		return err
	}
	if d, err := os.Open(r.dir); err == nil {
		_ = d.Sync()
		d.Close()
	}
	return nil
}

// ReadManifest reads the manifest in a conference's recording directory.
func ReadManifest(dir string) (Manifest, error) {
	var m Manifest
	b, err := os.ReadFile(filepath.Join(dir, ManifestName))
	if err != nil {
		return m, err
	}
	if err := json.Unmarshal(b, &m); err != nil {
		return m, fmt.Errorf("record: %s: %w", filepath.Join(dir, ManifestName), err)
	}
	return m, nil
}

// CheckSpace refuses to record into dir when less than minFree is free.
func CheckSpace(dir string, minFree uint64) error {
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return fmt.Errorf("recordings directory %s: %w", dir, err)
	}
	free, err := FreeBytes(dir)
	if err != nil {
		return fmt.Errorf("recordings directory %s: %w", dir, err)
	}
	if free < minFree {
		return fmt.Errorf("%w: %.1f GB free in %s, at least %.1f GB needed (--recordings-min-free)",
			ErrLowSpace, float64(free)/1e9, dir, float64(minFree)/1e9)
	}
	return nil
}
