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
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
)

// The minutes video is rendered by ffmpeg in the background (os/exec):
// at most one render per CPU, each niced to the lowest priority with one
// thread for decoding, filtering and encoding, so a live meeting on the
// same machine keeps its CPU. It lands beside the segments as
// MinutesName, described by MinutesInfoName; a render of a range of the
// meeting as MinutesFileName's name, so it never replaces the whole.
const (
	MinutesName     = "minutes.mp4"
	MinutesInfoName = "minutes.json"
)

// MinutesFileName is the video a render of spec makes: MinutesName for
// the whole recording, minutes-<from>-<to>.mp4 for a range, its ends in
// UTC (20261206T090500Z, with the fraction of a second only when there
// is one: 20261206T090500.25Z), nothing a URL or a shell would escape.
func MinutesFileName(spec MinutesSpec) string {
	if spec.Whole() {
		return MinutesName
	}
	f := func(t time.Time) string { return t.UTC().Format("20060102T150405.999") + "Z" }
	return "minutes-" + f(spec.From) + "-" + f(spec.To) + ".mp4"
}

// minutesInfoFile is the description beside video file name.
func minutesInfoFile(name string) string { return strings.TrimSuffix(name, ".mp4") + ".json" }

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
	From       time.Time `json:"from,omitzero"` // the range rendered; zero: the whole recording
	To         time.Time `json:"to,omitzero"`
	File       string    `json:"file,omitempty"` // in the conference's recording directory, once done
	DurationMS int64     `json:"durationMs,omitempty"`
	Queued     time.Time `json:"queued"`
	Started    time.Time `json:"started,omitzero"`
	Finished   time.Time `json:"finished,omitzero"`
	Error      string    `json:"error,omitempty"`
}

// MinutesInfo is MinutesInfoName (or a range's description beside its
// video): what the last render made.
type MinutesInfo struct {
	File       string    `json:"file"`
	Bytes      int64     `json:"bytes"`
	SHA256     string    `json:"sha256"`
	DurationMS int64     `json:"durationMs"`
	Segments   int       `json:"segments"` // how many of the manifest's it shows
	Rendered   time.Time `json:"rendered"`
	RenderMS   int64     `json:"renderMs"`
	// From and To: the range of the meeting it shows (zero: the whole).
	From time.Time `json:"from,omitzero"`
	To   time.Time `json:"to,omitzero"`
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

	mu     sync.Mutex
	jobs   map[string]*job // by key: those under way, and each conference's newest
	newest map[string]*job // by conference
}

type job struct {
	MinutesJob
	key    string // the conference and its video's name: one render of each at a time
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
	r := &Renderer{opt: opt, log: opt.Logger, sem: make(chan struct{}, opt.Workers), jobs: map[string]*job{}, newest: map[string]*job{}}
	r.nice, _ = exec.LookPath("nice")
	return r
}

// Render queues a render of conference's minutes from the recording in
// dir (the whole, or spec's range). The same render (the same video)
// already queued or running is returned as it is (and runs once more
// when it ends, for what was recorded since); renders of other ranges
// run beside it, each in a worker's place.
func (r *Renderer) Render(conference, dir string, spec MinutesSpec) MinutesJob {
	if r == nil { // the server is shutting down (its renderer closed, none made)
		return MinutesJob{Conference: conference, State: JobFailed, Error: ErrRendererClosed.Error()}
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if j := r.jobs[jobKey(conference, spec)]; j != nil && j.active() {
		j.again, j.spec = true, spec
		return j.MinutesJob
	}
	return r.startLocked(conference, dir, spec)
}

func jobKey(conference string, spec MinutesSpec) string {
	return conference + "/" + MinutesFileName(spec)
}

func (j *job) active() bool { return j.State == JobQueued || j.State == JobRendering }

func (r *Renderer) startLocked(conference, dir string, spec MinutesSpec) MinutesJob {
	ctx, cancel := context.WithCancel(context.Background())
	j := &job{MinutesJob: MinutesJob{Conference: conference, State: JobQueued, Queued: time.Now().UTC(), From: spec.From, To: spec.To},
		key: jobKey(conference, spec), dir: dir, spec: spec, cancel: cancel, done: make(chan struct{})}
	if old := r.newest[conference]; old != nil && !old.active() && r.jobs[old.key] == old {
		delete(r.jobs, old.key) // (finished, and no longer the newest)
	}
	r.jobs[j.key], r.newest[conference] = j, j
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
	j := r.newest[conference]
	if j == nil {
		return MinutesJob{}, false
	}
	return j.MinutesJob, true
}

// Stop cancels conference's renders, queued or running, and waits until
// they ended (ffmpeg killed, the unfinished files removed). It reports
// whether there was one; a nil Renderer runs none.
func (r *Renderer) Stop(conference string) bool {
	if r == nil {
		return false
	}
	r.mu.Lock()
	var running []*job
	for _, j := range r.jobs {
		if j.Conference == conference && j.active() {
			j.again = false
			j.cancel()
			running = append(running, j)
		}
	}
	r.mu.Unlock()
	for _, j := range running {
		<-j.done
	}
	return len(running) > 0
}

// Cancel stops conference's renders, queued or running (ffmpeg is
// killed and its unfinished file removed), and returns the newest of
// them. ErrNoJob when none is.
func (r *Renderer) Cancel(conference string) (MinutesJob, error) {
	if r == nil {
		return MinutesJob{}, ErrNoJob
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	var last *job
	for _, j := range r.jobs {
		if j.Conference != conference || !j.active() {
			continue
		}
		j.again = false
		j.cancel()
		if last == nil || j.Queued.After(last.Queued) {
			last = j
		}
	}
	if last == nil {
		return MinutesJob{}, ErrNoJob
	}
	return last.MinutesJob, nil
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
	log := r.log.With("conference", j.Conference, "video", MinutesFileName(j.spec))
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

// next starts the render asked for again while j ran, or forgets j
// unless it is its conference's newest.
func (r *Renderer) next(j *job) {
	r.mu.Lock()
	defer r.mu.Unlock()
	switch {
	case r.jobs[j.key] != j:
	case j.again:
		r.startLocked(j.Conference, j.dir, j.spec)
	case r.newest[j.Conference] != j:
		delete(r.jobs, j.key)
	}
}

// render runs ffmpeg on j's recording: MinutesFileName(spec).part,
// renamed over MinutesFileName(spec) when whole, and its description
// (MinutesInfoName for the whole recording) beside it.
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
	video := MinutesFileName(spec)
	part := filepath.Join(j.dir, video+".part")
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
	final := filepath.Join(j.dir, video)
	if err := os.Rename(part, final); err != nil {
		return MinutesInfo{}, err
	}
	sum, size, err := FileSum(final)
	if err != nil {
		return MinutesInfo{}, err
	}
	info := MinutesInfo{File: video, Bytes: size, SHA256: sum, DurationMS: plan.Duration.Milliseconds(),
		Segments: len(m.Segments), Rendered: time.Now().UTC(), RenderMS: time.Since(began).Milliseconds(),
		From: spec.From.UTC(), To: spec.To.UTC()}
	if !spec.Whole() {
		info.Segments = plan.Segments // (the whole's counts the manifest's, as it always has)
	}
	return info, writeJSONFile(filepath.Join(j.dir, minutesInfoFile(video)), info)
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

// MinutesFiles lists the minutes videos rendered in a recording
// directory, from their descriptions (every minutes*.json: the whole
// recording's and each range's): the whole first, then the ranges by
// their start and end. None (and no error) where none was rendered.
func MinutesFiles(dir string) ([]MinutesInfo, error) {
	names, err := filepath.Glob(filepath.Join(dir, "minutes*.json"))
	if err != nil {
		return nil, err
	}
	infos := []MinutesInfo{}
	for _, n := range names {
		var info MinutesInfo
		b, err := os.ReadFile(n)
		if err == nil {
			err = json.Unmarshal(b, &info)
		}
		if err != nil {
			return nil, fmt.Errorf("minutes video description %s: %w", filepath.Base(n), err)
		}
		infos = append(infos, info)
	}
	slices.SortFunc(infos, func(a, b MinutesInfo) int {
		if c := a.From.Compare(b.From); c != 0 {
			return c
		}
		if c := a.To.Compare(b.To); c != 0 {
			return c
		}
		return strings.Compare(a.File, b.File)
	})
	return infos, nil
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
