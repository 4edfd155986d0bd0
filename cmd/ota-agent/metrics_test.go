package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// metricsFile parses the agent's metrics file with Prometheus's own text parser.
func metricsFile(t *testing.T, path string) map[string]float64 {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	parser := expfmt.NewTextParser(model.UTF8Validation)
	families, err := parser.TextToMetricFamilies(f)
	if err != nil {
		t.Fatalf("the real parser refuses %s: %v", path, err)
	}
	out := map[string]float64{}
	for name, fam := range families {
		for _, m := range fam.GetMetric() {
			key := name
			for _, l := range m.GetLabel() {
				key += "," + l.GetName() + "=" + l.GetValue()
			}
			switch {
			case m.Gauge != nil:
				out[key] = m.GetGauge().GetValue()
			case m.Counter != nil:
				out[key] = m.GetCounter().GetValue()
			}
		}
	}
	return out
}

// metrics.textfile: written after every check, accepted by the Prometheus parser, with the
// installed versions, the status and counters that move.
func TestMetricsTextfile(t *testing.T) {
	prom := filepath.Join(t.TempDir(), "run", "ota-agent", "metrics.prom")
	w := newWorld(t, 4096, "metrics:\n  textfile: "+prom+"\n")
	w.mustAgent("check", "--once")
	m := metricsFile(t, prom)
	for key, want := range map[string]float64{
		"ota_agent_last_check_success":      1,
		"ota_agent_generation":              1,
		"ota_agent_status,status=committed": 1,
		"ota_agent_checks_total":            1,
		"ota_agent_updates_total":           1,
		"ota_agent_app_info,app=scoreboard,version=1.0.0,md5=" + scoreboardMD5(w) + ",slot=a": 1,
	} {
		if got, ok := m[key]; !ok || got != want {
			t.Errorf("%s = %v (present %v), want %v", key, got, ok, want)
		}
	}
	if m["ota_agent_downloaded_bytes_total"] <= 0 {
		t.Error("no bytes counted")
	}
	w.release("scoreboard", "2.0.0", randomBytes(5000, 4), 60)
	w.mustAgent("check", "--once")
	w.agent(nil, "--server-url", "http://127.0.0.1:1/package", "check", "--once")
	m = metricsFile(t, prom)
	for key, want := range map[string]float64{
		"ota_agent_last_check_success": 0, "ota_agent_generation": 2, "ota_agent_checks_total": 3,
		"ota_agent_failed_checks_total": 1, "ota_agent_updates_total": 2,
	} {
		if got := m[key]; got != want {
			t.Errorf("after three checks: %s = %v, want %v", key, got, want)
		}
	}
	if entries, _ := os.ReadDir(filepath.Dir(prom)); len(entries) != 1 {
		t.Errorf("temporary files left beside the metrics file: %v", entries)
	}
	var apps []string
	for k := range m {
		if strings.HasPrefix(k, "ota_agent_app_info") {
			apps = append(apps, k)
		}
	}
	if len(apps) != 3 {
		t.Errorf("app_info series: %v", apps)
	}
}

func scoreboardMD5(w *world) string {
	for _, r := range w.srv.Catalog().Rows {
		if r.App == "scoreboard" && r.Env == "prod" {
			return r.MD5
		}
	}
	return ""
}
