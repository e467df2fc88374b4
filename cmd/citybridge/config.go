package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"net/url"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"citybridge/controlplane"
	"citybridge/sfu"
	"citybridge/signaling"

	"github.com/BurntSushi/toml"
)

// Config is everything `citybridge serve` can be told. Each flag can also
// come from a TOML file (--config, keys are the flag names), and from an
// environment variable (CITYBRIDGE_ plus the flag's name in capitals,
// dashes as underscores). The command line wins over the environment,
// which wins over the file.
type Config struct {
	ConfigFile string // the TOML file read, if any
	Listen     string // the one TCP port: HTTPS, ICE-TCP, TURN over TCP and TLS
	Data       string // directory for the store and the generated certificate
	// Recordings is the recordings directory (default: recordings/ in
	// Data); RecordingsMinFree the free space a recording needs to
	// start; RecordingSegment each segment file's length.
	Recordings        string
	RecordingsMinFree byteSize
	RecordingSegment  time.Duration
	// RecordingsKeep is how long recordings are kept after their last
	// segment (0: forever); recordingsClock the retention sweep's clock
	// (tests; nil: time.Now).
	RecordingsKeep  days
	recordingsClock func() time.Time
	UDPPort         int            // the one UDP port for media
	UDPHost         string         // address the media socket binds to ("" = all)
	PublicIPs       []string       // addresses announced in ICE candidates and TURN URLs
	TLSCert         string         // certificate file; with TLSKey, replaces the generated one
	TLSKey          string         //
	MediaAllow      []netip.Prefix // if set, media peers must be in these networks
	// ReconnectGrace is how long a lost terminal keeps its place.
	ReconnectGrace time.Duration
	// ICETCP accepts ICE-TCP media on the Listen port.
	ICETCP bool
	// TURN runs the embedded TURN server (UDP and TCP on TURNPort, TCP
	// and TLS on the Listen port) unless TURNURLs name another one.
	TURN     bool
	TURNPort int
	// TURNSecret signs the pages' TURN credentials (TURN REST scheme);
	// random per start when empty and the embedded server is used.
	TURNSecret string
	// TURNURLs are an existing TURN server's URLs (coturn with
	// use-auth-secret), handed to pages instead of the embedded one.
	TURNURLs []string
	// TURNTTL is how long a page's TURN credential is valid.
	TURNTTL time.Duration
	// AllowedOrigins are origins besides the server's own whose pages may
	// use a login cookie and open the signaling WebSocket (a reverse
	// proxy's name for the server).
	AllowedOrigins []string
	// Alerts: a bridge lost for AlertLostAfter or poor for AlertPoorAfter
	// raises an alert, posted to AlertWebhook (signed with
	// AlertWebhookSecret) when set.
	// MaxViewers bounds the WHEP viewers of one conference.
	MaxViewers int
	// Cluster (docs/CLUSTER.md): the store in etcd, this node's name, the
	// address terminals are sent to, and its lease.
	Etcd      etcdFlags
	Node      string
	Advertise string
	LeaseTTL  time.Duration
	// VideoCodec is "" (VP8 and H.264), "vp8" or "h264" (see
	// sfu.Config.VideoCodec).
	VideoCodec string
	// FanoutWorkers: see sfu.Config.FanoutWorkers (0 automatic, -1 none).
	FanoutWorkers      int
	AlertLostAfter     time.Duration
	AlertPoorAfter     time.Duration
	AlertWebhook       string
	AlertWebhookSecret string
	LogLevel           slog.Level
	LogFormat          string // text or json
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

// parseServeFlags reads the configuration file, the environment (through
// getenv) and the flags, in that order.
func parseServeFlags(args []string, getenv func(string) string, stderr io.Writer) (Config, error) {
	cfg := Config{
		Listen: ":8443", Data: "./citybridge-data", UDPPort: 8443, LogFormat: "text",
		ICETCP: true, TURN: true, TURNPort: 3478, TURNTTL: 12 * time.Hour,
		AlertLostAfter: 10 * time.Second, AlertPoorAfter: 30 * time.Second,
		MaxViewers: signaling.DefaultMaxViewers, RecordingsMinFree: 5e9, RecordingSegment: 5 * time.Minute,
		RecordingsKeep: days(90 * 24 * time.Hour),
	}
	var publicIPs, mediaAllow, turnURLs, origins []string
	var logLevel string
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&cfg.ConfigFile, "config", "", "TOML file of settings (keys are these flags' names); the environment and flags override it")
	fs.StringVar(&cfg.Listen, "listen", cfg.Listen, "the one TCP address: HTTPS (pages, API, signaling), ICE-TCP media and TURN over TCP/TLS")
	fs.StringVar(&cfg.Data, "data", cfg.Data, "directory for the database and the generated TLS certificate")
	fs.StringVar(&cfg.Recordings, "recordings", "", "directory for the conferences' recordings (default: recordings/ in the --data directory)")
	fs.Var(&cfg.RecordingsMinFree, "recordings-min-free", "a recording does not start when less than this is free in --recordings (e.g. 5GB, 500MB)")
	fs.Var(&cfg.RecordingsKeep, "recordings-keep", "delete a conference's recordings this long after its last segment ended (90d, 36h; 0 keeps them forever); checked at start and daily")
	fs.DurationVar(&cfg.RecordingSegment, "recording-segment", cfg.RecordingSegment, "length of each recording segment file (a crash loses at most the open one)")
	fs.IntVar(&cfg.UDPPort, "udp-port", cfg.UDPPort, "the one UDP port all media uses")
	fs.StringVar(&cfg.UDPHost, "udp-host", "", "address the media socket binds to (default: all)")
	fs.Var(listValue{&publicIPs}, "public-ip", "address to announce in ICE candidates and TURN URLs (repeatable, or comma-separated)")
	fs.StringVar(&cfg.TLSCert, "tls-cert", "", "TLS certificate (PEM); default: a self-signed one kept in the data directory; SIGHUP reloads it")
	fs.StringVar(&cfg.TLSKey, "tls-key", "", "TLS private key (PEM) for --tls-cert")
	fs.Var(listValue{&mediaAllow}, "media-allow", "only exchange media with these networks (CIDR, repeatable)")
	fs.DurationVar(&cfg.ReconnectGrace, "reconnect-grace", signaling.DefaultReconnectGrace,
		"how long a terminal whose connection was lost keeps its place (media, floor, attendance) to resume")
	fs.BoolVar(&cfg.ICETCP, "ice-tcp", cfg.ICETCP, "accept ICE-TCP media on the --listen port (the fallback when UDP is blocked)")
	fs.BoolVar(&cfg.TURN, "turn", cfg.TURN, "run the embedded TURN server (UDP/TCP on --turn-port, TCP/TLS on the --listen port)")
	fs.IntVar(&cfg.TURNPort, "turn-port", cfg.TURNPort, "UDP and TCP port of the embedded TURN server (0: only on the --listen port)")
	fs.StringVar(&cfg.TURNSecret, "turn-secret", "", "shared secret for the pages' TURN credentials (default: random per start; required with --turn-url)")
	fs.Var(listValue{&turnURLs}, "turn-url", "an existing TURN server's URL (coturn, use-auth-secret) to hand to pages instead of the embedded one (repeatable)")
	fs.DurationVar(&cfg.TURNTTL, "turn-ttl", cfg.TURNTTL, "how long a page's TURN credential is valid")
	fs.Var(listValue{&origins}, "allowed-origin", "another origin the pages are served under, e.g. https://bridge.city.example behind a reverse proxy (repeatable)")
	fs.StringVar(&cfg.VideoCodec, "video-codec", "", "restrict video to one codec: vp8, or h264 for terminals that decode nothing else (default: both; browsers then send VP8)")
	fs.IntVar(&cfg.FanoutWorkers, "fanout-workers", 0, "goroutines that help copy one packet to many rooms (64 or more): 0 is one fewer than the CPUs, at most 7; -1 is none")
	fs.IntVar(&cfg.MaxViewers, "max-viewers", cfg.MaxViewers, "most WHEP viewers (viewer links) one conference may have at once")
	fs.DurationVar(&cfg.AlertLostAfter, "alert-lost-after", cfg.AlertLostAfter, "raise an alert when a bridge has been lost (nothing received for 3 s) this long")
	fs.DurationVar(&cfg.AlertPoorAfter, "alert-poor-after", cfg.AlertPoorAfter, "raise an alert when a bridge's link has been poor (score below 60) this long")
	fs.StringVar(&cfg.AlertWebhook, "alert-webhook", "", "URL that receives every alert raised and cleared as a signed JSON POST (see docs/QUALITY.md)")
	fs.StringVar(&cfg.AlertWebhookSecret, "alert-webhook-secret", "", "HMAC-SHA256 key of the webhook's X-Citybridge-Signature header (required with --alert-webhook)")
	cfg.Etcd.register(fs, "etcd", func(string) string { return "" }) // the environment is read below, as for every flag
	fs.StringVar(&cfg.Node, "node", "", "this node's name in the cluster (with --etcd; default: the host name)")
	fs.StringVar(&cfg.Advertise, "advertise", "", "with --etcd: https://HOST:PORT where terminals reach this node")
	fs.DurationVar(&cfg.LeaseTTL, "lease-ttl", controlplane.DefaultLeaseTTL, "with --etcd: how long this node's conferences stay its own after it stops answering")
	fs.StringVar(&logLevel, "log-level", "info", "debug, info, warn or error")
	fs.StringVar(&cfg.LogFormat, "log-format", cfg.LogFormat, "text or json")
	lists := []*[]string{&publicIPs, &mediaAllow, &turnURLs, &origins}

	// The file first, then the environment, then the command line; a
	// list given by a later source replaces the earlier one's.
	path := configPath(args, getenv)
	if path != "" {
		settings, err := readConfigFile(path, fs)
		if err != nil {
			return cfg, err
		}
		for _, kv := range settings {
			if err := fs.Set(kv[0], kv[1]); err != nil {
				return cfg, fmt.Errorf("%s: %s = %q: %w", path, kv[0], kv[1], err)
			}
		}
	}
	var envErr error
	envSet := map[string]bool{}
	fs.VisitAll(func(f *flag.Flag) {
		name := "CITYBRIDGE_" + strings.ToUpper(strings.ReplaceAll(f.Name, "-", "_"))
		v := getenv(name)
		if v == "" {
			return
		}
		if lv, ok := f.Value.(listValue); ok && !envSet[f.Name] {
			*lv.items = nil
		}
		envSet[f.Name] = true
		if err := fs.Set(f.Name, v); err != nil && envErr == nil {
			envErr = fmt.Errorf("%s=%q: %w", name, v, err)
		}
	})
	if envErr != nil {
		return cfg, envErr
	}
	before := make([][]string, len(lists))
	for i, l := range lists {
		before[i], *l = *l, nil
	}
	if err := fs.Parse(args); err != nil {
		return cfg, err
	}
	for i, l := range lists {
		if *l == nil {
			*l = before[i]
		}
	}
	if fs.NArg() > 0 {
		return cfg, fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	cfg.ConfigFile = path
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
	for _, u := range turnURLs {
		if err := checkTURNURL(u); err != nil {
			return cfg, fmt.Errorf("--turn-url %q: %w", u, err)
		}
	}
	cfg.TURNURLs = turnURLs
	if _, err := controlplane.NewOrigins(origins); err != nil {
		return cfg, fmt.Errorf("--allowed-origin: %w", err)
	}
	cfg.AllowedOrigins = origins
	if len(cfg.TURNURLs) > 0 && cfg.TURNSecret == "" {
		return cfg, errors.New("--turn-url needs --turn-secret (the TURN server's static-auth-secret)")
	}
	if cfg.UDPPort < 0 || cfg.UDPPort > 65535 {
		return cfg, errors.New("--udp-port must be 0-65535")
	}
	if cfg.TURNPort < 0 || cfg.TURNPort > 65535 {
		return cfg, errors.New("--turn-port must be 0-65535")
	}
	if cfg.AlertWebhook != "" {
		u, err := url.Parse(cfg.AlertWebhook)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return cfg, fmt.Errorf("--alert-webhook %q: want an http or https URL", cfg.AlertWebhook)
		}
		if cfg.AlertWebhookSecret == "" {
			return cfg, errors.New("--alert-webhook needs --alert-webhook-secret (receivers must be able to check the signature)")
		}
	}
	if v := strings.ToLower(cfg.VideoCodec); v != sfu.VideoCodecAny && v != sfu.VideoCodecVP8 && v != sfu.VideoCodecH264 {
		return cfg, fmt.Errorf("--video-codec %q: want vp8 or h264 (or nothing for both)", cfg.VideoCodec)
	}
	if cfg.FanoutWorkers < -1 || cfg.FanoutWorkers > 64 {
		return cfg, errors.New("--fanout-workers must be -1-64")
	}
	if cfg.MaxViewers < 0 || cfg.MaxViewers > 10000 {
		return cfg, errors.New("--max-viewers must be 0-10000")
	}
	if cfg.AlertLostAfter < time.Second || cfg.AlertPoorAfter < time.Second {
		return cfg, errors.New("--alert-lost-after and --alert-poor-after must be at least 1s")
	}
	if cfg.TURNTTL < time.Minute {
		return cfg, errors.New("--turn-ttl must be at least 1m")
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
	if err := cfg.checkCluster(); err != nil {
		return cfg, err
	}
	return cfg, nil
}

// configPath finds --config on the command line, or CITYBRIDGE_CONFIG.
func configPath(args []string, getenv func(string) string) string {
	path := getenv("CITYBRIDGE_CONFIG")
	for i := 0; i < len(args); i++ {
		a := args[i]
		if a == "--" {
			break
		}
		name, value, hasValue := strings.Cut(strings.TrimLeft(a, "-"), "=")
		if !strings.HasPrefix(a, "-") || name != "config" {
			continue
		}
		if hasValue {
			path = value
		} else if i+1 < len(args) {
			path = args[i+1]
			i++
		}
	}
	return path
}

// readConfigFile reads a TOML file whose keys are the flags' names and
// returns name/value pairs in a stable order (lists give one pair per
// item). Unknown keys and "config" itself are errors: a misspelt setting
// must not be ignored silently.
func readConfigFile(path string, fs *flag.FlagSet) ([][2]string, error) {
	var raw map[string]any
	md, err := toml.DecodeFile(path, &raw)
	if err != nil {
		return nil, fmt.Errorf("configuration file: %w", err)
	}
	var out [][2]string
	for _, key := range md.Keys() {
		name := key.String()
		if len(key) != 1 {
			continue // inside a table: reported at the table's own key
		}
		if name == "config" || fs.Lookup(name) == nil {
			return nil, fmt.Errorf("%s: unknown setting %q", path, name)
		}
		v := raw[name]
		items, isList := v.([]any)
		if !isList {
			items = []any{v}
		}
		for _, item := range items {
			switch x := item.(type) {
			case string, int64, bool, float64:
				out = append(out, [2]string{name, fmt.Sprint(x)})
			default:
				return nil, fmt.Errorf("%s: %s: want a string, number, boolean or a list of them", path, name)
			}
		}
	}
	return out, nil
}

// checkTURNURL accepts turn: and turns: URLs (RFC 7065) with a host.
func checkTURNURL(u string) error {
	scheme, rest, ok := strings.Cut(u, ":")
	if !ok || (scheme != "turn" && scheme != "turns") {
		return errors.New("want turn:HOST[:PORT][?transport=udp|tcp] or turns:...")
	}
	hostport, query, _ := strings.Cut(rest, "?")
	if hostport == "" || strings.Contains(hostport, "/") {
		return errors.New("no host")
	}
	if query != "" && query != "transport=udp" && query != "transport=tcp" {
		return fmt.Errorf("unknown parameter %q", query)
	}
	return nil
}

func newLogger(c Config, w io.Writer) *slog.Logger {
	opts := &slog.HandlerOptions{Level: c.LogLevel}
	if c.LogFormat == "json" {
		return slog.New(slog.NewJSONHandler(w, opts))
	}
	return slog.New(slog.NewTextHandler(w, opts))
}

// byteSize is a flag of a size in bytes, written 5GB, 500MB, 64KB or a
// plain number of bytes (decimal units, as disks are sold).
type byteSize uint64

func (b *byteSize) String() string {
	if b == nil {
		return "0"
	}
	return strconv.FormatUint(uint64(*b), 10)
}

func (b *byteSize) Set(s string) error {
	units := []struct {
		suffix string
		mult   float64
	}{{"TB", 1e12}, {"GB", 1e9}, {"MB", 1e6}, {"KB", 1e3}, {"B", 1}}
	t := strings.ToUpper(strings.TrimSpace(s))
	mult := 1.0
	for _, u := range units {
		if strings.HasSuffix(t, u.suffix) {
			t, mult = strings.TrimSpace(strings.TrimSuffix(t, u.suffix)), u.mult
			break
		}
	}
	v, err := strconv.ParseFloat(t, 64)
	if err != nil || v < 0 || v*mult > 1e18 {
		return fmt.Errorf("%q is not a size (5GB, 500MB, or bytes)", s)
	}
	*b = byteSize(v * mult)
	return nil
}

// recordingsDir is --recordings, or recordings/ in the data directory.
func (cfg Config) recordingsDir() string {
	if cfg.Recordings != "" {
		return cfg.Recordings
	}
	return filepath.Join(cfg.Data, "recordings")
}
