package controlplane

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"
)

// killChildEnv makes the test binary the writer child of
// TestKillDuringWrites: it writes bridges in a loop to the store at the
// path it names and prints each ID once its write has returned.
const killChildEnv = "CITYBRIDGE_KILL_CHILD_STORE"

func TestMain(m *testing.M) {
	if path := os.Getenv(killChildEnv); path != "" {
		os.Exit(killChild(path))
	}
	code := m.Run()
	stopCluster()
	os.Exit(code)
}

func killChild(path string) int {
	s, err := Open(path)
	if err != nil {
		fmt.Fprintln(os.Stderr, "open:", err)
		return 1
	}
	run := os.Getenv(killChildEnv + "_RUN")
	for i := 0; ; i++ {
		id := fmt.Sprintf("k%s-%d", run, i)
		b := Bridge{ID: id, Name: "Killed " + id, Kind: KindWard, Area: "test"}
		if err := s.PutBridges([]Bridge{b}); err != nil {
			fmt.Fprintln(os.Stderr, "write:", err)
			return 1
		}
		// Acknowledged: the write returned. Unbuffered, so the parent
		// sees it before the next write starts.
		if _, err := fmt.Fprintln(os.Stdout, id); err != nil {
			return 1
		}
	}
}

// TestKillDuringWrites: a child process writes to the store in a loop and
// is SIGKILLed at a random moment, 20 times over the same file. After each
// kill the file opens, and every write the child acknowledged is there.
// This is the process dying with the machine up: what it wrote stays in the
// kernel's page cache and reaches the file whether it was synced or not, so
// it holds bbolt's file format against a torn write, not durability. A
// power cut, which loses unsynced pages, is TestPowerCutDuringWrites.
func TestKillDuringWrites(t *testing.T) {
	path := filepath.Join(t.TempDir(), "citybridge.db")
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	var acked []string
	total := 0
	for run := range 20 {
		this, err := killWriter(self, path, run)
		if err != nil {
			t.Fatalf("run %d: %v", run, err)
		}
		acked = append(acked, this...)
		total += len(this)

		s, err := Open(path)
		if err != nil {
			t.Fatalf("run %d: the file does not open after the kill: %v", run, err)
		}
		missing := 0
		for _, id := range acked {
			if _, err := s.Bridge(id); err != nil {
				missing++
				if missing < 5 {
					t.Errorf("run %d: acknowledged write %s lost: %v", run, id, err)
				}
			}
		}
		_ = s.Close()
		if missing > 0 {
			t.Fatalf("run %d: %d of %d acknowledged writes lost", run, missing, len(acked))
		}
	}
	t.Logf("20 kills, %d acknowledged writes, all present", total)
}
