package record

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// fakeFFmpeg stands for ffmpeg: it notes that it started, says it is a
// quarter through (-progress), and waits until the test writes to the
// conference directory's gate (a FIFO) before making its output.
const fakeFFmpeg = `#!/bin/sh
for a; do out=$a; done
echo "$PWD" >> "$STARTED"
printf 'frame=1\nout_time_us=2500000\nprogress=continue\n'
read line < ../gate
: > "$out"
printf 'out_time_us=10000000\nprogress=end\n'
`

// jobDir makes a conference's recording directory: a manifest of one
// 10-second segment, and the gate.
func jobDir(t *testing.T, root, conf string) string {
	t.Helper()
	dir := filepath.Join(root, conf)
	if err := os.MkdirAll(dir, 0o750); err != nil {
		t.Fatal(err)
	}
	m := Manifest{Conference: conf, Runs: []Run{{Started: at("09:00:00.000"), Stopped: at("09:00:10.000")}},
		Segments: []Segment{seg("hub-camera", "hub", "video", "09:00:00.000", 10000)}}
	b, _ := json.Marshal(m)
	if err := os.WriteFile(filepath.Join(dir, ManifestName), b, 0o640); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Mkfifo(filepath.Join(dir, "gate"), 0o600); err != nil {
		t.Fatal(err)
	}
	return dir
}

// TestRendererQueue: with two workers, three renders: two run (a
// quarter through, as ffmpeg's progress says) while the third waits;
// asking again for a running one returns it; one finishing lets the
// third start and leaves its video and description; one cancelled is
// killed, leaves no file, and says so; cancelling what is not running is
// refused.
func TestRendererQueue(t *testing.T) {
	root := t.TempDir()
	script := filepath.Join(root, "ffmpeg")
	if err := os.WriteFile(script, []byte(fakeFFmpeg), 0o755); err != nil {
		t.Fatal(err)
	}
	started := filepath.Join(root, "started")
	t.Setenv("STARTED", started)
	changes := make(chan MinutesJob, 1000)
	r := NewRenderer(RendererOptions{Workers: 2, FFmpeg: script, OnChange: func(j MinutesJob) { changes <- j }})
	defer r.Close()
	dirs := map[string]string{}
	for _, c := range []string{"c1", "c2", "c3"} {
		dirs[c] = jobDir(t, root, c)
	}
	state := map[string]MinutesJob{}
	wait := func(what string, ok func() bool) {
		t.Helper()
		deadline := time.After(20 * time.Second)
		for !ok() {
			select {
			case j := <-changes:
				state[j.Conference] = j
			case <-deadline:
				t.Fatalf("%s: %+v", what, state)
			}
		}
	}
	// (Notifications may come out of order: the test reads the job.)
	is := func(c, st string, pct int) func() bool {
		return func() bool { j, _ := r.Job(c); return j.State == st && j.Percent == pct }
	}
	r.Render("c1", dirs["c1"], MinutesSpec{})
	wait("c1 a quarter through", is("c1", JobRendering, 25))
	r.Render("c2", dirs["c2"], MinutesSpec{})
	wait("c2 a quarter through", is("c2", JobRendering, 25))
	if j := r.Render("c3", dirs["c3"], MinutesSpec{}); j.State != JobQueued {
		t.Errorf("a third render with two workers: %+v, want queued", j)
	}
	if j := r.Render("c1", dirs["c1"], MinutesSpec{}); j.State != JobRendering || j.Percent != 25 {
		t.Errorf("c1 asked for again: %+v, want the running job", j)
	}
	if b, _ := os.ReadFile(started); strings.Count(string(b), "\n") != 2 {
		t.Errorf("ffmpeg started %d times with two workers: %s", strings.Count(string(b), "\n"), b)
	}

	// c2 cancelled: killed at once, its unfinished file gone, c3 starts.
	if _, err := r.Cancel("c2"); err != nil {
		t.Fatal(err)
	}
	wait("c2 cancelled", is("c2", JobCancelled, 25))
	wait("c3 a quarter through", is("c3", JobRendering, 25))
	// c3 started only when c2's place came free.
	j2, _ := r.Job("c2")
	if j3, _ := r.Job("c3"); j3.Started.Before(j2.Finished) {
		t.Errorf("c3 started at %v, before c2 ended at %v: more renders than workers", j3.Started, j2.Finished)
	}
	if _, err := os.Stat(filepath.Join(dirs["c2"], MinutesName+".part")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("c2's unfinished file: %v", err)
	}
	if _, err := os.Stat(filepath.Join(dirs["c2"], MinutesName)); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("c2's video after the cancel: %v", err)
	}
	if _, err := r.Cancel("c2"); !errors.Is(err, ErrNoJob) {
		t.Errorf("cancelling a cancelled job: %v", err)
	}
	if _, err := r.Cancel("c9"); !errors.Is(err, ErrNoJob) {
		t.Errorf("cancelling an unknown job: %v", err)
	}

	// c1 released: done, then (asked for again while running) once more.
	release := func(c string) {
		f, err := os.OpenFile(filepath.Join(dirs[c], "gate"), os.O_WRONLY, 0)
		if err != nil {
			t.Fatal(err)
		}
		fmt.Fprintln(f, "go")
		f.Close()
	}
	release("c1")
	wait("c1 rendering again", func() bool {
		b, _ := os.ReadFile(started)
		return strings.Count(string(b), "\n") == 4 // c1, c2, c3, c1 again
	})
	info, err := ReadMinutesInfo(dirs["c1"])
	if err != nil || info.File != MinutesName || info.DurationMS != 10000 || info.Segments != 1 || len(info.SHA256) != 64 {
		t.Errorf("c1's description: %+v %v", info, err)
	}
	if _, err := os.Stat(filepath.Join(dirs["c1"], MinutesName)); err != nil {
		t.Errorf("c1's video: %v", err)
	}
	release("c1")
	release("c3")
	wait("c1 and c3 done", func() bool { return is("c1", JobDone, 100)() && is("c3", JobDone, 100)() })
	if j, _ := r.Job("c3"); j.File != MinutesName || j.DurationMS != 10000 || j.Started.IsZero() || j.Finished.Before(j.Started) {
		t.Errorf("c3: %+v", j)
	}
}

// TestRendererFails: ffmpeg's error comes back in the job.
func TestRendererFails(t *testing.T) {
	root := t.TempDir()
	script := filepath.Join(root, "ffmpeg")
	if err := os.WriteFile(script, []byte("#!/bin/sh\necho 'No such filter: bogus' >&2\nexit 1\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	changes := make(chan MinutesJob, 100)
	r := NewRenderer(RendererOptions{FFmpeg: script, OnChange: func(j MinutesJob) { changes <- j }})
	defer r.Close()
	r.Render("c1", jobDir(t, root, "c1"), MinutesSpec{})
	j := waitJob(t, changes, 20*time.Second)
	if j.State != JobFailed || !strings.Contains(j.Error, "No such filter: bogus") {
		t.Errorf("%+v", j)
	}
	r.Render("c2", filepath.Join(root, "none"), MinutesSpec{})
	if j := waitJob(t, changes, 20*time.Second); j.State != JobFailed || !strings.Contains(j.Error, ManifestName) {
		t.Errorf("no recording: %+v", j)
	}
}

// TestRendererStop: Stop (the archive's deletion) cancels a render under
// way and returns only once it has ended: the job cancelled, ffmpeg's
// unfinished file and its work directory gone, nothing left for ffmpeg
// to write into. A second Stop, and one of a conference never rendered,
// find nothing.
func TestRendererStop(t *testing.T) {
	root := t.TempDir()
	script := filepath.Join(root, "ffmpeg")
	if err := os.WriteFile(script, []byte(fakeFFmpeg), 0o755); err != nil {
		t.Fatal(err)
	}
	t.Setenv("STARTED", filepath.Join(root, "started"))
	changes := make(chan MinutesJob, 100)
	r := NewRenderer(RendererOptions{Workers: 1, FFmpeg: script, OnChange: func(j MinutesJob) { changes <- j }})
	defer r.Close()
	dir := jobDir(t, root, "c1")
	r.Render("c1", dir, MinutesSpec{})
	deadline := time.After(20 * time.Second)
	for j, _ := r.Job("c1"); j.State != JobRendering || j.Percent != 25; j, _ = r.Job("c1") {
		select {
		case <-changes:
		case <-deadline:
			t.Fatalf("c1 never a quarter through: %+v", j)
		}
	}
	if !r.Stop("c1") {
		t.Fatal("Stop found no render under way")
	}
	if j, _ := r.Job("c1"); j.State != JobCancelled {
		t.Errorf("after Stop: %+v, want cancelled", j)
	}
	left, _ := filepath.Glob(filepath.Join(dir, "*minutes*"))
	if len(left) != 0 {
		t.Errorf("after Stop the render left %v", left)
	}
	if r.Stop("c1") || r.Stop("c9") {
		t.Error("Stop found a render where none runs")
	}
	var none *Renderer
	if none.Stop("c1") {
		t.Error("a nil Renderer stopped a render")
	}
}

// TestRendererNil: a server shutting down has no renderer (closed before
// it was ever made); its API and floor messages still ask it, and get
// answers, not a crash.
func TestRendererNil(t *testing.T) {
	var r *Renderer
	if j := r.Render("c1", t.TempDir(), MinutesSpec{}); j.State != JobFailed || j.Error == "" {
		t.Errorf("Render on no renderer: %+v, want failed with its reason", j)
	}
	if _, ok := r.Job("c1"); ok {
		t.Error("Job on no renderer found one")
	}
	if _, err := r.Cancel("c1"); !errors.Is(err, ErrNoJob) {
		t.Errorf("Cancel on no renderer: %v, want ErrNoJob", err)
	}
	if r.Stop("c1") {
		t.Error("Stop on no renderer stopped something")
	}
}

// TestRendererRange: a range's render runs beside the whole
// recording's (two jobs of one conference, two workers), writes its own
// video and description without touching the whole's, and is the
// conference's newest job; MinutesFiles lists both, the whole first,
// and refuses a broken description. A directory without any lists none.
func TestRendererRange(t *testing.T) {
	root := t.TempDir()
	script := filepath.Join(root, "ffmpeg")
	// (Each render waits at a gate of its own: its output's name.)
	fake := strings.Replace(fakeFFmpeg, "read line < ../gate", `read line < "$out.gate"`, 1)
	if err := os.WriteFile(script, []byte(fake), 0o755); err != nil {
		t.Fatal(err)
	}
	t.Setenv("STARTED", filepath.Join(root, "started"))
	changes := make(chan MinutesJob, 1000)
	r := NewRenderer(RendererOptions{Workers: 2, FFmpeg: script, OnChange: func(j MinutesJob) { changes <- j }})
	defer r.Close()
	dir := jobDir(t, root, "c1")
	rng := MinutesSpec{From: at("09:00:02.000"), To: at("09:00:05.500")}
	const name = "minutes-20261206T090002Z-20261206T090005.5Z.mp4"
	for _, f := range []string{MinutesName, name} {
		if err := syscall.Mkfifo(filepath.Join(dir, f+".part.gate"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	r.Render("c1", dir, MinutesSpec{})
	if j := r.Render("c1", dir, rng); j.State != JobQueued || !j.From.Equal(rng.From) || !j.To.Equal(rng.To) {
		t.Errorf("the range's job: %+v", j)
	}
	waitFor := func(what string, ok func() bool) {
		t.Helper()
		deadline := time.After(20 * time.Second)
		for !ok() {
			select {
			case <-changes:
			case <-deadline:
				infos, err := MinutesFiles(dir)
				j, _ := r.Job("c1")
				t.Fatalf("%s: newest %+v; listed %+v %v", what, j, infos, err)
			}
		}
	}
	waitFor("two renders of c1 running", func() bool {
		b, _ := os.ReadFile(filepath.Join(root, "started"))
		return strings.Count(string(b), "\n") == 2
	})
	listed := func(n int) func() bool {
		return func() bool { infos, err := MinutesFiles(dir); return err == nil && len(infos) == n }
	}
	for i, f := range []string{name, MinutesName} {
		g, err := os.OpenFile(filepath.Join(dir, f+".part.gate"), os.O_WRONLY, 0)
		if err != nil {
			t.Fatal(err)
		}
		fmt.Fprintln(g, "go")
		g.Close()
		waitFor(fmt.Sprintf("%s described", f), listed(i+1))
	}
	waitFor("the range rendered", func() bool { j, _ := r.Job("c1"); return j.State == JobDone })
	if j, _ := r.Job("c1"); j.File != name || j.DurationMS != 3500 {
		t.Errorf("c1's newest job: %+v, want the range's", j)
	}
	infos, _ := MinutesFiles(dir)
	if w := infos[0]; w.File != MinutesName || w.DurationMS != 10000 || !w.From.IsZero() {
		t.Errorf("first listed: %+v, want the whole recording's", w)
	}
	if g := infos[1]; g.File != name || g.DurationMS != 3500 || !g.From.Equal(rng.From) || !g.To.Equal(rng.To) || g.Segments != 1 || len(g.SHA256) != 64 {
		t.Errorf("second listed: %+v, want the range's", g)
	}
	for _, f := range []string{MinutesName, name} {
		if _, err := os.Stat(filepath.Join(dir, f)); err != nil {
			t.Errorf("%s: %v", f, err)
		}
	}
	if infos, err := MinutesFiles(filepath.Join(root, "none")); err != nil || len(infos) != 0 {
		t.Errorf("no directory: %v %v, want none", infos, err)
	}
	if err := os.WriteFile(filepath.Join(dir, "minutes-x.json"), []byte("{"), 0o640); err != nil {
		t.Fatal(err)
	}
	if _, err := MinutesFiles(dir); err == nil || !strings.Contains(err.Error(), "minutes-x.json") {
		t.Errorf("a broken description: %v", err)
	}
}
