package config

import (
	"fmt"
	"os"
	"regexp"
	"sort"
	"strings"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"
)

// docDefault is how the documentation writes a key's default.
func docDefault(k KeyDoc) string {
	switch {
	case k.Map:
		return "{}"
	case k.List:
		return "[]"
	}
	return k.Default
}

// dist/config.yaml lists exactly Config's keys, each with its default.
func TestDistConfigListsEveryKey(t *testing.T) {
	raw, err := os.ReadFile("../../dist/config.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var doc map[string]any
	if err := yaml.Unmarshal(raw, &doc); err != nil {
		t.Fatal(err)
	}
	got := map[string]string{}
	var walk func(prefix string, m map[string]any)
	walk = func(prefix string, m map[string]any) {
		for k, v := range m {
			switch t := v.(type) {
			case map[string]any:
				if len(t) == 0 {
					got[prefix+k] = "{}"
				} else {
					walk(prefix+k+".", t)
				}
			case []any:
				got[prefix+k] = fmt.Sprint(t)
			case nil:
				got[prefix+k] = ""
			default:
				got[prefix+k] = fmt.Sprint(t)
			}
		}
	}
	walk("", doc)
	for _, k := range Keys() {
		v, ok := got[k.Key]
		if !ok {
			t.Errorf("dist/config.yaml lacks %s", k.Key)
			continue
		}
		delete(got, k.Key)
		if v != docDefault(k) {
			t.Errorf("dist/config.yaml: %s: %q, the default is %q", k.Key, v, docDefault(k))
		}
	}
	for k := range got {
		t.Errorf("dist/config.yaml has %s, which is not a key", k)
	}
}

// The README's configuration table lists exactly Config's keys, each with its default.
func TestReadmeTableListsEveryKey(t *testing.T) {
	raw, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	text := string(raw)
	start := strings.Index(text, "## Configuration reference")
	end := strings.Index(text[start+1:], "\n## ")
	tick := regexp.MustCompile("`([^`]*)`")
	got := map[string]string{}
	for _, line := range strings.Split(text[start:start+1+end], "\n") {
		cells := strings.Split(line, "|")
		if len(cells) < 4 || !strings.HasPrefix(strings.TrimSpace(cells[1]), "`") {
			continue
		}
		keys, defs := tick.FindAllStringSubmatch(cells[1], -1), tick.FindAllStringSubmatch(cells[2], -1)
		for i, k := range keys {
			d := ""
			if i < len(defs) {
				d = defs[i][1]
			}
			got[k[1]] = d
		}
	}
	var missing []string
	for _, k := range Keys() {
		d, ok := got[k.Key]
		if !ok {
			missing = append(missing, k.Key)
			continue
		}
		delete(got, k.Key)
		if d != docDefault(k) {
			t.Errorf("README: %s: default %q, Config says %q", k.Key, d, docDefault(k))
		}
	}
	sort.Strings(missing)
	if len(missing) > 0 {
		t.Errorf("the README's table lacks %v", missing)
	}
	for k := range got {
		t.Errorf("the README's table has %s, which is not a key", k)
	}
}

// net.schedule: the first entry that covers the device-local time, across midnight too;
// else net.max_rate; bad entries name themselves.
func TestBandwidthSchedule(t *testing.T) {
	c := &Config{}
	c.Net.MaxRate = 1 << 20
	c.Net.Schedule = []string{"22:00-06:00 0", "12:00-13:00 64KiB/s", "* 128KiB"}
	at := func(h, m int) int64 { return c.rateAt(time.Date(2026, 11, 30, h, m, 0, 0, time.Local)) }
	for _, x := range []struct {
		h, m int
		want int64
	}{{23, 0, 0}, {2, 30, 0}, {5, 59, 0}, {6, 0, 128 << 10}, {12, 30, 64 << 10}, {13, 0, 128 << 10}} {
		if got := at(x.h, x.m); got != x.want {
			t.Errorf("%02d:%02d: %d, want %d", x.h, x.m, got, x.want)
		}
	}
	c.Net.Schedule = []string{"12:00-13:00 64KiB/s"}
	if got := at(8, 0); got != 1<<20 {
		t.Errorf("outside every entry: %d, want net.max_rate", got)
	}
	for _, bad := range []string{"22:00 0", "25:00-06:00 0", "* fast", "22:00-06:00"} {
		if _, err := parseSchedule([]string{bad}); err == nil || !strings.Contains(err.Error(), bad) {
			t.Errorf("%q accepted or not named: %v", bad, err)
		}
	}
}
