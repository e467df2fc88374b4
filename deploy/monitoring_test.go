package deploy

import (
	"encoding/json"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"go.yaml.in/yaml/v2"

	"citybridge/controlplane"
)

// metricRef finds citybridge metric names in PromQL.
var metricRef = regexp.MustCompile(`\bcitybridge_[a-zA-Z0-9_]+`)

// unknownNames returns the citybridge_* names in expr that the metrics
// collector does not emit.
func unknownNames(expr string) []string {
	known := controlplane.MetricNames()
	var out []string
	for _, name := range metricRef.FindAllString(expr, -1) {
		if !slices.Contains(known, name) {
			out = append(out, name)
		}
	}
	return out
}

func checkNames(t *testing.T, where, expr string) {
	t.Helper()
	for _, name := range unknownNames(expr) {
		t.Errorf("%s: %s is not a metric citybridge emits", where, name)
	}
}

func readYAML(t *testing.T, path string, v any) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := yaml.UnmarshalStrict(b, v); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
}

// TestPrometheusConfig: the scrape configuration scrapes /metrics over
// HTTPS with a bearer token file and loads the alert rules beside it.
func TestPrometheusConfig(t *testing.T) {
	var cfg struct {
		Global        map[string]string `yaml:"global"`
		RuleFiles     []string          `yaml:"rule_files"`
		ScrapeConfigs []struct {
			JobName       string `yaml:"job_name"`
			Scheme        string `yaml:"scheme"`
			MetricsPath   string `yaml:"metrics_path"`
			ScrapeTimeout string `yaml:"scrape_timeout"`
			Authorization struct {
				Type            string `yaml:"type"`
				CredentialsFile string `yaml:"credentials_file"`
			} `yaml:"authorization"`
			TLSConfig     map[string]any `yaml:"tls_config"`
			StaticConfigs []struct {
				Targets []string `yaml:"targets"`
			} `yaml:"static_configs"`
		} `yaml:"scrape_configs"`
	}
	readYAML(t, filepath.Join("prometheus", "prometheus.yml"), &cfg)
	if len(cfg.ScrapeConfigs) != 1 {
		t.Fatalf("%d scrape configs", len(cfg.ScrapeConfigs))
	}
	sc := cfg.ScrapeConfigs[0]
	if sc.JobName != "citybridge" || sc.Scheme != "https" || sc.MetricsPath != "/metrics" {
		t.Errorf("job %q scheme %q path %q", sc.JobName, sc.Scheme, sc.MetricsPath)
	}
	if sc.Authorization.Type != "Bearer" || sc.Authorization.CredentialsFile == "" {
		t.Errorf("authorization %+v: want a Bearer credentials_file", sc.Authorization)
	}
	if sc.TLSConfig["ca_file"] == nil && sc.TLSConfig["insecure_skip_verify"] != true {
		t.Errorf("tls_config %v trusts neither a CA file nor any certificate", sc.TLSConfig)
	}
	if len(sc.StaticConfigs) == 0 || len(sc.StaticConfigs[0].Targets) == 0 {
		t.Error("no target")
	}
	if !slices.Contains(cfg.RuleFiles, "alerts.yml") {
		t.Errorf("rule_files %v lacks alerts.yml", cfg.RuleFiles)
	}
}

// TestAlertRules: the rules parse, name only emitted metrics, and alert on
// a lost and a poor bridge after the link monitor's default delays, and on
// a cluster's node that cannot reach etcd.
func TestAlertRules(t *testing.T) {
	var rules struct {
		Groups []struct {
			Name  string `yaml:"name"`
			Rules []struct {
				Alert       string            `yaml:"alert"`
				Expr        string            `yaml:"expr"`
				For         string            `yaml:"for"`
				Labels      map[string]string `yaml:"labels"`
				Annotations map[string]string `yaml:"annotations"`
			} `yaml:"rules"`
		} `yaml:"groups"`
	}
	readYAML(t, filepath.Join("prometheus", "alerts.yml"), &rules)
	// MonitorConfig's defaults: LostAlertAfter 10 s, PoorAlertAfter 30 s.
	want := map[string]struct {
		expr string
		for_ time.Duration
	}{
		"CitybridgeBridgeLost": {`citybridge_bridge_link_state{state="lost"}`, 10 * time.Second},
		"CitybridgeBridgePoor": {`citybridge_bridge_link_state{state="poor"}`, 30 * time.Second},
		"CitybridgeDown":       {`up{job="citybridge"}`, 0},
		// A cluster's node that cannot reach etcd (docs/CLUSTER.md).
		"CitybridgeEtcdUnreachable": {`citybridge_cluster_etcd_up == 0`, 10 * time.Second},
	}
	seen := map[string]bool{}
	for _, g := range rules.Groups {
		for _, r := range g.Rules {
			where := "alert " + r.Alert
			checkNames(t, where, r.Expr)
			if r.Labels["severity"] == "" || r.Annotations["summary"] == "" {
				t.Errorf("%s: no severity or summary", where)
			}
			w, ok := want[r.Alert]
			if !ok {
				continue
			}
			seen[r.Alert] = true
			if !strings.Contains(r.Expr, w.expr) {
				t.Errorf("%s: expr %q does not test %s", where, r.Expr, w.expr)
			}
			d, err := time.ParseDuration(r.For)
			if err != nil {
				t.Errorf("%s: for %q: %v", where, r.For, err)
			} else if w.for_ > 0 && d != w.for_ {
				t.Errorf("%s: for %v, want %v", where, d, w.for_)
			}
		}
	}
	for name := range want {
		if !seen[name] {
			t.Errorf("no alert %s", name)
		}
	}
}

// TestGrafanaDashboard: the dashboard parses, every panel queries
// something, every query names only emitted metrics, and it shows what the
// technicians need.
func TestGrafanaDashboard(t *testing.T) {
	b, err := os.ReadFile(filepath.Join("grafana", "citybridge.json"))
	if err != nil {
		t.Fatal(err)
	}
	var dash struct {
		Title  string `json:"title"`
		UID    string `json:"uid"`
		Panels []struct {
			Title   string `json:"title"`
			Type    string `json:"type"`
			Targets []struct {
				Expr string `json:"expr"`
			} `json:"targets"`
		} `json:"panels"`
		Templating struct {
			List []struct {
				Name       string `json:"name"`
				Definition string `json:"definition"`
			} `json:"list"`
		} `json:"templating"`
	}
	if err := json.Unmarshal(b, &dash); err != nil {
		t.Fatal(err)
	}
	if dash.Title == "" || dash.UID == "" || len(dash.Panels) == 0 {
		t.Fatalf("title %q uid %q, %d panels", dash.Title, dash.UID, len(dash.Panels))
	}
	var all []string
	for _, p := range dash.Panels {
		if len(p.Targets) == 0 {
			t.Errorf("panel %q has no query", p.Title)
		}
		for _, q := range p.Targets {
			if q.Expr == "" {
				t.Errorf("panel %q: empty query", p.Title)
			}
			checkNames(t, "panel "+p.Title, q.Expr)
			all = append(all, q.Expr)
		}
	}
	for _, v := range dash.Templating.List {
		checkNames(t, "variable "+v.Name, v.Definition)
	}
	joined := strings.Join(all, "\n")
	for _, need := range []string{"citybridge_bridge_link_score", "citybridge_bridge_rtt_seconds",
		"citybridge_bridge_loss_ratio", "citybridge_bridge_media_bytes_per_second", "citybridge_bridge_layer",
		"histogram_quantile(0.99, sum by (le) (rate(citybridge_forward_latency_seconds_bucket",
		"rate(citybridge_rtp_packets_forwarded_total"} {
		if !strings.Contains(joined, need) {
			t.Errorf("no panel queries %s", need)
		}
	}
}

// TestUnknownNames: the name check rejects what the collector does not
// emit (a histogram's family name is no series), and accepts a histogram's
// series.
func TestUnknownNames(t *testing.T) {
	got := unknownNames(`histogram_quantile(0.99, rate(citybridge_forward_latency_seconds_bucket[1m])) ` +
		`+ citybridge_bridge_link_score + citybridge_bridge_rtt_ms + citybridge_peers_count + citybridge_forward_latency_seconds + up`)
	if want := []string{"citybridge_bridge_rtt_ms", "citybridge_peers_count", "citybridge_forward_latency_seconds"}; !slices.Equal(got, want) {
		t.Fatalf("unknown %v, want %v", got, want)
	}
}
