// Command citybridge is the video-conference bridge server: the SFU, the
// signaling service, the control plane and the pages, in one binary.
//
//	citybridge serve [flags]    run the server (see citybridge serve -h)
//	citybridge version          print the version
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
	"time"
)

func main() {
	os.Exit(cli(os.Args[1:], os.Getenv, os.Stdout, os.Stderr))
}

func cli(args []string, getenv func(string) string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		usage(stderr)
		return 2
	}
	switch args[0] {
	case "serve":
		cfg, err := parseServeFlags(args[1:], getenv, stderr)
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		if err != nil {
			fmt.Fprintln(stderr, "citybridge serve:", err)
			return 2
		}
		ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
		defer stop()
		if err := serve(ctx, cfg, stdout, stderr); err != nil {
			fmt.Fprintln(stderr, "citybridge:", err)
			return 1
		}
		return 0
	case "version":
		fmt.Fprintln(stdout, "citybridge", version)
		return 0
	case "help", "-h", "--help":
		usage(stdout)
		return 0
	}
	fmt.Fprintf(stderr, "citybridge: unknown command %q\n", args[0])
	usage(stderr)
	return 2
}

func usage(w io.Writer) {
	fmt.Fprint(w, `usage:
  citybridge serve [flags]   run the server (citybridge serve -h lists the flags)
  citybridge version         print the version
`)
}

// serve runs the server until ctx ends (SIGINT or SIGTERM), then shuts it
// down gracefully.
func serve(ctx context.Context, cfg Config, stdout, stderr io.Writer) error {
	log := newLogger(cfg, stderr)
	s, err := start(cfg, log)
	if err != nil {
		return err
	}
	if s.demo != nil {
		base := s.baseURL()
		fmt.Fprintf(stdout, `
citybridge is ready. First start: a demo conference with %d bridge points was created.
These links carry secret tokens and are shown only this once; keep them.

  Host console:            %s/host#t=%s
  Room terminals (index):  %s/rooms#t=%s

The certificate is self-signed: the browser will ask you to accept it once.

`, s.demo.Bridges, base, s.demo.HostToken, base, s.demo.TechnicianToken)
	}
	<-ctx.Done()
	log.Info("shutting down")
	shutdown, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	s.Close(shutdown)
	log.Info("stopped")
	return nil
}
