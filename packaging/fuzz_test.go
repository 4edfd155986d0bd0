package packaging

import (
	"bytes"
	"io"
	"strings"
	"testing"
)

func FuzzDecodeDetails(f *testing.F) {
	f.Add([]byte(`{"os_armv8": {"latestVersion": "1.1.0", "url": "s3://b/os_armv8_1.1.0", "status_code": 200}}`))
	f.Add([]byte(`{"a": {"latestVersion": "1", "url": "", "status_code": 304, "md5": "` + strings.Repeat("0", 32) + `", "size": 3}}`))
	f.Add([]byte(`{}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		d, err := DecodeDetails(bytes.NewReader(data))
		if err != nil {
			return
		}
		// Whatever decodes re-encodes and decodes to the same apps.
		d2, err := DecodeDetails(bytes.NewReader(d.Marshal()))
		if err != nil || len(d2.Apps) != len(d.Apps) {
			t.Fatalf("round trip: %v", err)
		}
	})
}

func FuzzPayloadReader(f *testing.F) {
	f.Add(samplePayload(f))
	f.Add([]byte{0x1f, 0x8b})
	f.Fuzz(func(t *testing.T, data []byte) {
		r, err := NewPayloadReader(bytes.NewReader(data), ReaderLimits{MaxMembers: 8, MaxMemberSize: 1 << 20, MaxTotal: 4 << 20})
		if err != nil {
			return
		}
		for i := 0; i < 20; i++ {
			name, _, body, err := r.Next()
			if err != nil {
				return
			}
			if ValidFileName(name) != nil {
				t.Fatalf("invalid name %q accepted", name)
			}
			io.Copy(io.Discard, body)
		}
	})
}

func FuzzParseReleaseFile(f *testing.F) {
	f.Add([]byte(`{"app":"a","version":"1","md5":"` + strings.Repeat("0", 32) + `","sha256":"` + strings.Repeat("0", 64) + `","size":1,"serial":1,"sig":"AA==","keyid":"0000000000000000"}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		rf, err := ParseReleaseFile(bytes.NewReader(data))
		if err != nil {
			return
		}
		if ValidFileName(rf.App+"_"+rf.Version) != nil {
			t.Fatalf("invalid app/version accepted: %q %q", rf.App, rf.Version)
		}
	})
}
