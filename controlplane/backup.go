package controlplane

import (
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"time"

	bolt "go.etcd.io/bbolt"
)

// Backup writes a consistent copy of the whole store to w from one read
// transaction (bbolt's Tx.WriteTo): the server goes on reading and
// writing meanwhile, and the copy is the store as of the moment it began.
func (s *Store) Backup(w io.Writer) (int64, error) { return s.db.Backup(w) }

// CheckFile opens the file at path read-only and checks that it is a
// citybridge store (a bbolt file with citybridge's schema), changing
// nothing in it.
func CheckFile(path string) error {
	db, err := bolt.Open(path, 0o600, &bolt.Options{ReadOnly: true, Timeout: time.Second})
	if err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	defer db.Close()
	return db.View(func(tx *bolt.Tx) error {
		meta := tx.Bucket(bucketMeta)
		if meta == nil || string(meta.Get(keySchema)) != schema {
			return fmt.Errorf("%s: %w", path, ErrForeignFile)
		}
		return nil
	})
}

// Restore installs the backup at src as the store at dst. The server must
// be stopped: dst's lock is taken first, and a running server holds it.
// The backup is checked before anything is touched; the file it replaces
// is kept beside it as dst + ".before-restore".
func Restore(src, dst string) error {
	if err := CheckFile(src); err != nil {
		return err
	}
	if _, err := os.Stat(dst); err == nil {
		db, err := bolt.Open(dst, 0o600, &bolt.Options{Timeout: time.Second})
		if err != nil {
			return fmt.Errorf("%s is in use (stop the server first): %w", dst, err)
		}
		_ = db.Close()
	} else if !errors.Is(err, os.ErrNotExist) {
		return err
	}
	tmp := dst + ".restoring"
	if err := copyFileSync(src, tmp); err != nil {
		_ = os.Remove(tmp)
		return err
	}
	if err := CheckFile(tmp); err != nil {
		_ = os.Remove(tmp)
		return err
	}
	if _, err := os.Stat(dst); err == nil {
		if err := os.Rename(dst, dst+".before-restore"); err != nil {
			_ = os.Remove(tmp)
			return err
		}
	}
	if err := os.Rename(tmp, dst); err != nil {
		return err
	}
	return syncDir(filepath.Dir(dst))
}

func copyFileSync(src, dst string) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o600)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		_ = out.Close()
		return err
	}
	if err := out.Sync(); err != nil {
		_ = out.Close()
		return err
	}
	return out.Close()
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

// backup serves GET /api/backup: an online copy of the store, for
// administrators only.
func (a *API) backup(w http.ResponseWriter, r *http.Request) {
	g, ok := a.allow(w, r, RoleAdmin)
	if !ok {
		return
	}
	name := "citybridge-" + time.Now().UTC().Format("20060102-150405") + ".db"
	w.Header().Set("Content-Type", "application/octet-stream")
	w.Header().Set("Content-Disposition", `attachment; filename="`+name+`"`)
	w.Header().Set("Cache-Control", "no-store")
	n, err := a.store.Backup(w)
	if err != nil {
		// Headers are gone: the client sees a short body, and the
		// checksum-less bbolt copy fails CheckFile.
		a.log.Error("backup failed", "by", g.User, "err", err)
		return
	}
	a.log.Info("backup taken", "by", g.User, "bytes", n, "remote", r.RemoteAddr)
}
