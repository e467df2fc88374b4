package main

import (
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"citybridge/controlplane"
)

// TestBackupRestore: `citybridge backup --url` takes a consistent copy
// from the running server with an administrator's login; a restore is
// refused while the server runs and for a file that is not a citybridge
// store; with the server stopped it brings back the copied state (a
// bridge added after the backup is gone, the ones before are there) and
// keeps the replaced file.
func TestBackupRestore(t *testing.T) {
	dir := t.TempDir()
	data := filepath.Join(dir, "data")
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	p := startBinaryOn(t, data, addr, 0)
	tech := p.link(t, "/rooms")
	pass := p.firstStart(t, "the admin password", regexp.MustCompile(`password (\S+)\)`))
	bin, err := binary()
	if err != nil {
		t.Fatal(err)
	}
	run := func(stdin string, args ...string) (string, error) {
		cmd := exec.Command(bin, args...)
		cmd.Stdin = strings.NewReader(stdin)
		out, err := cmd.CombinedOutput()
		return string(out), err
	}
	// A terminal link issued before the backup: part of the copy.
	var before struct{ Token string }
	if code := p.api(t, "POST", "/api/bridges/ward-020/terminal-links", tech, &before); code != 201 {
		t.Fatalf("terminal link: %d", code)
	}
	backup := filepath.Join(dir, "backup.db")
	if out, err := run("wrong\n", "backup", "--url", p.base, "--login", "admin", "--insecure", backup); err == nil {
		t.Fatalf("a backup with a wrong password succeeded: %s", out)
	}
	if _, err := os.Stat(backup); err == nil {
		t.Fatal("a failed backup left a file behind")
	}
	if out, err := run(pass+"\n", "backup", "--url", p.base, "--login", "admin", "--insecure", backup); err != nil {
		t.Fatalf("online backup: %v: %s", err, out)
	}
	if err := controlplane.CheckFile(backup); err != nil {
		t.Fatal(err)
	}
	// A link issued after the backup: the restore must forget it.
	var after struct{ Token string }
	if code := p.api(t, "POST", "/api/bridges/ward-021/terminal-links", tech, &after); code != 201 {
		t.Fatalf("terminal link: %d", code)
	}
	if out, err := run("", "restore", "--data", data, backup); err == nil {
		t.Fatalf("a restore while the server runs succeeded: %s", out)
	}
	_ = p.cmd.Process.Signal(os.Interrupt)
	p.wait()

	foreign := filepath.Join(dir, "foreign.db")
	if err := os.WriteFile(foreign, []byte("not a database"), 0o600); err != nil {
		t.Fatal(err)
	}
	if out, err := run("", "restore", "--data", data, foreign); err == nil {
		t.Fatalf("a foreign file was restored: %s", out)
	}
	if out, err := run("", "restore", "--data", data, backup); err != nil {
		t.Fatalf("restore: %v: %s", err, out)
	}
	if err := controlplane.CheckFile(filepath.Join(data, "citybridge.db.before-restore")); err != nil {
		t.Errorf("the replaced store was not kept: %v", err)
	}
	st, err := controlplane.Open(filepath.Join(data, "citybridge.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	if _, err := st.Authenticate(before.Token); err != nil {
		t.Errorf("a link issued before the backup does not work after the restore: %v", err)
	}
	if _, err := st.Authenticate(after.Token); err == nil {
		t.Error("a link issued after the backup survived the restore")
	}
}
