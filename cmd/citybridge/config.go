package main

import (
	"citybridge/signaling"

	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"strings"
	"time"
)

// Config is everything `citybridge serve` can be told. Each flag can also
// come from an environment variable (CITYBRIDGE_ plus the flag's name in
// capitals, dashes as underscores); a flag on the command line wins.
type Config struct {
	Listen     string         // HTTPS address
	Data       string         // directory for the store and the generated certificate
	UDPPort    int            // the one UDP port for media
	UDPHost    string         // address the media socket binds to ("" = all)
	PublicIPs  []string       // addresses announced in ICE candidates
	TLSCert    string         // certificate file; with TLSKey, replaces the generated one
	TLSKey     string         //
	MediaAllow []netip.Prefix // if set, media peers must be in these networks
	// ReconnectGrace is how long a lost terminal keeps its place.
	ReconnectGrace time.Duration
	LogLevel       slog.Level
	LogFormat      string // text or json
}

// listValue is a repeatable flag that also splits commas.
type listValue struct{ items *[]string }

func (l listValue) String() string {
	if l.items == nil {
		return ""
	}
	return strings.Join(*l.items, ",")
}

func (l listValue) Set(s string) error {
	for _, part := range strings.Split(s, ",") {
		if part = strings.TrimSpace(part); part != "" {
			*l.items = append(*l.items, part)
		}
	}
	return nil
}

// parseServeFlags reads flags (and the environment through getenv).
func parseServeFlags(args []string, getenv func(string) string, stderr io.Writer) (Config, error) {
	cfg := Config{Listen: ":8443", Data: "./citybridge-data", UDPPort: 8443, LogFormat: "text"}
	var publicIPs, mediaAllow []string
	var logLevel string
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&cfg.Listen, "listen", cfg.Listen, "HTTPS address for the pages, the API and signaling")
	fs.StringVar(&cfg.Data, "data", cfg.Data, "directory for the database and the generated TLS certificate")
	fs.IntVar(&cfg.UDPPort, "udp-port", cfg.UDPPort, "the one UDP port all media uses")
	fs.StringVar(&cfg.UDPHost, "udp-host", "", "address the media socket binds to (default: all)")
	fs.Var(listValue{&publicIPs}, "public-ip", "address to announce in ICE candidates (repeatable, or comma-separated)")
	fs.StringVar(&cfg.TLSCert, "tls-cert", "", "TLS certificate (PEM); default: a self-signed one kept in the data directory")
	fs.StringVar(&cfg.TLSKey, "tls-key", "", "TLS private key (PEM) for --tls-cert")
	fs.Var(listValue{&mediaAllow}, "media-allow", "only exchange media with these networks (CIDR, repeatable)")
	fs.DurationVar(&cfg.ReconnectGrace, "reconnect-grace", signaling.DefaultReconnectGrace,
		"how long a terminal whose connection was lost keeps its place (media, floor, attendance) to resume")
	fs.StringVar(&logLevel, "log-level", "info", "debug, info, warn or error")
	fs.StringVar(&cfg.LogFormat, "log-format", cfg.LogFormat, "text or json")

	// Environment first, so that flags given on the command line win.
	var envErr error
	fs.VisitAll(func(f *flag.Flag) {
		name := "CITYBRIDGE_" + strings.ToUpper(strings.ReplaceAll(f.Name, "-", "_"))
		if v := getenv(name); v != "" {
			if err := fs.Set(f.Name, v); err != nil && envErr == nil {
				envErr = fmt.Errorf("%s=%q: %w", name, v, err)
			}
		}
	})
	if envErr != nil {
		return cfg, envErr
	}
	// A list flag given on the command line replaces the environment's.
	envPublic, envAllow := publicIPs, mediaAllow
	publicIPs, mediaAllow = nil, nil
	if err := fs.Parse(args); err != nil {
		return cfg, err
	}
	if publicIPs == nil {
		publicIPs = envPublic
	}
	if mediaAllow == nil {
		mediaAllow = envAllow
	}
	if fs.NArg() > 0 {
		return cfg, fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	for _, ip := range publicIPs {
		if net.ParseIP(ip) == nil {
			return cfg, fmt.Errorf("--public-ip %q is not an IP address", ip)
		}
	}
	cfg.PublicIPs = publicIPs
	for _, c := range mediaAllow {
		p, err := netip.ParsePrefix(c)
		if err != nil {
			return cfg, fmt.Errorf("--media-allow %q: %w", c, err)
		}
		cfg.MediaAllow = append(cfg.MediaAllow, p)
	}
	if cfg.UDPPort < 0 || cfg.UDPPort > 65535 {
		return cfg, errors.New("--udp-port must be 0-65535")
	}
	if (cfg.TLSCert == "") != (cfg.TLSKey == "") {
		return cfg, errors.New("--tls-cert and --tls-key go together")
	}
	if err := cfg.LogLevel.UnmarshalText([]byte(logLevel)); err != nil {
		return cfg, fmt.Errorf("--log-level: %w", err)
	}
	if cfg.LogFormat != "text" && cfg.LogFormat != "json" {
		return cfg, fmt.Errorf("--log-format %q: want text or json", cfg.LogFormat)
	}
	return cfg, nil
}

func newLogger(c Config, w io.Writer) *slog.Logger {
	opts := &slog.HandlerOptions{Level: c.LogLevel}
	if c.LogFormat == "json" {
		return slog.New(slog.NewJSONHandler(w, opts))
	}
	return slog.New(slog.NewTextHandler(w, opts))
}
