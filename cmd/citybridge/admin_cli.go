package main

import (
	"bufio"
	"bytes"
	"crypto/tls"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/http/cookiejar"
	"os"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"citybridge/controlplane"
)

// The administration commands work on the data directory directly:
//
//	citybridge users add --role host|technician|admin [--display D] [--password-file F] NAME
//	citybridge users list | passwd NAME | remove NAME
//	citybridge bridges import [--partial] FILE.csv
//	citybridge bridges export [FILE.csv]
//
// bbolt locks its file, so they wait briefly and then say so when the
// server is running on the same directory: use the admin page then.
//
// What they change goes into the audit log as the API's changes do, by
// "console NAME" (the operating-system user who ran the command; it had
// the store's file, so its role is admin) from "console".

// auditConsole records a command's change in the store's audit log. A
// failed write is said on stderr; the change itself is done.
func auditConsole(st *controlplane.Store, stderr io.Writer, action, target string) {
	e := controlplane.AuditEntry{Who: "console " + consoleUser(), Role: controlplane.RoleAdmin,
		Action: action, Target: target, Result: "ok", Remote: "console"}
	if err := st.Audit(e); err != nil {
		fmt.Fprintf(stderr, "citybridge: the audit log was not written (%s %s): %v\n", action, target, err)
	}
}

// consoleUser names who runs the command: the login name, else the uid.
func consoleUser() string {
	if u, err := user.Current(); err == nil && u.Username != "" {
		return u.Username
	}
	return "uid " + strconv.Itoa(os.Getuid())
}

// openStore opens the store of the data directory named by --data (or
// CITYBRIDGE_DATA, default ./citybridge-data).
func openStore(data string) (*controlplane.Store, error) {
	path := filepath.Join(data, "citybridge.db")
	if err := os.MkdirAll(data, 0o700); err != nil {
		return nil, err
	}
	st, err := controlplane.Open(path)
	if err != nil && strings.Contains(err.Error(), "timeout") {
		return nil, fmt.Errorf("%s is in use: stop the server, or use the admin page (/admin) while it runs", path)
	}
	return st, err
}

func dataFlag(fs *flag.FlagSet, getenv func(string) string) *string {
	def := getenv("CITYBRIDGE_DATA")
	if def == "" {
		def = "./citybridge-data"
	}
	return fs.String("data", def, "data directory (also CITYBRIDGE_DATA)")
}

// readPassword takes the password from a file's first line, or from the
// first line of stdin.
func readPassword(file string, stdin io.Reader) (string, error) {
	var r io.Reader = stdin
	if file != "" {
		f, err := os.Open(file)
		if err != nil {
			return "", err
		}
		defer f.Close()
		r = f
	}
	line, err := bufio.NewReader(r).ReadString('\n')
	if err != nil && !errors.Is(err, io.EOF) {
		return "", err
	}
	line = strings.TrimRight(line, "\r\n")
	if line == "" {
		return "", errors.New("no password given (first line of --password-file, or of standard input)")
	}
	return line, nil
}

func usersCommand(args []string, getenv func(string) string, stdin io.Reader, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprintln(stderr, "usage: citybridge users add|list|passwd|remove ...")
		return 2
	}
	fs := flag.NewFlagSet("users "+args[0], flag.ContinueOnError)
	fs.SetOutput(stderr)
	data := dataFlag(fs, getenv)
	role := fs.String("role", "", "admin, host or technician (add)")
	display := fs.String("display", "", "the person's name as shown (add)")
	pwFile := fs.String("password-file", "", "read the password from this file's first line (default: standard input)")
	if err := fs.Parse(args[1:]); err != nil {
		return 2
	}
	st, err := openStore(*data)
	if err != nil {
		fmt.Fprintln(stderr, "citybridge users:", err)
		return 1
	}
	defer st.Close()
	name := fs.Arg(0)
	needName := func() bool {
		if name == "" || fs.NArg() != 1 {
			fmt.Fprintf(stderr, "citybridge users %s: give exactly one NAME\n", args[0])
			return false
		}
		return true
	}
	switch args[0] {
	case "add":
		if !needName() {
			return 2
		}
		pw, err := readPassword(*pwFile, stdin)
		if err == nil {
			_, err = st.AddUser(name, controlplane.Role(*role), *display, pw)
		}
		if err != nil {
			fmt.Fprintln(stderr, "citybridge users add:", err)
			return 1
		}
		auditConsole(st, stderr, "users add", name)
		fmt.Fprintf(stdout, "added %s (%s)\n", name, *role)
	case "passwd":
		if !needName() {
			return 2
		}
		pw, err := readPassword(*pwFile, stdin)
		if err == nil {
			err = st.SetPassword(name, pw)
		}
		if err != nil {
			fmt.Fprintln(stderr, "citybridge users passwd:", err)
			return 1
		}
		auditConsole(st, stderr, "users passwd", name)
		fmt.Fprintf(stdout, "password of %s changed; its sessions ended\n", name)
	case "remove":
		if !needName() {
			return 2
		}
		if err := st.DeleteUser(name); err != nil {
			fmt.Fprintln(stderr, "citybridge users remove:", err)
			return 1
		}
		auditConsole(st, stderr, "users remove", name)
		fmt.Fprintf(stdout, "removed %s\n", name)
	case "list":
		us, err := st.Users()
		if err != nil {
			fmt.Fprintln(stderr, "citybridge users list:", err)
			return 1
		}
		tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "NAME\tROLE\tDISPLAY\tCREATED\tDISABLED")
		for _, u := range us {
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%v\n", u.Name, u.Role, u.Display, u.Created.Format("2006-01-02"), u.Disabled)
		}
		tw.Flush()
	default:
		fmt.Fprintf(stderr, "citybridge users: unknown command %q (add, list, passwd, remove)\n", args[0])
		return 2
	}
	return 0
}

func bridgesCommand(args []string, getenv func(string) string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprintln(stderr, "usage: citybridge bridges import [--partial] FILE.csv | export [FILE.csv]")
		return 2
	}
	fs := flag.NewFlagSet("bridges "+args[0], flag.ContinueOnError)
	fs.SetOutput(stderr)
	data := dataFlag(fs, getenv)
	partial := fs.Bool("partial", false, "import the good rows even if some are bad (import)")
	if err := fs.Parse(args[1:]); err != nil {
		return 2
	}
	st, err := openStore(*data)
	if err != nil {
		fmt.Fprintln(stderr, "citybridge bridges:", err)
		return 1
	}
	defer st.Close()
	switch args[0] {
	case "import":
		if fs.NArg() != 1 {
			fmt.Fprintln(stderr, "citybridge bridges import: give exactly one FILE.csv")
			return 2
		}
		f, err := os.Open(fs.Arg(0))
		if err != nil {
			fmt.Fprintln(stderr, "citybridge bridges import:", err)
			return 1
		}
		defer f.Close()
		res, imported, err := st.ImportBridgesCSV(f, *partial)
		if err != nil {
			fmt.Fprintln(stderr, "citybridge bridges import:", err)
			return 1
		}
		for _, e := range res.Errors {
			fmt.Fprintf(stderr, "%s:%d: %s\n", fs.Arg(0), e.Line, e.Err)
		}
		if !imported {
			fmt.Fprintf(stderr, "%d bad rows: nothing imported (fix them, or import the good rows with --partial)\n", len(res.Errors))
			return 1
		}
		auditConsole(st, stderr, "bridges import", fs.Arg(0))
		fmt.Fprintf(stdout, "%d added, %d updated, %d unchanged, %d bad rows skipped\n",
			res.Added, res.Updated, res.Unchanged, len(res.Errors))
	case "export":
		bs, err := st.Bridges()
		if err != nil {
			fmt.Fprintln(stderr, "citybridge bridges export:", err)
			return 1
		}
		out := stdout
		if fs.NArg() == 1 {
			f, err := os.Create(fs.Arg(0))
			if err != nil {
				fmt.Fprintln(stderr, "citybridge bridges export:", err)
				return 1
			}
			defer f.Close()
			out = f
		}
		if err := controlplane.WriteBridgesCSV(out, bs); err != nil {
			fmt.Fprintln(stderr, "citybridge bridges export:", err)
			return 1
		}
	default:
		fmt.Fprintf(stderr, "citybridge bridges: unknown command %q (import, export)\n", args[0])
		return 2
	}
	return 0
}

// backupCommand writes a consistent copy of the store to FILE: from the
// running server (--url, an administrator's login) or, with the server
// stopped, from the data directory. The copy is checked before it is
// kept.
//
//	citybridge backup [--data DIR] FILE
//	citybridge backup --url https://host:port --login NAME [--password-file F] FILE
func backupCommand(args []string, getenv func(string) string, stdin io.Reader, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("backup", flag.ContinueOnError)
	fs.SetOutput(stderr)
	data := dataFlag(fs, getenv)
	url := fs.String("url", "", "take the copy from this running server (https://host:port)")
	login := fs.String("login", "admin", "administrator login for --url")
	pwFile := fs.String("password-file", "", "file whose first line is the password (default: standard input)")
	insecure := fs.Bool("insecure", false, "with --url: accept the server's self-signed certificate")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if fs.NArg() != 1 {
		fmt.Fprintln(stderr, "usage: citybridge backup [--data DIR | --url URL --login NAME] FILE")
		return 2
	}
	dst := fs.Arg(0)
	tmp := dst + ".partial"
	out, err := os.OpenFile(tmp, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o600)
	if err != nil {
		fmt.Fprintln(stderr, "citybridge backup:", err)
		return 1
	}
	var n int64
	if *url != "" {
		var pw string
		if pw, err = readPassword(*pwFile, stdin); err == nil {
			n, err = remoteBackup(*url, *login, pw, *insecure, out)
		}
	} else {
		var st *controlplane.Store
		if st, err = openStore(*data); err == nil {
			if n, err = st.Backup(out); err == nil {
				auditConsole(st, stderr, "backup", dst)
			}
			_ = st.Close()
		}
	}
	if err == nil {
		err = out.Sync()
	}
	if cerr := out.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = controlplane.CheckFile(tmp)
	}
	if err == nil {
		err = os.Rename(tmp, dst)
	}
	if err != nil {
		_ = os.Remove(tmp)
		fmt.Fprintln(stderr, "citybridge backup:", err)
		return 1
	}
	fmt.Fprintf(stdout, "backup written to %s (%d bytes)\n", dst, n)
	return 0
}

// remoteBackup logs in as an administrator and downloads /api/backup.
func remoteBackup(base, login, password string, insecure bool, w io.Writer) (int64, error) {
	base = strings.TrimRight(base, "/")
	jar, err := cookiejar.New(nil)
	if err != nil {
		return 0, err
	}
	client := &http.Client{Jar: jar, Timeout: 10 * time.Minute, Transport: &http.Transport{
		TLSClientConfig: &tls.Config{InsecureSkipVerify: insecure}, //nolint:gosec // asked for by --insecure
	}}
	body, _ := json.Marshal(map[string]string{"name": login, "password": password})
	req, err := http.NewRequest(http.MethodPost, base+"/api/login", bytes.NewReader(body))
	if err != nil {
		return 0, err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Origin", base)
	resp, err := client.Do(req)
	if err != nil {
		return 0, err
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return 0, fmt.Errorf("login as %s: %s", login, resp.Status)
	}
	resp, err = client.Get(base + "/api/backup")
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return 0, fmt.Errorf("GET /api/backup: %s", resp.Status)
	}
	return io.Copy(w, resp.Body)
}

// restoreCommand puts a backup in place of the data directory's store.
// The server must be stopped; the replaced file stays beside it as
// citybridge.db.before-restore.
//
//	citybridge restore [--data DIR] FILE
func restoreCommand(args []string, getenv func(string) string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("restore", flag.ContinueOnError)
	fs.SetOutput(stderr)
	data := dataFlag(fs, getenv)
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if fs.NArg() != 1 {
		fmt.Fprintln(stderr, "usage: citybridge restore [--data DIR] FILE")
		return 2
	}
	if err := os.MkdirAll(*data, 0o700); err != nil {
		fmt.Fprintln(stderr, "citybridge restore:", err)
		return 1
	}
	dst := filepath.Join(*data, "citybridge.db")
	if err := controlplane.Restore(fs.Arg(0), dst); err != nil {
		fmt.Fprintln(stderr, "citybridge restore:", err)
		return 1
	}
	// The restored store's own log says where it came from.
	if st, err := openStore(*data); err == nil {
		auditConsole(st, stderr, "restore", fs.Arg(0))
		_ = st.Close()
	} else {
		fmt.Fprintln(stderr, "citybridge restore: the audit log was not written:", err)
	}
	fmt.Fprintf(stdout, "restored %s into %s (the previous file, if any: %s.before-restore)\n", fs.Arg(0), dst, dst)
	return 0
}
