package main

import (
	"bytes"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// TestRecordingsVerify: `citybridge recordings verify` on two conferences'
// recordings: all good (exit 0, one summary line); then one file with a
// byte flipped, one cut short, one missing and a minutes video with a
// byte flipped (against minutes.json): exit 1, one line naming
// each, and the summary counting them. --recordings and --data find the
// same directory; a directory that is not there is an error.
func TestRecordingsVerify(t *testing.T) {
	data := t.TempDir()
	recordings := filepath.Join(data, "recordings")
	a1 := fakeRecordingIn(t, recordings, "c1")
	a2 := fakeRecordingIn(t, recordings, "c1")
	a3 := fakeRecordingIn(t, recordings, "c1")
	b1 := fakeRecordingIn(t, recordings, "c2")
	minutes := fakeMinutes(t, filepath.Join(recordings, "c2"))
	run := func(args ...string) (int, string, string) {
		var out, errOut bytes.Buffer
		code := cli(append([]string{"recordings", "verify"}, args...), func(string) string { return "" }, &out, &errOut)
		return code, out.String(), errOut.String()
	}
	for _, args := range [][]string{{"--recordings", recordings}, {"--data", data}} {
		code, out, errOut := run(args...)
		if code != 0 || !strings.Contains(out, "2 conferences, 5 files checked, 5 good") || strings.Count(out, "\n") != 1 {
			t.Errorf("verify %v of good recordings: exit %d\n%s%s", args, code, out, errOut)
		}
	}

	flip := filepath.Join(recordings, "c1", a1.File)
	b, err := os.ReadFile(flip)
	if err != nil {
		t.Fatal(err)
	}
	b[1000] ^= 0x01
	if err := os.WriteFile(flip, b, 0o640); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(filepath.Join(recordings, "c1", a2.File), 100); err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(filepath.Join(recordings, "c2", b1.File)); err != nil {
		t.Fatal(err)
	}
	video := filepath.Join(recordings, "c2", minutes.File)
	if b, err = os.ReadFile(video); err != nil {
		t.Fatal(err)
	}
	b[5000] ^= 0x80
	if err := os.WriteFile(video, b, 0o640); err != nil {
		t.Fatal(err)
	}
	code, out, errOut := run("--recordings", recordings)
	if code != 1 {
		t.Errorf("verify with four bad files: exit %d, want 1\n%s%s", code, out, errOut)
	}
	for _, want := range []string{
		`(?m)^c1/` + regexp.QuoteMeta(a1.File) + `: SHA-256 [0-9a-f]{64}, the manifest says ` + a1.SHA256 + `$`,
		`(?m)^c1/` + regexp.QuoteMeta(a2.File) + `: 100 bytes, the manifest says 4096$`,
		`(?m)^c2/` + regexp.QuoteMeta(b1.File) + `: missing$`,
		`(?m)^c2/minutes\.mp4: SHA-256 [0-9a-f]{64}, minutes\.json says ` + minutes.SHA256 + `$`,
		`(?m)^` + regexp.QuoteMeta(recordings) + `: 2 conferences, 5 files checked, 1 good \(0\.0 MB\), 4 problems$`,
	} {
		if !regexp.MustCompile(want).MatchString(out) {
			t.Errorf("verify's output lacks %s:\n%s", want, out)
		}
	}
	if strings.Contains(out, a3.File) || strings.Count(out, "\n") != 5 {
		t.Errorf("verify's output: want four problems and the summary:\n%s", out)
	}
	if code, out, errOut := run("--recordings", filepath.Join(data, "nowhere")); code != 1 || !strings.Contains(errOut, "nowhere") {
		t.Errorf("verify of a directory that is not there: exit %d\n%s%s", code, out, errOut)
	}
}
