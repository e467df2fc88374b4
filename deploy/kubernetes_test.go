package deploy

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/BurntSushi/toml"
	"go.yaml.in/yaml/v2"
)

// k8sObject is the part of a Kubernetes object (or a kustomization) that
// the checks read; the rest of each document is ignored.
type k8sObject struct {
	File       string `yaml:"-"`
	APIVersion string `yaml:"apiVersion"`
	Kind       string `yaml:"kind"`
	Metadata   struct {
		Name string `yaml:"name"`
	} `yaml:"metadata"`
	Data map[string]string `yaml:"data"`
	Spec k8sSpec           `yaml:"spec"`
	// A kustomization's.
	Resources []string `yaml:"resources"`
	Images    []struct {
		Name    string `yaml:"name"`
		NewName string `yaml:"newName"`
		NewTag  string `yaml:"newTag"`
	} `yaml:"images"`
}

type k8sSpec struct {
	Replicas                 *int   `yaml:"replicas"`
	ServiceName              string `yaml:"serviceName"`
	PodManagementPolicy      string `yaml:"podManagementPolicy"`
	ClusterIP                string `yaml:"clusterIP"`
	PublishNotReadyAddresses bool   `yaml:"publishNotReadyAddresses"`
	MaxUnavailable           any    `yaml:"maxUnavailable"`
	Template                 struct {
		Spec podSpec `yaml:"spec"`
	} `yaml:"template"`
	VolumeClaimTemplates []struct {
		Metadata struct {
			Name string `yaml:"name"`
		} `yaml:"metadata"`
	} `yaml:"volumeClaimTemplates"`
}

type podSpec struct {
	HostNetwork                   bool   `yaml:"hostNetwork"`
	DNSPolicy                     string `yaml:"dnsPolicy"`
	EnableServiceLinks            *bool  `yaml:"enableServiceLinks"`
	TerminationGracePeriodSeconds *int   `yaml:"terminationGracePeriodSeconds"`
	Affinity                      struct {
		PodAntiAffinity struct {
			Required []struct {
				TopologyKey string `yaml:"topologyKey"`
			} `yaml:"requiredDuringSchedulingIgnoredDuringExecution"`
		} `yaml:"podAntiAffinity"`
	} `yaml:"affinity"`
	Containers []container `yaml:"containers"`
	Volumes    []struct {
		Name   string `yaml:"name"`
		Secret *struct {
			SecretName string `yaml:"secretName"`
			Optional   bool   `yaml:"optional"`
		} `yaml:"secret"`
		ConfigMap *struct {
			Name string `yaml:"name"`
		} `yaml:"configMap"`
	} `yaml:"volumes"`
}

type container struct {
	Name    string   `yaml:"name"`
	Image   string   `yaml:"image"`
	Command []string `yaml:"command"`
	Args    []string `yaml:"args"`
	Env     []struct {
		Name      string `yaml:"name"`
		Value     string `yaml:"value"`
		ValueFrom struct {
			FieldRef struct {
				FieldPath string `yaml:"fieldPath"`
			} `yaml:"fieldRef"`
		} `yaml:"valueFrom"`
	} `yaml:"env"`
	StartupProbe   *probe `yaml:"startupProbe"`
	ReadinessProbe *probe `yaml:"readinessProbe"`
	LivenessProbe  *probe `yaml:"livenessProbe"`
	VolumeMounts   []struct {
		Name string `yaml:"name"`
	} `yaml:"volumeMounts"`
}

type probe struct {
	HTTPGet *struct {
		Path string `yaml:"path"`
	} `yaml:"httpGet"`
}

// readManifests parses every YAML document of every .yaml or .yml file
// under dir.
func readManifests(t *testing.T, dir string) []k8sObject {
	t.Helper()
	var out []k8sObject
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || (!strings.HasSuffix(path, ".yaml") && !strings.HasSuffix(path, ".yml")) {
			return err
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		objs, err := parseManifest(b)
		if err != nil {
			return fmt.Errorf("%s: %w", path, err)
		}
		for i := range objs {
			objs[i].File = path
		}
		out = append(out, objs...)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(out) == 0 {
		t.Fatalf("no manifest under %s", dir)
	}
	return out
}

// parseManifest reads the documents of one file; each must say its
// apiVersion and kind.
func parseManifest(b []byte) ([]k8sObject, error) {
	dec := yaml.NewDecoder(bytes.NewReader(b))
	var out []k8sObject
	for n := 1; ; n++ {
		var o k8sObject
		err := dec.Decode(&o)
		if errors.Is(err, io.EOF) {
			return out, nil
		}
		if err != nil {
			return nil, fmt.Errorf("document %d: %w", n, err)
		}
		if o.APIVersion == "" || o.Kind == "" {
			return nil, fmt.Errorf("document %d has no apiVersion or kind", n)
		}
		out = append(out, o)
	}
}

func find(objs []k8sObject, kind, name string) *k8sObject {
	for i := range objs {
		if objs[i].Kind == kind && objs[i].Metadata.Name == name {
			return &objs[i]
		}
	}
	return nil
}

// TestKubernetesManifests: every YAML file under kubernetes/ parses, and
// every resource a kustomization lists is there.
func TestKubernetesManifests(t *testing.T) {
	for _, o := range readManifests(t, "kubernetes") {
		if o.Kind != "Kustomization" {
			continue
		}
		for _, r := range o.Resources {
			if _, err := os.Stat(filepath.Join(filepath.Dir(o.File), r)); err != nil {
				t.Errorf("%s lists %s: %v", o.File, r, err)
			}
		}
	}
}

// etcdVersion is go.etcd.io/etcd's version in go.mod (v3.x.y): the
// members run the release the tests embed.
func etcdVersion(t *testing.T) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("..", "go.mod"))
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`(?m)^\s*go\.etcd\.io/etcd/server/v3 (v\S+)`).FindSubmatch(b)
	if m == nil {
		t.Fatal("go.mod names no go.etcd.io/etcd/server/v3")
	}
	return string(m[1])
}

// argValue returns --name's value among args (--name=value only).
func argValue(args []string, name string) (string, bool) {
	for _, a := range args {
		if v, ok := strings.CutPrefix(a, "--"+name+"="); ok {
			return v, true
		}
	}
	return "", false
}

// TestKubernetesCluster: the multi-node example has a 3-member etcd that
// allows citybridge's transactions, three citybridge nodes on the
// machines' network, one per machine, each named by its pod and
// advertising its machine's address, and the nodes reach every member.
func TestKubernetesCluster(t *testing.T) {
	dir := filepath.Join("kubernetes", "cluster")
	objs := readManifests(t, dir)
	version := etcdVersion(t)

	etcd := find(objs, "StatefulSet", "etcd")
	if etcd == nil {
		t.Fatal("no StatefulSet etcd")
	}
	members := checkEtcd(t, objs, etcd, version)

	cb := find(objs, "StatefulSet", "citybridge")
	if cb == nil {
		t.Fatal("no StatefulSet citybridge")
	}
	checkNodes(t, objs, cb, members)

	for _, name := range []string{"etcd", "citybridge"} {
		pdb := find(objs, "PodDisruptionBudget", name)
		if pdb == nil || fmt.Sprint(pdb.Spec.MaxUnavailable) != "1" {
			t.Errorf("PodDisruptionBudget %s: want maxUnavailable 1", name)
		}
	}
	k := find(objs, "Kustomization", "")
	if k == nil {
		t.Fatal("no kustomization")
	}
	for _, kind := range []string{"StatefulSet", "Service", "PodDisruptionBudget", "ConfigMap", "Namespace"} {
		for _, o := range objs {
			if o.Kind == kind && !kustomized(k, o.File) {
				t.Errorf("%s %s (%s) is not in kustomization.yaml", kind, o.Metadata.Name, o.File)
			}
		}
	}
	images := map[string]string{}
	for _, im := range k.Images {
		images[im.Name] = im.NewTag
		if strings.Contains(im.NewName, "docker.io") || strings.Contains(im.NewName, "quay.io") {
			t.Errorf("image %s comes from %s: the city's network reaches only its own registry", im.Name, im.NewName)
		}
	}
	if tag := images["quay.io/coreos/etcd"]; tag != version {
		t.Errorf("kustomization: etcd tag %q, want %s (go.mod)", tag, version)
	}
}

func kustomized(k *k8sObject, file string) bool {
	for _, r := range k.Resources {
		if filepath.Join(filepath.Dir(k.File), r) == file {
			return true
		}
	}
	return false
}

// checkEtcd checks the etcd StatefulSet and its Service, and returns its
// members' client URLs.
func checkEtcd(t *testing.T, objs []k8sObject, etcd *k8sObject, version string) []string {
	t.Helper()
	if etcd.Spec.Replicas == nil || *etcd.Spec.Replicas != 3 {
		t.Fatalf("etcd: replicas %v, want 3", etcd.Spec.Replicas)
	}
	n := *etcd.Spec.Replicas
	svc := find(objs, "Service", etcd.Spec.ServiceName)
	if svc == nil || svc.Spec.ClusterIP != "None" || !svc.Spec.PublishNotReadyAddresses {
		t.Errorf("etcd: serviceName %q: want a headless Service that publishes members not yet ready", etcd.Spec.ServiceName)
	}
	if etcd.Spec.PodManagementPolicy != "Parallel" {
		t.Errorf("etcd: podManagementPolicy %q: the members must start together", etcd.Spec.PodManagementPolicy)
	}
	pod := etcd.Spec.Template.Spec
	checkAntiAffinity(t, "etcd", pod)
	if len(pod.Containers) != 1 {
		t.Fatalf("etcd: %d containers", len(pod.Containers))
	}
	c := pod.Containers[0]
	if !strings.HasSuffix(c.Image, ":"+version) {
		t.Errorf("etcd: image %s, want the tag %s (go.etcd.io/etcd in go.mod)", c.Image, version)
	}
	if v, _ := argValue(c.Args, "max-txn-ops"); atoi(v) < 4096 {
		t.Errorf("etcd: --max-txn-ops %q, want at least 4096 (docs/CLUSTER.md)", v)
	}
	if v, _ := argValue(c.Args, "auto-compaction-retention"); v == "" {
		t.Error("etcd: no --auto-compaction-retention: citybridge does not compact etcd's history")
	}
	if len(etcd.Spec.VolumeClaimTemplates) == 0 || !mounts(c, etcd.Spec.VolumeClaimTemplates[0].Metadata.Name) {
		t.Error("etcd: no persistent volume claim mounted")
	}
	cluster, _ := argValue(c.Args, "initial-cluster")
	var clients []string
	for i := range n {
		member := fmt.Sprintf("%s-%d", etcd.Metadata.Name, i)
		host := member + "." + etcd.Spec.ServiceName
		if !strings.Contains(","+cluster+",", ","+member+"=http://"+host+":2380,") {
			t.Errorf("etcd: --initial-cluster %q lacks %s", cluster, member)
		}
		clients = append(clients, "http://"+host+":2379")
	}
	if strings.Count(cluster, "=") != n {
		t.Errorf("etcd: --initial-cluster %q: want %d members", cluster, n)
	}
	return clients
}

func atoi(s string) int {
	n, _ := strconv.Atoi(s)
	return n
}

func mounts(c container, volume string) bool {
	for _, m := range c.VolumeMounts {
		if m.Name == volume {
			return true
		}
	}
	return false
}

func checkAntiAffinity(t *testing.T, what string, pod podSpec) {
	t.Helper()
	for _, r := range pod.Affinity.PodAntiAffinity.Required {
		if r.TopologyKey == "kubernetes.io/hostname" {
			return
		}
	}
	t.Errorf("%s: no required podAntiAffinity on kubernetes.io/hostname: two could land on one machine", what)
}

// checkNodes checks the citybridge StatefulSet against the etcd members'
// client URLs.
func checkNodes(t *testing.T, objs []k8sObject, cb *k8sObject, members []string) {
	t.Helper()
	if cb.Spec.Replicas == nil || *cb.Spec.Replicas != 3 {
		t.Errorf("citybridge: replicas %v, want 3", cb.Spec.Replicas)
	}
	if svc := find(objs, "Service", cb.Spec.ServiceName); svc == nil || svc.Spec.ClusterIP != "None" {
		t.Errorf("citybridge: serviceName %q: want a headless Service", cb.Spec.ServiceName)
	}
	pod := cb.Spec.Template.Spec
	if !pod.HostNetwork || pod.DNSPolicy != "ClusterFirstWithHostNet" {
		t.Errorf("citybridge: hostNetwork %v, dnsPolicy %q: want the machine's network and the cluster's DNS", pod.HostNetwork, pod.DNSPolicy)
	}
	if pod.EnableServiceLinks == nil || *pod.EnableServiceLinks {
		t.Error("citybridge: enableServiceLinks must be false (Services' variables would read as CITYBRIDGE_ settings)")
	}
	checkAntiAffinity(t, "citybridge", pod)
	if g := pod.TerminationGracePeriodSeconds; g == nil || *g < 30 {
		t.Errorf("citybridge: terminationGracePeriodSeconds %v: too short for a hand-over", g)
	}
	var c *container
	for i := range pod.Containers {
		if isCitybridge(pod.Containers[i].Image) {
			c = &pod.Containers[i]
		}
	}
	if c == nil {
		t.Fatal("citybridge: no citybridge container")
	}
	for what, p := range map[string]*probe{"readiness": c.ReadinessProbe, "liveness": c.LivenessProbe} {
		if p == nil || p.HTTPGet == nil || p.HTTPGet.Path != "/healthz" {
			t.Errorf("citybridge: the %s probe is not on /healthz", what)
		}
	}
	// The node's name from its pod, its address from its machine.
	from := map[string]string{}
	env := map[string]string{}
	for _, e := range c.Env {
		env[e.Name] = e.Value
		if f := e.ValueFrom.FieldRef.FieldPath; f != "" {
			from["$("+e.Name+")"] = f
		}
	}
	if from[env["CITYBRIDGE_NODE"]] != "metadata.name" {
		t.Errorf("citybridge: CITYBRIDGE_NODE %q is not the pod's name", env["CITYBRIDGE_NODE"])
	}
	adv, ok := strings.CutPrefix(env["CITYBRIDGE_ADVERTISE"], "https://")
	host, _, _ := strings.Cut(adv, ":")
	if !ok || from[host] != "status.hostIP" {
		t.Errorf("citybridge: CITYBRIDGE_ADVERTISE %q is not https:// and the machine's address", env["CITYBRIDGE_ADVERTISE"])
	}
	// The shared certificate, which the node cannot start without.
	tls := false
	for _, v := range pod.Volumes {
		if v.Secret != nil && v.Secret.SecretName == "citybridge-tls" && !v.Secret.Optional && mounts(*c, v.Name) {
			tls = true
		}
	}
	if !tls {
		t.Error("citybridge: the Secret citybridge-tls is not mounted, or optional")
	}
	// Every etcd member in the nodes' configuration.
	cm := configOf(t, objs, pod, *c)
	if cm["tls-cert"] == nil || cm["tls-key"] == nil {
		t.Error("citybridge.toml: no tls-cert and tls-key: each node would make its own certificate")
	}
	endpoints := strings.Split(fmt.Sprint(cm["etcd"]), ",")
	for _, m := range members {
		found := false
		for _, e := range endpoints {
			found = found || strings.TrimSpace(e) == m
		}
		if !found {
			t.Errorf("citybridge.toml: etcd = %q lacks the member %s", cm["etcd"], m)
		}
	}
}

// configOf decodes the citybridge.toml of the ConfigMap the container
// mounts.
func configOf(t *testing.T, objs []k8sObject, pod podSpec, c container) map[string]any {
	t.Helper()
	for _, v := range pod.Volumes {
		if v.ConfigMap == nil || !mounts(c, v.Name) {
			continue
		}
		o := find(objs, "ConfigMap", v.ConfigMap.Name)
		if o == nil || o.Data["citybridge.toml"] == "" {
			t.Fatalf("ConfigMap %s: not there, or no citybridge.toml in it", v.ConfigMap.Name)
		}
		var m map[string]any
		if _, err := toml.Decode(o.Data["citybridge.toml"], &m); err != nil {
			t.Fatalf("ConfigMap %s: %v", o.Metadata.Name, err)
		}
		return m
	}
	t.Fatal("citybridge: no ConfigMap mounted")
	return nil
}

// isCitybridge says whether an image is citybridge's (any registry, any tag).
func isCitybridge(image string) bool {
	name, _, _ := strings.Cut(image[strings.LastIndex(image, "/")+1:], ":")
	return name == "citybridge"
}
