package record

import (
	"encoding/json"
	"errors"
	"io"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// TestArchiveMinutesVideos: the archive lists, opens and verifies every
// rendered minutes video of a conference, the whole meeting's and a
// range's, by their descriptions; a name no description gives opens
// nothing, and a description naming anything but a minutes video is
// refused.
func TestArchiveMinutesVideos(t *testing.T) {
	root := t.TempDir()
	dir := filepath.Join(root, "c1")
	if err := os.MkdirAll(dir, 0o750); err != nil {
		t.Fatal(err)
	}
	b, _ := json.Marshal(Manifest{Conference: "c1"})
	if err := os.WriteFile(filepath.Join(dir, ManifestName), b, 0o640); err != nil {
		t.Fatal(err)
	}
	from := time.Date(2026, 12, 6, 9, 5, 0, 0, time.UTC)
	video := func(spec MinutesSpec, content string) MinutesInfo {
		name := MinutesFileName(spec)
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o640); err != nil {
			t.Fatal(err)
		}
		sum, size, err := FileSum(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		info := MinutesInfo{File: name, Bytes: size, SHA256: sum, DurationMS: 1000, From: spec.From, To: spec.To}
		if err := writeJSONFile(filepath.Join(dir, minutesInfoFile(name)), info); err != nil {
			t.Fatal(err)
		}
		return info
	}
	whole := video(MinutesSpec{}, "the whole meeting")
	part := video(MinutesSpec{From: from, To: from.Add(5 * time.Minute)}, "five minutes of it")
	a := Archive{Dir: root}
	infos, err := a.MinutesVideos("c1")
	if err != nil || len(infos) != 2 || infos[0].File != whole.File || infos[1].File != part.File {
		t.Fatalf("minutes videos %+v (%v), want %s then %s", infos, err, whole.File, part.File)
	}
	if s := infos[1].Segment(); !s.Start.Equal(from) || !s.End.Equal(from.Add(5*time.Minute)) {
		t.Errorf("the range's entry runs %v to %v", s.Start, s.End)
	}
	f, entry, err := a.Open("c1", part.File)
	if err != nil {
		t.Fatalf("open %s: %v", part.File, err)
	}
	got, _ := io.ReadAll(f)
	f.Close()
	if string(got) != "five minutes of it" || entry.SHA256 != part.SHA256 {
		t.Errorf("%s: %q, entry %+v", part.File, got, entry)
	}
	for _, name := range []string{"minutes-20261206T090500Z.mp4", "minutes-x.mp4", "minutes.json"} {
		if _, _, err := a.Open("c1", name); !errors.Is(err, ErrNoFile) {
			t.Errorf("open %s: %v, want ErrNoFile", name, err)
		}
	}
	if rep, err := a.Verify(nil); err != nil || rep.Files != 2 || rep.Good != 2 {
		t.Errorf("verify: %+v (%v), want both videos good", rep, err)
	}
	// A flipped byte in the range's video is found.
	if err := os.WriteFile(filepath.Join(dir, part.File), []byte("five minutes of iT"), 0o640); err != nil {
		t.Fatal(err)
	}
	if rep, _ := a.Verify(nil); rep.Good != 1 || len(rep.Problems) != 1 || rep.Problems[0].File != part.File {
		t.Errorf("verify after a flipped byte: %+v", rep)
	}
	// A description that names the manifest is not the renderer's.
	bad := MinutesInfo{File: ManifestName}
	if err := writeJSONFile(filepath.Join(dir, "minutes-y.json"), bad); err != nil {
		t.Fatal(err)
	}
	if _, err := a.MinutesVideos("c1"); err == nil {
		t.Error("a description naming the manifest was taken")
	}
	if _, _, err := a.Open("c1", ManifestName); err == nil {
		t.Error("the manifest opened as a recorded file")
	}
}
