package testserver

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"encoding/json"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"github.com/ota-agent/ota-agent/packaging"
	"github.com/ota-agent/ota-agent/testserver/reference"
)

func members(t *testing.T, body []byte) ([]string, *packaging.Details) {
	t.Helper()
	zr, err := gzip.NewReader(bytes.NewReader(body))
	if err != nil {
		t.Fatalf("not gzip: %v (%.100q)", err, body)
	}
	tr := tar.NewReader(zr)
	var names []string
	var d *packaging.Details
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return names, d
		}
		if err != nil {
			t.Fatal(err)
		}
		names = append(names, h.Name)
		if h.Name == packaging.DetailsName {
			if d, err = packaging.DecodeDetails(tr); err != nil {
				t.Fatal(err)
			}
		}
	}
}

// TestProtocolQuirks is protocol.md 1.1-1.3 as a table, through the origin with extensions.
func TestProtocolQuirks(t *testing.T) {
	s, base, _ := newSample(t, Options{NoEdge: true})
	md5 := map[string]string{}
	for _, r := range s.Catalog().Rows {
		md5[r.Key()] = r.MD5
	}
	cases := []struct {
		name, path string
		inm        string
		status     int
		members    string // sorted binaries, or the exact body for non-tar answers
	}{
		{"seed example 1", "/package?cpuArch=armv8", "", 200, "os_armv8_1.1.0"},
		{"seed example 2", "/package?cpuArch=armv8&os=beta", "", 200, "os_armv8_2.0.0"},
		{"seed example 3", "/package?cpuArch=armv8&attrGamer=prod", "", 200, "os_armv8_1.1.0 scoreboard_1.0.0 videoStreamer_0.0.1"},
		{"seed example 4", "/package?cpuArch=armv8&attrGamer=prod&attrCellular=prod", "", 200, "modemFW_1.0 os_armv8_1.1.0 scoreboard_1.0.0 videoStreamer_0.0.1"},
		{"lower-casing keys and values", "/package?CPUARCH=ARMV8&OS=BETA", "", 200, "os_armv8_2.0.0"},
		{"first repeat wins", "/package?cpuArch=armv8&cpuArch=armv7", "", 200, "os_armv8_1.1.0"},
		{"later key of other case overwrites", "/package?cpuArch=armv7&CPUARCH=armv8", "", 200, "os_armv8_1.1.0"},
		{"blank values dropped", "/package?cpuArch=armv8&os=&attrGamer=", "", 200, "os_armv8_1.1.0"},
		{"key without = dropped", "/package?cpuArch=armv8&os", "", 200, "os_armv8_1.1.0"},
		{"semicolon is part of the value", "/package?cpuArch=armv8;os=beta", "", 404, `{"error": "No deployment package found"}`},
		{"plus is a space", "/package?cpuArch=armv8&os=be+ta", "", 404, `{"error": "No deployment package found"}`},
		{"percent decoding", "/package?cpuArch=arm%76%38", "", 200, "os_armv8_1.1.0"},
		{"unknown params pin nothing", "/package?cpuArch=armv8&color=blue", "", 200, "os_armv8_1.1.0"},
		{"pin lower-case app", "/package?cpuArch=armv8&scoreboard=beta", "", 200, "os_armv8_1.1.0 scoreboard_2.0.0"},
		{"pin camelCase app cannot match", "/package?cpuArch=armv8&videoStreamer=beta", "", 200, "os_armv8_1.1.0"},
		{"two rows of one app", "/package?cpuArch=armv8&attrCamera=beta&attrGamer=prod", "", 200, "os_armv8_1.1.0 scoreboard_1.0.0 videoStreamer_0.0.1 videoStreamer_0.1.2"},
		{"no os row, attrs still answer", "/package?cpuArch=armv8&os=staging&attrGamer=prod", "", 200, "scoreboard_1.0.0 videoStreamer_0.0.1"},
		{"unknown arch", "/package?cpuArch=x86", "", 404, `{"error": "No deployment package found"}`},
		{"missing cpuArch", "/package?os=beta", "", 400, `{"error": "Missing cpuArch query param"}`},
		{"bad payloadType", "/package?cpuArch=armv8&payloadType=nope", "", 400, `{"error": "Invalid payloadType param"}`},
		{"payloadType any case", "/package?cpuArch=armv8&payloadType=METADATAONLY", "", 200, ""},
		{"quote in a value: HTML 500", "/package?cpuArch=armv8&os=it's", "", 500, ""},
		{"quote in a key: HTML 500", "/package?cpuArch=armv8&it's=prod", "", 500, ""},
		{"odd attr key: HTML 500", "/package?cpuArch=armv8&attr=prod", "", 500, ""},
		{"attr key not an identifier: HTML 500", "/package?cpuArch=armv8&attr-x=prod", "", 500, ""},
		{"non-ASCII percent-encoded: HTML 500", "/package?cpuArch=armv8&os=b%C3%A9ta", "", 500, ""},
		{"ETag subset", "/package?cpuArch=armv8&attrGamer=prod", md5["os_armv8_1.1.0"], 200, "scoreboard_1.0.0 videoStreamer_0.0.1"},
		{"all ETags: 304 empty", "/package?cpuArch=armv8&attrGamer=prod", md5["os_armv8_1.1.0"] + "," + md5["scoreboard_1.0.0"] + "," + md5["videoStreamer_0.0.1"], 304, ""},
		{"ETag after comma+space is no match", "/package?cpuArch=armv8", "x, " + md5["os_armv8_1.1.0"], 200, "os_armv8_1.1.0"},
		{"quoted ETag is no match", "/package?cpuArch=armv8", `"` + md5["os_armv8_1.1.0"] + `"`, 200, "os_armv8_1.1.0"},
		{"upper-case ETag is no match", "/package?cpuArch=armv8", strings.ToUpper(md5["os_armv8_1.1.0"]), 200, "os_armv8_1.1.0"},
		{"star is no match", "/package?cpuArch=armv8", "*", 200, "os_armv8_1.1.0"},
		{"metadata 304", "/package?cpuArch=armv8&payloadType=metadataOnly", md5["os_armv8_1.1.0"], 304, ""},
		{"health check", "/", "", 200, "Hello World"},
		{"other path: HTML 404", "/nope", "", 404, ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			var hdrs [][2]string
			if c.inm != "" {
				hdrs = append(hdrs, [2]string{"If-None-Match", c.inm})
			}
			resp, body := rawGet(t, base, "GET", c.path, hdrs)
			if resp.StatusCode != c.status {
				t.Fatalf("status %d, want %d: %.200s", resp.StatusCode, c.status, body)
			}
			ct := resp.Header.Get("Content-Type")
			switch {
			case c.status == 304:
				if len(body) != 0 || resp.Header.Get("Cache-Control") != "max-age=100" {
					t.Fatalf("304 with body %q / headers %v", body, resp.Header)
				}
			case c.status == 500 || (c.status == 404 && c.path == "/nope"):
				if ct != reference.HTMLType {
					t.Fatalf("content type %q, want HTML", ct)
				}
			case ct == "application/x-gzip":
				names, d := members(t, body)
				if names[len(names)-1] != packaging.DetailsName {
					t.Fatalf("package_details.json not last: %v", names)
				}
				got := names[:len(names)-1]
				sort.Strings(got)
				if strings.Join(got, " ") != c.members {
					t.Fatalf("members %v, want %s", got, c.members)
				}
				for _, app := range d.Apps {
					if e := d.Entries[app]; e.SHA256 == "" || e.Size != 4096 || !strings.HasSuffix(e.Download, "/firmware/"+app+"_"+e.LatestVersion) {
						t.Fatalf("extension fields missing in %+v", e)
					}
				}
			case c.members != "":
				if string(body) != c.members {
					t.Fatalf("body %s, want %s", body, c.members)
				}
			}
		})
	}
}

// TestLambdaHeaderCase: the Lambda handler reads If-None-Match case-sensitively, first value
// only, and refuses full payloads before anything else.
func TestLambdaHeaderCase(t *testing.T) {
	s, base, _ := newSample(t, Options{Origin: OriginLambda, NoEdge: true})
	m := s.Catalog().Rows[1].MD5 // os_armv8 prod
	p := "/anything?cpuArch=armv8&payloadType=metadataOnly"
	if resp, _ := rawGet(t, base, "GET", p, [][2]string{{"If-None-Match", m}}); resp.StatusCode != 304 {
		t.Fatalf("exact case: %d, want 304", resp.StatusCode)
	}
	resp, body := rawGet(t, base, "GET", p, [][2]string{{"if-none-match", m}})
	if resp.StatusCode != 200 {
		t.Fatalf("lower-case header: %d, want 200 (ETags lost)", resp.StatusCode)
	}
	var d map[string]map[string]any
	json.Unmarshal(body, &d)
	if d["os_armv8"]["status_code"] != float64(200) {
		t.Fatalf("lower-case ETag honoured: %s", body)
	}
	if resp, _ := rawGet(t, base, "GET", p, [][2]string{{"If-None-Match", "x"}, {"If-None-Match", m}}); resp.StatusCode != 200 {
		t.Fatalf("second value used: %d", resp.StatusCode)
	}
	if resp, body := rawGet(t, base, "GET", "/package?os=beta", nil); resp.StatusCode != 405 || !strings.Contains(string(body), "metadataOnly") {
		t.Fatalf("full payload in Lambda: %d %s (405 comes before the cpuArch check)", resp.StatusCode, body)
	}
}

func TestReferenceOnlyStripsExtensions(t *testing.T) {
	_, base, _ := newSample(t, Options{NoEdge: true, ReferenceOnly: true})
	_, body := rawGet(t, base, "GET", "/package?cpuArch=armv8&payloadType=metadataOnly", nil)
	for _, f := range []string{"md5", "sha256", "size", "serial", "download"} {
		if strings.Contains(string(body), `"`+f+`"`) {
			t.Fatalf("reference-only answer carries %q: %s", f, body)
		}
	}
}

func TestSetRowRollsOut(t *testing.T) {
	s, base, _ := newSample(t, Options{NoEdge: true})
	r := s.Catalog().Rows[5] // scoreboard prod 1.0.0
	r.Version = "1.0.1"
	if err := s.SetRow(r); err != nil {
		t.Fatal(err)
	}
	_, body := rawGet(t, base, "GET", "/package?cpuArch=armv8&attrGamer=prod&payloadType=metadataOnly", nil)
	if !strings.Contains(string(body), `"scoreboard": {"latestVersion": "1.0.1"`) {
		t.Fatalf("roll-out not served: %s", body)
	}
	s.DeleteRow("scoreboard", "prod")
	_, body = rawGet(t, base, "GET", "/package?cpuArch=armv8&attrGamer=prod&payloadType=metadataOnly", nil)
	if strings.Contains(string(body), "scoreboard") {
		t.Fatalf("deleted row served: %s", body)
	}
}

func decodeDetailsString(s string) (*packaging.Details, error) {
	return packaging.DecodeDetails(strings.NewReader(s))
}

// TestReloadReadsTheCatalogAgain: what SIGHUP does in ota-testserver.
func TestReloadReadsTheCatalogAgain(t *testing.T) {
	s, base, _ := newSample(t, Options{NoEdge: true})
	dir := s.Catalog().Dir()
	raw, _ := os.ReadFile(filepath.Join(dir, "catalog.json"))
	os.Rename(filepath.Join(dir, "blobs/os_armv8_1.1.0"), filepath.Join(dir, "blobs/os_armv8_1.1.1"))
	os.WriteFile(filepath.Join(dir, "catalog.json"), []byte(strings.Replace(strings.Replace(string(raw), `"version": "1.1.0"`, `"version": "1.1.1"`, 1), "blobs/os_armv8_1.1.0", "blobs/os_armv8_1.1.1", 1)), 0o644)
	if err := s.Reload(); err != nil {
		t.Fatal(err)
	}
	_, body := rawGet(t, base, "GET", "/package?cpuArch=armv8&payloadType=metadataOnly", nil)
	if !strings.Contains(string(body), `"latestVersion": "1.1.1"`) {
		t.Fatalf("reload not served: %s", body)
	}
	os.WriteFile(filepath.Join(dir, "catalog.json"), []byte("{broken"), 0o644)
	if err := s.Reload(); err == nil {
		t.Fatal("a broken catalog was accepted")
	}
	if _, body := rawGet(t, base, "GET", "/package?cpuArch=armv8&payloadType=metadataOnly", nil); !strings.Contains(string(body), "1.1.1") {
		t.Fatal("a failed reload lost the old catalog")
	}
}

// TestRepeatedIfNoneMatchLines: the Flask origin sees repeated If-None-Match lines joined by
// "," (its WSGI server joins them), so ETags split over lines still make a 304; through the
// edge too, where every line is part of the cache key.
func TestRepeatedIfNoneMatchLines(t *testing.T) {
	for _, noEdge := range []bool{true, false} {
		_, base, _ := newSample(t, Options{NoEdge: noEdge})
		p := "/package?cpuArch=armv8&attrGamer=prod&payloadType=metadataOnly"
		_, all := rawGet(t, base, "GET", p+"&x=1", nil)
		var d map[string]struct{ MD5 string }
		json.Unmarshal(all, &d)
		var md5s []string
		for _, e := range d {
			md5s = append(md5s, e.MD5)
		}
		if len(md5s) != 3 {
			t.Fatalf("selected rows: %s", all)
		}
		md5s = []string{md5s[0], md5s[1] + "," + md5s[2]}
		// One line with the first only: the others are still sent (and cached so at the edge).
		if resp, _ := rawGet(t, base, "GET", p, [][2]string{{"If-None-Match", md5s[0]}}); resp.StatusCode != 200 {
			t.Fatalf("edge=%v one ETag: %d, want 200", !noEdge, resp.StatusCode)
		}
		resp, body := rawGet(t, base, "GET", p, [][2]string{{"If-None-Match", md5s[0]}, {"If-None-Match", md5s[1]}})
		if resp.StatusCode != 304 {
			t.Fatalf("edge=%v two lines: %d %s, want 304 as the reference answers", !noEdge, resp.StatusCode, body)
		}
	}
}
