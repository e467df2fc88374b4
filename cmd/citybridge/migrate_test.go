package main

import (
	"bytes"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"citybridge/controlplane"
	"citybridge/controlplane/etcdtest"
)

// TestMigrateCommand: `citybridge migrate --to-etcd` copies a stopped
// server's data directory into an empty prefix of a real etcd cluster,
// says what it copied, and writes the migration in both audit logs; bad
// endpoints and a prefix already used are refused with a clear error.
func TestMigrateCommand(t *testing.T) {
	t.Parallel()
	data := t.TempDir()
	st, err := controlplane.Open(filepath.Join(data, "citybridge.db"))
	if err != nil {
		t.Fatal(err)
	}
	if err := st.PutBridges([]controlplane.Bridge{{ID: "ward-001", Name: "Phường 1", Kind: controlplane.KindWard}}); err != nil {
		t.Fatal(err)
	}
	tok, err := st.IssueToken(controlplane.Grant{Role: controlplane.RoleRoom, Bridge: "ward-001"})
	if err != nil {
		t.Fatal(err)
	}
	st.Close()
	cluster := etcdtest.Shared(t)
	prefix := etcdtest.Prefix("cli")
	env := func(string) string { return "" }
	var out, errb bytes.Buffer
	args := []string{"migrate", "--data", data, "--to-etcd", strings.Join(cluster.Endpoints, ","), "--etcd-prefix", prefix}
	if code := cli(args, env, &out, &errb); code != 0 {
		t.Fatalf("migrate: %d %s %s", code, out.String(), errb.String())
	}
	if !strings.Contains(out.String(), "bridges") || !strings.Contains(out.String(), "migrated") {
		t.Errorf("migrate said: %s", out.String())
	}
	dst, err := controlplane.OpenEtcd(controlplane.EtcdOptions{Endpoints: cluster.Endpoints, Prefix: prefix})
	if err != nil {
		t.Fatal(err)
	}
	defer dst.Close()
	if g, err := dst.Authenticate(tok); err != nil || g.Bridge != "ward-001" {
		t.Errorf("the room's link in etcd: %+v %v", g, err)
	}
	entries, _ := dst.AuditLog(time.Time{}, time.Time{})
	if len(entries) == 0 || entries[len(entries)-1].Action != "migrate from" {
		t.Errorf("the cluster's audit log does not end with the migration: %+v", entries)
	}
	// Again into the same prefix: refused.
	errb.Reset()
	if code := cli(args, env, &out, &errb); code == 0 || !strings.Contains(errb.String(), "empty prefix") {
		t.Errorf("a second migration: %d %s", code, errb.String())
	}
	for _, bad := range [][]string{
		{"migrate", "--data", data},
		{"migrate", "--data", data, "--to-etcd", "10.0.0.1:2379"},
		{"migrate", "--data", data, "--to-etcd", cluster.Endpoints[0], "--etcd-user", "root"},
		{"migrate", "--data", data, "--to-etcd", cluster.Endpoints[0], "--etcd-cert", "c.pem"},
	} {
		errb.Reset()
		if code := cli(bad, env, &out, &errb); code != 2 || errb.Len() == 0 {
			t.Errorf("%v: %d %q, want 2 and a reason", bad[2:], code, errb.String())
		}
	}
}
