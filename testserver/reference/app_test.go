package reference

import (
	"io"
	"strings"
	"testing"

	"github.com/ota-agent/ota-agent/internal/catalog"
)

// app serves the sample rows, each with an MD5 named after it.
func app(lambda bool) *App {
	rows := make([]catalog.Row, len(catalog.SampleRows))
	copy(rows, catalog.SampleRows)
	for i := range rows {
		rows[i].MD5 = "md5-" + rows[i].Key()
	}
	return &App{Lambda: lambda, Rows: func(match func(*catalog.Row) bool) ([]catalog.Row, string) {
		var out []catalog.Row
		for i := range rows {
			if match(&rows[i]) {
				out = append(out, rows[i])
			}
		}
		return out, "ota-bucket"
	}}
}

// The reference's answers, by route and query: its errors, a 304 when every selected row's
// MD5 is sent, else the metadata of the rows selected.
func TestServe(t *testing.T) {
	rows, _ := app(false).Rows(func(*catalog.Row) bool { return true })
	var md5s []string
	for _, r := range rows {
		md5s = append(md5s, r.MD5)
	}
	all := strings.Join(md5s, ",")
	for _, c := range []struct {
		lambda      bool
		path, query string
		inm         string
		status      int
		body        string
	}{
		{false, "/", "", "", 200, "Hello World"},
		{false, "/nope", "", "", 404, "Not Found"},
		{false, "/package", "os=prod", "", 400, `{"error": "Missing cpuArch query param"}`},
		{false, "/package", "cpuArch=armv8&payloadType=bogus", "", 400, "Invalid payloadType param"},
		{false, "/package", "cpuArch=sparc&payloadType=metadataOnly", "", 404, "No deployment package found"},
		{false, "/package", "cpuArch=armv8&os=it's", "", 500, "Internal Server Error"},
		{true, "/anything", "cpuArch=armv8", "", 405, "'Full Payload' not available"},
		{true, "/anything", "cpuArch=armv8&payloadType=metadataOnly", "", 200, `"os_armv8": {"latestVersion": "1.1.0", "url": "s3://ota-bucket/os_armv8_1.1.0", "status_code": 200}`},
		{false, "/package", "cpuArch=armv8&attrGamer=prod&payloadType=metadataOnly", all, 304, ""},
	} {
		req := &Request{Method: "GET", Path: c.path, RawQuery: c.query}
		if c.inm != "" {
			req.Headers = [][2]string{{"If-None-Match", c.inm}}
		}
		rep := app(c.lambda).Serve(req)
		body, _ := io.ReadAll(rep.Body)
		if rep.Status != c.status || !strings.Contains(string(body), c.body) {
			t.Errorf("lambda=%v %s?%s: %d %s, want %d %q", c.lambda, c.path, c.query, rep.Status, body, c.status, c.body)
		}
	}
}
