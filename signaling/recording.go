package signaling

import (
	"errors"
	"regexp"
	"time"

	"citybridge/controlplane"
	"citybridge/sfu/record"

	"github.com/pion/webrtc/v4"
)

// RecordingConfig says where and how conferences are recorded.
type RecordingConfig struct {
	// Dir is the recordings directory (one subdirectory per conference);
	// empty refuses every recording.
	Dir string
	// MinFree is the free space below which a recording does not start.
	MinFree uint64
	// SegmentLength is how long each segment file runs (default 5 min).
	SegmentLength time.Duration
	// SpaceCheckEvery is how often free space is checked while anything
	// is recorded (default DefaultSpaceCheckEvery; diskwatch.go).
	SpaceCheckEvery time.Duration
	// LowSpace, if set, is told when free space falls below twice
	// MinFree during a recording, or a write finds the disk full (low,
	// with a detail for people), and when it is back above (not low).
	LowSpace func(low bool, detail string)
	// Keep is how long recordings are kept after their last segment
	// ended (0: forever); SweepEvery how often that is checked (default
	// DefaultSweepEvery, and once at start); Now the sweep's clock
	// (default time.Now). retention.go.
	Keep       time.Duration
	SweepEvery time.Duration
	Now        func() time.Time
}

// errNoRecordings: the server was started without a recordings directory.
var errNoRecordings = errors.New("recording is not configured on this server (--recordings)")

// What is recorded, while a conference is: the hub's camera (its top
// layer as received), its shared screen and its microphone; the floor
// holder's camera; the microphone of every unmuted room. The same as what
// the rooms receive, so the record holds what the meeting saw and heard.

// mayRecord checks that a recording can start: a directory, and enough
// free space in it.
func (c *conference) mayRecord() error {
	rc := c.srv.cfg.Recordings
	if rc.Dir == "" {
		return errNoRecordings
	}
	return record.CheckSpace(rc.Dir, rc.MinFree)
}

// syncRecording brings the recorder in line with the conference: started
// or stopped, and recording exactly the tracks that matter now. It runs
// after every floor change, new track and departure.
func (c *conference) syncRecording() {
	c.recMu.Lock()
	defer c.recMu.Unlock()
	c.mu.Lock()
	on, by, resumed, holder, screen, stopBy := c.recording, c.recBy, c.recResumed, c.holder, c.screen, c.recStopBy
	if !on {
		c.recStopBy = ""
	}
	unmuted := map[string]bool{}
	for b := range c.unmuted {
		unmuted[b] = true
	}
	hub := c.members[controlplane.HubBridge.ID]
	c.mu.Unlock()
	if !on {
		if c.rec != nil && c.rec.Recording() {
			if err := c.rec.StopBy(stopBy); err != nil {
				c.log.Error("recording stop", "err", err)
			}
			c.log.Info("recording stopped", "dir", c.rec.Dir(), "by", stopBy)
			c.minutesAfterStop()
		}
		return
	}
	if c.rec == nil {
		rc := c.srv.cfg.Recordings
		if rc.Dir == "" {
			c.log.Error("recording wanted but not configured (--recordings)")
			return
		}
		rec, err := record.New(c.id, record.Options{Dir: rc.Dir, SegmentLength: rc.SegmentLength, Logger: c.log,
			// Not on the writer's goroutine: stopping waits for it.
			OnNoSpace: func(err error) { c.stopRecordingBySystem(stoppedDiskFull, err.Error()) }})
		if err != nil {
			c.log.Error("recording not started", "err", err)
			return
		}
		c.rec = rec
	}
	if !c.rec.Recording() {
		if resumed {
			by = "resumed after restart"
		}
		if err := c.rec.Start(by, resumed); err != nil {
			c.log.Error("recording manifest", "err", err)
		}
		c.mu.Lock()
		c.recResumed = false
		c.mu.Unlock()
		c.log.Info("recording started", "dir", c.rec.Dir(), "by", by, "resumed", resumed)
	}
	var screenTrack string
	if hub != nil && screen != "" {
		if t := hub.peer.PublishedVideo(screen); t != nil {
			screenTrack = t.ID()
		}
	}
	var sources []record.Source
	for _, t := range c.router.Tracks() {
		pub, video := t.PublisherID(), t.Kind() == webrtc.RTPCodecTypeVideo
		label := ""
		switch {
		case pub == controlplane.HubBridge.ID && video && t.ID() == screenTrack:
			label = "hub-screen"
		case pub == controlplane.HubBridge.ID && video:
			label = "hub-camera"
		case pub == controlplane.HubBridge.ID:
			label = "hub-audio"
		case video && pub == holder:
			label = pub + "-camera"
		case !video && unmuted[pub]:
			label = pub + "-audio"
		default:
			continue
		}
		sources = append(sources, record.Source{Track: t, Label: fileSafe.ReplaceAllString(label, "_")})
	}
	c.rec.Set(sources)
}

var fileSafe = regexp.MustCompile(`[^A-Za-z0-9_-]`)

// closeRecording closes the open segments when the conference leaves
// this server (shut down, or moved) without changing whether it is
// recorded: the server that serves it next resumes the recording.
func (c *conference) closeRecording() {
	c.recMu.Lock()
	defer c.recMu.Unlock()
	if c.rec != nil {
		if err := c.rec.Stop(); err != nil {
			c.log.Error("recording stop", "err", err)
		}
	}
}
