package main

import (
	"bytes"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"citybridge/controlplane"
)

// TestFirstStartBanner: a person at a terminal reads the first start's
// password and links there, and no file is left behind; without a
// terminal (a service) they go to DATA/first-start.txt, mode 0600 even
// over an older file that anyone could read, and standard output and the
// log hold only where it is.
func TestFirstStartBanner(t *testing.T) {
	demo := controlplane.Demo{Bridges: 116, HostToken: "host-secret-token", TechnicianToken: "tech-secret-token", AdminPassword: "admin-secret-pw"}
	secrets := []string{demo.HostToken, demo.TechnicianToken, demo.AdminPassword}
	const base = "https://10.20.0.5:8443"
	for _, terminal := range []bool{true, false} {
		data := t.TempDir()
		file := filepath.Join(data, firstStartFile)
		if !terminal { // left by an earlier data directory, readable by all
			if err := os.WriteFile(file, []byte("old"), 0o644); err != nil {
				t.Fatal(err)
			}
		}
		var out, logs bytes.Buffer
		showFirstStart(&out, terminal, data, base, demo, slog.New(slog.NewTextHandler(&logs, nil)))
		text, err := os.ReadFile(file)
		switch {
		case terminal:
			for _, s := range []string{base + "/host#t=" + demo.HostToken, base + "/rooms#t=" + demo.TechnicianToken, "password " + demo.AdminPassword} {
				if !strings.Contains(out.String(), s) {
					t.Errorf("on a terminal: %q not shown:\n%s", s, out.String())
				}
			}
			if err == nil {
				t.Errorf("on a terminal: %s written too", file)
			}
		default:
			if err != nil {
				t.Fatalf("as a service: %v", err)
			}
			for _, s := range []string{base + "/host#t=" + demo.HostToken, base + "/rooms#t=" + demo.TechnicianToken, "password " + demo.AdminPassword} {
				if !strings.Contains(string(text), s) {
					t.Errorf("as a service: %q not in the file:\n%s", s, text)
				}
			}
			if fi, err := os.Stat(file); err != nil || fi.Mode().Perm() != 0o600 {
				t.Errorf("as a service: %s mode %v (%v), want 0600", file, fi.Mode(), err)
			}
			for _, s := range secrets {
				if strings.Contains(out.String()+logs.String(), s) {
					t.Errorf("as a service: %q on standard output or in the log:\n%s\n%s", s, out.String(), logs.String())
				}
			}
			if !strings.Contains(logs.String(), "level=INFO") || !strings.Contains(logs.String(), file) {
				t.Errorf("as a service: the log does not say where the file is:\n%s", logs.String())
			}
		}
	}
}
