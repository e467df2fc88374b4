package controlplane

import (
	"fmt"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.etcd.io/etcd/server/v3/embed"
	"go.uber.org/zap"
)

// testCluster is one embedded 3-member etcd cluster on loopback, shared by
// the package's tests (each under a prefix of its own), started on first
// use and stopped when the tests end.
var testCluster struct {
	once      sync.Once
	members   []*embed.Etcd
	endpoints []string
	err       error
}

var prefixes atomic.Int64

// freePorts returns n TCP ports on 127.0.0.1 that were free a moment ago.
func freePorts(n int) ([]int, error) {
	var lns []net.Listener
	defer func() {
		for _, l := range lns {
			l.Close()
		}
	}()
	var ports []int
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, err
		}
		lns = append(lns, l)
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	return ports, nil
}

// startCluster starts three etcd members in dir's subdirectories.
func startCluster(dir string) ([]*embed.Etcd, []string, error) {
	ports, err := freePorts(6)
	if err != nil {
		return nil, nil, err
	}
	peer := func(i int) url.URL { return url.URL{Scheme: "http", Host: fmt.Sprintf("127.0.0.1:%d", ports[i])} }
	client := func(i int) url.URL { return url.URL{Scheme: "http", Host: fmt.Sprintf("127.0.0.1:%d", ports[3+i])} }
	initial := ""
	for i := range 3 {
		if i > 0 {
			initial += ","
		}
		p := peer(i)
		initial += fmt.Sprintf("m%d=%s", i, p.String())
	}
	var members []*embed.Etcd
	var endpoints []string
	for i := range 3 {
		cfg := embed.NewConfig()
		cfg.Name = fmt.Sprintf("m%d", i)
		cfg.Dir = fmt.Sprintf("%s/m%d", dir, i)
		cfg.ListenPeerUrls, cfg.AdvertisePeerUrls = []url.URL{peer(i)}, []url.URL{peer(i)}
		cfg.ListenClientUrls, cfg.AdvertiseClientUrls = []url.URL{client(i)}, []url.URL{client(i)}
		cfg.InitialCluster = initial
		cfg.ZapLoggerBuilder = embed.NewZapLoggerBuilder(zap.NewNop()) // its shutdown is noisy
		cfg.MaxTxnOps = 4096                                           // as docs/CLUSTER.md asks of a deployment
		e, err := embed.StartEtcd(cfg)
		if err != nil {
			for _, m := range members {
				m.Close()
			}
			return nil, nil, err
		}
		members = append(members, e)
		c := client(i)
		endpoints = append(endpoints, c.String())
	}
	for _, e := range members {
		select {
		case <-e.Server.ReadyNotify():
		case <-time.After(30 * time.Second):
			for _, m := range members {
				m.Close()
			}
			return nil, nil, fmt.Errorf("etcd member %s not ready in 30 s", e.Config().Name)
		}
	}
	return members, endpoints, nil
}

// etcdEndpoints returns the shared cluster's client URLs, starting it on
// first use.
func etcdEndpoints(t *testing.T) []string {
	t.Helper()
	testCluster.once.Do(func() {
		dir, err := os.MkdirTemp("", "citybridge-etcd-")
		if err != nil {
			testCluster.err = err
			return
		}
		testCluster.members, testCluster.endpoints, testCluster.err = startCluster(dir)
	})
	if testCluster.err != nil {
		t.Fatalf("embedded etcd: %v", testCluster.err)
	}
	return testCluster.endpoints
}

// stopCluster stops the shared cluster (TestMain, after the tests).
func stopCluster() {
	for _, m := range testCluster.members {
		m.Close()
	}
	if len(testCluster.members) > 0 {
		_ = os.RemoveAll(filepath.Dir(testCluster.members[0].Config().Dir))
	}
}

// openEtcdTemp opens a store under a prefix no other test uses.
func openEtcdTemp(t *testing.T) (*Store, EtcdOptions) {
	t.Helper()
	o := EtcdOptions{Endpoints: etcdEndpoints(t), Prefix: fmt.Sprintf("/test-%d/", prefixes.Add(1))}
	s, err := OpenEtcd(o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s, o
}
