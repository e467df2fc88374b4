package main

import (
	"flag"
	"fmt"
	"io"
	"os"

	"citybridge/sfu/record"
)

// recordingsCommand is `citybridge recordings verify`: every manifest's
// segments checked against their size and SHA-256, one line per problem
// and a summary; exit status 1 on any problem, 0 otherwise. It reads the
// files only, so it runs beside a running server (a segment still open is
// in no manifest yet).
func recordingsCommand(args []string, getenv func(string) string, stdout, stderr io.Writer) int {
	if len(args) == 0 || args[0] != "verify" {
		fmt.Fprintln(stderr, "usage: citybridge recordings verify [--recordings DIR | --data DIR]")
		return 2
	}
	fs := flag.NewFlagSet("recordings verify", flag.ContinueOnError)
	fs.SetOutput(stderr)
	data := dataFlag(fs, getenv)
	dir := fs.String("recordings", getenv("CITYBRIDGE_RECORDINGS"), "recordings directory (also CITYBRIDGE_RECORDINGS; default: recordings/ in --data)")
	if err := fs.Parse(args[1:]); err != nil {
		return 2
	}
	if fs.NArg() != 0 {
		fmt.Fprintln(stderr, "usage: citybridge recordings verify [--recordings DIR | --data DIR]")
		return 2
	}
	if *dir == "" {
		*dir = Config{Data: *data}.recordingsDir()
	}
	if _, err := os.Stat(*dir); err != nil {
		fmt.Fprintln(stderr, "citybridge recordings verify:", err)
		return 1
	}
	rep, err := record.Archive{Dir: *dir}.Verify(func(p record.Problem) {
		fmt.Fprintln(stdout, p.String())
	})
	if err != nil {
		fmt.Fprintln(stderr, "citybridge recordings verify:", err)
		return 1
	}
	fmt.Fprintf(stdout, "%s: %d conferences, %d files checked, %d good (%.1f MB), %d problems\n",
		*dir, rep.Conferences, rep.Files, rep.Good, float64(rep.Bytes)/1e6, len(rep.Problems))
	if len(rep.Problems) > 0 {
		return 1
	}
	return 0
}
