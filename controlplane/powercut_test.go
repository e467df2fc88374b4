package controlplane

import (
	"bufio"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// requireRoot skips a test that mounts file systems when the test does
// not run as root. scripts/test runs such tests as root (with sudo when it
// is run by a normal user: its rootOnly list), so they always run in CI.
func requireRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		// scripts/test, run by a normal user, leaves it out of its race
		// pass (-skip) and runs it with sudo after.
		t.Fatal("needs root to mount a loop device: run it as root, or through scripts/test (which uses sudo)")
	}
}

// TestPowerCutDuringWrites: the store lives on an ext4 file system on a
// loop device over an image file. A child process writes bridges in a loop
// and is SIGKILLed at a random moment; then the power is cut: the image is
// copied as it is, which holds what reached the block device (every fsync
// and nothing else: the mount's journal commits only when asked, commit=600,
// and no page is old enough for the kernel to write it back by itself). The
// copy is then mounted as the machine would be after the cut (the journal
// replayed) and every write the child acknowledged must be in the store. Ten
// cuts, each starting from the disk the last one left.
//
// TestKillDuringWrites kills the writer only: the pages it wrote stay in the
// kernel's cache and reach the file anyway, so it cannot tell a write that
// was synced from one that was not. This test can: opened with bbolt's
// NoSync, the store loses acknowledged writes here and not there.
func TestPowerCutDuringWrites(t *testing.T) {
	requireRoot(t)
	d := newLoopDisk(t, 64<<20)
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	var acked []string
	lost := 0 // writes under way at the kill and not in the store after the cut
	for run := range 10 {
		path := filepath.Join(d.mnt, "citybridge.db")
		this, err := killWriter(self, path, run)
		if err != nil {
			t.Fatalf("run %d: %v", run, err)
		}
		acked = append(acked, this...)
		d.powerCut()

		s, err := Open(path)
		if err != nil {
			t.Fatalf("run %d: the store does not open after the power cut: %v", run, err)
		}
		missing := 0
		for _, id := range acked {
			if _, err := s.Bridge(id); err != nil {
				if missing++; missing <= 5 {
					t.Errorf("run %d: acknowledged write %s lost: %v", run, id, err)
				}
			}
		}
		next := fmt.Sprintf("k%d-%d", run, len(this))
		if _, err := s.Bridge(next); err != nil {
			lost++
		}
		_ = s.Close()
		if missing > 0 {
			t.Fatalf("run %d: %d of %d acknowledged writes lost in the power cut", run, missing, len(acked))
		}
	}
	t.Logf("10 power cuts, %d acknowledged writes, all present; the write under way at the kill was absent after %d of them", len(acked), lost)
}

// killWriter runs the test binary as killChild writing to path, kills it
// at a random moment (after a random number of acknowledged writes, 1 to
// 100), and returns the IDs it acknowledged, those that came after the
// kill was sent included.
func killWriter(self, path string, run int) ([]string, error) {
	cmd := exec.Command(self, "-test.run=^$")
	cmd.Env = append(os.Environ(), killChildEnv+"="+path, fmt.Sprintf("%s_RUN=%d", killChildEnv, run))
	out, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	var stderr strings.Builder
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	lines := make(chan string, 1024)
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			lines <- sc.Text()
		}
		close(lines)
	}()
	var acked []string
	for range 1 + rand.IntN(100) {
		id, ok := <-lines
		if !ok {
			_ = cmd.Wait()
			return nil, fmt.Errorf("the child stopped after %d writes: %s", len(acked), stderr.String())
		}
		acked = append(acked, id)
	}
	_ = cmd.Process.Kill()
	for id := range lines {
		acked = append(acked, id)
	}
	_ = cmd.Wait()
	return acked, nil
}

// loopDisk is an ext4 file system in an image file, mounted through a loop
// device in a directory of the test's. The test's cleanup unmounts it and
// frees the device, whatever happened.
type loopDisk struct {
	t             *testing.T
	img, mnt, dev string
}

func newLoopDisk(t *testing.T, size int64) *loopDisk {
	t.Helper()
	for _, tool := range []string{"losetup", "mkfs.ext4", "mount", "umount"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Fatalf("%s is not installed: run scripts/test, which installs what the tests need", tool)
		}
	}
	dir := t.TempDir()
	d := &loopDisk{t: t, img: filepath.Join(dir, "disk.img"), mnt: filepath.Join(dir, "mnt")}
	if err := os.Mkdir(d.mnt, 0o700); err != nil {
		t.Fatal(err)
	}
	f, err := os.Create(d.img)
	if err != nil {
		t.Fatal(err)
	}
	if err := f.Truncate(size); err != nil {
		t.Fatal(err)
	}
	_ = f.Close()
	d.run("mkfs.ext4", "-q", "-F", "-E", "lazy_itable_init=0,lazy_journal_init=0", d.img)
	t.Cleanup(d.unmount)
	d.mount()
	return d
}

func (d *loopDisk) run(name string, args ...string) string {
	d.t.Helper()
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		d.t.Fatalf("%s %s: %v: %s", name, strings.Join(args, " "), err, out)
	}
	return strings.TrimSpace(string(out))
}

// mount attaches the image to a free loop device and mounts it. commit=600:
// the journal is committed when an fsync asks for it, not every 5 s by
// itself, so nothing unsynced reaches the device between a kill and a cut.
func (d *loopDisk) mount() {
	d.t.Helper()
	d.dev = d.run("losetup", "--find", "--show", d.img)
	d.run("mount", "-t", "ext4", "-o", "commit=600", d.dev, d.mnt)
}

// unmount unmounts the file system and frees the loop device; it reports
// but does not stop on errors, so that a cleanup does not leave the device
// behind when the unmount failed.
func (d *loopDisk) unmount() {
	if d.dev == "" {
		return
	}
	if out, err := exec.Command("umount", d.mnt).CombinedOutput(); err != nil {
		d.t.Errorf("umount %s: %v: %s", d.mnt, err, out)
	}
	if out, err := exec.Command("losetup", "--detach", d.dev).CombinedOutput(); err != nil {
		d.t.Errorf("losetup --detach %s: %v: %s", d.dev, err, out)
	}
	d.dev = ""
}

// powerCut keeps the image as the device holds it now, as a power cut
// would, and restarts on that: the copy taken before the unmount (which
// writes back every dirty page) becomes the image, mounted afresh.
func (d *loopDisk) powerCut() {
	d.t.Helper()
	cut := d.img + ".cut"
	if err := copyFile(cut, d.img); err != nil {
		d.t.Fatal(err)
	}
	d.unmount()
	if err := os.Rename(cut, d.img); err != nil {
		d.t.Fatal(err)
	}
	d.mount()
}

func copyFile(dst, src string) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.Create(dst)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		_ = out.Close()
		return err
	}
	return out.Close()
}
