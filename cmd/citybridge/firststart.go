package main

import (
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"time"

	"citybridge/controlplane"
)

// firstStartFile is where a first start that no person watches leaves the
// administrator's password and the secret links, in the data directory.
const firstStartFile = "first-start.txt"

// showFirstStart hands the first start's secrets (the administrator's
// password, the host and technician links) to whoever started the server.
// A person at a terminal reads them there. A service's standard output
// goes to a journal or a container log, kept and copied for months and
// readable by more people than the administrator, so then they go to
// DATA/first-start.txt instead, readable by the server's user only
// (0600), and the log says where (nothing secret in it).
func showFirstStart(stdout io.Writer, terminal bool, data, base string, demo controlplane.Demo, log *slog.Logger) {
	text := firstStartText(base, demo)
	if terminal {
		fmt.Fprint(stdout, "\n"+text+"\n")
		return
	}
	path := filepath.Join(data, firstStartFile)
	if abs, err := filepath.Abs(path); err == nil {
		path = abs
	}
	if err := writePrivate(path, fmt.Sprintf("Written by citybridge at its first start, %s. Keep the links and\n"+
		"the password somewhere safe, then delete this file.\n\n%s", time.Now().UTC().Format(time.RFC3339), text)); err != nil {
		log.Error("first start: could not write the administrator's password and the links; set a password with "+
			"`citybridge users passwd admin` (server stopped), then issue new links on /admin", "file", path, "err", err)
		return
	}
	log.Info("first start: the administrator's password and the host and technician links are in a file only this user can read",
		"file", path)
}

// firstStartText is what the first start tells its operator.
func firstStartText(base string, demo controlplane.Demo) string {
	return fmt.Sprintf(`citybridge is ready. First start: a demo conference with %d bridge points was created.
These links carry secret tokens and are shown only this once; keep them.

  Host console:            %s/host#t=%s
  Room terminals (index):  %s/rooms#t=%s
  Administration:          %s/admin  (login "admin", password %s)

The certificate is self-signed: the browser will ask you to accept it once.
`, demo.Bridges, base, demo.HostToken, base, demo.TechnicianToken, base, demo.AdminPassword)
}

// writePrivate writes text to path as a new file only this user can read,
// whole or not at all: written beside it, then renamed over it (a file
// already there, from an earlier data directory, is replaced, not reused
// with its mode).
func writePrivate(path, text string) error {
	tmp := path + ".new"
	if err := os.Remove(tmp); err != nil && !os.IsNotExist(err) {
		return err
	}
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return err
	}
	_, err = f.WriteString(text)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, path)
	}
	if err != nil {
		_ = os.Remove(tmp)
	}
	return err
}
