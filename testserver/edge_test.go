package testserver

import (
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"
)

const gamer = "/package?cpuArch=armv8&attrGamer=prod"

func TestEdgeHitMissAge(t *testing.T) {
	s, base, clk := newSample(t, Options{})
	r1, b1 := rawGet(t, base, "GET", gamer, nil)
	clk.advance(7 * time.Second)
	r2, b2 := rawGet(t, base, "GET", gamer, nil)
	if r1.Header.Get("X-Cache") != "Miss from cloudfront" || r2.Header.Get("X-Cache") != "Hit from cloudfront" {
		t.Fatalf("X-Cache %q then %q", r1.Header.Get("X-Cache"), r2.Header.Get("X-Cache"))
	}
	if r2.Header.Get("Age") != "7" || string(b1) != string(b2) {
		t.Fatalf("Age %q, same bytes %v", r2.Header.Get("Age"), string(b1) == string(b2))
	}
	if !strings.HasSuffix(r2.Header.Get("Via"), ".cloudfront.net (CloudFront)") || r2.Header.Get("X-Amz-Cf-Id") == "" || r2.Header.Get("X-Amz-Cf-Pop") == "" {
		t.Fatalf("CloudFront headers missing: %v", r2.Header)
	}
	if r1.Header.Get("Content-Disposition") != `attachment; filename="ota-package.tar.gz" ` {
		t.Fatalf("origin header changed by the edge: %q", r1.Header.Get("Content-Disposition"))
	}
	// Other order, other case, an ETag, Accept-Encoding: all different cache entries.
	for _, req := range []struct {
		path string
		hdrs [][2]string
	}{
		{"/package?attrGamer=prod&cpuArch=armv8", nil},
		{"/package?cpuarch=armv8&attrgamer=prod", nil},
		{gamer, [][2]string{{"If-None-Match", "x"}}},
		{gamer, [][2]string{{"Accept-Encoding", "gzip, deflate"}}},
	} {
		if r, _ := rawGet(t, base, "GET", req.path, req.hdrs); r.Header.Get("X-Cache") != "Miss from cloudfront" {
			t.Errorf("%s %v: %s, want a miss", req.path, req.hdrs, r.Header.Get("X-Cache"))
		}
	}
	// Viewer Cache-Control is ignored; max-age=100 holds for 100 s.
	if r, _ := rawGet(t, base, "GET", gamer, [][2]string{{"Cache-Control", "no-cache"}, {"Pragma", "no-cache"}}); r.Header.Get("X-Cache") != "Hit from cloudfront" {
		t.Fatalf("viewer no-cache bypassed the cache")
	}
	clk.advance(94 * time.Second)
	if r, _ := rawGet(t, base, "GET", gamer, nil); r.Header.Get("X-Cache") != "Miss from cloudfront" {
		t.Fatalf("after 101 s: %s, want a miss", r.Header.Get("X-Cache"))
	}
	if st := s.Stats(); st.OriginRequests != 6 || st.EdgeHits != 2 {
		t.Fatalf("stats %+v", st)
	}
}

func TestEdgeCollapsesConcurrentMisses(t *testing.T) {
	s, base, _ := newSample(t, Options{})
	s.SetOriginFault(300*time.Millisecond, 0)
	var wg sync.WaitGroup
	codes := make([]int, 20)
	for i := range codes {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r, _ := rawGet(t, base, "GET", gamer, nil)
			codes[i] = r.StatusCode
		}()
	}
	wg.Wait()
	for _, c := range codes {
		if c != 200 {
			t.Fatalf("codes %v", codes)
		}
	}
	if n := s.Stats().OriginRequests; n != 1 {
		t.Fatalf("%d origin requests for 20 concurrent misses, want 1", n)
	}
}

func TestEdgeErrorCaching(t *testing.T) {
	s, base, clk := newSample(t, Options{})
	origin := func() int64 { return s.Stats().OriginRequests }
	cases := []struct {
		name, path string
		status     int
		cached     bool
	}{
		{"404 with max-age", "/package?cpuArch=x86", 404, true},
		{"400 with max-age", "/package?os=beta", 400, true},
		{"HTML 500, no max-age: 10 s", "/package?cpuArch=armv8&os=it's", 500, true},
	}
	for _, c := range cases {
		before := origin()
		r1, _ := rawGet(t, base, "GET", c.path, nil)
		r2, _ := rawGet(t, base, "GET", c.path, nil)
		if r1.StatusCode != c.status || r2.StatusCode != c.status {
			t.Fatalf("%s: %d %d", c.name, r1.StatusCode, r2.StatusCode)
		}
		if got := origin() - before; (got == 1) != c.cached {
			t.Fatalf("%s: %d origin requests for two asks", c.name, got)
		}
		if r2.Header.Get("X-Cache") != "Error from cloudfront" {
			t.Fatalf("%s: X-Cache %q", c.name, r2.Header.Get("X-Cache"))
		}
	}
	// The 500 expires after 10 s; the 404 (max-age=100) does not.
	clk.advance(11 * time.Second)
	before := origin()
	rawGet(t, base, "GET", "/package?cpuArch=armv8&os=it's", nil)
	rawGet(t, base, "GET", "/package?cpuArch=x86", nil)
	if origin()-before != 1 {
		t.Fatalf("after 11 s: %d origin requests, want 1 (the 500 only)", origin()-before)
	}
	// An expired object is served stale when the origin fails.
	rawGet(t, base, "GET", gamer, nil)
	clk.advance(200 * time.Second)
	s.SetOriginFault(0, 503)
	r, body := rawGet(t, base, "GET", gamer, nil)
	if r.StatusCode != 200 || r.Header.Get("X-Cache") != "RefreshHit from cloudfront" || len(body) == 0 {
		t.Fatalf("stale on 503: %d %q", r.StatusCode, r.Header.Get("X-Cache"))
	}
}

func TestEdgeRangeAndLimits(t *testing.T) {
	_, base, _ := newSample(t, Options{})
	miss, whole := rawGet(t, base, "GET", gamer, [][2]string{{"Range", "bytes=0-99"}})
	if miss.StatusCode != 200 {
		t.Fatalf("Range on a miss: %d, want the whole object", miss.StatusCode)
	}
	r, b := rawGet(t, base, "GET", gamer, [][2]string{{"Range", "bytes=100-199"}})
	if r.StatusCode != 206 || string(b) != string(whole[100:200]) || r.Header.Get("Content-Range") != "bytes 100-199/"+itoa(int64(len(whole))) {
		t.Fatalf("Range on a hit: %d %q", r.StatusCode, r.Header.Get("Content-Range"))
	}
	for _, bad := range []string{"bytes=0-9,5-20", "bytes=x-y", "items=0-1"} {
		if r, b := rawGet(t, base, "GET", gamer, [][2]string{{"Range", bad}}); r.StatusCode != 200 || len(b) != len(whole) {
			t.Fatalf("Range %q: %d, want 200 whole", bad, r.StatusCode)
		}
	}
	if r, _ := rawGet(t, base, "GET", gamer, [][2]string{{"Range", "bytes=999999-"}}); r.StatusCode != 416 {
		t.Fatalf("unsatisfiable range: %d", r.StatusCode)
	}
	if r, _ := rawGet(t, base, "GET", "/package?cpuArch=armv8&pad="+strings.Repeat("a", 8200), nil); r.StatusCode != 414 {
		t.Fatalf("URL over 8192 bytes: %d", r.StatusCode)
	}
	big := [][2]string{{"X-Pad", strings.Repeat("b", 7000)}, {"X-Pad2", strings.Repeat("b", 7000)}, {"X-Pad3", strings.Repeat("b", 7000)}}
	if r, _ := rawGet(t, base, "GET", gamer, big); r.StatusCode != 413 {
		t.Fatalf("request over 20480 bytes: %d", r.StatusCode)
	}
	if r, _ := rawGet(t, base, "POST", gamer, nil); r.StatusCode != 403 {
		t.Fatalf("POST: %d, want 403", r.StatusCode)
	}
}

func TestLambdaEdge(t *testing.T) {
	_, base, _ := newSample(t, Options{Origin: OriginLambda})
	if r, _ := rawGet(t, base, "GET", "/package", nil); r.StatusCode != 502 {
		t.Fatalf("empty query in Lambda mode: %d, want 502", r.StatusCode)
	}
	r, _ := rawGet(t, base, "GET", "/package?cpuArch=armv8", nil)
	if r.StatusCode != 405 || r.Header.Get("X-Cache") != "Error from cloudfront" {
		t.Fatalf("full payload via the Lambda edge: %d %s", r.StatusCode, r.Header.Get("X-Cache"))
	}
}

// TestLambdaResponseLimit: a Lambda@Edge answer over 1 MB becomes a 502 at the edge.
func TestLambdaResponseLimit(t *testing.T) {
	s, base, _ := newSample(t, Options{Origin: OriginLambda})
	c := s.Catalog()
	big := c.WithRows(append([]Row(nil), c.Rows...))
	for i := 0; i < 3500; i++ { // ~350 bytes of JSON each with the extension fields
		big.Rows = append(big.Rows, Row{App: fmt.Sprintf("app%05d_with_a_long_name", i), Env: "prod", Version: "1.0.0", File: c.Rows[0].File, DeviceAttr: map[string]bool{"big": true}})
	}
	if err := big.Save(); err != nil {
		t.Fatal(err)
	}
	if err := s.Reload(); err != nil {
		t.Fatal(err)
	}
	r, _ := rawGet(t, base, "GET", "/package?cpuArch=armv8&attrBig=prod&payloadType=metadataOnly", nil)
	if r.StatusCode != 502 {
		t.Fatalf("a %d-row answer from Lambda: %d, want 502", 3500, r.StatusCode)
	}
	if r, _ := rawGet(t, base, "GET", "/package?cpuArch=armv8&payloadType=metadataOnly", nil); r.StatusCode != 200 {
		t.Fatalf("a small answer: %d", r.StatusCode)
	}
}
