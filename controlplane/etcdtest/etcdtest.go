// Package etcdtest runs a real etcd cluster inside a test binary: three
// members on loopback (or on an address the test made) (go.etcd.io/etcd/server/v3/embed, the version the
// store's client speaks), for the tests of the store on etcd and of the
// nodes that share it. Only tests import it: the server binary never
// carries an etcd server.
package etcdtest

import (
	"fmt"
	"net"
	"net/url"
	"os"
	"strconv"
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
	closed    map[int]bool // members closed by CloseMember or KillMember
	closing   sync.WaitGroup
}

// freePorts returns n TCP ports on host that were free a moment ago.
func freePorts(host string, n int) ([]int, error) {
	var ports []int
	for range n {
		l, err := net.Listen("tcp", net.JoinHostPort(host, "0"))
		if err != nil {
			return nil, err
		}
		defer l.Close()
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	return ports, nil
}

// Option changes how Start starts a cluster.
type Option func(*options)

type options struct {
	host string
}

// OnHost has the members listen (for clients and for each other) on host
// instead of 127.0.0.1: an address the test made, such as the root side of
// a veth pair, so that a node in a network namespace reaches etcd through
// that link alone, where the test can cut it.
func OnHost(host string) Option { return func(o *options) { o.host = host } }

// Start starts a cluster of size members with their data under a new
// temporary directory, and waits until each is ready.
func Start(size int, opts ...Option) (*Cluster, error) {
	o := options{host: "127.0.0.1"}
	for _, f := range opts {
		f(&o)
	}
	dir, err := os.MkdirTemp("", "citybridge-etcd-")
	if err != nil {
		return nil, err
	}
	ports, err := freePorts(o.host, 2*size)
	if err != nil {
		_ = os.RemoveAll(dir)
		return nil, err
	}
	at := func(port int) url.URL {
		return url.URL{Scheme: "http", Host: net.JoinHostPort(o.host, strconv.Itoa(port))}
	}
	peer := func(i int) url.URL { return at(ports[i]) }
	client := func(i int) url.URL { return at(ports[size+i]) }
	initial := ""
	for i := range size {
		if i > 0 {
			initial += ","
		}
		p := peer(i)
		initial += fmt.Sprintf("m%d=%s", i, p.String())
	}
	c := &Cluster{dir: dir, closed: map[int]bool{}}
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
		if err := ready(e); err != nil {
			c.Stop()
			return nil, err
		}
	}
	return c, nil
}

func ready(e *embed.Etcd) error {
	select {
	case <-e.Server.ReadyNotify():
		return nil
	case <-time.After(30 * time.Second):
		return fmt.Errorf("etcd member %s not ready in 30 s", e.Config().Name)
	}
}

// Leader returns the index of the member that leads the cluster now, -1
// if none does (an election is on) or the running members disagree.
func (c *Cluster) Leader() int {
	leader := -1
	for i, m := range c.Members {
		if c.closed[i] {
			continue
		}
		id := m.Server.Leader()
		if id == 0 {
			return -1
		}
		if m.Server.MemberID() == id {
			if leader >= 0 {
				return -1
			}
			leader = i
		}
	}
	return leader
}

// CloseMember stops member i (its data stay, for Restart).
func (c *Cluster) CloseMember(i int) {
	if !c.closed[i] {
		c.closed[i] = true
		c.Members[i].Close()
	}
}

// KillMember stops member i as a crash would: at once, without handing
// its leadership over (CloseMember, a graceful stop, hands it over before
// it goes, so no election follows). Its listeners close in the background.
func (c *Cluster) KillMember(i int) {
	if c.closed[i] {
		return
	}
	c.closed[i] = true
	m := c.Members[i]
	m.Server.HardStop()
	c.closing.Add(1)
	go func() {
		defer c.closing.Done()
		m.Close()
	}()
}

// Restart starts member i again, after CloseMember, with the
// configuration and data it had, and waits until it is ready.
func (c *Cluster) Restart(i int) error {
	cfg := c.Members[i].Config()
	e, err := embed.StartEtcd(&cfg)
	if err != nil {
		return err
	}
	c.Members[i], c.closed[i] = e, false
	return ready(e)
}

// Stop stops every member and removes the data.
func (c *Cluster) Stop() {
	for i := range c.Members {
		c.CloseMember(i)
	}
	c.closing.Wait()
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
	sharedProc.Lock()
	defer sharedProc.Unlock()
	if sharedProc.c != nil {
		sharedProc.c.Stop()
	}
}

// Prefix returns a key prefix no other caller in this binary got.
func Prefix(name string) string { return fmt.Sprintf("/%s-%d/", name, prefixes.Add(1)) }
