// Command citybridge is the video-conference bridge server: the SFU, the
// signaling service, the control plane and the pages, in one binary.
//
//	citybridge serve [flags]    run the server (see citybridge serve -h)
//	citybridge users ...        manage logins (admin, host, technician)
//	citybridge bridges ...      import and export the bridge registry
//	citybridge recordings verify check the recordings against their manifests
//	citybridge drill ...        rehearse failures with synthetic terminals
//	citybridge version          print the version
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"syscall"
	"time"

	"citybridge/signaling/terminal/drill"
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
	case "users":
		return usersCommand(args[1:], getenv, os.Stdin, stdout, stderr)
	case "bridges":
		return bridgesCommand(args[1:], getenv, stdout, stderr)
	case "backup":
		return backupCommand(args[1:], getenv, os.Stdin, stdout, stderr)
	case "restore":
		return restoreCommand(args[1:], getenv, stdout, stderr)
	case "migrate":
		return migrateCommand(args[1:], getenv, stdout, stderr)
	case "recordings":
		return recordingsCommand(args[1:], getenv, stdout, stderr)
	case "drain":
		return drainCommand(args[1:], getenv, stdout, stderr)
	case "drill":
		return drill.Main("citybridge drill", args[1:], stdout, stderr)
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
  citybridge users add --role host|technician|admin [--display NAME] [--password-file F] LOGIN
                             add a login (password: first line of F, or of standard input)
  citybridge users list | passwd LOGIN | remove LOGIN
  citybridge bridges import [--partial] FILE.csv
                             import the registry (id,name,kind,area,contact); bad rows are
                             reported by line and import nothing unless --partial
  citybridge bridges export [FILE.csv]
  citybridge backup [--data DIR] FILE
  citybridge backup --url https://HOST:PORT --login NAME [--password-file F] [--insecure] FILE
                             a consistent copy of the store: from the running server (an
                             administrator's login), or from the data directory when it is stopped
  citybridge restore [--data DIR] FILE
                             put a backup in place (server stopped; the old file is kept)
  citybridge migrate [--data DIR] --to-etcd http://HOST:2379,... [--etcd-prefix /citybridge/]
                             [--etcd-cacert F --etcd-cert F --etcd-key F] [--etcd-user U --etcd-password-file F]
                             copy a stopped server's store into an empty prefix of an etcd cluster
  citybridge recordings verify [--recordings DIR | --data DIR]
                             check every recording's segments against the manifest's size and
                             SHA-256: one line per problem, exit status 1 on any
  citybridge drain --etcd http://HOST:2379,... --node NAME [--undo] [--wait 60s] [etcd TLS and user flags]
                             a node of a cluster hands its conferences to the others and takes
                             no new one (for maintenance) until --undo
  citybridge drill --url URL --token TECH_TOKEN --conference ID --scenario NAME [--hub-token T]
                             rehearse failures with synthetic terminals (flap, bridges-drop,
                             hub-drop; --drop, --flap, --reboot; --steady --duration D for no
                             fault) and report each cut's length, detection and recovery
                             beside the server's event log (citybridge drill -h: every flag)
  citybridge version         print the version
(users and bridges take --data DIR, default ./citybridge-data, and need the server stopped)
`)
}

// serve runs the server until ctx ends (SIGINT or SIGTERM), then shuts it
// down gracefully.
func serve(ctx context.Context, cfg Config, stdout, stderr io.Writer) error {
	log := newLogger(cfg, stderr)
	// What logs through slog.Default (the etcd store's slow transactions)
	// comes out as every other line, JSON when asked.
	slog.SetDefault(log)
	s, err := start(cfg, log)
	if err != nil {
		return err
	}
	if s.demo != nil {
		showFirstStart(stdout, isTerminal(stdout), cfg.Data, s.baseURL(), *s.demo, log)
	}
	// SIGHUP reloads the certificate (systemctl reload); media goes on.
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	for done := false; !done; {
		select {
		case <-hup:
			s.reloadCertificate()
		case <-ctx.Done():
			done = true
		}
	}
	log.Info("shutting down")
	shutdown, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	s.Close(shutdown)
	log.Info("stopped")
	return nil
}
