package deploy

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/BurntSushi/toml"
)

// serveFlags are the names of `citybridge serve`'s flags, read from its
// -h as TestDeployConfigSample (cmd/citybridge) reads them. This package
// cannot import the command (the command imports it), so the test builds
// it.
func serveFlags(t *testing.T) map[string]bool {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "citybridge")
	build := exec.Command("go", "build", "-o", bin, "./cmd/citybridge")
	build.Dir = ".."
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build ./cmd/citybridge: %v\n%s", err, out)
	}
	var help bytes.Buffer
	cmd := exec.Command(bin, "serve", "-h")
	cmd.Stdout, cmd.Stderr = &help, &help
	if err := cmd.Run(); err != nil {
		t.Fatalf("citybridge serve -h: %v\n%s", err, help.String())
	}
	names := map[string]bool{}
	for _, line := range strings.Split(help.String(), "\n") {
		if line = strings.TrimSpace(line); strings.HasPrefix(line, "-") {
			names[strings.Fields(strings.TrimPrefix(line, "-"))[0]] = true
		}
	}
	// Flags the cluster needs: a help that lost them is misread.
	for _, need := range []string{"etcd", "node", "advertise", "lease-ttl", "tls-cert", "listen", "udp-port"} {
		if !names[need] {
			t.Fatalf("read %d flags from the help, not %s: %v", len(names), need, names)
		}
	}
	return names
}

// flagRef is a flag named somewhere in a manifest or file.
type flagRef struct{ where, name string }

// envFlag turns CITYBRIDGE_LEASE_TTL into lease-ttl (the server's rule:
// the flag's name in capitals, dashes as underscores).
func envFlag(env string) (string, bool) {
	rest, ok := strings.CutPrefix(env, "CITYBRIDGE_")
	if !ok {
		return "", false
	}
	return strings.ToLower(strings.ReplaceAll(rest, "_", "-")), true
}

// manifestFlagRefs lists the flags the citybridge containers of objs name:
// their arguments after the command, their CITYBRIDGE_ variables, and the
// keys of every citybridge.toml in a ConfigMap.
func manifestFlagRefs(objs []k8sObject) ([]flagRef, error) {
	var refs []flagRef
	for _, o := range objs {
		where := fmt.Sprintf("%s: %s %s", o.File, o.Kind, o.Metadata.Name)
		if text := o.Data["citybridge.toml"]; text != "" {
			var m map[string]any
			if _, err := toml.Decode(text, &m); err != nil {
				return nil, fmt.Errorf("%s: citybridge.toml: %w", where, err)
			}
			for k := range m {
				refs = append(refs, flagRef{where + ", citybridge.toml", k})
			}
		}
		for _, c := range o.Spec.Template.Spec.Containers {
			if !isCitybridge(c.Image) {
				continue
			}
			for _, a := range c.Args {
				if strings.HasPrefix(a, "-") {
					name, _, _ := strings.Cut(strings.TrimLeft(a, "-"), "=")
					refs = append(refs, flagRef{where + ", args", name})
				}
			}
			for _, e := range c.Env {
				if name, ok := envFlag(e.Name); ok {
					refs = append(refs, flagRef{where + ", env " + e.Name, name})
				}
			}
		}
	}
	return refs, nil
}

// envAssign is a CITYBRIDGE_ variable set in an environment file, also in
// a commented-out example line.
var envAssign = regexp.MustCompile(`^#?\s*(CITYBRIDGE_[A-Z0-9_]+)=`)

// envFileFlagRefs lists the flags an environment file's CITYBRIDGE_
// variables name.
func envFileFlagRefs(path string, text []byte) []flagRef {
	var refs []flagRef
	sc := bufio.NewScanner(bytes.NewReader(text))
	for n := 1; sc.Scan(); n++ {
		if m := envAssign.FindStringSubmatch(strings.TrimSpace(sc.Text())); m != nil {
			name, _ := envFlag(m[1])
			refs = append(refs, flagRef{fmt.Sprintf("%s:%d %s", path, n, m[1]), name})
		}
	}
	return refs
}

// unknownFlags returns the references to flags serve does not have.
// "config" is one (TOML may not set it, but the environment and the
// command line may).
func unknownFlags(refs []flagRef, flags map[string]bool) []flagRef {
	var out []flagRef
	for _, r := range refs {
		if !flags[r.name] {
			out = append(out, r)
		}
	}
	return out
}

// TestDeployFlagNames: every citybridge flag the Kubernetes manifests and
// the systemd environment file name is a flag of `citybridge serve`.
func TestDeployFlagNames(t *testing.T) {
	flags := serveFlags(t)
	refs, err := manifestFlagRefs(readManifests(t, "kubernetes"))
	if err != nil {
		t.Fatal(err)
	}
	env := filepath.Join("systemd", "citybridge-cluster.env")
	text, err := os.ReadFile(env)
	if err != nil {
		t.Fatal(err)
	}
	envRefs := envFileFlagRefs(env, text)
	if len(envRefs) < 5 {
		t.Fatalf("%s: only %d CITYBRIDGE_ variables", env, len(envRefs))
	}
	refs = append(refs, envRefs...)
	for _, need := range []string{"etcd", "node", "advertise", "config"} {
		if !slices.ContainsFunc(refs, func(r flagRef) bool { return r.name == need }) {
			t.Errorf("no manifest or environment file sets %s", need)
		}
	}
	for _, r := range unknownFlags(refs, flags) {
		t.Errorf("%s: %q is not a flag of citybridge serve", r.where, r.name)
	}
}

// TestUnknownFlagNames: the check finds a misspelt flag in each place it
// reads (arguments, variables, citybridge.toml, the environment file),
// and only there.
func TestUnknownFlagNames(t *testing.T) {
	objs, err := parseManifest([]byte(`
apiVersion: v1
kind: ConfigMap
metadata: {name: c}
data:
  citybridge.toml: |
    listen = ":443"
    etcd-endpoints = "http://etcd-0.etcd:2379"
---
apiVersion: apps/v1
kind: StatefulSet
metadata: {name: s}
spec:
  template:
    spec:
      containers:
        - name: citybridge
          image: registry.city.example/citybridge:1.0
          args: [serve, --config=/etc/c.toml, --lisen=:443, --data, /var/lib/citybridge]
          env:
            - {name: CITYBRIDGE_NODE, value: a}
            - {name: CITYBRIDGE_ADVERTISE_URL, value: https://10.0.0.1}
            - {name: HOST_IP, value: x}
        - name: etcd
          image: quay.io/coreos/etcd:v3.7.3
          args: [--max-txn-ops=4096]
          env: [{name: CITYBRIDGE_NOT_MINE, value: x}]
`))
	if err != nil {
		t.Fatal(err)
	}
	refs, err := manifestFlagRefs(objs)
	if err != nil {
		t.Fatal(err)
	}
	refs = append(refs, envFileFlagRefs("cluster.env", []byte(
		"# comment\nCITYBRIDGE_ETCD=http://10.0.0.1:2379\nCITYBRIDGE_LEASE_TTL=5s\n# CITYBRIDGE_ETCD_PASWORD_FILE=/x\nOTHER=1\n"))...)
	flags := map[string]bool{}
	for _, f := range []string{"config", "listen", "data", "etcd", "node", "advertise", "lease-ttl", "etcd-password-file"} {
		flags[f] = true
	}
	var got []string
	for _, r := range unknownFlags(refs, flags) {
		got = append(got, r.name)
	}
	slices.Sort(got)
	want := []string{"advertise-url", "etcd-endpoints", "etcd-pasword-file", "lisen"}
	if !slices.Equal(got, want) {
		t.Fatalf("unknown %v, want %v (from %v)", got, want, refs)
	}
}

// envFile reads KEY=VALUE lines (comments and blank lines skipped).
func envFile(t *testing.T, path string) map[string]string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	m := map[string]string{}
	for _, line := range strings.Split(string(b), "\n") {
		line = strings.TrimSpace(line)
		if k, v, ok := strings.Cut(line, "="); ok && !strings.HasPrefix(line, "#") {
			m[k] = v
		}
	}
	return m
}

// TestSystemdCluster: the etcd member's settings (Debian's
// /etc/default/etcd) make a 3-member cluster that allows citybridge's
// transactions; the node's environment names every member; the drop-in
// reads that file, starts after etcd and gives the hand-over its time.
func TestSystemdCluster(t *testing.T) {
	etcd := envFile(t, filepath.Join("systemd", "etcd.default"))
	if atoi(etcd["ETCD_MAX_TXN_OPS"]) < 4096 {
		t.Errorf("etcd.default: ETCD_MAX_TXN_OPS %q, want at least 4096", etcd["ETCD_MAX_TXN_OPS"])
	}
	if etcd["ETCD_AUTO_COMPACTION_RETENTION"] == "" {
		t.Error("etcd.default: no ETCD_AUTO_COMPACTION_RETENTION: citybridge does not compact etcd's history")
	}
	members := map[string]string{} // name → peer URL
	for _, m := range strings.Split(etcd["ETCD_INITIAL_CLUSTER"], ",") {
		name, url, _ := strings.Cut(m, "=")
		members[name] = url
	}
	if len(members) != 3 {
		t.Fatalf("etcd.default: ETCD_INITIAL_CLUSTER %q: want 3 members", etcd["ETCD_INITIAL_CLUSTER"])
	}
	if u := members[etcd["ETCD_NAME"]]; u == "" || u != etcd["ETCD_INITIAL_ADVERTISE_PEER_URLS"] {
		t.Errorf("etcd.default: ETCD_NAME %q with peer URL %q is not in ETCD_INITIAL_CLUSTER as such",
			etcd["ETCD_NAME"], etcd["ETCD_INITIAL_ADVERTISE_PEER_URLS"])
	}
	node := envFile(t, filepath.Join("systemd", "citybridge-cluster.env"))
	endpoints := "," + node["CITYBRIDGE_ETCD"] + ","
	for name, peer := range members {
		client := strings.Replace(peer, ":2380", ":2379", 1)
		if !strings.Contains(endpoints, ","+client+",") {
			t.Errorf("citybridge-cluster.env: CITYBRIDGE_ETCD %q lacks %s (%s)", node["CITYBRIDGE_ETCD"], client, name)
		}
	}
	if !strings.Contains(node["CITYBRIDGE_ADVERTISE"], strings.TrimSuffix(strings.TrimPrefix(etcd["ETCD_INITIAL_ADVERTISE_PEER_URLS"], "http://"), ":2380")) {
		t.Errorf("the node advertises %q, not the address of its machine's etcd member", node["CITYBRIDGE_ADVERTISE"])
	}

	b, err := os.ReadFile(filepath.Join("systemd", "citybridge-cluster.conf"))
	if err != nil {
		t.Fatal(err)
	}
	unit := map[string][]string{}
	for _, line := range strings.Split(string(b), "\n") {
		if k, v, ok := strings.Cut(strings.TrimSpace(line), "="); ok && !strings.HasPrefix(line, "#") {
			unit[k] = append(unit[k], v)
		}
	}
	if !slices.Contains(unit["EnvironmentFile"], "/etc/citybridge/cluster.env") {
		t.Errorf("the drop-in reads %v, not /etc/citybridge/cluster.env", unit["EnvironmentFile"])
	}
	if !slices.Contains(unit["After"], "etcd.service") || !slices.Contains(unit["KillSignal"], "SIGTERM") {
		t.Errorf("the drop-in: After %v, KillSignal %v", unit["After"], unit["KillSignal"])
	}
	stop, err := time.ParseDuration(strings.Join(unit["TimeoutStopSec"], ""))
	if err != nil || stop < 30*time.Second {
		t.Errorf("the drop-in: TimeoutStopSec %v (%v): too short for a hand-over", unit["TimeoutStopSec"], err)
	}
}
