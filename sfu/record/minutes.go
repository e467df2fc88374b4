package record

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"time"
)

// The minutes video is rendered by ffmpeg in the background (os/exec):
// at most one render per CPU, each niced to the lowest priority with one
// thread for decoding, filtering and encoding, so a live meeting on the
// same machine keeps its CPU. It lands beside the segments as
// MinutesName, described by MinutesInfoName.
const (
	MinutesName     = "minutes.mp4"
	MinutesInfoName = "minutes.json"
)

// Job states.
const (
	JobQueued    = "queued"
	JobRendering = "rendering"
	JobDone      = "done"
	JobFailed    = "failed"
	JobCancelled = "cancelled"
)

// ErrNoJob: no render of that conference's minutes is known.
var ErrNoJob = errors.New("no minutes video job for this conference")

// ErrRendererClosed: the server is shutting down and renders nothing more.
var ErrRendererClosed = errors.New("the server is shutting down: no minutes video is rendered")

// MinutesJob is a render's state, as the API shows it.
type MinutesJob struct {
	Conference string    `json:"conference"`
	State      string    `json:"state"`
	Percent    int       `json:"percent"`
	File       string    `json:"file,omitempty"` // in the conference's recording directory, once done
	DurationMS int64     `json:"durationMs,omitempty"`
	Queued     time.Time `json:"queued"`
	Started    time.Time `json:"started,omitzero"`
	Finished   time.Time `json:"finished,omitzero"`
	Error      string    `json:"error,omitempty"`
}

// MinutesInfo is MinutesInfoName: what the last render made.
type MinutesInfo struct {
	File       string    `json:"file"`
	Bytes      int64     `json:"bytes"`
	SHA256     string    `json:"sha256"`
	DurationMS int64     `json:"durationMs"`
	Segments   int       `json:"segments"` // how many of the manifest's it shows
	Rendered   time.Time `json:"rendered"`
	RenderMS   int64     `json:"renderMs"`
}

// RendererOptions configure a Renderer.
type RendererOptions struct {
	// Workers is how many renders run at once (default: one per CPU).
	Workers int
	// FFmpeg is the ffmpeg binary (default "ffmpeg" on the PATH).
	FFmpeg string
	// Preset is x264's preset (default "veryfast").
	Preset string
	Logger *slog.Logger
	// OnChange is told every change of a job's state or percent.
	OnChange func(MinutesJob)
}

// Renderer runs the minutes renders. Its methods are safe for concurrent
// use.
type Renderer struct {
	opt  RendererOptions
	log  *slog.Logger
	sem  chan struct{}
	nice string // the nice binary, "" where there is none
	wg   sync.WaitGroup

	mu   sync.Mutex
	jobs map[string]*job
}

type job struct {
	MinutesJob
	dir    string
	spec   MinutesSpec
	cancel context.CancelFunc
	again  bool          // asked for again while rendering: the manifest changed
	done   chan struct{} // closed when its goroutine has ended
}

// NewRenderer prepares a renderer; renders start with Render.
func NewRenderer(opt RendererOptions) *Renderer {
	if opt.Workers <= 0 {
		opt.Workers = runtime.NumCPU()
	}
	if opt.FFmpeg == "" {
		opt.FFmpeg = "ffmpeg"
	}
	if opt.Preset == "" {
		opt.Preset = "veryfast"
	}
	if opt.Logger == nil {
		opt.Logger = slog.Default()
	}
	r := &Renderer{opt: opt, log: opt.Logger, sem: make(chan struct{}, opt.Workers), jobs: map[string]*job{}}
	r.nice, _ = exec.LookPath("nice")
	return r
}

// Render queues a render of conference's minutes from the recording in
// dir. A render of it already queued or running is returned as it is
// (and runs once more when it ends, for what was recorded since).
func (r *Renderer) Render(conference, dir string, spec MinutesSpec) MinutesJob {
	if r == nil { // the server is shutting down (its renderer closed, none made)
		return MinutesJob{Conference: conference, State: JobFailed, Error: ErrRendererClosed.Error()}
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if j := r.jobs[conference]; j != nil && (j.State == JobQueued || j.State == JobRendering) {
		j.again, j.spec = true, spec
		return j.MinutesJob
	}
	return r.startLocked(conference, dir, spec)
}

func (r *Renderer) startLocked(conference, dir string, spec MinutesSpec) MinutesJob {
	ctx, cancel := context.WithCancel(context.Background())
	j := &job{MinutesJob: MinutesJob{Conference: conference, State: JobQueued, Queued: time.Now().UTC()}, dir: dir, spec: spec, cancel: cancel, done: make(chan struct{})}
	r.jobs[conference] = j
	r.wg.Add(1)
	go r.run(ctx, j)
	return j.MinutesJob
}

// Job is conference's newest render.
func (r *Renderer) Job(conference string) (MinutesJob, bool) {
	if r == nil {
		return MinutesJob{}, false
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	j := r.jobs[conference]
	if j == nil {
		return MinutesJob{}, false
	}
	return j.MinutesJob, true
}

// Stop cancels conference's render, queued or running, and waits until
// it ended (ffmpeg killed, its unfinished file removed). It reports
// whether there was one; a nil Renderer runs none.
func (r *Renderer) Stop(conference string) bool {
	if r == nil {
		return false
	}
	r.mu.Lock()
	j := r.jobs[conference]
	if j == nil || (j.State != JobQueued && j.State != JobRendering) {
		r.mu.Unlock()
		return false
	}
	j.again = false
	j.cancel()
	r.mu.Unlock()
	<-j.done
	return true
}

// Cancel stops conference's render, queued or running (ffmpeg is killed
// and its unfinished file removed). ErrNoJob when none is.
func (r *Renderer) Cancel(conference string) (MinutesJob, error) {
	if r == nil {
		return MinutesJob{}, ErrNoJob
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	j := r.jobs[conference]
	if j == nil || (j.State != JobQueued && j.State != JobRendering) {
		return MinutesJob{}, ErrNoJob
	}
	j.again = false
	j.cancel()
	return j.MinutesJob, nil
}

// Close cancels every render and waits for them to end.
func (r *Renderer) Close() {
	r.mu.Lock()
	for _, j := range r.jobs {
		j.again = false
		j.cancel()
	}
	r.mu.Unlock()
	r.wg.Wait()
}

// update changes j's state and tells OnChange, from j's own goroutine
// (so in order).
func (r *Renderer) update(j *job, f func(*MinutesJob)) {
	r.mu.Lock()
	f(&j.MinutesJob)
	m := j.MinutesJob
	r.mu.Unlock()
	if r.opt.OnChange != nil {
		r.opt.OnChange(m)
	}
}

// run waits for a worker's place, renders, and records how it ended.
func (r *Renderer) run(ctx context.Context, j *job) {
	defer r.wg.Done()
	defer close(j.done)
	defer j.cancel()
	log := r.log.With("conference", j.Conference)
	r.update(j, func(*MinutesJob) {}) // queued
	select {
	case r.sem <- struct{}{}:
	case <-ctx.Done():
		r.update(j, func(m *MinutesJob) { m.State, m.Finished = JobCancelled, time.Now().UTC() })
		r.next(j)
		return
	}
	r.mu.Lock()
	spec := j.spec
	j.again = false
	r.mu.Unlock()
	r.update(j, func(m *MinutesJob) { m.State, m.Started = JobRendering, time.Now().UTC() })
	info, err := r.render(ctx, j, spec)
	finished := time.Now().UTC() // before the place is free: the next render starts after it
	<-r.sem
	r.update(j, func(m *MinutesJob) {
		m.Finished = finished
		switch {
		case ctx.Err() != nil:
			m.State = JobCancelled
		case err != nil:
			m.State, m.Error = JobFailed, err.Error()
		default:
			m.State, m.Percent, m.File, m.DurationMS = JobDone, 100, info.File, info.DurationMS
		}
	})
	switch {
	case ctx.Err() != nil:
		log.Info("minutes video cancelled")
	case err != nil:
		log.Error("minutes video failed", "err", err)
	default:
		log.Info("minutes video rendered", "file", info.File, "duration_ms", info.DurationMS, "render_ms", info.RenderMS, "bytes", info.Bytes)
	}
	r.next(j)
}

// next starts the render asked for again while j ran.
func (r *Renderer) next(j *job) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if j.again && r.jobs[j.Conference] == j {
		r.startLocked(j.Conference, j.dir, j.spec)
	}
}

// render runs ffmpeg on j's recording: MinutesName.part, renamed over
// MinutesName when whole, and MinutesInfoName beside it.
func (r *Renderer) render(ctx context.Context, j *job, spec MinutesSpec) (MinutesInfo, error) {
	began := time.Now()
	m, err := ReadManifest(j.dir)
	if err != nil {
		return MinutesInfo{}, err
	}
	plan, err := PlanMinutes(m, j.dir, spec)
	if err != nil {
		return MinutesInfo{}, err
	}
	work, err := os.MkdirTemp(j.dir, ".minutes-")
	if err != nil {
		return MinutesInfo{}, err
	}
	defer os.RemoveAll(work)
	for i, c := range plan.Captions {
		if err := os.WriteFile(filepath.Join(work, CaptionFile(i)), []byte(c), 0o640); err != nil {
			return MinutesInfo{}, err
		}
	}
	part := filepath.Join(j.dir, MinutesName+".part")
	defer os.Remove(part)
	args := append([]string{"-hide_banner", "-nostdin", "-v", "error", "-y",
		"-filter_threads", "1", "-filter_complex_threads", "1"}, plan.Args...)
	args = append(args, "-c:v", "libx264", "-preset", r.opt.Preset, "-crf", "26", "-pix_fmt", "yuv420p",
		"-r", strconv.Itoa(MinutesFPS), "-threads", "1", "-x264-params", "threads=1:lookahead-threads=1",
		"-c:a", "aac", "-b:a", "96k", "-movflags", "+faststart",
		"-progress", "pipe:1", "-nostats", "-f", "mp4", part)
	name, cargs := r.opt.FFmpeg, args
	if r.nice != "" {
		name, cargs = r.nice, append([]string{"-n", "19", r.opt.FFmpeg}, args...)
	}
	cmd := exec.CommandContext(ctx, name, cargs...)
	cmd.Dir = work
	var stderr tailBuffer
	cmd.Stderr = &stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		return MinutesInfo{}, err
	}
	if err := cmd.Start(); err != nil {
		return MinutesInfo{}, fmt.Errorf("ffmpeg: %w", err)
	}
	r.progress(out, j, plan.Duration)
	if err := cmd.Wait(); err != nil {
		return MinutesInfo{}, fmt.Errorf("ffmpeg: %w: %s", err, strings.TrimSpace(stderr.String()))
	}
	final := filepath.Join(j.dir, MinutesName)
	if err := os.Rename(part, final); err != nil {
		return MinutesInfo{}, err
	}
	sum, size, err := FileSum(final)
	if err != nil {
		return MinutesInfo{}, err
	}
	info := MinutesInfo{File: MinutesName, Bytes: size, SHA256: sum, DurationMS: plan.Duration.Milliseconds(),
		Segments: len(m.Segments), Rendered: time.Now().UTC(), RenderMS: time.Since(began).Milliseconds()}
	return info, writeJSONFile(filepath.Join(j.dir, MinutesInfoName), info)
}

// progress reads ffmpeg's -progress lines (key=value, out_time_us the
// output's position) into the job's percent.
func (r *Renderer) progress(out io.Reader, j *job, total time.Duration) {
	sc := bufio.NewScanner(out)
	last := -1
	for sc.Scan() {
		v, ok := strings.CutPrefix(sc.Text(), "out_time_us=")
		if !ok || total <= 0 {
			continue
		}
		us, err := strconv.ParseInt(v, 10, 64)
		if err != nil {
			continue
		}
		pct := int(min(99, max(0, us*100/total.Microseconds())))
		if pct != last {
			last = pct
			r.update(j, func(m *MinutesJob) { m.Percent = pct })
		}
	}
}

// ReadMinutesInfo reads MinutesInfoName in a recording directory.
func ReadMinutesInfo(dir string) (MinutesInfo, error) {
	var info MinutesInfo
	b, err := os.ReadFile(filepath.Join(dir, MinutesInfoName))
	if err != nil {
		return info, err
	}
	return info, json.Unmarshal(b, &info)
}

// writeJSONFile writes v to path through a temporary file renamed over it.
func writeJSONFile(path string, v any) error {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, append(b, '\n'), 0o640); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

// tailBuffer keeps the last 2 KB written to it (ffmpeg's errors).
type tailBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (t *tailBuffer) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.b.Write(p)
	if t.b.Len() > 2048 {
		t.b.Next(t.b.Len() - 2048)
	}
	return len(p), nil
}

func (t *tailBuffer) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.b.String()
}
