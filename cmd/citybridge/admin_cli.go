package main

import (
	"bufio"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"text/tabwriter"

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
		fmt.Fprintf(stdout, "password of %s changed; its sessions ended\n", name)
	case "remove":
		if !needName() {
			return 2
		}
		if err := st.DeleteUser(name); err != nil {
			fmt.Fprintln(stderr, "citybridge users remove:", err)
			return 1
		}
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
