package main

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"citybridge/controlplane"
)

// etcdFlags say how to reach an etcd cluster: its endpoints, the prefix
// the store lives under, TLS (the cluster's CA, a client certificate) and
// etcd's own authentication (a user, its password in a file).
type etcdFlags struct {
	endpoints    string
	prefix       string
	caCert       string
	cert, key    string
	user         string
	passwordFile string
}

// register adds the flags; name is the endpoints flag ("etcd" for serve,
// "to-etcd" for migrate), the others are etcd-*.
func (e *etcdFlags) register(fs *flag.FlagSet, name string, getenv func(string) string) {
	env := func(k string) string { return getenv("CITYBRIDGE_" + strings.ToUpper(strings.ReplaceAll(k, "-", "_"))) }
	fs.StringVar(&e.endpoints, name, env(name), "etcd endpoints, comma-separated (http://10.0.0.1:2379,...)")
	fs.StringVar(&e.prefix, "etcd-prefix", withDefault(env("etcd-prefix"), "/citybridge/"), "key prefix of the store in etcd")
	fs.StringVar(&e.caCert, "etcd-cacert", env("etcd-cacert"), "CA certificate (PEM) of the etcd cluster, for https:// endpoints")
	fs.StringVar(&e.cert, "etcd-cert", env("etcd-cert"), "client certificate (PEM) for etcd")
	fs.StringVar(&e.key, "etcd-key", env("etcd-key"), "client key (PEM) for etcd")
	fs.StringVar(&e.user, "etcd-user", env("etcd-user"), "etcd user, when etcd's authentication is on")
	fs.StringVar(&e.passwordFile, "etcd-password-file", env("etcd-password-file"), "file whose first line is the etcd user's password")
}

func withDefault(v, def string) string {
	if v == "" {
		return def
	}
	return v
}

// options turns the flags into the store's options.
func (e *etcdFlags) options() (controlplane.EtcdOptions, error) {
	o := controlplane.EtcdOptions{Prefix: e.prefix, Username: e.user, Timeout: 5 * time.Second}
	for _, ep := range strings.Split(e.endpoints, ",") {
		if ep = strings.TrimSpace(ep); ep != "" {
			if !strings.HasPrefix(ep, "http://") && !strings.HasPrefix(ep, "https://") {
				return o, fmt.Errorf("etcd endpoint %q: want http://HOST:PORT or https://HOST:PORT", ep)
			}
			o.Endpoints = append(o.Endpoints, ep)
		}
	}
	if len(o.Endpoints) == 0 {
		return o, errors.New("no etcd endpoints")
	}
	if e.passwordFile != "" {
		pw, err := readPassword(e.passwordFile, nil)
		if err != nil {
			return o, fmt.Errorf("--etcd-password-file: %w", err)
		}
		o.Password = pw
	}
	if (e.user == "") != (o.Password == "") {
		return o, errors.New("--etcd-user and --etcd-password-file go together")
	}
	if (e.cert == "") != (e.key == "") {
		return o, errors.New("--etcd-cert and --etcd-key go together")
	}
	if e.caCert != "" || e.cert != "" {
		tc := &tls.Config{MinVersion: tls.VersionTLS12}
		if e.caCert != "" {
			pem, err := os.ReadFile(e.caCert)
			if err != nil {
				return o, err
			}
			pool := x509.NewCertPool()
			if !pool.AppendCertsFromPEM(pem) {
				return o, fmt.Errorf("--etcd-cacert %s: no certificate in it", e.caCert)
			}
			tc.RootCAs = pool
		}
		if e.cert != "" {
			c, err := tls.LoadX509KeyPair(e.cert, e.key)
			if err != nil {
				return o, fmt.Errorf("--etcd-cert/--etcd-key: %w", err)
			}
			tc.Certificates = []tls.Certificate{c}
		}
		o.TLS = tc
	}
	return o, nil
}

// migrateCommand copies a stopped server's store into etcd:
//
//	citybridge migrate [--data DIR] --to-etcd URLS [--etcd-prefix P] [TLS and user flags]
func migrateCommand(args []string, getenv func(string) string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("migrate", flag.ContinueOnError)
	fs.SetOutput(stderr)
	data := dataFlag(fs, getenv)
	var ef etcdFlags
	ef.register(fs, "to-etcd", getenv)
	if err := fs.Parse(args); err != nil {
		return 2
	}
	o, err := ef.options()
	if err != nil {
		fmt.Fprintln(stderr, "citybridge migrate:", err)
		return 2
	}
	st, err := openStore(*data)
	if err != nil {
		fmt.Fprintln(stderr, "citybridge migrate:", err)
		return 1
	}
	defer st.Close()
	n, err := controlplane.MigrateToEtcd(st, o, func(bucket string, n int) {
		fmt.Fprintf(stdout, "  %-12s %d records\n", bucket, n)
	})
	if err != nil {
		fmt.Fprintln(stderr, "citybridge migrate:", err)
		return 1
	}
	// Both logs say it: the file that it was copied, the cluster where from.
	where := strings.Join(o.Endpoints, ",") + " " + o.Prefix
	auditConsole(st, stderr, "migrate --to-etcd", where)
	if dst, err := controlplane.OpenEtcd(o); err != nil {
		fmt.Fprintln(stderr, "citybridge migrate: copied, but the store in etcd does not open:", err)
		return 1
	} else {
		auditConsole(dst, stderr, "migrate from", st.Path())
		_ = dst.Close()
	}
	fmt.Fprintf(stdout, "migrated %d records from %s to etcd %s under %s\n", n, st.Path(), strings.Join(o.Endpoints, ","), o.Prefix)
	return 0
}
