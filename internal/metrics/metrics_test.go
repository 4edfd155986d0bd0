package metrics

import (
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/ota-agent/ota-agent/store"
)

// What Write produces parses with Prometheus's own parser, labels escaped, and replaces the
// file whole.
func TestWriteParses(t *testing.T) {
	path := filepath.Join(t.TempDir(), "sub", "ota.prom")
	trying, keys := true, int64(3)
	s := Snapshot{
		LastCheck: &store.CheckRecord{Time: time.Unix(1700000000, 0), Result: "updated", Duration: 2 * time.Second},
		State: &store.State{Generation: store.Generation{N: 4, Slot: "b", Apps: map[string]store.App{
			"sb": {Version: `1.0 "beta"`, MD5: "m"}}}, Status: store.StatusTrial},
		InProgress: "trial", Refused: 2, OSTrying: &trying, KeySet: &keys,
		Counters: store.Counters{Checks: 7, Updates: 2},
	}
	if err := Write(path, s); err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	parser := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := parser.TextToMetricFamilies(f)
	if err != nil {
		t.Fatal(err)
	}
	for name, want := range map[string]float64{"ota_agent_generation": 4, "ota_agent_refused_releases": 2, "ota_agent_checks_total": 7, "ota_agent_os_trying": 1, "ota_agent_trust_key_set_version": 3} {
		fam, ok := fams[name]
		if !ok {
			t.Fatalf("%s missing", name)
		}
		m := fam.GetMetric()[0]
		got := m.GetGauge().GetValue() + m.GetCounter().GetValue()
		if got != want {
			t.Errorf("%s = %v, want %v", name, got, want)
		}
	}
	if v := fams["ota_agent_app_info"].GetMetric()[0].GetLabel(); v[0].GetName() != "app" || v[3].GetValue() != "b" {
		t.Errorf("app_info labels %v", v)
	}
	if _, ok := fams["ota_agent_trust_stale"]; ok {
		t.Error("staleness reported while not watched")
	}
}
