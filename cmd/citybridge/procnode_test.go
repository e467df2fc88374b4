package main

import (
	"bufio"
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"citybridge/controlplane"
	"citybridge/controlplane/etcdtest"

	clientv3 "go.etcd.io/etcd/client/v3"
)

// The cluster's tests that need real processes (SIGKILL, SIGSTOP, a node
// in its own network namespace) run the real binary, built once per test
// binary, as nodes of a cluster on the shared embedded etcd.

var (
	binaryOnce sync.Once
	binaryPath string
	binaryErr  error
	binaryDir  string // removed by TestMain
)

// citybridgeBinary builds the binary once for the whole test binary.
func citybridgeBinary(t testing.TB) string {
	t.Helper()
	binaryOnce.Do(func() {
		binaryDir, binaryErr = os.MkdirTemp("", "citybridge-bin-")
		if binaryErr != nil {
			return
		}
		binaryPath = filepath.Join(binaryDir, "citybridge")
		out, err := exec.Command("go", "build", "-o", binaryPath, ".").CombinedOutput()
		if err != nil {
			binaryErr = fmt.Errorf("build: %v\n%s", err, out)
		}
	})
	if binaryErr != nil {
		t.Fatal(binaryErr)
	}
	return binaryPath
}

// removeBinary removes the built binary (from TestMain).
func removeBinary() {
	if binaryDir != "" {
		_ = os.RemoveAll(binaryDir)
	}
}

// procCluster is a set of node processes sharing one prefix of the
// shared embedded etcd, with one certificate for all (as a cluster's
// nodes must present one the terminals trust).
type procCluster struct {
	t         testing.TB
	prefix    string
	endpoints []string
	cert, key string
	leaseTTL  time.Duration
	// mediaAllow is the nodes' --media-allow: loopback and 10/8, plus
	// the links of nodes in namespaces (allowMedia).
	mediaAllow []string
}

func newProcCluster(t testing.TB, name string, leaseTTL time.Duration) *procCluster {
	t.Helper()
	return newProcClusterOn(t, name, leaseTTL, etcdtest.SharedProcess(t).Endpoints)
}

// newProcClusterOn is newProcCluster on another etcd cluster than the
// shared one (one a test cuts, or whose leader it kills).
func newProcClusterOn(t testing.TB, name string, leaseTTL time.Duration, endpoints []string) *procCluster {
	t.Helper()
	dir := t.TempDir()
	if _, _, err := loadOrCreateCertificate(Config{Data: dir}); err != nil { // one for every node
		t.Fatal(err)
	}
	return &procCluster{
		t: t, prefix: etcdtest.Prefix(name), endpoints: endpoints,
		cert: filepath.Join(dir, "tls-cert.pem"), key: filepath.Join(dir, "tls-key.pem"), leaseTTL: leaseTTL,
		mediaAllow: []string{"127.0.0.0/8", "10.0.0.0/8"},
	}
}

// allowMedia lets the nodes take media from network (a link's /30).
func (pc *procCluster) allowMedia(network string) { pc.mediaAllow = append(pc.mediaAllow, network) }

// store opens the cluster's store from the test, as another client.
func (pc *procCluster) store() *controlplane.Store {
	pc.t.Helper()
	st, err := controlplane.OpenEtcd(controlplane.EtcdOptions{Endpoints: pc.endpoints, Prefix: pc.prefix})
	if err != nil {
		pc.t.Fatal(err)
	}
	pc.t.Cleanup(func() { st.Close() })
	return st
}

// revision is the etcd cluster's revision now: every write raises it by
// one.
func (pc *procCluster) revision(t testing.TB) int64 {
	t.Helper()
	cli, err := clientv3.New(clientv3.Config{Endpoints: pc.endpoints, DialTimeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer cli.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	resp, err := cli.Get(ctx, pc.prefix+"none", clientv3.WithCountOnly())
	if err != nil {
		t.Fatal(err)
	}
	return resp.Header.Revision
}

// procNode is one node process.
type procNode struct {
	name, base string
	port       int
	cmd        *exec.Cmd
	logs       *syncBuffer // its JSON log lines
	exited     chan struct{}
	ts         *testServer // base and client only: for the tests' HTTP and WebSocket helpers
}

// freePort returns a TCP port on 127.0.0.1 that was free a moment ago.
func freePort(t testing.TB) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// start starts node name on port (0: a free one) with its own data
// directory, waits until it answers /healthz, and kills it when the test
// ends. wrap runs before the binary (ip netns exec NS, for a node in its
// own namespace); host is the address it listens and is reached on.
func (pc *procCluster) start(name string, port int, host string, wrap ...string) *procNode {
	t := pc.t
	t.Helper()
	if port == 0 {
		port = freePort(t)
	}
	if host == "" {
		host = "127.0.0.1"
	}
	addr := net.JoinHostPort(host, strconv.Itoa(port))
	args := append(append([]string{}, wrap...), citybridgeBinary(t), "serve")
	cmd := exec.Command(args[0], args[1:]...)
	cmd.Env = append(os.Environ(),
		"CITYBRIDGE_LISTEN="+addr,
		"CITYBRIDGE_DATA="+t.TempDir(),
		"CITYBRIDGE_UDP_HOST="+host,
		"CITYBRIDGE_UDP_PORT=0",
		"CITYBRIDGE_MEDIA_ALLOW="+strings.Join(pc.mediaAllow, ","),
		"CITYBRIDGE_TURN_PORT=0",
		"CITYBRIDGE_LOG_FORMAT=json",
		"CITYBRIDGE_TLS_CERT="+pc.cert,
		"CITYBRIDGE_TLS_KEY="+pc.key,
		"CITYBRIDGE_ETCD="+strings.Join(pc.endpoints, ","),
		"CITYBRIDGE_ETCD_PREFIX="+pc.prefix,
		"CITYBRIDGE_NODE="+name,
		"CITYBRIDGE_ADVERTISE=https://"+addr,
		"CITYBRIDGE_LEASE_TTL="+pc.leaseTTL.String(),
	)
	n := &procNode{name: name, base: "https://" + addr, port: port, cmd: cmd, logs: &syncBuffer{}, exited: make(chan struct{})}
	cmd.Stdout, cmd.Stderr = n.logs, n.logs
	// No Pdeathsig: Linux sends it when the thread that started the child
	// ends, which the Go runtime may do at any time (a benchmark's nodes
	// died a second after starting). The cleanup kills them.
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { _ = cmd.Wait(); close(n.exited) }()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-n.exited
		if t.Failed() || os.Getenv("CITYBRIDGE_SERVER_LOGS") != "" {
			t.Logf("%s's log:\n%s", name, n.logs.String())
		}
	})
	n.ts = &testServer{base: n.base, client: &http.Client{Timeout: 20 * time.Second, Transport: &http.Transport{
		TLSClientConfig: &tls.Config{InsecureSkipVerify: true}, // the test's own self-signed certificate
	}}, logs: n.logs}
	waitUntil(t, 30*time.Second, name+" healthy", func() (bool, string) {
		select {
		case <-n.exited:
			t.Fatalf("%s exited:\n%s", name, n.logs.String())
		default:
		}
		resp, err := n.ts.client.Get(n.base + "/healthz")
		if err != nil {
			return false, err.Error()
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK, resp.Status
	})
	return n
}

// signal sends sig to the node.
func (n *procNode) signal(t testing.TB, sig syscall.Signal) {
	t.Helper()
	if err := n.cmd.Process.Signal(sig); err != nil {
		t.Fatalf("%s: %v: %v", n.name, sig, err)
	}
}

// kill kills the node (SIGKILL) and waits until it is gone.
func (n *procNode) kill(t testing.TB) time.Time {
	t.Helper()
	n.signal(t, syscall.SIGKILL)
	<-n.exited
	return time.Now()
}

// waitExit waits for the node to exit by itself (after SIGTERM).
func (n *procNode) waitExit(t testing.TB, d time.Duration) {
	t.Helper()
	select {
	case <-n.exited:
	case <-time.After(d):
		t.Fatalf("%s still running %v later", n.name, d)
	}
}

// logLine is one line of a node's JSON log, the fields the tests read.
type logLine struct {
	Time        time.Time `json:"time"`
	Msg         string    `json:"msg"`
	Conference  string    `json:"conference"`
	Conferences []string  `json:"conferences"`
	Fence       int64     `json:"fence"`
	Since       time.Time `json:"since"`
	Until       time.Time `json:"until"`
}

// lines parses the node's log so far.
func (n *procNode) lines() []logLine {
	var out []logLine
	sc := bufio.NewScanner(strings.NewReader(n.logs.String()))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		var l logLine
		if json.Unmarshal(sc.Bytes(), &l) == nil {
			out = append(out, l)
		}
	}
	return out
}

// served is one stretch of a node serving a conference, from its own log.
type served struct {
	node, conference string
	fence            int64
	since, until     time.Time // until zero: still serving (or killed)
}

// servedStretches reads the stretches the node's log says it served; a
// stretch still open ends at end (its kill, or now).
func (n *procNode) servedStretches(end time.Time) []served {
	open := map[string]*served{}
	var out []served
	closeAt := func(c string, at time.Time) {
		if s := open[c]; s != nil {
			s.until = at
			out = append(out, *s)
			delete(open, c)
		}
	}
	for _, l := range n.lines() {
		switch l.Msg {
		case "cluster: serving":
			closeAt(l.Conference, l.Since) // never two at once in one node
			open[l.Conference] = &served{node: n.name, conference: l.Conference, fence: l.Fence, since: l.Since}
		case "cluster: released":
			closeAt(l.Conference, l.Until)
		case "cluster: lease lost; stopped serving":
			for _, c := range l.Conferences {
				closeAt(c, l.Until)
			}
		}
	}
	for c := range open {
		closeAt(c, end)
	}
	return out
}
