// Package etcdtest runs a real etcd cluster inside a test binary: three
// members on loopback (go.etcd.io/etcd/server/v3/embed, the version the
// store's client speaks), for the tests of the store on etcd and of the
// nodes that share it. Only tests import it: the server binary never
// carries an etcd server.
package etcdtest

import (
	"fmt"
	"net"
	"net/url"
	"os"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.etcd.io/etcd/server/v3/embed"
	"go.uber.org/zap"
)

// Cluster is a running cluster.
type Cluster struct {
	Members   []*embed.Etcd
	Endpoints []string // the members' client URLs
	dir       string
}

// freePorts returns n TCP ports on 127.0.0.1 that were free a moment ago.
func freePorts(n int) ([]int, error) {
	var ports []int
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, err
		}
		defer l.Close()
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	return ports, nil
}

// Start starts a cluster of size members with their data under a new
// temporary directory, and waits until each is ready.
func Start(size int) (*Cluster, error) {
	dir, err := os.MkdirTemp("", "citybridge-etcd-")
	if err != nil {
		return nil, err
	}
	ports, err := freePorts(2 * size)
	if err != nil {
		return nil, err
	}
	peer := func(i int) url.URL { return url.URL{Scheme: "http", Host: fmt.Sprintf("127.0.0.1:%d", ports[i])} }
	client := func(i int) url.URL { return url.URL{Scheme: "http", Host: fmt.Sprintf("127.0.0.1:%d", ports[size+i])} }
	initial := ""
	for i := range size {
		if i > 0 {
			initial += ","
		}
		p := peer(i)
		initial += fmt.Sprintf("m%d=%s", i, p.String())
	}
	c := &Cluster{dir: dir}
	for i := range size {
		cfg := embed.NewConfig()
		cfg.Name = fmt.Sprintf("m%d", i)
		cfg.Dir = fmt.Sprintf("%s/m%d", dir, i)
		cfg.ListenPeerUrls, cfg.AdvertisePeerUrls = []url.URL{peer(i)}, []url.URL{peer(i)}
		cfg.ListenClientUrls, cfg.AdvertiseClientUrls = []url.URL{client(i)}, []url.URL{client(i)}
		cfg.InitialCluster = initial
		cfg.ZapLoggerBuilder = embed.NewZapLoggerBuilder(zap.NewNop()) // its shutdown is noisy
		cfg.MaxTxnOps = 4096                                           // as docs/CLUSTER.md asks of a deployment
		// Three members share one test machine's disk with browsers and
		// servers: an fsync there can take 100 ms under load, which a
		// deployment's members, each on its own disk, do not see. The tests
		// are about citybridge, not this disk.
		cfg.UnsafeNoFsync = true
		e, err := embed.StartEtcd(cfg)
		if err != nil {
			c.Stop()
			return nil, err
		}
		c.Members = append(c.Members, e)
		u := client(i)
		c.Endpoints = append(c.Endpoints, u.String())
	}
	for _, e := range c.Members {
		select {
		case <-e.Server.ReadyNotify():
		case <-time.After(30 * time.Second):
			c.Stop()
			return nil, fmt.Errorf("etcd member %s not ready in 30 s", e.Config().Name)
		}
	}
	return c, nil
}

// Stop stops every member and removes the data.
func (c *Cluster) Stop() {
	for _, m := range c.Members {
		m.Close()
	}
	_ = os.RemoveAll(c.dir)
}

// shared is one cluster per test binary, for the tests that only need a
// store: each takes a prefix of its own.
var shared struct {
	once sync.Once
	c    *Cluster
	err  error
}

var prefixes atomic.Int64

// Shared returns the test binary's shared 3-member cluster, started on
// first use; StopShared (from TestMain) stops it.
func Shared(t testing.TB) *Cluster {
	t.Helper()
	shared.once.Do(func() { shared.c, shared.err = Start(3) })
	if shared.err != nil {
		t.Fatalf("embedded etcd: %v", shared.err)
	}
	return shared.c
}

// StopShared stops the shared cluster, if it was started.
func StopShared() {
	if shared.c != nil {
		shared.c.Stop()
	}
}

// Prefix returns a key prefix no other caller in this binary got.
func Prefix(name string) string { return fmt.Sprintf("/%s-%d/", name, prefixes.Add(1)) }
