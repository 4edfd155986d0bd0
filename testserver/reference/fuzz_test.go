package reference

import (
	"strings"
	"testing"
)

// FuzzParseQuery: whatever a viewer sends, the origin's query parsing neither panics nor
// returns values that are blank, keys that repeat, or anything not lower-case (an empty key
// is what parse_qs gives for "=v", and the reference then pins an app named "").
func FuzzParseQuery(f *testing.F) {
	for _, s := range []string{"cpuArch=armv8&attrGamer=prod", "a=1&A=2&b=&c", "x=%zz%41+b", "os=it's", "k=%C3%A9"} {
		f.Add(s, true)
		f.Add(s, false)
	}
	f.Fuzz(func(t *testing.T, raw string, ascii bool) {
		params, err := parseQuery(raw, ascii)
		if err != nil {
			return
		}
		seen := map[string]bool{}
		for _, p := range params {
			if p.value == "" || seen[p.key] || p.key != strings.ToLower(p.key) || p.value != strings.ToLower(p.value) {
				t.Fatalf("bad param %+v from %q", p, raw)
			}
			seen[p.key] = true
		}
		sel, err := parseSelection(params, false)
		if err == nil && (sel.cpuArch == "" || strings.Contains(sel.os, "'")) {
			t.Fatalf("selection %+v from %q", sel, raw)
		}
	})
}

func TestParseQuery(t *testing.T) {
	got, err := parseQuery("a=1&B=x+y&b=2&c=&d&A=3&e=%41%zz&f=%FF", false)
	if err != nil {
		t.Fatal(err)
	}
	want := []param{{"a", "3"}, {"b", "2"}, {"e", "a%zz"}, {"f", "\ufffd"}}
	if len(got) != len(want) {
		t.Fatalf("got %v, want %v", got, want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("got %v, want %v", got, want)
		}
	}
	if _, err := parseQuery("a=%C3%A9", true); err != errAppCrash {
		t.Fatalf("AppRunner mode accepted non-ASCII: %v", err)
	}
}
