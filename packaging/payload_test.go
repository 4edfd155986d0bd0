package packaging

import (
	"archive/tar"
	"bufio"
	"bytes"
	"compress/gzip"
	"encoding/json"
	"errors"
	"io"
	"os"
	"strings"
	"testing"
	"time"
)

func samplePayload(t testing.TB) []byte {
	var buf bytes.Buffer
	w := NewPayloadWriter(&buf, time.Now())
	if err := w.Add("scoreboard_1.0.0", 5, strings.NewReader("hello")); err != nil {
		t.Fatal(err)
	}
	d := &Details{}
	d.Set("scoreboard", Entry{LatestVersion: "1.0.0", URL: "s3://b/scoreboard_1.0.0", StatusCode: 200})
	if err := w.Close(d.Marshal()); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func readAll(data []byte) (map[string]string, *Details, error) {
	r, err := NewPayloadReader(bytes.NewReader(data), DefaultLimits)
	if err != nil {
		return nil, nil, err
	}
	got := map[string]string{}
	for {
		name, _, body, err := r.Next()
		if err == io.EOF {
			return got, r.Details(), nil
		}
		if err != nil {
			return nil, nil, err
		}
		b, err := io.ReadAll(body)
		if err != nil {
			return nil, nil, err
		}
		got[name] = string(b)
	}
}

func TestPayloadRoundTrip(t *testing.T) {
	data := samplePayload(t)
	got, d, err := readAll(data)
	if err != nil {
		t.Fatal(err)
	}
	if got["scoreboard_1.0.0"] != "hello" || d.Entries["scoreboard"].StatusCode != 200 {
		t.Fatalf("got %v %+v", got, d)
	}
	// Python's tarfile pads the archive to a 10240-byte record; so do we.
	zr, _ := gzip.NewReader(bytes.NewReader(data))
	plain, _ := io.ReadAll(zr)
	if len(plain)%recordSize != 0 {
		t.Fatalf("tar is %d bytes, not a multiple of %d", len(plain), recordSize)
	}
}

// hostile builds a gzip'd tar from raw headers, for the cases a PayloadWriter never makes.
func hostile(t *testing.T, hdrs []*tar.Header, after []byte) []byte {
	var buf bytes.Buffer
	gz := gzip.NewWriter(&buf)
	tw := tar.NewWriter(gz)
	for _, h := range hdrs {
		if h.Typeflag == 0 {
			h.Typeflag = tar.TypeReg
		}
		if err := tw.WriteHeader(h); err != nil {
			t.Fatal(err)
		}
		if h.Typeflag == tar.TypeReg {
			tw.Write(bytes.Repeat([]byte{'x'}, int(h.Size)))
		}
	}
	tw.Close()
	gz.Write(after)
	gz.Close()
	return buf.Bytes()
}

func TestPayloadReaderRefusesHostileArchives(t *testing.T) {
	details := func() *tar.Header {
		return &tar.Header{Name: DetailsName, Size: 2, Mode: 0o644}
	}
	// package_details.json body is "{}"; hostile() writes 'x' bytes, so build it by hand where needed.
	ok := sampleWithDetails(t)
	cases := []struct {
		name string
		data []byte
	}{
		{"not gzip", []byte("PK\x03\x04 a zip file")},
		{"empty", nil},
		{"path traversal", hostile(t, []*tar.Header{{Name: "../etc/passwd", Size: 1}, details()}, nil)},
		{"absolute path", hostile(t, []*tar.Header{{Name: "/etc/passwd", Size: 1}, details()}, nil)},
		{"subdirectory", hostile(t, []*tar.Header{{Name: "a/b_1", Size: 1}, details()}, nil)},
		{"symlink", hostile(t, []*tar.Header{{Name: "x_1", Typeflag: tar.TypeSymlink, Linkname: "/etc/shadow"}, details()}, nil)},
		{"hard link", hostile(t, []*tar.Header{{Name: "x_1", Typeflag: tar.TypeLink, Linkname: "/etc/shadow"}, details()}, nil)},
		{"device", hostile(t, []*tar.Header{{Name: "x_1", Typeflag: tar.TypeChar, Devmajor: 1, Devminor: 3}, details()}, nil)},
		{"fifo", hostile(t, []*tar.Header{{Name: "x_1", Typeflag: tar.TypeFifo}, details()}, nil)},
		{"directory", hostile(t, []*tar.Header{{Name: "x_1/", Typeflag: tar.TypeDir}, details()}, nil)},
		{"duplicate", hostile(t, []*tar.Header{{Name: "x_1", Size: 1}, {Name: "x_1", Size: 1}, details()}, nil)},
		{"xattr", hostile(t, []*tar.Header{{Name: "x_1", Size: 1, PAXRecords: map[string]string{"SCHILY.xattr.security.capability": "x"}, Format: tar.FormatPAX}, details()}, nil)},
		{"no details", hostile(t, []*tar.Header{{Name: "x_1", Size: 1}}, nil)},
		{"bad details json", hostile(t, []*tar.Header{{Name: "x_1", Size: 1}, details()}, nil)},
		{"trailing garbage in gzip", append(ok[:len(ok):len(ok)], []byte("garbage")...)},
		{"second gzip member", append(ok[:len(ok):len(ok)], ok...)},
		{"truncated", ok[:len(ok)/2]},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, _, err := readAll(c.data)
			if !errors.Is(err, ErrBadPayload) {
				t.Fatalf("want ErrBadPayload, got %v", err)
			}
		})
	}
}

func sampleWithDetails(t *testing.T) []byte { return samplePayload(t) }

func TestPayloadReaderLimits(t *testing.T) {
	data := samplePayload(t)
	r, _ := NewPayloadReader(bytes.NewReader(data), ReaderLimits{MaxMembers: 10, MaxMemberSize: 4, MaxTotal: 100})
	if _, _, _, err := r.Next(); !errors.Is(err, ErrBadPayload) || !strings.Contains(err.Error(), "over the limit") {
		t.Fatalf("oversize member: %v", err)
	}
}

// TestGoldenDetailsBytes checks Marshal against package_details.json recorded from the
// unmodified reference application.
func TestGoldenDetailsBytes(t *testing.T) {
	f, err := os.Open("../testdata/reference-golden/apprunner.jsonl")
	if err != nil {
		t.Fatalf("the reference vectors are part of the repository (testdata/reference-golden): %v", err)
	}
	defer f.Close()
	n := 0
	sc := bufio.NewScanner(f)
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		var rec struct {
			Response struct {
				Members []struct {
					JSONText *string `json:"json_text"`
				} `json:"tar_members_in_order"`
				Body *string `json:"body_text"`
			} `json:"response"`
		}
		if err := json.Unmarshal(sc.Bytes(), &rec); err != nil {
			t.Fatal(err)
		}
		texts := []*string{rec.Response.Body}
		for _, m := range rec.Response.Members {
			texts = append(texts, m.JSONText)
		}
		for _, txt := range texts {
			if txt == nil || !strings.HasPrefix(*txt, "{\"") || strings.Contains(*txt, "error") {
				continue
			}
			d, err := DecodeDetails(strings.NewReader(*txt))
			if err != nil {
				t.Fatalf("decode %s: %v", *txt, err)
			}
			if got := string(d.Marshal()); got != *txt {
				t.Fatalf("re-encoded\n%s\nwant\n%s", got, *txt)
			}
			n++
		}
	}
	if n < 10 {
		t.Fatalf("only %d golden JSON documents checked", n)
	}
}

func TestPyStringEscapes(t *testing.T) {
	d := &Details{}
	d.Set("caf\u00e9\U0001F600", Entry{LatestVersion: "1\"\\\n\x7f", URL: "<&>", StatusCode: 200})
	want := `{"caf\u00e9\ud83d\ude00": {"latestVersion": "1\"\\\n` + "\x7f" + `", "url": "<&>", "status_code": 200}}`
	if got := string(d.Marshal()); got != want {
		t.Fatalf("got  %s\nwant %s", got, want)
	}
}

func TestDecodeDetailsRefuses(t *testing.T) {
	for name, doc := range map[string]string{
		"not object":   `[]`,
		"bad status":   `{"a": {"latestVersion": "1", "url": "", "status_code": 500}}`,
		"slash in app": `{"../a": {"latestVersion": "1", "url": "", "status_code": 200}}`,
		"slash in ver": `{"a": {"latestVersion": "1/../../x", "url": "", "status_code": 200}}`,
		"empty ver":    `{"a": {"latestVersion": "", "url": "", "status_code": 200}}`,
		"bad md5":      `{"a": {"latestVersion": "1", "url": "", "status_code": 200, "md5": "XYZ"}}`,
		"bad sha":      `{"a": {"latestVersion": "1", "url": "", "status_code": 200, "sha256": "00"}}`,
		"neg size":     `{"a": {"latestVersion": "1", "url": "", "status_code": 200, "size": -1}}`,
		"trailing":     `{} {}`,
		"huge":         `{"a": "` + strings.Repeat("x", MaxDetailsBytes) + `"}`,
		"wrong type":   `{"a": {"latestVersion": 1, "url": "", "status_code": 200}}`,
	} {
		if _, err := DecodeDetails(strings.NewReader(doc)); !errors.Is(err, ErrBadDetails) {
			t.Errorf("%s: want ErrBadDetails, got %v", name, err)
		}
	}
}
